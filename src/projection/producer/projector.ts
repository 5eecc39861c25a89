/**
 * Hands an account's events to the read side behind a durable cursor, without ever making a
 * command wait for it.
 *
 * Each flush turns the events past the cursor into projection messages (./message.ts: absolute
 * state as of their last seq, at most one page of events each) and delivers them: to the
 * projection queue when the object has one (a consumer applies many accounts' messages to D1
 * in bulk, ../consumer/queue.ts), else straight to D1 through the same code (../consumer/apply.ts). The cursor
 * moves when the delivery is accepted: the queue took the messages, or D1 applied them.
 *
 * At most one flush runs at a time per object (`running`): a command that commits while a
 * flush awaits only asks for another pass, and the loop picks its events up after its await,
 * because each batch is read afresh from the log after the cursor. A failed delivery leaves the
 * cursor, counts the failure and asks the alarm to retry with exponential backoff.
 *
 * The rollups' current rows (./rollups.ts) are kept in the cursor row, as of the cursor: each
 * message folds its events into them, and the new rows are written with the cursor after the
 * delivery was accepted: one SQLite row per flush.
 */

import { clock } from "../../clock";
import { endsReservation, type FundsReserved, type LedgerEvent } from "../../domain/events";
import type { AccountState } from "../../domain/state";
import { recordD1Failure, recordProjectionLag } from "../../observability/metrics";
import { decodeRollupState, encodeRollupState, type LotKindOf, type RollupState } from "../rollups";
import { type EventCells, type ProjectionMessage, pageStart } from "../wire";
import { buildMessage, eventCells } from "./message";

/** Events one flush pass reads from the log (a message holds at most one page of them). */
export const PROJECTION_BATCH_EVENTS_MAX = 256;
/** Passes one flush may run before it yields to the alarm (bounds one invocation's work). */
export const PROJECTION_BATCHES_PER_RUN_MAX = 4;
/** Pending events above which a flush never waits for a hold (a busy account flushes at once). */
export const PROJECTION_HOLD_WAIT_EVENTS_MAX = 4;
/**
 * Accepted deliveries after which the cursor is written at once even if no command came to carry
 * it (bounds what a restart sends again).
 */
export const PROJECTION_CURSOR_UNWRITTEN_MAX = 64;
export const PROJECTION_BACKOFF_MS_MIN = 1_000;
export const PROJECTION_BACKOFF_MS_MAX = 60_000;

/**
 * Delivers messages in order; resolves with how many of them (a prefix) were accepted, or
 * rejects (nothing accepted). `gap: true` means the read side is behind the cursor (its rows
 * were lost or dropped): the object then rebuilds them from its log.
 */
export type Delivery = (messages: ProjectionMessage[]) => Promise<{ accepted: number; gap?: boolean }>;

/** What the projector needs from its Durable Object: synchronous reads, and the whole history. */
export interface ProjectionSource {
  account(): AccountState | null;
  /** Events after `seq` from the events table (what is not yet delivered is always there). */
  eventsAfter(seq: number, limit: number): LedgerEvent[];
  /** Events after `seq` from the whole history, sealed segments included (a rebuild reads from seq 1). */
  history(seq: number, limit: number): Promise<LedgerEvent[]>;
  /** The event at `seq` if the events table still has it (null once archived). */
  event(seq: number): LedgerEvent | null;
  /** Seq of a reservation's FundsReserved event, or null. */
  reserveSeq(reservationId: string): number | null;
  /** A lot's kind (the credit report's sums are by kind), or null if the account has no such lot. */
  lotKind: LotKindOf;
  /** Asks the object to (re)arm its alarm: a retry was scheduled. */
  wake(): void;
  /**
   * The events through `seq` need no in-memory copy any more (delivered; or, after a failed
   * delivery, Infinity: a read side that is down must not make the object hold its backlog).
   */
  forget(seq: number): void;
  /** Writes a warning line (src/observability/log.ts). */
  log(line: Record<string, unknown>): void;
}

/** Where an account's projection stands. */
export interface ProjectionStatus {
  last_seq: number;
  projected_seq: number;
  /** Age of the oldest event not yet delivered (0 when caught up). */
  lag_ms: number;
  failures: number;
  retry_at: string | null;
  /** Rebuilds so far: the read side drops messages of older generations. */
  generation: number;
}

export class Projector {
  /** Replaceable so tests can inject failures inside workerd. */
  deliver: Delivery;
  private projectedSeq = 0;
  private generation = 0;
  private failures = 0;
  private retryAtMs: number | null = null;
  private running: Promise<void> | null = null;
  /** The rollups' current rows, as of `projectedSeq`. */
  private rollups: RollupState = new Map();
  /** The current page's cells as of `projectedSeq` (memory only: rebuilt from the log after a restart). */
  private tail: { first: number; cells: EventCells[] } | null = null;
  /** The read side must be rebuilt from seq 1 (rows predating the format, or lost). */
  private rebuildPending = false;
  /**
   * Accepted deliveries whose cursor is not written yet. With PROJECTION_CURSOR_WITH_COMMAND on
   * (docs/decisions/0003-cursor-with-next-command.md), the cursor is written inside the next
   * command's transaction (`cursorWithCommit`) instead of a commit of its own per flush; a restart
   * before that sends those messages again, which the read side takes as duplicates.
   */
  private unwritten = 0;
  /**
   * The switch PROJECTION_CURSOR_WITH_COMMAND (src/config.ts): on, up to
   * PROJECTION_CURSOR_UNWRITTEN_MAX deliveries wait for a command to carry the cursor; off, it is
   * written after every delivery. Settable so that tests can run either way.
   */
  cursorWithCommand: boolean;
  /** SQLite rows written for the cursor (the runtime's own counter). */
  rowsWritten = 0;
  /** Messages and events delivered. */
  messagesDelivered = 0;
  eventsProjected = 0;

  constructor(
    private readonly sql: SqlStorage,
    deliver: Delivery,
    private readonly source: ProjectionSource,
    cursorWithCommand: boolean,
  ) {
    this.deliver = deliver;
    this.cursorWithCommand = cursorWithCommand;
    const row = sql
      .exec<{
        projected_seq: number;
        failures: number;
        retry_at_ms: number | null;
        rollups: string | null;
        generation: number;
      }>("SELECT projected_seq, failures, retry_at_ms, rollups, generation FROM projection WHERE id = 1")
      .toArray()[0];
    if (row !== undefined) {
      this.projectedSeq = row.projected_seq;
      this.failures = row.failures;
      this.retryAtMs = row.retry_at_ms;
      this.generation = row.generation;
      if (row.rollups !== null) this.rollups = decodeRollupState(row.rollups);
      else this.rebuildPending = row.projected_seq > 0;
    }
  }

  /**
   * The highest seq the archive may seal (durable-objects/archive.ts): delivered, and before the
   * page a next message may re-read (`pageCells`). Nothing while a rebuild is pending.
   */
  deliveredThrough(): number {
    return this.rebuildPending ? 0 : pageStart(this.projectedSeq + 1) - 1;
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

  /** Writes the cursor inside a command's transaction, if it moved since it was last written. */
  readonly cursorWithCommit = {
    write: () => {
      if (this.unwritten > 0) this.persist();
    },
    rolledBack: () => {
      // The transaction took the cursor row with it: write it again later.
      this.unwritten = Math.max(this.unwritten, 1);
    },
  };

  /** Writes the cursor now if it moved (the alarm, a catch-up, the end of a rebuild). */
  writeCursor(): void {
    if (this.unwritten > 0) this.persist();
  }

  /** On start: events past the cursor and nothing scheduled (evicted mid-flush) -> retry now. */
  resume(now: number): void {
    if (this.behind() && this.retryAtMs === null) this.retryAtMs = now;
  }

  /**
   * Lag is the age of the oldest event not yet delivered (0 when caught up). "Newest event time
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
      generation: this.generation,
    };
  }

  /**
   * Whether a flush should wait for a hold's settlement (PROJECTION_HOLD_WAIT_MS): few
   * events pending, one of which opens a hold that is still open. The pending events are all
   * here, so a hold opened among them is open unless a later one of them closes it: decided from
   * the events in memory, with no read of the reservation's row (a SQLite read in a turn of its
   * own, once per message where accounts are many and quiet).
   */
  holdWorthWaiting(): boolean {
    const pending = this.source.eventsAfter(this.projectedSeq, PROJECTION_HOLD_WAIT_EVENTS_MAX + 1);
    if (pending.length === 0 || pending.length > PROJECTION_HOLD_WAIT_EVENTS_MAX) return false;
    return pending.some(
      (opened, i) =>
        opened.type === "FundsReserved" &&
        !pending.some((later, j) => j > i && endsReservation(later) && later.reservation_id === opened.reservation_id),
    );
  }

  /** Starts a flush, or joins the one running. Never rejects: failures become retries. */
  flush(): Promise<void> {
    if (this.running === null) {
      const mode = this.rebuildPending ? "rebuild" : "flush";
      this.running = this.loop(PROJECTION_BATCHES_PER_RUN_MAX, mode)
        .catch(() => undefined)
        .finally(() => {
          this.running = null;
        });
    }
    return this.running;
  }

  /**
   * Rebuilds the account's read side from the whole log in a new generation: the first message
   * resets the account's rows, the next ones continue until the head. Serialised with flushes;
   * a failure rejects (the admin route answers it) and the alarm retries.
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

  /** Delivers up to `passesMax` passes of messages; "rebuild" starts a new generation from seq 1. */
  private async loop(passesMax: number, mode: "flush" | "rebuild"): Promise<void> {
    let reset = mode === "rebuild";
    if (reset) {
      this.generation += 1;
      this.rebuildPending = true;
      this.persist();
    }
    let from = reset ? 0 : this.projectedSeq;
    let rollups = reset ? new Map() : this.rollups;
    for (let pass = 0; pass < passesMax; pass++) {
      const account = this.source.account();
      if (account === null || from >= account.last_seq) break;
      const built = await this.messagesAfter(from, rollups, reset);
      if (built.length === 0) break;
      let result: { accepted: number; gap?: boolean };
      try {
        result = await this.deliver(built.map((b) => b.message));
      } catch (error) {
        this.failed(error);
        if (mode === "rebuild") throw error;
        return;
      }
      const accepted = built[result.accepted - 1];
      if (accepted !== undefined && mode === "flush") {
        // The lag this delivery ended: the age of the oldest event it carried (issue 14's p99 rule).
        // The message carries that time (`oldest_at`): no read of the event.
        const at = built[0]?.message.oldest_at;
        if (at !== undefined) recordProjectionLag(clock.now(), clock.now() - Date.parse(at));
      }
      if (accepted !== undefined) {
        from = accepted.message.to_seq;
        rollups = accepted.rollups;
        reset = false;
        // A rebuild follows the cursor down as well as up: D1 now holds exactly these events.
        this.projectedSeq = from;
        this.source.forget(from);
        this.rollups = rollups;
        this.tail = { first: accepted.message.tail_first_seq, cells: accepted.message.tail };
        this.rebuildPending = false;
        this.failures = 0;
        this.retryAtMs = null;
        this.messagesDelivered += result.accepted;
        this.eventsProjected += accepted.message.to_seq - (built[0]?.message.from_seq ?? 1) + 1;
        this.unwritten += 1;
        if (mode === "rebuild" || this.unwritten >= (this.cursorWithCommand ? PROJECTION_CURSOR_UNWRITTEN_MAX : 1))
          this.persist();
      }
      if (result.gap === true) {
        // The read side lost rows the cursor counts as delivered: rebuild them from the log.
        this.rebuildPending = true;
        this.failed(new Error("the read side is behind the cursor: rebuilding"));
        return;
      }
      if (result.accepted < built.length) {
        this.failed(new Error("delivery accepted part of a batch"));
        return;
      }
    }
    // Out of passes for this run with events left: the alarm continues at once.
    if (this.behind()) {
      this.retryAtMs = clock.now();
      this.persist();
      this.source.wake();
    }
  }

  /** The messages for the events after `from`, one per page, each with its rollups after it. */
  private async messagesAfter(
    from: number,
    rollups: RollupState,
    reset: boolean,
  ): Promise<{ message: ProjectionMessage; rollups: RollupState }[]> {
    const events = await this.source.history(from, PROJECTION_BATCH_EVENTS_MAX);
    // Read after the events, so the head is never older than them.
    const account = this.source.account();
    if (account === null) return [];
    const built: { message: ProjectionMessage; rollups: RollupState }[] = [];
    let state = rollups;
    let start = 0;
    while (start < events.length) {
      const first = events[start] as LedgerEvent;
      const page = pageStart(first.seq);
      let end = start;
      while (end < events.length && pageStart((events[end] as LedgerEvent).seq) === page) end++;
      const pageBefore = first.seq > page ? await this.pageCells(account.account_id, page, first.seq) : [];
      const next = buildMessage({
        head: account,
        generation: this.generation,
        reset: reset && built.length === 0,
        events: events.slice(start, end),
        pageBefore,
        rollups: state,
        reservedEvent: (id) => this.reservedEvent(id),
        lotKind: this.source.lotKind,
      });
      built.push(next);
      state = next.rollups;
      start = end;
    }
    return built;
  }

  /**
   * The cells of events `[page, before)`: the tail of the last accepted message when it is that
   * (the common case: no read or parse of the log), else read from the log.
   */
  private async pageCells(accountId: string, page: number, before: number): Promise<EventCells[]> {
    const kept = this.tail;
    if (kept !== null && kept.first === page && kept.cells.length === before - page) return kept.cells;
    return (await this.source.history(page - 1, before - page)).map((e) => eventCells(accountId, e));
  }

  private reservedEvent(id: string): FundsReserved | null {
    const seq = this.source.reserveSeq(id);
    if (seq === null) return null;
    // Archived (a hold extended long after it opened): the message then sends no row for it.
    const event = this.source.event(seq);
    return event?.type === "FundsReserved" ? event : null;
  }

  private failed(error: unknown): void {
    this.source.forget(Number.POSITIVE_INFINITY);
    recordD1Failure(clock.now(), "write:projection");
    this.failures += 1;
    const backoff = Math.min(PROJECTION_BACKOFF_MS_MIN * 2 ** (this.failures - 1), PROJECTION_BACKOFF_MS_MAX);
    this.retryAtMs = clock.now() + backoff;
    this.persist();
    this.source.wake();
    // The error text only; messages and their values are never logged.
    this.source.log({ msg: "projection_failed", failures: this.failures, error: String(error) });
  }

  private persist(): void {
    this.unwritten = 0;
    this.rowsWritten += this.sql.exec(
      `INSERT INTO projection (id, projected_seq, failures, retry_at_ms, rollups, generation) VALUES (1, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET projected_seq = excluded.projected_seq, failures = excluded.failures,
         retry_at_ms = excluded.retry_at_ms, rollups = excluded.rollups, generation = excluded.generation`,
      this.projectedSeq,
      this.failures,
      this.retryAtMs,
      // Pending a rebuild, the rows are unknown: NULL keeps the rebuild pending across restarts.
      this.rebuildPending ? null : encodeRollupState(this.rollups),
      this.generation,
    ).rowsWritten;
  }
}
