/**
 * Projects an account's events into D1 behind a durable cursor, without ever making a command
 * wait for D1.
 *
 * At most one flush runs at a time per object (`running`): a command that commits while a
 * flush awaits D1 only asks for another pass, and the running loop picks its events up after
 * its await, because each batch is read afresh from the log, synchronously, after the cursor.
 * The cursor only moves forward, after D1 confirmed the batch; D1 writes are idempotent, so a
 * batch that D1 applied but whose answer was lost is simply applied again. A failed flush
 * leaves the cursor, counts the failure and asks the alarm to retry with exponential backoff.
 *
 * Each batch also carries the rollups (./rollups.ts): the flush folds its events into the hour
 * and day buckets they touch, starting from the current rows kept in the cursor row, and sends
 * those rows' absolute values with the batch. The new current rows are written with the cursor,
 * in the same row, only after D1 confirmed: one SQLite row per flush, however many buckets, and
 * the kept rows always equal the fold of the log up to the cursor.
 */
import { clock } from "../clock";
import type { LedgerEvent } from "../domain/events";
import type { AccountState } from "../domain/state";
import { accountStatement, deleteAccountStatements, eventStatements, rollupStatements } from "./d1";
import { decodeRollupState, encodeRollupState, foldRollups, type RollupState } from "./rollups";

/** Events per D1 batch (each event is one or two statements). */
export const PROJECTION_BATCH_EVENTS_MAX = 100;
/** Batches one flush may write before it yields to the alarm (bounds one invocation's queries). */
export const PROJECTION_BATCHES_PER_RUN_MAX = 4;
export const PROJECTION_BACKOFF_MS_MIN = 1_000;
export const PROJECTION_BACKOFF_MS_MAX = 60_000;

export type ProjectionSink = (statements: D1PreparedStatement[]) => Promise<unknown>;

/** What the projector needs from its Durable Object, all synchronous reads. */
export interface ProjectionSource {
  account(): AccountState | null;
  eventsAfter(seq: number, limit: number): LedgerEvent[];
  /** Asks the object to (re)arm its alarm: a retry was scheduled. */
  wake(): void;
  /** Writes a warning line (src/observability/log.ts). */
  log(line: Record<string, unknown>): void;
}

export interface ProjectionStatus {
  last_seq: number;
  projected_seq: number;
  /** Age of the oldest event not yet projected (0 when caught up). */
  lag_ms: number;
  failures: number;
  retry_at: string | null;
}

export class Projector {
  /** Replaceable so tests can inject D1 failures inside workerd. */
  sink: ProjectionSink;
  private projectedSeq = 0;
  private failures = 0;
  private retryAtMs: number | null = null;
  private running: Promise<void> | null = null;
  /** The rollups' current rows, as of `projectedSeq`. */
  private rollups: RollupState = new Map();
  /**
   * The cursor predates rollups (projected without them): the next flush rebuilds the account's
   * read side from seq 1, once, as a reprojection does.
   */
  private rebuildPending = false;
  /** SQLite rows written for the cursor (the runtime's own counter). */
  rowsWritten = 0;
  /** D1 rows written by the projection, and events it projected (D1's own meta.rows_written). */
  d1RowsWritten = 0;
  eventsProjected = 0;

  constructor(
    private readonly sql: SqlStorage,
    private readonly db: D1Database,
    private readonly source: ProjectionSource,
  ) {
    this.sink = (statements) => db.batch(statements);
    const row = sql
      .exec<{ projected_seq: number; failures: number; retry_at_ms: number | null; rollups: string | null }>(
        "SELECT projected_seq, failures, retry_at_ms, rollups FROM projection WHERE id = 1",
      )
      .toArray()[0];
    if (row !== undefined) {
      this.projectedSeq = row.projected_seq;
      this.failures = row.failures;
      this.retryAtMs = row.retry_at_ms;
      if (row.rollups !== null) this.rollups = decodeRollupState(row.rollups);
      else this.rebuildPending = row.projected_seq > 0;
    }
  }

  behind(): boolean {
    return this.rebuildPending || this.projectedSeq < (this.source.account()?.last_seq ?? 0);
  }

  /**
   * When the alarm must wake for the projection: only when a retry is scheduled. A flush in
   * flight needs no alarm; if the object dies during it, `resume` schedules one on restart.
   */
  wakeAtMs(): number | null {
    return this.behind() ? this.retryAtMs : null;
  }

  /** On start: events past the cursor and nothing scheduled (evicted mid-flush) -> retry now. */
  resume(now: number): void {
    if (this.behind() && this.retryAtMs === null) this.retryAtMs = now;
  }

  /**
   * Lag is the age of the oldest event not yet in D1 (0 when caught up). "Newest event time
   * minus newest projected event time" would report the idle time before a burst as lag.
   */
  status(now: number): ProjectionStatus {
    const last = this.source.account()?.last_seq ?? 0;
    const oldestPending = this.projectedSeq < last ? this.source.eventsAfter(this.projectedSeq, 1)[0] : undefined;
    return {
      last_seq: last,
      projected_seq: this.projectedSeq,
      lag_ms: oldestPending === undefined ? 0 : Math.max(0, now - Date.parse(oldestPending.at)),
      failures: this.failures,
      retry_at: this.retryAtMs === null ? null : new Date(this.retryAtMs).toISOString(),
    };
  }

  /** Starts a flush, or joins the one running. Never rejects: failures become retries. */
  flush(): Promise<void> {
    if (this.running === null) {
      const mode = this.rebuildPending ? "upgrade" : "flush";
      this.running = this.loop(PROJECTION_BATCHES_PER_RUN_MAX, mode).finally(() => {
        this.running = null;
      });
    }
    return this.running;
  }

  /**
   * Rebuilds the account's D1 rows from the whole log: the first batch deletes them and
   * re-inserts from seq 1, later batches continue until the head. Serialised with flushes.
   */
  async reproject(): Promise<ProjectionStatus> {
    while (this.running !== null) await this.running;
    const rebuild = this.loop(Number.POSITIVE_INFINITY, "rebuild");
    // Commands that ask for a flush meanwhile join this run; they must never see its error.
    this.running = rebuild
      .catch(() => undefined)
      .finally(() => {
        this.running = null;
      });
    await rebuild;
    return this.status(clock.now());
  }

  /**
   * Writes up to `batchesMax` batches. "rebuild" and "upgrade" start over from seq 1, deleting
   * the account's D1 rows in the first batch; a failed "rebuild" (the admin route) throws, a
   * failed flush or "upgrade" becomes a retry.
   */
  private async loop(batchesMax: number, mode: "flush" | "rebuild" | "upgrade"): Promise<void> {
    const rebuild = mode !== "flush";
    let from = rebuild ? 0 : this.projectedSeq;
    for (let batch = 0; batch < batchesMax; batch++) {
      const account = this.source.account();
      const first = rebuild && batch === 0;
      if (account === null || (from >= account.last_seq && !first)) return;
      const events = this.source.eventsAfter(from, PROJECTION_BATCH_EVENTS_MAX);
      let rollups: RollupState;
      try {
        rollups = await this.send(account, events, first ? new Map() : this.rollups, first);
      } catch (error) {
        this.failed(error);
        this.source.wake();
        if (mode === "rebuild") throw error;
        return;
      }
      const last = events.at(-1);
      if (last !== undefined) {
        from = last.seq;
        // A rebuild deleted the account's rows first: D1 now holds exactly the events up to this
        // batch, so the cursor follows it down as well as up. If a later batch fails, the normal
        // flush resumes from here instead of skipping the rows the rebuild removed.
        this.projectedSeq = rebuild ? last.seq : Math.max(this.projectedSeq, last.seq);
      }
      this.rollups = rollups;
      this.rebuildPending = false;
      this.failures = 0;
      this.retryAtMs = null;
      this.persist();
    }
    // Out of batches for this run with events left: the alarm continues at once.
    if (this.behind()) {
      this.retryAtMs = clock.now();
      this.persist();
      this.source.wake();
    }
  }

  /** Sends one batch (events, rollups, and the account row if it reaches the head); returns the new rollup rows. */
  private async send(
    account: AccountState,
    events: LedgerEvent[],
    rollups: RollupState,
    deleteFirst: boolean,
  ): Promise<RollupState> {
    const statements = deleteFirst ? deleteAccountStatements(this.db, account.account_id) : [];
    for (const event of events) statements.push(...eventStatements(this.db, account.account_id, event));
    const folded = foldRollups(rollups, events);
    statements.push(...rollupStatements(this.db, account.account_id, folded.touched));
    const last = events.at(-1);
    // The snapshot belongs to the head: only the batch that reaches it carries the account row.
    if (last === undefined || last.seq === account.last_seq) {
      statements.push(accountStatement(this.db, account, clock.now()));
    }
    const results = (await this.sink(statements)) as D1Result[] | undefined;
    for (const r of results ?? []) this.d1RowsWritten += r?.meta?.rows_written ?? 0;
    this.eventsProjected += events.length;
    return folded.state;
  }

  private failed(error: unknown): void {
    this.failures += 1;
    const backoff = Math.min(PROJECTION_BACKOFF_MS_MIN * 2 ** (this.failures - 1), PROJECTION_BACKOFF_MS_MAX);
    this.retryAtMs = clock.now() + backoff;
    this.persist();
    // The error text of D1 only; statements and their values are never logged.
    this.source.log({ msg: "projection_failed", failures: this.failures, error: String(error) });
  }

  private persist(): void {
    this.rowsWritten += this.sql.exec(
      "INSERT INTO projection (id, projected_seq, failures, retry_at_ms, rollups) VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET projected_seq = excluded.projected_seq, failures = excluded.failures, retry_at_ms = excluded.retry_at_ms, rollups = excluded.rollups",
      this.projectedSeq,
      this.failures,
      this.retryAtMs,
      // Pending an upgrade, the rows are unknown: NULL keeps the rebuild pending across restarts.
      this.rebuildPending ? null : encodeRollupState(this.rollups),
    ).rowsWritten;
  }
}
