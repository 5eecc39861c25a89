/**
 * The account Durable Object: a thin shell that orchestrates its parts, each a file with one
 * job (docs/architecture.md):
 * - `store.ts`: the SQLite snapshot, the slice a command reads, the append in one transaction;
 * - `runner.ts`: settle what is due, decide, stamp, append, render (the command table drives it);
 * - `scheduler.ts`: the expiry bound and the one alarm that serves expiries and projection;
 * - `recent-events.ts`: the last commits' events, kept parsed until the projection delivers them;
 * - `src/projection/projector.ts`: D1 projection behind a durable cursor, after the response;
 * - `outbox.ts`: low-balance webhook events, written by the crossing command, sent by the alarm;
 * - `archive.ts`: sealing the log into segments archived to R2, through the alarm;
 * - `history.ts`: reading the sealed segments and the tail as one history;
 * - `verify.ts`: replaying the log inside the object.
 * Time comes from the clock seam (src/clock.ts); rules live in src/domain.
 */
import { DurableObject } from "cloudflare:workers";
import { auditKey } from "../src/audit/signing";
import { clock } from "../src/clock";
import type { Command } from "../src/domain/commands";
import type { LedgerEvent } from "../src/domain/events";
import { EVENTS_PAGE_LIMIT_MAX } from "../src/domain/limits";
import { assert } from "../src/domain/money";
import type { Rejection } from "../src/domain/rejections";
import { type AccountView, accountView, type ReservationView, reservationView } from "../src/domain/views";
import type { Env } from "../src/env";
import { flushMetricsIfDue } from "../src/observability/flush";
import { writeLog } from "../src/observability/log";
import { recordAlarmExhausted, recordD1Failure } from "../src/observability/metrics";
import { applyStats } from "../src/projection/apply";
import { directDelivery, queueDelivery } from "../src/projection/delivery";
import {
  type Delivery,
  PROJECTION_HOLD_WAIT_MS_DEFAULT,
  type ProjectionStatus,
  Projector,
} from "../src/projection/projector";
import { shardsOf } from "../src/projection/shards";
import { Archiver, archiveLimits } from "./archive";
import { History } from "./history";
import { runWebhookOutbox, WebhookOutbox } from "./outbox";
import { type BatchResult, CommandRunner, type ExecuteResult } from "./runner";
import { ALARM_RETRIES_MAX, ExpiryScheduler } from "./scheduler";
import { type SegmentEntry, SegmentIndex } from "./segments";
import { AccountStore, SealedEventNeeded } from "./store";
import { VERIFY_FULL_FOLD_EVENTS_MAX, type VerifyReport, verifyAccount } from "./verify";

export type { BatchResult, ExecuteResult } from "./runner";
export type { SegmentEntry } from "./segments";
export type { VerifyReport } from "./verify";
export type ReadResult<T> = { ok: true; body: T } | { ok: false; rejection: Rejection };

/** Coalescing window of the projection when PROJECTION_COALESCE_MS is not set. */
export const PROJECTION_COALESCE_MS_DEFAULT = 50;

/**
 * The projection queue when the object has one (wrangler.toml [[queues.producers]]), else the
 * read side directly; PROJECTION_DELIVERY = "direct" forces the latter (the test suite's
 * default, so that tests see D1 move command by command).
 */
function projectionDelivery(env: Env): Delivery {
  const direct = directDelivery(shardsOf(env));
  if (env.PROJECTION_QUEUE === undefined || env.PROJECTION_DELIVERY === "direct") return direct;
  return queueDelivery(env.PROJECTION_QUEUE, direct);
}

/**
 * Sealed events one command may need: an ended reservation's FundsReserved and end events (a
 * replayed key's prior event is one of them, or the only one).
 */
export const SEALED_READS_PER_COMMAND_MAX = 2;

const NOT_FOUND: { ok: false; rejection: Rejection } = {
  ok: false,
  rejection: { code: "account_not_found", detail: "The account does not exist." },
};

export class AccountDurableObject extends DurableObject<Env> {
  private readonly store: AccountStore;
  private readonly scheduler: ExpiryScheduler;
  private readonly runner: CommandRunner;
  /** Projects committed events into D1 behind a durable cursor. */
  readonly projector: Projector;
  /** Seals the log into segments in R2 (tests reach its seams: bucket, limits, onStep). */
  readonly archiver: Archiver;
  private readonly history: History;
  /** A flush is scheduled (coalescing window open). */
  private flushScheduled = false;
  /** Webhook events waiting for D1, and when this account's next webhook run is due (durable). */
  private readonly outbox: WebhookOutbox;
  /** The webhook run in progress: alarm, nudge and redelivery share it instead of sending twice. */
  private webhookRun: Promise<void> | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new AccountStore(ctx.storage);
    const index = new SegmentIndex(this.store.sql);
    this.history = new History(this.store, index, () => this.archiver.bucket);
    this.projector = new Projector(this.store.sql, projectionDelivery(env), {
      account: () => this.store.account,
      // What the projection reads is usually what the last commits wrote: kept parsed in memory.
      eventsAfter: (seq, limit) => this.store.recent.after(seq, limit) ?? this.store.readEvents(seq, limit),
      history: async (seq, limit) => this.store.recent.after(seq, limit) ?? this.history.span(seq, limit),
      event: (seq) => this.store.recent.get(seq) ?? this.store.keptEvent(seq),
      reserveSeq: (id) => this.store.reservationStatus(id)?.reserve_seq ?? null,
      wake: () => this.scheduler.ensureAlarm(),
      forget: (seq) => this.store.recent.dropThrough(seq),
      log: (line) => writeLog(env, "warn", line),
    });
    this.store.rider = this.projector.rider;
    this.outbox = new WebhookOutbox(this.store.sql);
    this.store.onAppend = (before, after, last) => this.outbox.record(before, after, last, clock.now());
    this.archiver = new Archiver(
      ctx.storage,
      index,
      {
        account: () => this.store.account,
        sealableThrough: () => this.projector.deliveredThrough(),
        signingKey: () => auditKey(env.AUDIT_SIGNING_KEY),
        wake: () => this.scheduler.ensureAlarm(),
        log: (line) => writeLog(env, "warn", line),
      },
      env.ARCHIVE ?? null,
      archiveLimits(env as unknown as Record<string, unknown>),
    );
    this.scheduler = new ExpiryScheduler(this.store, ctx.storage, [
      () => this.projector.wakeAtMs(),
      () => this.outbox.wakeAtMs(),
      () => this.archiver.wakeAtMs(clock.now()),
    ]);
    this.runner = new CommandRunner(
      this.store,
      this.scheduler,
      () => this.scheduleFlush(),
      // A rolled-back batch may have written an outbox event that is gone with it.
      () => this.outbox.reload(),
    );
    this.projector.resume(clock.now());
    void ctx.blockConcurrencyWhile(() => this.scheduler.start());
  }

  // ---------------------------------------------------------------- commands

  async execute(command: Command): Promise<ExecuteResult> {
    return this.readingSealed(1, () => this.runner.run(command, clock.now()));
  }

  async executeBatch(commands: Command[], atomic: boolean): Promise<BatchResult> {
    return this.readingSealed(commands.length, () => this.runner.runBatch(commands, atomic, clock.now()));
  }

  /**
   * Runs `work`; if it stopped for an event sealed in R2 (the prior event of a key it replays, or
   * one of the two events an ended reservation is rebuilt from; it wrote nothing: a batch's
   * transaction rolled back), reads that event from its segment and runs it again, up to
   * SEALED_READS_PER_COMMAND_MAX times per command. An event never changes once its key is recorded, so
   * the await cannot make the replay stale, and each run is atomic (no await inside it).
   */
  private async readingSealed<T>(commands: number, work: () => T): Promise<T> {
    try {
      for (let reads = 0; ; reads++) {
        try {
          return work();
        } catch (error) {
          if (!(error instanceof SealedEventNeeded) || reads >= commands * SEALED_READS_PER_COMMAND_MAX) throw error;
          this.store.sealed.set(error.seq, await this.history.event(error.seq));
        }
      }
    } finally {
      this.store.sealed.clear();
    }
  }

  /**
   * Settles due reservations in bounded batches and retries the projection. At-least-once
   * delivery makes it run twice or late: expiring is keyed on the rows' current status, so a
   * second run finds nothing to do.
   */
  override async alarm(info?: AlarmInvocationInfo): Promise<void> {
    this.scheduler.woke();
    try {
      await this.settleAndProject();
      this.scheduler.rearm();
      // Counts recorded during the run (D1 failures, projection lag) reach the monitor too.
      await flushMetricsIfDue(this.env, (work) => this.ctx.waitUntil(work));
    } catch (error) {
      const retries = info?.retryCount ?? 0;
      if (retries < ALARM_RETRIES_MAX) throw error;
      // Logged without any request data; the scheduler comes back later instead of throwing.
      writeLog(this.env, "error", { msg: "alarm_failed", retries, error: String(error) });
      recordAlarmExhausted(clock.now());
      // Off any request path: the monitor hears of it now rather than at the next commit.
      await flushMetricsIfDue(this.env, (work) => this.ctx.waitUntil(work), true);
      await this.scheduler.backOff(clock.now());
    } finally {
      this.scheduler.rested();
    }
  }

  /**
   * Settles what is due, re-arms the alarm and brings the projection up to date. The scheduled
   * sweep calls it for accounts whose alarm may have been lost; safe to call any time.
   */
  async nudge(): Promise<ProjectionStatus> {
    await this.settleAndProject();
    return this.projector.status(clock.now());
  }

  private async settleAndProject(): Promise<void> {
    // The run re-arms the alarm for sealing itself: meanwhile its wake must not arm one for "now".
    this.archiver.willRun();
    try {
      this.runner.settleDue(clock.now());
      if (this.projector.behind()) await this.projector.flush();
      this.projector.settle();
      await this.runWebhooksIfDue(false);
    } finally {
      // Sealing follows the projection (it never takes what is not delivered); it never throws.
      await this.archiver.run();
    }
    this.scheduler.ensureAlarm();
  }

  /**
   * Hands the outbox's events to their delivery records in D1, then sends this account's due
   * deliveries (src/webhooks/send.ts). Runs only when something is due (or `force`, for an
   * admin's redelivery), so an alarm for an expiry reads no D1 row for webhooks.
   */
  private runWebhooksIfDue(force: boolean): Promise<void> {
    const wake = this.outbox.wakeAtMs();
    if (this.store.account === null || (!force && (wake === null || wake > clock.now()))) return Promise.resolve();
    this.webhookRun ??= this.runWebhooks(this.store.account.account_id).finally(() => {
      this.webhookRun = null;
    });
    return this.webhookRun;
  }

  private async runWebhooks(accountId: string): Promise<void> {
    try {
      await runWebhookOutbox(this.outbox, this.env, accountId);
    } catch (error) {
      // Only the error's class: a D1 message or a configuration error may not reach the logs.
      // The outbox holds the retry time (a capped backoff): the alarm re-arms for it, not for now.
      writeLog(this.env, "warn", { msg: "webhooks_failed", error: (error as Error).name ?? "Error" });
      recordD1Failure(clock.now(), "write:webhooks");
    }
  }

  /** An admin redelivered one of this account's deliveries: send what is due now, then re-arm. */
  async wakeWebhooks(): Promise<void> {
    await this.runWebhooksIfDue(true);
    this.scheduler.ensureAlarm();
  }

  /**
   * Starts a projection flush after a short coalescing window (PROJECTION_COALESCE_MS), so that
   * the commands of a busy account share D1 batches instead of each paying for its own. Never
   * delays a response: it runs after it.
   */
  private scheduleFlush(): void {
    // This object's own counts (projection lag, D1 failures) reach the monitor too.
    flushMetricsIfDue(this.env, (work) => this.ctx.waitUntil(work));
    const delay = Number(this.env.PROJECTION_COALESCE_MS ?? PROJECTION_COALESCE_MS_DEFAULT);
    if (!(delay > 0)) {
      this.ctx.waitUntil(this.projector.flush());
      return;
    }
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    const holdWait = Number(this.env.PROJECTION_HOLD_WAIT_MS ?? PROJECTION_HOLD_WAIT_MS_DEFAULT);
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    this.ctx.waitUntil(
      sleep(delay)
        // A lone hold just opened: give its settlement a moment to join the same message.
        .then(() => (holdWait > delay && this.projector.holdWorthWaiting() ? sleep(holdWait - delay) : undefined))
        .then(() => {
          this.flushScheduled = false;
          return this.projector.flush();
        })
        // What the flush delivered may complete a segment to seal.
        .then(() => this.scheduler.ensureAlarm()),
    );
  }

  // ---------------------------------------------------------------- projection and audit

  async projectionStatus(): Promise<ProjectionStatus> {
    return this.projector.status(clock.now());
  }

  /**
   * Rebuilds this account's D1 rows from its log (admin). A D1 failure is returned, not thrown:
   * the caller answers it as a server error, and the projection retries through the alarm.
   */
  async reproject(): Promise<ReadResult<ProjectionStatus> | { ok: false; failed: string }> {
    if (this.store.account === null) return NOT_FOUND;
    try {
      return { ok: true, body: await this.projector.reproject() };
    } catch (error) {
      return { ok: false, failed: String(error) };
    }
  }

  /** The head of the chain and the balances there (what a checkpoint signs). */
  async head(): Promise<
    ReadResult<{ account_id: string; seq: number; head_hash: string; balance: number; reserved: number }>
  > {
    this.runner.settleDue(clock.now());
    const a = this.store.account;
    if (a === null) return NOT_FOUND;
    const body = { account_id: a.account_id, seq: a.last_seq, head_hash: a.head_hash, balance: a.balance };
    return { ok: true, body: { ...body, reserved: a.reserved } };
  }

  /** Balances as of a point in the log: after event `seq`, or after the last event at or before `at`. */
  async balanceAsOf(
    point: { seq: number } | { at: string },
  ): Promise<ReadResult<{ seq: number; at: string | null; balance: number; reserved: number; available: number }>> {
    const account = this.store.account;
    if (account === null) return NOT_FOUND;
    const seq = "seq" in point ? Math.min(point.seq, account.last_seq) : await this.history.seqAtTime(point.at);
    if (seq === 0) return { ok: true, body: { seq: 0, at: null, balance: 0, reserved: 0, available: 0 } };
    const row = await this.history.balancesAt(seq);
    assert(row !== null, "a seq up to the head has its event");
    return { ok: true, body: { seq, ...row, available: row.balance - row.reserved } };
  }

  /** The balances recorded by event `seq` (for reconciliation against a D1 snapshot). */
  async balancesAt(seq: number): Promise<{ seq: number; balance: number; reserved: number } | null> {
    const row = await this.history.balancesAt(seq);
    return row === null ? null : { seq, balance: row.balance, reserved: row.reserved };
  }

  async verify(): Promise<VerifyReport> {
    const fullFoldMax = Number(this.env.VERIFY_FULL_FOLD_EVENTS_MAX ?? VERIFY_FULL_FOLD_EVENTS_MAX);
    return verifyAccount(this.store, this.history, this.scheduler, fullFoldMax);
  }

  /**
   * The manifest entries of the sealed segments after `afterSeq` (the export streams their
   * objects straight from R2), and the seq up to which the history is archived.
   */
  async segments(
    afterSeq: number,
    limit: number,
  ): Promise<ReadResult<{ segments: SegmentEntry[]; archived_through: number }>> {
    if (this.store.account === null) return NOT_FOUND;
    const segments = this.archiver.index.entries(afterSeq, limit);
    return { ok: true, body: { segments, archived_through: this.archiver.index.archivedThrough } };
  }

  /** Where sealing stands (segments, what is archived, a retry), for operators and the bench. */
  async archiveStatus() {
    return { ...this.archiver.status(), sealed_this_run: this.archiver.sealed };
  }

  // ---------------------------------------------------------------- reads

  async getAccount(): Promise<ReadResult<AccountView>> {
    this.runner.settleDue(clock.now());
    return this.store.account === null ? NOT_FOUND : { ok: true, body: accountView(this.store.account) };
  }

  async getReservation(reservationId: string): Promise<ReadResult<ReservationView>> {
    if (this.store.account === null) return NOT_FOUND;
    this.runner.settleDue(clock.now(), [reservationId]);
    const r = await this.readingSealed(1, () => this.store.reservation(reservationId));
    if (r !== null) return { ok: true, body: reservationView(r) };
    const detail = "The account has no reservation with this id.";
    return { ok: false, rejection: { code: "reservation_not_found", detail } };
  }

  async listEvents(
    afterSeq: number,
    limit: number,
  ): Promise<ReadResult<{ events: LedgerEvent[]; next_after_seq: number | null }>> {
    if (this.store.account === null) return NOT_FOUND;
    assert(Number.isSafeInteger(afterSeq) && afterSeq >= 0, "after_seq");
    assert(Number.isSafeInteger(limit) && limit >= 1 && limit <= EVENTS_PAGE_LIMIT_MAX, "limit");
    const events = await this.history.events(afterSeq, limit);
    const last = events.at(-1);
    const more = last !== undefined && last.seq < this.store.account.last_seq;
    return { ok: true, body: { events, next_after_seq: more ? last.seq : null } };
  }

  /** Cost counters for benchmarks and operators: commits and the SQLite rows they wrote. */
  async stats() {
    return {
      commits: this.store.commits,
      rows_written: this.store.rowsWritten,
      projection_rows_written: this.projector.rowsWritten,
      events_projected: this.projector.eventsProjected,
      messages_delivered: this.projector.messagesDelivered,
      // Writes this isolate applied to D1 directly (PROJECTION_DELIVERY = "direct").
      d1_rows_written: applyStats.rowsWritten,
      d1_statements: applyStats.statements,
      d1_events_applied: applyStats.eventsApplied,
    };
  }

  /** Does nothing: the benchmark's ceiling for a call into a Durable Object. */
  async ping(): Promise<number> {
    return this.store.account?.last_seq ?? 0;
  }
}
