/**
 * The projection's wire format, declared once: what an account object sends (./producer) and
 * the consumer applies (./consumer). A message covers the events `(from_seq - 1, to_seq]` and
 * carries absolute state as of `to_seq` (docs/read-side.md, "Messages"). Rows inside a message
 * are cells in the order of their table's columns, each order named here or in ./rows.ts and
 * ./rollups.ts, never restated by position elsewhere.
 */
import { type Cell, LEDGER_EVENT_COLUMNS } from "./rows";

/** Events per sealed page of the raw-event window (one D1 row per page). */
export const PROJECTION_PAGE_EVENTS = 16;
/** Format of a message; the consumer refuses (dead-letters) any other. */
export const PROJECTION_MESSAGE_VERSION = 1;

/** An event as a page stores it: its `ledger_events` cells in column order, without account_id. */
export type EventCells = Cell[];
/** A rollup row's cells in `ROLLUP_COLUMNS` order, without account_id (sums as decimal strings). */
export type RollupCells = (string | number)[];

export interface SealedPage {
  first_seq: number;
  last_seq: number;
  first_at: string;
  last_at: string;
  events: EventCells[];
}

export type HoldChange =
  | { op: "open"; reservation_id: string; seq: number; row: Record<string, Cell> }
  | {
      op: "extend";
      reservation_id: string;
      seq: number;
      expires_at: string;
      ttl_seconds: number;
      on_expiry: string;
    }
  | { op: "close"; reservation_id: string; seq: number };

/** The `accounts` row as of `to_seq`, without the projection's own stamps. */
export interface AccountCells {
  account_id: string;
  currency: string;
  balance: number;
  reserved: number;
  available: number;
  credit_limit: number;
  status: string;
  open_reservations: number;
  last_seq: number;
  created_at: string;
  updated_at: string;
  /** The UTC day of the newest event, where the open rollup buckets lie. */
  open_day: string;
}

export interface ProjectionMessage {
  v: typeof PROJECTION_MESSAGE_VERSION;
  account_id: string;
  /** Bumped by each rebuild: a message of an older generation is superseded and dropped. */
  generation: number;
  /** The first message of a rebuild: the account's rows are deleted (in every shard) first. */
  reset: boolean;
  from_seq: number;
  to_seq: number;
  /** Time of the oldest event of the range: lag is measured from it. */
  oldest_at: string;
  account: AccountCells;
  /** First seq of the tail (the current page) and its events up to `to_seq`; empty when sealed. */
  tail_first_seq: number;
  tail: EventCells[];
  pages: SealedPage[];
  rollups_open: RollupCells[];
  rollups_closed: RollupCells[];
  holds: HoldChange[];
}

/** The columns of an event's cells in a page and the tail: `ledger_events` without account_id. */
export const EVENT_CELL_COLUMNS = LEDGER_EVENT_COLUMNS.filter((c) => c !== "account_id");
export const EVENT_CELL_CREATED_AT = EVENT_CELL_COLUMNS.indexOf("created_at");

/** The first seq of the page holding `seq`. */
export function pageStart(seq: number): number {
  return Math.floor((seq - 1) / PROJECTION_PAGE_EVENTS) * PROJECTION_PAGE_EVENTS + 1;
}

/** The last seq of the page holding `seq`. */
export function pageEnd(seq: number): number {
  return pageStart(seq) + PROJECTION_PAGE_EVENTS - 1;
}
