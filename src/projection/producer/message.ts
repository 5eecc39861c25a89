/**
 * Projection messages: what an account object hands to the read side for a range of its log
 * (issue 12). Pure: built from the account, the events and the rollup state, time passed in.
 *
 * A message covers the events `(from_seq - 1, to_seq]` and carries ABSOLUTE state as of
 * `to_seq`, never a delta, so that the consumer (../consumer/apply.ts) can apply it onto any read side
 * that is at or past `from_seq - 1`, once or many times:
 * - `account`: the snapshot row as of `to_seq`, with the account's open rollup buckets and the
 *   events of its current (unsealed) page, the "tail": one D1 row for all of that, so a flush of
 *   an account costs one row written at steady state;
 * - `pages`: pages of `PROJECTION_PAGE_EVENTS` events that this range completed (sealed pages are
 *   final: seqs `[k * P + 1, (k + 1) * P]`, the same in every message and every rebuild);
 * - `rollups_closed`: rollup rows whose bucket ended in this range (final);
 * - `holds`: every reservation the range touched, as its state at `to_seq`: open (the whole
 *   row), extended (new expiry), or closed (removed from the open holds).
 *
 * A message never crosses a page boundary: it ends at its page's last seq or at the head, so it
 * holds at most one page of events (the sealed page or the tail).
 */
import { type FundsReserved, type LedgerEvent, type ReservationExtended, unreachable } from "../../domain/events";
import type { AccountState } from "../../domain/state";
import {
  bucketOf,
  foldRollups,
  type LotKindOf,
  lotKindsOfLog,
  ROLLUP_SUM_MAX,
  ROLLUP_SUMS,
  type Rollup,
  type RollupState,
  rowKey,
  stateKey,
} from "../rollups";
import { type Cell, ledgerEventRow } from "../rows";
import {
  EVENT_CELL_COLUMNS,
  EVENT_CELL_CREATED_AT,
  type EventCells,
  type HoldChange,
  PROJECTION_MESSAGE_VERSION,
  type ProjectionMessage,
  pageEnd,
  pageStart,
  type RollupCells,
} from "../wire";

export function eventCells(accountId: string, event: LedgerEvent): EventCells {
  const row = ledgerEventRow(accountId, event);
  return EVENT_CELL_COLUMNS.map((c) => row[c]);
}

/** A rollup row as cells (without account_id), in `ROLLUP_COLUMNS` order. */
export function rollupCellsOf(row: Rollup): RollupCells {
  for (const s of ROLLUP_SUMS) {
    // An SQLite integer holds 2^63 - 1; beyond, CAST would silently saturate.
    if (row.sums[s] > ROLLUP_SUM_MAX || row.sums[s] < -ROLLUP_SUM_MAX) throw new Error(`rollup ${s} exceeds 64 bits`);
  }
  return [
    row.grain,
    row.bucket,
    row.service_id,
    row.provider,
    row.model,
    row.alias,
    row.seq,
    row.balance_after,
    row.reserved_after,
    ...ROLLUP_SUMS.map((s) => row.sums[s].toString()),
    row.api_key_id,
    row.project_id,
  ];
}

export interface MessageInput {
  /** The account at the head of its log. */
  head: AccountState;
  generation: number;
  reset: boolean;
  /** Events of the range, in seq order, consecutive, within one page. */
  events: readonly LedgerEvent[];
  /** Events of the same page before the range (the tail already projected), as cells. */
  pageBefore: readonly EventCells[];
  /** Rollup rows as of `from_seq - 1`. */
  rollups: RollupState;
  /** The FundsReserved event of a hold opened before the range (for its row). */
  reservedEvent(reservationId: string): FundsReserved | null;
  /** The kind of a lot made before the range. */
  lotKind: LotKindOf;
}

/** Builds the message for one range, and the rollup state as of its end. */
export function buildMessage(input: MessageInput): { message: ProjectionMessage; rollups: RollupState } {
  const { head, events } = input;
  const first = events[0];
  const last = events.at(-1);
  if (first === undefined || last === undefined) throw new Error("a projection message needs events");
  if (pageStart(first.seq) !== pageStart(last.seq)) throw new Error("a projection message stays within one page");
  const id = head.account_id;
  const pageEvents = [...input.pageBefore, ...events.map((e) => eventCells(id, e))];
  const sealed = last.seq === pageEnd(last.seq);
  const folded = foldRollups(input.rollups, events, input.lotKind);
  // A row is closed when the state's row of its grain and dimensions is of a later bucket.
  const closed = new Map<string, Rollup>();
  for (const row of [...input.rollups.values(), ...folded.touched]) {
    if (folded.state.get(stateKey(row))?.bucket !== row.bucket) closed.set(rowKey(row), row);
  }
  const message: ProjectionMessage = {
    v: PROJECTION_MESSAGE_VERSION,
    account_id: id,
    generation: input.generation,
    reset: input.reset,
    from_seq: first.seq,
    to_seq: last.seq,
    oldest_at: first.at,
    account: {
      account_id: id,
      currency: head.currency,
      balance: last.balance_after,
      reserved: last.reserved_after,
      available: last.balance_after - last.reserved_after,
      // A message short of the head carries the head's limit, status and hold count; the
      // message that reaches the head (usually in the same queue batch) is exact.
      credit_limit: head.credit_limit,
      status: head.status,
      open_reservations: head.open_reservations,
      last_seq: last.seq,
      created_at: head.created_at,
      updated_at: last.at,
      open_day: bucketOf(last.at, "day"),
    },
    tail_first_seq: sealed ? last.seq + 1 : pageStart(last.seq),
    tail: sealed ? [] : pageEvents,
    pages: sealed
      ? [
          {
            first_seq: pageStart(last.seq),
            last_seq: last.seq,
            first_at: (input.pageBefore[0]?.[EVENT_CELL_CREATED_AT] as string | undefined) ?? first.at,
            last_at: last.at,
            events: pageEvents,
          },
        ]
      : [],
    rollups_open: [...folded.state.values()].map(rollupCellsOf),
    rollups_closed: [...closed.values()].map(rollupCellsOf),
    holds: holdChanges(id, events, input.reservedEvent),
  };
  return { message, rollups: folded.state };
}

/** Each hold the events touched, as its state after them. */
export function holdChanges(
  accountId: string,
  events: readonly LedgerEvent[],
  reservedEvent: (id: string) => FundsReserved | null,
): HoldChange[] {
  const changes = new Map<string, HoldChange>();
  for (const event of events) {
    switch (event.type) {
      case "FundsReserved":
        changes.set(event.reservation_id, {
          op: "open",
          reservation_id: event.reservation_id,
          seq: event.seq,
          row: openHoldRow(accountId, event),
        });
        break;
      case "ReservationExtended": {
        const before = changes.get(event.reservation_id);
        changes.set(event.reservation_id, extended(accountId, before, event, reservedEvent));
        break;
      }
      case "ReservationCaptured":
      case "ReservationReleased":
      case "ReservationExpired":
        changes.set(event.reservation_id, { op: "close", reservation_id: event.reservation_id, seq: event.seq });
        break;
      // No hold changes.
      case "AccountOpened":
      case "AccountUpdated":
      case "FundsCredited":
      case "AccountCharged":
      case "ChargeRefunded":
      case "BalanceAdjusted":
      case "LotExpired":
        break;
      // Opening lots names the holds' earmarks, which the read side's hold rows do not keep.
      case "LotsOpened":
        break;
      // Spend limits are the object's: the read side keeps no copy.
      case "LimitSet":
      case "LimitRemoved":
        break;
      default:
        unreachable(event);
    }
  }
  return [...changes.values()];
}

function extended(
  accountId: string,
  before: HoldChange | undefined,
  event: ReservationExtended,
  reservedEvent: (id: string) => FundsReserved | null,
): HoldChange {
  const expiry = { expires_at: event.expires_at, ttl_seconds: event.ttl_seconds, on_expiry: event.on_expiry };
  if (before?.op === "open") {
    return { ...before, seq: event.seq, row: { ...before.row, ...expiry, updated_seq: event.seq } };
  }
  // Opened in an earlier message: its row is in D1 (messages apply in order), or, when the
  // object can read its FundsReserved event, the whole row is sent so nothing depends on that.
  const reserved = reservedEvent(event.reservation_id);
  if (reserved !== null) {
    return {
      op: "open",
      reservation_id: event.reservation_id,
      seq: event.seq,
      row: { ...openHoldRow(accountId, reserved), ...expiry, updated_seq: event.seq },
    };
  }
  return { op: "extend", reservation_id: event.reservation_id, seq: event.seq, ...expiry };
}

/** The `reservations` row of an open hold (migrations/0001_read_side.sql). */
export function openHoldRow(accountId: string, event: FundsReserved): Record<string, Cell> {
  return {
    account_id: accountId,
    reservation_id: event.reservation_id,
    status: "open",
    amount: event.amount,
    captured_amount: null,
    released_amount: null,
    overage: 0,
    on_expiry: event.on_expiry,
    ttl_seconds: event.ttl_seconds,
    expires_at: event.expires_at,
    created_at: event.at,
    settled_at: null,
    request_id: event.context.request_id ?? null,
    service_id: event.context.service_id ?? null,
    provider: event.context.provider ?? null,
    model: event.context.model ?? null,
    reserve_seq: event.seq,
    updated_seq: event.seq,
  };
}

/** Columns of a page's event cells, in order (the migration's `ledger_events` view reads them). */

/**
 * The messages of a whole log, one per page, as a rebuild sends them (generation 0, no reset):
 * what the projection would deliver for it. Pure; for tools and tests that fill a read side
 * without an account object. `head` is the account at the log's end.
 */
export function messagesOfLog(head: AccountState, log: readonly LedgerEvent[]): ProjectionMessage[] {
  const reserved = new Map<string, FundsReserved>();
  for (const event of log) if (event.type === "FundsReserved") reserved.set(event.reservation_id, event);
  const messages: ProjectionMessage[] = [];
  const lotKind = lotKindsOfLog(log);
  let rollups: RollupState = new Map();
  for (let i = 0; i < log.length; ) {
    const first = log[i] as LedgerEvent;
    let end = i;
    while (end < log.length && pageStart((log[end] as LedgerEvent).seq) === pageStart(first.seq)) end++;
    const built = buildMessage({
      head,
      generation: 0,
      reset: false,
      events: log.slice(i, end),
      pageBefore: [],
      rollups,
      reservedEvent: (id) => reserved.get(id) ?? null,
      lotKind,
    });
    messages.push(built.message);
    rollups = built.rollups;
    i = end;
  }
  return messages;
}
