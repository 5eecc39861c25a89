/**
 * The account Durable Object: a thin shell that implements the account's contract
 * (src/contract.ts) by wiring its parts, each a file of this folder with one job (the store, the
 * runner, the scheduler, the outbox, the archive, the history, the reads, verification), and the
 * projection's producer (src/projection/producer/): docs/architecture.md, "Code map". Time comes
 * from the clock seam (src/clock.ts); rules live in src/domain; tunables in src/config.ts.
 */
import { DurableObject } from "cloudflare:workers";
import { auditKey } from "../src/audit/signing";
import { clock } from "../src/clock";
import { type Config, configOf } from "../src/config";
import type {
  AccountObject,
  ArchiveStatus,
  BalancesAsOf,
  BatchResult,
  ChainHead,
  ExecuteResult,
  LotsPage,
  LotsQuery,
  ProjectionStatus,
  ReadResult,
  SegmentEntry,
  VerifyReport,
} from "../src/contract";
import { useChainSha256 } from "../src/domain/chain";
import type { Command } from "../src/domain/commands";
import type { LedgerEvent } from "../src/domain/events";
import type { LimitView } from "../src/domain/spend-limits";
import type { AccountView, ReservationView } from "../src/domain/views";
import type { Env } from "../src/env";
import { flushMetricsIfDue } from "../src/observability/flush";
import { writeLog } from "../src/observability/log";
import { recordAlarmExhausted } from "../src/observability/metrics";
import { deliveryFor, FlushTimer } from "../src/projection/producer/flush";
import { Projector } from "../src/projection/producer/projector";
import { Archiver } from "./archive";
import { History, projectionSource, readingSealed } from "./history";
import { accountWebhooks, type WebhookOutbox, type WebhookRunner } from "./outbox";
import { AccountReads, NOT_FOUND } from "./reads";
import { CommandRunner } from "./runner";
import { ALARM_RETRIES_MAX, ExpiryScheduler } from "./scheduler";
import { SegmentIndex } from "./segments";
import { AccountStore } from "./store";
import { verifyAccount } from "./verify";

export class AccountDurableObject extends DurableObject<Env> implements AccountObject {
  protected readonly config: Config;
  /** The SQLite store (tests and the bench read its counters: commits, rows written). */
  readonly store: AccountStore;
  private readonly scheduler: ExpiryScheduler;
  private readonly runner: CommandRunner;
  /** Projects committed events into D1 behind a durable cursor (tests reach its seams). */
  readonly projector: Projector;
  /** Seals the log into segments in R2 (tests reach its seams: bucket, limits, onStep). */
  readonly archiver: Archiver;
  private readonly history: History;
  private readonly flushTimer: FlushTimer;
  private readonly outbox: WebhookOutbox;
  private readonly webhooks: WebhookRunner;
  private readonly reads: AccountReads;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.config = configOf(env);
    useChainSha256(this.config.chainSha256);
    this.store = new AccountStore(ctx.storage);
    const index = new SegmentIndex(this.store.sql);
    this.history = new History(this.store, index, () => this.archiver.bucket);
    this.reads = new AccountReads(this.store, this.history, index);
    const log = (line: Record<string, unknown>) => writeLog(env, "warn", line);
    const wake = () => this.scheduler.ensureAlarm();
    const source = projectionSource(this.store, this.history, wake, log);
    this.projector = new Projector(
      this.store.sql,
      deliveryFor(env, this.config.projection),
      source,
      this.config.projection.cursorWithCommand,
    );
    this.store.cursorWithCommit = this.projector.cursorWithCommit;
    ({ outbox: this.outbox, webhooks: this.webhooks } = accountWebhooks(this.store, () => this.env, this.config));
    const archiveHost = {
      account: () => this.store.account,
      sealableThrough: () => this.projector.deliveredThrough(),
      beforeDeleting: (lastSeq: number) => this.store.checkpointFolds(lastSeq),
      signingKey: () => auditKey(env.AUDIT_SIGNING_KEY),
      wake,
      log,
    };
    this.archiver = new Archiver(ctx.storage, index, archiveHost, env.ARCHIVE ?? null, this.config.archive);
    this.scheduler = new ExpiryScheduler(this.store, ctx.storage, [
      () => this.projector.wakeAtMs(),
      () => this.outbox.wakeAtMs(),
      () => this.archiver.wakeAtMs(clock.now()),
      () => this.store.lots.wakeAtMs(),
    ]);
    const waitUntil = (work: Promise<unknown>) => ctx.waitUntil(work);
    this.flushTimer = new FlushTimer(this.projector, this.config.projection, waitUntil, wake);
    // A rolled-back batch may have written an outbox event that is gone with it: the outbox reloads.
    this.runner = new CommandRunner(
      this.store,
      this.scheduler,
      () => this.committed(),
      () => this.outbox.reload(),
    );
    this.projector.resume(clock.now());
    void ctx.blockConcurrencyWhile(() => this.scheduler.start());
  }

  // ---------------------------------------------------------------- commands

  async execute(command: Command): Promise<ExecuteResult> {
    return readingSealed(this.store, this.history, 1, () => this.runner.run(command, clock.now()));
  }

  async executeBatch(commands: Command[], atomic: boolean): Promise<BatchResult> {
    // The time is read per attempt: a retry after a sealed read decides at the time it runs.
    const run = () => this.runner.runBatch(commands, atomic, clock.now());
    return readingSealed(this.store, this.history, commands.length, run);
  }

  /** After a commit: this object's counts reach the monitor, and the projection flushes soon. */
  private committed(): void {
    flushMetricsIfDue(this.env, (work) => this.ctx.waitUntil(work));
    this.flushTimer.request();
  }

  /** Expires what is due (holds, lots) and retries the projection; a second run finds nothing to do. */
  override async alarm(info?: AlarmInvocationInfo): Promise<void> {
    this.scheduler.woke();
    try {
      await this.runDueWork();
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

  async catchUp(): Promise<ProjectionStatus> {
    await this.runDueWork();
    return this.projector.status(clock.now());
  }

  /** Expires what is due, brings the projection and webhooks up to date, seals, re-arms. */
  private async runDueWork(): Promise<void> {
    // The run re-arms the alarm for sealing itself: meanwhile its wake must not arm one for "now".
    this.archiver.willRun();
    try {
      this.runner.expireDue(clock.now());
      if (this.projector.behind()) await this.projector.flush();
      this.projector.writeCursor();
      await this.webhooks.runIfDue(false);
    } finally {
      // Sealing follows the projection (it never takes what is not delivered); it never throws.
      await this.archiver.run();
    }
    this.scheduler.ensureAlarm();
  }

  async wakeWebhooks(): Promise<void> {
    await this.webhooks.runIfDue(true);
    this.scheduler.ensureAlarm();
  }

  // ---------------------------------------------------------------- projection and audit

  async projectionStatus(): Promise<ProjectionStatus> {
    return this.projector.status(clock.now());
  }

  async reproject(): Promise<ReadResult<ProjectionStatus> | { ok: false; failed: string }> {
    if (this.store.account === null) return NOT_FOUND;
    try {
      return { ok: true, body: await this.projector.reproject() };
    } catch (error) {
      // The caller answers it as a server error; the projection retries through the alarm.
      return { ok: false, failed: String(error) };
    }
  }

  async head(): Promise<ReadResult<ChainHead>> {
    this.runner.expireDue(clock.now());
    return this.reads.head();
  }

  async balanceAsOf(point: { seq: number } | { at: string }): Promise<ReadResult<BalancesAsOf>> {
    return this.reads.balanceAsOf(point);
  }

  async balancesAt(seq: number): Promise<{ seq: number; balance: number; reserved: number } | null> {
    return this.reads.balancesAt(seq);
  }

  async verify(): Promise<VerifyReport> {
    return verifyAccount(this.store, this.history, this.scheduler, this.config.verifyFullFoldEventsMax);
  }

  async segments(
    afterSeq: number,
    limit: number,
  ): Promise<ReadResult<{ segments: SegmentEntry[]; archived_through: number }>> {
    return this.reads.segments(afterSeq, limit);
  }

  async archiveStatus(): Promise<ArchiveStatus> {
    return { ...this.archiver.status(), sealed_this_run: this.archiver.sealed };
  }

  // ---------------------------------------------------------------- reads

  async getAccount(): Promise<ReadResult<AccountView>> {
    this.runner.expireDue(clock.now());
    return this.reads.account();
  }

  async listLimits(): Promise<ReadResult<{ data: LimitView[] }>> {
    // Holds due settle first, so that what they held shows as spent or given back.
    this.runner.expireDue(clock.now());
    return this.reads.limits(clock.now());
  }

  async listLots(query: LotsQuery): Promise<ReadResult<LotsPage> | { ok: false; badCursor: true }> {
    this.runner.expireDue(clock.now());
    return this.reads.lots(query, clock.now());
  }

  async getReservation(reservationId: string): Promise<ReadResult<ReservationView>> {
    if (this.store.account !== null) this.runner.expireDue(clock.now(), [reservationId]);
    return this.reads.reservation(reservationId);
  }

  async listEvents(
    afterSeq: number,
    limit: number,
  ): Promise<ReadResult<{ events: LedgerEvent[]; next_after_seq: number | null }>> {
    return this.reads.events(afterSeq, limit);
  }
}
