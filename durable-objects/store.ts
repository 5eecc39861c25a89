/**
 * The account store: an account object's SQLite, behind the few operations the shell needs.
 * - The snapshot: the account row plus the head event's after-balances, and the open holds'
 *   total and count, loaded on start by reading a few rows, never the log.
 * - The slice a command reads (its reservations, charges and prior operation), loaded by what
 *   the command table declares.
 * - The append: evolve the slice through the new events and write the log rows and every row
 *   they changed in one `transactionSync`, asserting the invariants inside it, so a broken
 *   invariant rolls everything back. It knows no event type: it writes what the fold changed.
 * - Reads of the log.
 */
import type { Command, OnExpiry } from "../src/domain/commands";
import { type LedgerEvent, unreachable } from "../src/domain/events";
import { encodeKey, eventKey, eventKeyString, keyEntityId, keyLocation, type OperationKey } from "../src/domain/keys";
import { LEGACY_LOT_ID, lotParts } from "../src/domain/lot-events";
import type { Funding, Returned } from "../src/domain/lots";
import { assert } from "../src/domain/money";
import type { Counted } from "../src/domain/spend-limits";
import {
  type AccountState,
  type ChargeState,
  type EndedReservation,
  endedRecord,
  endedReservation,
  evolve,
  initialState,
  type LedgerState,
  type ReservationState,
  type ReservationStatus,
  reservationRecord,
} from "../src/domain/state";
import { specOf } from "../src/domain/table";
import { LedgerError } from "../src/errors";
import { LimitStore } from "./limit-store";
import { LotStore } from "./lot-store";
import type { AppendHook } from "./outbox";
import { RecentEvents } from "./recent-events";
import { migrate } from "./schema";

/**
 * A command needs an event that is sealed in R2 (the prior event of a key it replays): it stops
 * before writing anything, and the object reads that event and runs it again.
 */
export class SealedEventNeeded extends LedgerError {
  override name = "SealedEventNeeded";
  readonly code = "internal_error";
  readonly publicDetail = "The ledger failed to process the request.";
  override readonly log = "unhandled_error";
  constructor(readonly seq: number) {
    super(`event ${seq} is sealed in a segment`);
  }
}

/** Sum and count of the open holds, kept from the reservation rows; must equal reserved. */
export interface Holds {
  total: number;
  count: number;
}

/** What an append changed that the scheduler must know. */
export interface Appended {
  /** The earliest expiry among the holds this append opened or extended, or null. */
  earliestTouchedExpiryMs: number | null;
}

interface AccountRow extends Record<string, SqlStorageValue> {
  account_id: string;
  currency: string;
  credit_limit: number;
  status: string;
  created_at: string;
  metadata: string;
  low_balance_threshold: number | null;
}

type Rows<T> = ReadonlyMap<string, T>;

export interface ReservationRow extends Record<string, SqlStorageValue> {
  reservation_id: string;
  status: ReservationStatus;
  amount: number;
  expires_at_ms: number;
  ttl_seconds: number;
  on_expiry: OnExpiry;
  reserve_seq: number;
  end_seq: number | null;
  state: string | null;
}

export class AccountStore {
  readonly sql: SqlStorage;
  account: AccountState | null = null;
  holds: Holds = { total: 0, count: 0 };
  /** SQLite rows written by appends since the object started (the runtime's own counter). */
  rowsWritten = 0;
  commits = 0;
  /** True while a batch's outer transaction is open: appends join it instead of opening one. */
  private batchOpen = false;

  /** The account's lots (issue 27): the whole book in memory, its checkpoint in rows. */
  readonly lots: LotStore;
  /** The account's spend limits (issue 28): all in memory, their checkpoint in one row. */
  readonly limits: LimitStore;

  constructor(private readonly storage: DurableObjectStorage) {
    this.sql = storage.sql;
    storage.transactionSync(() => migrate(this.sql));
    this.lots = new LotStore(this.sql);
    this.limits = new LimitStore(this.sql);
    this.loadSnapshot();
  }

  /**
   * Written in every command's transaction: a write that may wait for the next commit instead of
   * paying for its own (the projection cursor, src/projection/producer/projector.ts). Told when the
   * transaction rolled back, so that it writes again later.
   */
  cursorWithCommit: { write(): void; rolledBack(): void } | null = null;

  /** What an append implies besides the log (the webhook outbox: durable-objects/outbox.ts `AppendHook`). */
  onAppend: AppendHook | null = null;

  /** Runs `work` in one transaction (or inside the batch's): a throw rolls all of it back. */
  transaction<T>(work: () => T): T {
    return this.batchOpen ? work() : this.commit(work);
  }

  /** Runs a batch in one outer transaction that every append inside it joins. */
  batch<T>(work: () => T): T {
    return this.commit(() => {
      this.batchOpen = true;
      try {
        return work();
      } finally {
        this.batchOpen = false;
      }
    });
  }

  private commit<T>(work: () => T): T {
    try {
      return this.storage.transactionSync(() => {
        const result = work();
        this.cursorWithCommit?.write();
        return result;
      });
    } catch (error) {
      this.cursorWithCommit?.rolledBack();
      throw error;
    }
  }

  get inBatch(): boolean {
    return this.batchOpen;
  }

  // ---------------------------------------------------------------- the slice

  /** Loads exactly the part of the state that `decide` reads for this command. */
  loadSlice(command: Command): LedgerState {
    const spec = specOf(command);
    const state = initialState();
    state.account = this.account;
    const reads = spec.reads(command);
    const key = spec.key(command);
    const keyed = key === null ? null : keyEntityId(key);
    const reservationIds = new Set(reads.reservation_ids);
    const chargeIds = new Set(reads.charge_ids);
    if (key !== null && keyed !== null) {
      // The row that records the key must be in the slice for the key to be found.
      (keyLocation(key).in === "charge" ? chargeIds : reservationIds).add(keyed);
    }
    for (const id of reservationIds) {
      const r = this.reservation(id);
      if (r !== null) state.reservations.set(id, r);
    }
    for (const id of chargeIds) {
      const charge = this.charge(id);
      if (charge === null) continue;
      state.charges.set(id, charge);
      // A refund credits back the lots that paid, which may have no credit left (not in memory).
      const sources = charge.funded_by === null ? [LEGACY_LOT_ID] : lotParts(charge.funded_by).map((f) => f.lot_id);
      this.lots.ensure(sources as string[]);
    }
    state.book = this.lots.book;
    state.limits = this.limits.book;
    if (key !== null) {
      const seq = this.locateKey(key, state);
      if (seq !== null) {
        const prior = this.readEvent(seq);
        // A sealed event comes from R2: it must be the one that recorded this very key.
        assert(eventKeyString(prior) === encodeKey(key), `event ${seq} recorded the key being replayed`);
        state.operations.set(encodeKey(key), prior);
      }
    }
    return state;
  }

  /** The account with every open hold: what opening its lots reads (at most OPEN_RESERVATIONS_MAX). */
  openHoldsSlice(): LedgerState {
    const state = initialState();
    state.account = this.account;
    state.limits = this.limits.book;
    const ids = this.sql
      .exec<{ reservation_id: string }>(
        "SELECT reservation_id FROM reservations WHERE status = 'open' ORDER BY reserve_seq",
      )
      .toArray();
    for (const { reservation_id } of ids) {
      const r = this.reservation(reservation_id);
      if (r !== null) state.reservations.set(reservation_id, r);
    }
    return state;
  }

  /**
   * The seq of the event that recorded `key`, or null. The one place that knows where each
   * kind of key lives (keys.ts KEY_LOCATIONS); the lookup before deciding and the check after
   * appending both call it, so a key can never be recorded somewhere the lookup does not read.
   */
  private locateKey(key: OperationKey, state: LedgerState): number | null {
    const location = keyLocation(key);
    switch (location.in) {
      case "account":
        return state.account === null ? null : 1;
      case "reservation": {
        const r = state.reservations.get(keyEntityId(key) ?? "");
        if (r === undefined) return null;
        if (location.seq === "reserve_seq") return r.reserve_seq;
        return r.status === location.ended_as ? r.end_seq : null;
      }
      case "charge": {
        const charge = state.charges.get(keyEntityId(key) ?? "");
        return charge?.kind === location.kind ? charge.seq : null;
      }
      case "operations": {
        const row = this.sql
          .exec<{ seq: number }>("SELECT seq FROM operations WHERE key = ?", encodeKey(key))
          .toArray()[0];
        return row?.seq ?? null;
      }
      default:
        return unreachable(location);
    }
  }

  // ---------------------------------------------------------------- the append

  /**
   * The commit point: evolve the slice through the events and write the log rows, the key
   * rows and every row the fold changed, in one transaction. Any assertion failure rolls
   * everything back and surfaces as a crash; memory is replaced only after the transaction.
   */
  append(state: LedgerState, events: readonly LedgerEvent[]): Appended {
    assert(events.length > 0, "an append has events");
    const accountBefore = state.account;
    const reservationsBefore: Rows<ReservationState> = new Map(state.reservations);
    const chargesBefore: Rows<ChargeState> = new Map(state.charges);
    let rows = 0;
    let holds = this.holds;
    let earliest: number | null = null;
    let lotsAfter = this.lots.memory();
    let limitsAfter = this.limits.memory();
    this.transaction(() => {
      for (const event of events) {
        evolve(state, event);
        rows += this.insertEvent(event);
        rows += this.recordKey(event, state);
      }
      const account = state.account;
      assert(account !== null, "a committed command leaves an account");
      rows += this.writeAccountRow(accountBefore, account);
      const lots = this.lots.afterAppend(state.book, account.last_seq);
      rows += lots.rows;
      lotsAfter = lots.next;
      const limits = this.limits.afterAppend(state.limits, account.last_seq);
      rows += limits.rows;
      limitsAfter = limits.next;
      const written = this.writeReservations(reservationsBefore, state.reservations, holds);
      rows += written.rows + this.writeCharges(chargesBefore, state.charges);
      holds = written.holds;
      earliest = written.earliestOpenExpiryMs;
      assertSnapshot(account, holds, events);
      rows += this.onAppend?.(accountBefore, account, events, { before: this.limits.book, after: state.limits }) ?? 0;
    });
    this.rowsWritten += rows;
    this.commits += 1;
    this.account = state.account;
    this.holds = holds;
    this.lots.commit(lotsAfter);
    this.limits.commit(limitsAfter);
    this.recent.add(events);
    return { earliestTouchedExpiryMs: earliest };
  }

  private insertEvent(event: LedgerEvent): number {
    return this.sql.exec(
      "INSERT INTO events (seq, type, at, balance_after, reserved_after, hash, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
      event.seq,
      event.type,
      event.at,
      event.balance_after,
      event.reserved_after,
      event.hash,
      JSON.stringify(event),
    ).rowsWritten;
  }

  /** Writes the key's own row where it has one, then checks the lookup finds this event. */
  private recordKey(event: LedgerEvent, state: LedgerState): number {
    const key = eventKey(event);
    if (key === null) return 0;
    let rows = 0;
    if (keyLocation(key).in === "operations") {
      rows = this.sql.exec("INSERT INTO operations (key, seq) VALUES (?, ?)", encodeKey(key), event.seq).rowsWritten;
    }
    assert(this.locateKey(key, state) === event.seq, `the key of seq ${event.seq} is found where it is recorded`);
    return rows;
  }

  private writeAccountRow(before: AccountState | null, after: AccountState): number {
    if (before === null) {
      return this.sql.exec(
        "INSERT INTO account (id, account_id, currency, credit_limit, status, created_at, metadata) VALUES (1, ?, ?, ?, ?, ?, ?)",
        after.account_id,
        after.currency,
        after.credit_limit,
        after.status,
        after.created_at,
        JSON.stringify(after.metadata),
      ).rowsWritten;
    }
    if (
      before.credit_limit === after.credit_limit &&
      before.status === after.status &&
      before.low_balance_threshold === after.low_balance_threshold
    ) {
      return 0;
    }
    return this.sql.exec(
      "UPDATE account SET credit_limit = ?, status = ?, low_balance_threshold = ? WHERE id = 1",
      after.credit_limit,
      after.status,
      after.low_balance_threshold,
    ).rowsWritten;
  }

  /** Writes every reservation the fold changed (a new object in the map) and moves the holds. */
  private writeReservations(before: Rows<ReservationState>, after: Rows<ReservationState>, holdsBefore: Holds) {
    const holds = { ...holdsBefore };
    let rows = 0;
    let earliestOpenExpiryMs: number | null = null;
    for (const [id, r] of after) {
      const old = before.get(id);
      if (old === r) continue;
      const expiresAtMs = Date.parse(r.expires_at);
      const wasOpen = old?.status === "open";
      const isOpen = r.status === "open";
      holds.total += (isOpen ? r.amount : 0) - (wasOpen ? r.amount : 0);
      holds.count += (isOpen ? 1 : 0) - (wasOpen ? 1 : 0);
      if (isOpen && (earliestOpenExpiryMs === null || expiresAtMs < earliestOpenExpiryMs)) {
        earliestOpenExpiryMs = expiresAtMs;
      }
      rows += this.writeReservation(r, old === undefined);
    }
    return { rows, holds, earliestOpenExpiryMs };
  }

  /** One reservation's row (`reservationRow`), inserted or updated. */
  private writeReservation(r: ReservationState, insert: boolean): number {
    const row = reservationRow(r);
    const written = this.sql.exec(
      insert
        ? `INSERT INTO reservations (reservation_id, status, amount, expires_at_ms, ttl_seconds, on_expiry, reserve_seq, end_seq, state)
           VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)`
        : `UPDATE reservations SET status = ?2, expires_at_ms = ?4, ttl_seconds = ?5, on_expiry = ?6, end_seq = ?8, state = ?9
           WHERE reservation_id = ?1 AND amount = ?3 AND reserve_seq = ?7`,
      row.reservation_id,
      row.status,
      row.amount,
      row.expires_at_ms,
      row.ttl_seconds,
      row.on_expiry,
      row.reserve_seq,
      row.end_seq,
      row.state,
    ).rowsWritten;
    assert(written > 0, `reservation ${r.reservation_id} is written`);
    return written;
  }

  private writeCharges(before: Rows<ChargeState>, after: Rows<ChargeState>): number {
    let rows = 0;
    for (const [id, charge] of after) {
      const old = before.get(id);
      if (old === charge) continue;
      const sql =
        old === undefined
          ? "INSERT INTO charges (charge_id, kind, amount, refunded, seq, funded_by, returned, limits) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
          : "UPDATE charges SET refunded = ?4, returned = ?7 WHERE charge_id = ?1 AND kind = ?2 AND amount = ?3 AND seq = ?5";
      const funded = charge.funded_by === null ? null : JSON.stringify(charge.funded_by);
      const returned = charge.returned.length === 0 ? null : JSON.stringify(charge.returned);
      const params: SqlStorageValue[] = [id, charge.kind, charge.amount, charge.refunded, charge.seq, funded, returned];
      // Where it counted against spend limits is set once, with the charge.
      if (old === undefined) params.push(charge.limits === undefined ? null : JSON.stringify(charge.limits));
      const written = this.sql.exec(sql, ...params).rowsWritten;
      assert(written > 0, `charge ${id} is written`);
      rows += written;
    }
    return rows;
  }

  /**
   * Writes the lots' checkpoint up to the head unless it already includes `throughSeq`: before
   * the archive deletes events (the start folds those after the checkpoint). Returns the rows
   * written.
   */
  checkpointFolds(throughSeq: number): number {
    const head = this.account?.last_seq ?? 0;
    const upTo = Math.min(throughSeq, head);
    let rows = 0;
    if (this.lots.throughSeq < upTo) {
      const written = this.transaction(() => this.lots.checkpoint(head));
      if (written !== null) {
        this.lots.commit(written.next);
        rows += written.rows;
      }
    }
    if (this.limits.throughSeq < upTo) {
      const written = this.transaction(() => this.limits.checkpoint(head));
      if (written !== null) {
        this.limits.commit(written.next);
        rows += written.rows;
      }
    }
    this.rowsWritten += rows;
    return rows;
  }

  /** Memory to restore when an atomic batch rolls back (SQLite rolls itself back). */
  memory() {
    const { account, holds, rowsWritten, commits } = this;
    return { account, holds, rowsWritten, commits, lots: this.lots.memory(), limits: this.limits.memory() };
  }

  restore(saved: ReturnType<AccountStore["memory"]>): void {
    this.recent.dropAfter(saved.account?.last_seq ?? 0);
    this.lots.commit(saved.lots);
    this.limits.commit(saved.limits);
    this.account = saved.account;
    this.holds = saved.holds;
    this.rowsWritten = saved.rowsWritten;
    this.commits = saved.commits;
  }

  // ---------------------------------------------------------------- reads

  /**
   * Reservation `id`: an open one from its row, an ended one rebuilt from its record and its two
   * events (from the tail, or sealed: then `SealedEventNeeded`, and the object reads them first).
   */
  reservation(id: string): ReservationState | null {
    const row = this.sql
      .exec<ReservationRow>(
        "SELECT reservation_id, status, amount, expires_at_ms, ttl_seconds, on_expiry, reserve_seq, end_seq, state FROM reservations WHERE reservation_id = ?",
        id,
      )
      .toArray()[0];
    if (row === undefined) return null;
    if (row.state !== null) return openState(row.state);
    const { state: _none, ...record } = row;
    assert(record.status !== "open" && record.end_seq !== null, `reservation ${id}: a row without state has ended`);
    const ended = record as EndedReservation;
    return endedReservation(ended, this.readEvent(ended.reserve_seq), this.readEvent(ended.end_seq));
  }

  /** What the projection asks of a reservation (its columns: never a read of its events). */
  reservationStatus(id: string): { status: ReservationStatus; reserve_seq: number } | null {
    return (
      this.sql
        .exec<{ status: ReservationStatus; reserve_seq: number }>(
          "SELECT status, reserve_seq FROM reservations WHERE reservation_id = ?",
          id,
        )
        .toArray()[0] ?? null
    );
  }

  charge(id: string): ChargeState | null {
    const row = this.sql
      .exec<{
        kind: string;
        amount: number;
        refunded: number;
        seq: number;
        funded_by: string | null;
        returned: string | null;
        limits: string | null;
      }>("SELECT kind, amount, refunded, seq, funded_by, returned, limits FROM charges WHERE charge_id = ?", id)
      .toArray()[0];
    if (row === undefined) return null;
    assert(row.kind === "direct" || row.kind === "capture", `charge ${id} has a kind`);
    return {
      charge_id: id,
      kind: row.kind,
      amount: row.amount,
      refunded: row.refunded,
      seq: row.seq,
      funded_by: row.funded_by === null ? null : (JSON.parse(row.funded_by) as Funding[]),
      returned: row.returned === null ? [] : (JSON.parse(row.returned) as Returned[]),
      ...(row.limits === null ? {} : { limits: JSON.parse(row.limits) as Counted[] }),
    };
  }

  /** Open reservations due at `nowMs`, earliest first, at most `limit`. */
  dueReservations(nowMs: number, limit: number): string[] {
    return this.sql
      .exec<{ reservation_id: string }>(
        "SELECT reservation_id FROM reservations WHERE status = 'open' AND expires_at_ms <= ? ORDER BY expires_at_ms LIMIT ?",
        nowMs,
        limit,
      )
      .toArray()
      .map((row) => row.reservation_id);
  }

  /** Whether reservation `id` is open and due at `nowMs`. */
  isDue(id: string, nowMs: number): boolean {
    const row = this.sql
      .exec<{ status: string; expires_at_ms: number }>(
        "SELECT status, expires_at_ms FROM reservations WHERE reservation_id = ?",
        id,
      )
      .toArray()[0];
    return row?.status === "open" && row.expires_at_ms <= nowMs;
  }

  earliestOpenExpiry(): number | null {
    return this.sql
      .exec<{ next: number | null }>("SELECT MIN(expires_at_ms) AS next FROM reservations WHERE status = 'open'")
      .one().next;
  }

  /**
   * Sealed events the running call needs, read from R2 after it stopped with `SealedEventNeeded`
   * (history.ts `readingSealed`). Each call has its own: set only while its synchronous work runs,
   * so another call finishing while this one waits on R2 cannot take them away (issue 29).
   */
  private sealedForCall: ReadonlyMap<number, LedgerEvent> | null = null;

  /** Runs `work` (synchronous: no await inside) with the sealed events its call fetched. */
  withSealed<T>(fetched: ReadonlyMap<number, LedgerEvent>, work: () => T): T {
    const before = this.sealedForCall;
    this.sealedForCall = fetched;
    try {
      return work();
    } finally {
      this.sealedForCall = before;
    }
  }

  /**
   * The events of the last commits, parsed, until the projection has delivered them
   * (`RecentEvents`): the projection's next read takes them from memory instead of reading and
   * parsing rows. Every other reader (verify, export, a replay) reads the table.
   */
  readonly recent = new RecentEvents();

  /** The event `seq`, from the events table or the sealed events read for this command. */
  readEvent(seq: number): LedgerEvent {
    const row = this.sql.exec<{ body: string }>("SELECT body FROM events WHERE seq = ?", seq).toArray()[0];
    if (row !== undefined) return JSON.parse(row.body) as LedgerEvent;
    const sealed = this.sealedForCall?.get(seq);
    if (sealed === undefined) throw new SealedEventNeeded(seq);
    return sealed;
  }

  /** The event `seq` if the events table still has it (null once it is archived and deleted). */
  keptEvent(seq: number): LedgerEvent | null {
    const row = this.sql.exec<{ body: string }>("SELECT body FROM events WHERE seq = ?", seq).toArray()[0];
    return row === undefined ? null : (JSON.parse(row.body) as LedgerEvent);
  }

  readEvents(afterSeq: number, limit: number): LedgerEvent[] {
    return this.sql
      .exec<{ body: string }>("SELECT body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", afterSeq, limit)
      .toArray()
      .map((row) => JSON.parse(row.body) as LedgerEvent);
  }

  /** The time and balances recorded by event `seq`, or null past the head. */
  balancesAt(seq: number): { at: string; balance: number; reserved: number } | null {
    const row = this.sql
      .exec<{ at: string; balance_after: number; reserved_after: number }>(
        "SELECT at, balance_after, reserved_after FROM events WHERE seq = ?",
        seq,
      )
      .toArray()[0];
    return row === undefined ? null : { at: row.at, balance: row.balance_after, reserved: row.reserved_after };
  }

  /**
   * The last seq whose event time is at or before `at` (0: before the account existed). Event
   * times never go backwards, so this is a binary search over seq with primary-key reads (about
   * 20 for a million events), never a replay. `atOrBefore` is a seq known to be at or before `at`
   * (the first kept in the table when older ones are archived).
   */
  seqAtTime(at: string, atOrBefore = 0): number {
    let low = atOrBefore;
    let high = this.account?.last_seq ?? 0;
    while (low < high) {
      const mid = Math.ceil((low + high) / 2);
      const row = this.sql.exec<{ at: string }>("SELECT at FROM events WHERE seq = ?", mid).one();
      if (row.at <= at) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  private loadSnapshot(): void {
    const row = this.sql
      .exec<AccountRow>(
        "SELECT account_id, currency, credit_limit, status, created_at, metadata, low_balance_threshold FROM account WHERE id = 1",
      )
      .toArray()[0];
    if (row === undefined) return;
    const head = this.sql
      .exec<{ seq: number; at: string; balance_after: number; reserved_after: number; hash: string }>(
        "SELECT seq, at, balance_after, reserved_after, hash FROM events ORDER BY seq DESC LIMIT 1",
      )
      .one();
    const holds = this.sql
      .exec<{ n: number; total: number }>(
        "SELECT COUNT(*) AS n, COALESCE(SUM(amount), 0) AS total FROM reservations WHERE status = 'open'",
      )
      .one();
    this.account = {
      account_id: row.account_id,
      currency: row.currency,
      credit_limit: row.credit_limit,
      status: row.status === "frozen" ? "frozen" : "active",
      balance: head.balance_after,
      reserved: head.reserved_after,
      open_reservations: holds.n,
      last_seq: head.seq,
      head_hash: head.hash,
      created_at: row.created_at,
      updated_at: head.at,
      metadata: JSON.parse(row.metadata) as AccountState["metadata"],
      low_balance_threshold: row.low_balance_threshold,
    };
    this.holds = { total: holds.total, count: holds.n };
    assert(this.account.reserved === holds.total, "on load: reserved equals the sum of open holds");
    this.lots.load((afterSeq) => this.readEvents(afterSeq, Number.MAX_SAFE_INTEGER), this.account.balance);
    this.limits.load((afterSeq) => this.readEvents(afterSeq, Number.MAX_SAFE_INTEGER));
  }
}

/** An open hold's state from its row: one written before lots has no `funded_by` (null until LotsOpened names it). */
export function openState(json: string): ReservationState {
  const open = JSON.parse(json) as ReservationState;
  return { ...open, funded_by: open.funded_by ?? null };
}

/**
 * The row of a reservation: an open one with its whole state, an ended
 * one as its record only (state NULL; `AccountStore.reservation` rebuilds it from its events).
 */
export function reservationRow(r: ReservationState): ReservationRow {
  if (r.status !== "open") return { ...endedRecord(r), state: null };
  return { ...reservationRecord(r), state: JSON.stringify(r) };
}

/** Invariants asserted on every append, inside the transaction (a failure rolls it back). */
function assertSnapshot(account: AccountState, holds: Holds, events: readonly LedgerEvent[]): void {
  const last = events.at(-1);
  assert(last !== undefined && account.last_seq === last.seq, "snapshot seq is the head seq");
  assert(account.balance === last.balance_after && account.reserved === last.reserved_after, "snapshot is the head");
  assert(account.reserved >= 0, "reserved >= 0");
  assert(account.reserved === holds.total, `reserved ${account.reserved} equals open holds ${holds.total}`);
  assert(account.open_reservations === holds.count, "open_reservations equals the open rows");
  assert(Number.isSafeInteger(account.balance - account.reserved + account.credit_limit), "available stays exact");
}
