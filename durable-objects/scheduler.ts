/**
 * The expiry and alarm scheduler of an account object. One alarm serves several clients: the
 * earliest open hold's expiry, and the other work's wake times (the projection's retry, the
 * webhook outbox and its retries, the archive's sealing of segments: durable-objects/archive.ts;
 * the account object lists them). The alarm is kept at or before
 * the earliest of them (an early alarm just re-arms; moving it later after every capture would
 * cost a row per capture).
 *
 * `nextExpiryMs` is a lower bound on the earliest open expiry, kept in memory: while it is in
 * the future, nothing can be due, and a command reads no row to find out.
 */
import { EXPIRY_BATCH_MAX } from "../src/domain/limits";
import type { AccountStore, Appended } from "./store";

/** Retries the runtime grants a throwing alarm before we stop throwing and back off instead. */
export const ALARM_RETRIES_MAX = 5;
/** When the alarm keeps failing past its retry budget, try again this much later. */
export const ALARM_BACKOFF_AFTER_BUDGET_MS = 60_000;

export class ExpiryScheduler {
  /** Never later than the earliest open expiry (it may be earlier: a spurious wake re-arms). */
  private nextExpiryMs: number | null;
  /** The alarm we believe is scheduled. */
  alarmAtMs: number | null = null;
  /** True while the alarm handler runs: the runtime has consumed the alarm and it re-arms at the end. */
  private waking = false;

  constructor(
    private readonly store: AccountStore,
    private readonly storage: DurableObjectStorage,
    /** When the other clients want to be woken (the projection's retry, the archive's work), or null. */
    private readonly wakeAtMs: readonly (() => number | null)[],
  ) {
    this.nextExpiryMs = store.account === null ? null : store.earliestOpenExpiry();
  }

  /** On start: learn the alarm the runtime holds, then make sure one is set if needed. */
  async start(): Promise<void> {
    this.alarmAtMs = await this.storage.getAlarm();
    this.ensureAlarm();
  }

  /**
   * The reservations to expire before a command at `nowMs`: every one due (one bounded batch;
   * the alarm takes the rest), plus `named` if it is due, so a late capture never beats the
   * clock. Reads no row while the lower bound says nothing can be due.
   */
  due(nowMs: number, named: readonly string[]): string[] {
    if (this.store.account === null || this.nextExpiryMs === null || this.nextExpiryMs > nowMs) return [];
    const due = new Set(this.store.dueReservations(nowMs, EXPIRY_BATCH_MAX));
    for (const id of named) if (!due.has(id) && this.store.isDue(id, nowMs)) due.add(id);
    return [...due];
  }

  /** After expiring what was due at `nowMs`: re-read the bound if it had passed. */
  expiredThrough(nowMs: number): void {
    if (this.nextExpiryMs !== null && this.nextExpiryMs <= nowMs) this.nextExpiryMs = this.store.earliestOpenExpiry();
    this.ensureAlarm();
  }

  /** After an append: a newly opened or extended hold may be the earliest. */
  appended(appended: Appended): void {
    const touched = appended.earliestTouchedExpiryMs;
    if (this.store.holds.count === 0) this.nextExpiryMs = null;
    else if (touched !== null && (this.nextExpiryMs === null || touched < this.nextExpiryMs)) {
      this.nextExpiryMs = touched;
    }
    this.ensureAlarm();
  }

  /** The alarm fired: it is consumed, and the bound is read afresh from the rows. */
  woke(): void {
    this.waking = true;
    this.alarmAtMs = null;
    this.nextExpiryMs = this.store.account === null ? null : this.store.earliestOpenExpiry();
  }

  /** The alarm handler finished (it re-armed through `ensureAlarm`, or threw to be retried). */
  rested(): void {
    this.waking = false;
  }

  /** Past the alarm's retry budget: stop throwing (the runtime would give up) and come back later. */
  async backOff(nowMs: number): Promise<void> {
    this.alarmAtMs = nowMs + ALARM_BACKOFF_AFTER_BUDGET_MS;
    await this.storage.setAlarm(this.alarmAtMs);
  }

  ensureAlarm(): void {
    const next = this.earliestWake();
    if (next === null) return;
    if (this.alarmAtMs !== null && this.alarmAtMs <= next) return;
    this.alarmAtMs = next;
    // Not awaited: the output gate holds every response until this write is durable.
    void this.storage.setAlarm(next);
  }

  /**
   * At the end of an alarm run: the alarm becomes exactly the earliest wake. While the run
   * worked, a client may have asked for "now" and then moved its wake later (a webhook run that
   * failed waits for its retry time); `ensureAlarm` never moves an alarm later, so without this
   * the alarm would fire at once, fail again and spin.
   */
  rearm(): void {
    const next = this.earliestWake();
    if (next === null || next === this.alarmAtMs) return;
    this.alarmAtMs = next;
    void this.storage.setAlarm(next);
  }

  private earliestWake(): number | null {
    let next = this.nextExpiryMs;
    for (const wake of this.wakeAtMs) {
      const at = wake();
      if (at !== null && (next === null || at < next)) next = at;
    }
    return next;
  }

  memory(): { nextExpiryMs: number | null; alarmAtMs: number | null } {
    return { nextExpiryMs: this.nextExpiryMs, alarmAtMs: this.alarmAtMs };
  }

  restore(saved: ReturnType<ExpiryScheduler["memory"]>): void {
    this.nextExpiryMs = saved.nextExpiryMs;
    // A rolled-back setAlarm may or may not have happened. `ensureAlarm` skips setting an alarm
    // it believes is already early enough, so believing an earlier time than the real one could
    // leave a hold uncovered; believing the later one (or none) only costs a spurious setAlarm.
    this.alarmAtMs =
      saved.alarmAtMs === null || this.alarmAtMs === null ? null : Math.max(saved.alarmAtMs, this.alarmAtMs);
  }

  /**
   * For verify: the alarm the runtime really holds (not our belief) must cover the earliest open
   * expiry. The runtime reports no alarm while one is being delivered (due, or its handler
   * running) until the handler sets the next: that alarm wakes the object, which then reads the
   * earliest expiry from its rows and re-arms, so it covers every hold too.
   */
  async alarmCovers(earliestOpenExpiryMs: number, nowMs: number): Promise<{ ok: boolean; alarmAtMs: number | null }> {
    const alarmAtMs = await this.storage.getAlarm();
    if (alarmAtMs !== null) return { ok: alarmAtMs <= earliestOpenExpiryMs, alarmAtMs };
    const delivering = this.waking || (this.alarmAtMs !== null && this.alarmAtMs <= nowMs);
    return { ok: delivering, alarmAtMs };
  }
}
