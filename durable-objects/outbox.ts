/**
 * A Durable Object's webhook outbox (issue 14): the account object's, and the monitor's for
 * alert events (durable-objects/monitor.ts). In the account object, a command that crosses the low-balance
 * threshold writes its event here inside the command's own transaction (no read, no extra
 * await: the crossing is a pure function of the account before and after, already in memory),
 * so the event exists exactly when the crossing does. The alarm then hands each event to the
 * delivery records in D1 (one per matching endpoint, idempotent) and deletes it; delivery and
 * its retries never run on a command's path.
 *
 * When the owner's next run is due lives in SQLite (the one-row `webhook_state` table), not only
 * in memory, so an evicted object wakes for it: the next pending attempt in D1, and after a run
 * that failed (D1 or the configuration key unavailable) a retry time on a capped backoff. A
 * failed run never leaves a wake in the past: that would re-arm the alarm for "now" and spin.
 */
import { clock } from "../src/clock";
import type { LedgerEvent } from "../src/domain/events";
import type { Lot, LotBook } from "../src/domain/lots";
import { isBelow, lowBalanceTransition } from "../src/domain/low-balance";
import { crossings, type LimitBook } from "../src/domain/spend-limits";
import type { AccountState } from "../src/domain/state";
import type { Env } from "../src/env";
import { writeLog } from "../src/observability/log";
import { recordD1Failure } from "../src/observability/metrics";
import { controlDb } from "../src/read-side/shards";
import { loadConfigKeys } from "../src/security/secrets";
import {
  limitEvent,
  lotExpiredEvent,
  lotExpiringEvent,
  lowBalanceEvent,
  type WebhookEvent,
} from "../src/webhooks/events";
import { deliverDue } from "../src/webhooks/send";
import { enqueueDeliveries } from "../src/webhooks/store";

/** Outbox events handed off per alarm run; the alarm re-arms at once while more remain. */
export const OUTBOX_HANDOFF_BATCH_MAX = 50;
/** After a failed webhook run, the next waits this long, doubling per consecutive failure... */
export const WEBHOOK_RUN_RETRY_BASE_MS = 10_000;
/** ...up to this cap (D1 down for an hour costs an object a dozen runs, not a hot loop). */
export const WEBHOOK_RUN_RETRY_CAP_MS = 300_000;

/** The migration that adds the run state (appended to the account's and the monitor's migrations). */
export const WEBHOOK_STATE_MIGRATION = `
  CREATE TABLE webhook_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    next_due_ms INTEGER,
    retry_at_ms INTEGER,
    failures INTEGER NOT NULL,
    low INTEGER
  );
`;

const earliest = (a: number | null, b: number | null): number | null =>
  a === null ? b : b === null ? a : Math.min(a, b);

/** The wait before the next run after `failures` consecutive failed runs (>= 1). */
export function webhookRunRetryMs(failures: number): number {
  return Math.min(WEBHOOK_RUN_RETRY_BASE_MS * 2 ** Math.min(Math.max(failures, 1) - 1, 30), WEBHOOK_RUN_RETRY_CAP_MS);
}

type RunState = {
  /** The owner's earliest pending delivery attempt in D1, as of the last run (null: none). */
  next_due_ms: number | null;
  /** Set after a failed run: nothing runs before it (null after a run that succeeded). */
  retry_at_ms: number | null;
  failures: number;
  /** The account is low as last notified (1 or 0); null before its first command since the migration. */
  low: number | null;
};

const IDLE: RunState = { next_due_ms: null, retry_at_ms: null, failures: 0, low: null };

/** An account's lots as the outbox announces their expiry (`lot.expiring`, issue 27). */
export interface ExpiringLots {
  book(): LotBook | null;
  account(): AccountState | null;
  /** How long before a lot's expiry it is announced (LOT_EXPIRING_LEAD_HOURS). */
  leadMs: number;
}

export class WebhookOutbox {
  /** The oldest event waiting for its hand-off (memory mirror of the table; null: none). */
  private pendingSince: number | null = null;
  private state: RunState = IDLE;

  constructor(
    private readonly sql: SqlStorage,
    /** The account's lots (the monitor's outbox has none). */
    private readonly lots: ExpiringLots | null = null,
  ) {
    // Events left by a hand-off that failed, or by an object evicted before its alarm ran.
    this.reload();
    this.loadAnnounced();
  }

  /** Reads the waiting events' age and the run state from the tables (start, and after a rollback). */
  reload(): void {
    const row = this.sql.exec<{ at: number | null }>("SELECT MIN(created_at_ms) AS at FROM webhook_outbox").one();
    this.pendingSince = row.at;
    const state = this.sql
      .exec<RunState>("SELECT next_due_ms, retry_at_ms, failures, low FROM webhook_state WHERE id = 1")
      .toArray()[0];
    this.state = state === undefined ? IDLE : { ...state };
  }

  /**
   * Inside the command's transaction: writes the crossing's event, if it crossed, and a
   * `lot.expired` per LotExpired event. Returns rows written.
   */
  record(
    before: AccountState | null,
    after: AccountState,
    events: readonly LedgerEvent[],
    nowMs: number,
    limits: { before: LimitBook; after: LimitBook } = { before: new Map(), after: new Map() },
  ): number {
    let rows = 0;
    for (const event of events) if (event.type === "LotExpired") rows += this.add(lotExpiredEvent(event, after), nowMs);
    const last = events.at(-1) as LedgerEvent;
    // A spend limit's window that crossed its threshold or its amount (issue 28): once per window.
    for (const { entry, crossing } of crossings(limits.before, limits.after, Date.parse(last.at))) {
      rows += this.add(limitEvent(crossing, entry, after, last), nowMs);
    }
    // Until the first crossing is recorded, "low" is read from the state before the command.
    const wasLow = this.state.low === null ? before !== null && isBelow(before) === true : this.state.low === 1;
    const { transition, low } = lowBalanceTransition(wasLow, after);
    if (transition === null) return rows;
    // A crossing costs two rows: its event, and the flag (so that exactly the threshold stays put).
    return (
      rows + this.save({ ...this.state, low: low ? 1 : 0 }) + this.add(lowBalanceEvent(transition, after, last), nowMs)
    );
  }

  /** Lots sent `lot.expiring`, by id, with the expiry announced: the `lots_announced` rows, read on start. */
  private readonly announced = new Map<string, number>();

  private loadAnnounced(): void {
    if (this.lots === null) return;
    const rows = this.sql.exec<{ lot_id: string; expires_at_ms: number }>(
      "SELECT lot_id, expires_at_ms FROM lots_announced",
    );
    for (const row of rows) this.announced.set(row.lot_id, row.expires_at_ms);
  }

  /**
   * Lots with credit, not expired at `nowMs` and not announced yet, soonest expiry first: those
   * `lot.expiring` may concern. Walks the book's expiry index, so a caller that stops at the first
   * lot outside the lead time reads only the lots inside it (and the expired ones holds keep).
   */
  private *unannounced(nowMs: number): Generator<Lot> {
    const book = this.lots?.book() ?? null;
    if (book === null) return;
    for (const indexed of book.expiring) {
      const lot = book.lots.get(indexed.lot_id);
      if (lot === undefined || (lot.expires_at_ms as number) <= nowMs) continue;
      if (this.announced.get(lot.lot_id) !== lot.expires_at_ms) yield lot;
    }
  }

  /**
   * Writes `lot.expiring` for each lot now within the lead time, and its `lots_announced` row;
   * forgets the announcements of lots whose expiry has passed. Returns rows written.
   */
  announceExpiring(nowMs: number): number {
    const account = this.lots?.account() ?? null;
    if (this.lots === null || account === null) return 0;
    let rows = 0;
    for (const lot of this.unannounced(nowMs)) {
      if ((lot.expires_at_ms as number) - this.lots.leadMs > nowMs) break;
      rows += this.add(lotExpiringEvent(lot, account, nowMs), nowMs);
      rows += this.sql.exec(
        "INSERT OR REPLACE INTO lots_announced (lot_id, expires_at_ms) VALUES (?, ?)",
        lot.lot_id,
        lot.expires_at_ms,
      ).rowsWritten;
      this.announced.set(lot.lot_id, lot.expires_at_ms as number);
    }
    for (const [lotId, expiresAtMs] of this.announced) {
      if (expiresAtMs > nowMs) continue;
      rows += this.sql.exec("DELETE FROM lots_announced WHERE lot_id = ?", lotId).rowsWritten;
      this.announced.delete(lotId);
    }
    return rows;
  }

  /** When the next lot enters its lead time, or null. */
  private expiringWakeAtMs(nowMs: number): number | null {
    // The soonest expiry enters its lead time first.
    for (const lot of this.unannounced(nowMs))
      return Math.max((lot.expires_at_ms as number) - (this.lots?.leadMs ?? 0), nowMs);
    return null;
  }

  /** Writes one event (inside the caller's transaction); an id already waiting is kept once. */
  add(event: WebhookEvent, nowMs: number): number {
    const written = this.sql.exec(
      "INSERT OR IGNORE INTO webhook_outbox (event_id, body, created_at_ms) VALUES (?, ?, ?)",
      event.id,
      JSON.stringify(event),
      nowMs,
    ).rowsWritten;
    this.pendingSince ??= nowMs;
    return written;
  }

  /**
   * When the owner's next run is due: an event waiting or a pending attempt, but never before
   * the retry time of a failed run; and at that retry time in any case (a run that failed did
   * not learn what is pending). Null when nothing is pending.
   */
  wakeAtMs(nowMs: number = clock.now()): number | null {
    const { next_due_ms: due, retry_at_ms: retryAt } = this.state;
    const wanted = earliest(earliest(due, this.pendingSince), this.expiringWakeAtMs(nowMs));
    if (retryAt === null) return wanted;
    return wanted === null ? retryAt : Math.max(wanted, retryAt);
  }

  /** The oldest events waiting, at most `limit`. */
  waiting(limit: number = OUTBOX_HANDOFF_BATCH_MAX): WebhookEvent[] {
    return this.sql
      .exec<{ body: string }>("SELECT body FROM webhook_outbox ORDER BY created_at_ms, event_id LIMIT ?", limit)
      .toArray()
      .map((row) => JSON.parse(row.body) as WebhookEvent);
  }

  /** After their delivery records exist in D1: the events leave the outbox (the age is read afresh). */
  handedOff(ids: readonly string[]): void {
    for (const id of ids) this.sql.exec("DELETE FROM webhook_outbox WHERE event_id = ?", id);
    const row = this.sql.exec<{ at: number | null }>("SELECT MIN(created_at_ms) AS at FROM webhook_outbox").one();
    this.pendingSince = row.at;
  }

  /** A run succeeded: the next is due at the owner's next pending attempt; no retry is waiting. */
  ran(nextDueMs: number | null): void {
    this.save({ ...this.state, next_due_ms: nextDueMs, retry_at_ms: null, failures: 0 });
  }

  /** A run failed at `nowMs`: the next waits on the backoff. Answers its time. */
  failed(nowMs: number): number {
    const failures = this.state.failures + 1;
    const retryAt = nowMs + webhookRunRetryMs(failures);
    this.save({ ...this.state, retry_at_ms: retryAt, failures });
    return retryAt;
  }

  /** Writes the state if it changed (inside a command's transaction, for `low`). Returns rows written. */
  private save(state: RunState): number {
    const s = this.state;
    const same =
      s.next_due_ms === state.next_due_ms &&
      s.retry_at_ms === state.retry_at_ms &&
      s.failures === state.failures &&
      s.low === state.low;
    if (same) return 0;
    const written = this.sql.exec(
      `INSERT INTO webhook_state (id, next_due_ms, retry_at_ms, failures, low) VALUES (1, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET next_due_ms = excluded.next_due_ms, retry_at_ms = excluded.retry_at_ms,
       failures = excluded.failures, low = excluded.low`,
      state.next_due_ms,
      state.retry_at_ms,
      state.failures,
      state.low,
    ).rowsWritten;
    this.state = state;
    return written;
  }
}

/**
 * One webhook run of an owner (an account, or null for the monitor's alerts): hands the outbox's
 * waiting events to their delivery records in D1, then sends the owner's due deliveries, and
 * records when the next run is due (outbox.wakeAtMs). Throws on a D1 failure after recording
 * the retry time; the outbox keeps what was not handed off.
 */
export async function runWebhookOutbox(outbox: WebhookOutbox, env: Env, owner: string | null): Promise<void> {
  try {
    const waiting = outbox.waiting();
    if (waiting.length > 0) await enqueueDeliveries(controlDb(env), waiting, clock.now());
    // Also when nothing was waiting: the age in memory is re-read from the table.
    outbox.handedOff(waiting.map((event) => event.id));
    outbox.ran(await deliverDue(controlDb(env), await loadConfigKeys(env), owner));
  } catch (error) {
    outbox.failed(clock.now());
    throw error;
  }
}

/**
 * An account's webhook runs: the alarm, a catch-up and an admin's redelivery share the run in
 * progress instead of sending twice. A run happens only when something is due (or `force`, for a
 * redelivery), so an alarm for an expiry reads no D1 row for webhooks.
 */
export class WebhookRunner {
  private running: Promise<void> | null = null;

  constructor(
    private readonly outbox: WebhookOutbox,
    /** The object's environment as it is now (tests swap it for one whose D1 is down). */
    private readonly env: () => Env,
    /** The account's id, or null before it is opened. */
    private readonly owner: () => string | null,
  ) {}

  runIfDue(force: boolean): Promise<void> {
    // Lots entering their lead time are announced first: their events are then waiting.
    this.outbox.announceExpiring(clock.now());
    const wake = this.outbox.wakeAtMs();
    const owner = this.owner();
    if (owner === null || (!force && (wake === null || wake > clock.now()))) return Promise.resolve();
    this.running ??= this.run(owner).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async run(owner: string): Promise<void> {
    try {
      await runWebhookOutbox(this.outbox, this.env(), owner);
    } catch (error) {
      // Only the error's class: a D1 message or a configuration error may not reach the logs.
      // The outbox holds the retry time (a capped backoff): the alarm re-arms for it, not for now.
      writeLog(this.env(), "warn", { msg: "webhooks_failed", error: (error as Error).name ?? "Error" });
      recordD1Failure(clock.now(), "write:webhooks");
    }
  }
}

/**
 * Called inside every append's transaction with the account before and after it, its events and
 * the spend limits before and after: writes what the change implies besides the log (this outbox's
 * events) and returns the rows it wrote. A throw rolls back.
 */
export type AppendHook = (
  before: AccountState | null,
  after: AccountState,
  events: readonly LedgerEvent[],
  limits: { before: LimitBook; after: LimitBook },
) => number;

/** What `accountWebhooks` needs of the account's store (store.ts, which imports this file's migration). */
interface AppendingStore {
  readonly sql: SqlStorage;
  readonly lots: { readonly book: LotBook | null };
  readonly account: AccountState | null;
  onAppend: AppendHook | null;
}

/**
 * The account's webhook outbox, written inside every append's transaction (`store.onAppend`), and
 * the runner that delivers it.
 */
export function accountWebhooks(
  store: AppendingStore,
  env: () => Env,
  config: { lotExpiringLeadMs: number },
): { outbox: WebhookOutbox; webhooks: WebhookRunner } {
  const lots = { book: () => store.lots.book, account: () => store.account, leadMs: config.lotExpiringLeadMs };
  const outbox = new WebhookOutbox(store.sql, lots);
  store.onAppend = (before, after, events, limits) => outbox.record(before, after, events, clock.now(), limits);
  const webhooks = new WebhookRunner(outbox, env, () => store.account?.account_id ?? null);
  return { outbox, webhooks };
}
