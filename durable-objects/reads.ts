/**
 * The account object's reads that answer from its history (durable-objects/history.ts) rather
 * than from the snapshot alone: the chain's head, balances at a point of the log, a page of
 * events, the sealed segments' manifest. Each answers `account_not_found` before the account
 * is opened, and never writes.
 */
import type { BalancesAsOf, ChainHead, LotsPage, LotsQuery, ReadResult, SegmentEntry } from "../src/contract";
import { eventTime } from "../src/domain/decide";
import type { LedgerEvent } from "../src/domain/events";
import { EVENTS_PAGE_LIMIT_MAX, LOTS_PAGE_LIMIT_MAX } from "../src/domain/limits";
import type { Lot } from "../src/domain/lots";
import { assert } from "../src/domain/money";
import { type LimitView, limitsView } from "../src/domain/spend-limits";
import {
  type AccountView,
  accountView,
  lotStatus,
  lotView,
  type ReservationView,
  reservationView,
} from "../src/domain/views";
import { decodeCursor, encodeCursor } from "../src/read-side/cursor";
import { type History, readingSealed } from "./history";
import type { SegmentIndex } from "./segments";
import type { AccountStore } from "./store";

export const NOT_FOUND: { ok: false; rejection: { code: "account_not_found"; detail: string } } = {
  ok: false,
  rejection: { code: "account_not_found", detail: "The account does not exist." },
};

/** Each status as a condition on a lot's row at ?3 (now); see `lotStatus`. */
const STATUS_SQL = {
  any: "",
  active: " AND remaining > 0 AND (expires_at_ms IS NULL OR expires_at_ms > ?3)",
  expired: " AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?3",
  depleted: " AND remaining = 0 AND (expires_at_ms IS NULL OR expires_at_ms > ?3)",
} as const;

/** Oldest first: by the seq that created the lot, then by id. */
function byCreation(a: Pick<Lot, "created_seq" | "lot_id">, b: Pick<Lot, "created_seq" | "lot_id">): number {
  return a.created_seq - b.created_seq || (a.lot_id < b.lot_id ? -1 : a.lot_id > b.lot_id ? 1 : 0);
}

export class AccountReads {
  constructor(
    private readonly store: AccountStore,
    private readonly history: History,
    private readonly index: SegmentIndex,
  ) {}

  /** Every spend limit (issue 28) with its current window's figures, at the time commands decide at. */
  limits(clockMs: number): ReadResult<{ data: LimitView[] }> {
    if (this.store.account === null) return NOT_FOUND;
    return { ok: true, body: limitsView(this.store.limits.book, eventTime(this.store.account, clockMs)) };
  }

  account(): ReadResult<AccountView> {
    const account = this.store.account;
    return account === null ? NOT_FOUND : { ok: true, body: accountView(account, this.store.lots.book) };
  }

  async reservation(reservationId: string): Promise<ReadResult<ReservationView>> {
    if (this.store.account === null) return NOT_FOUND;
    const r = await readingSealed(this.store, this.history, 1, () => this.store.reservation(reservationId));
    if (r !== null) return { ok: true, body: reservationView(r) };
    const detail = "The account has no reservation with this id.";
    return { ok: false, rejection: { code: "reservation_not_found", detail } };
  }

  head(): ReadResult<ChainHead> {
    const a = this.store.account;
    if (a === null) return NOT_FOUND;
    const body = { account_id: a.account_id, seq: a.last_seq, head_hash: a.head_hash, balance: a.balance };
    return { ok: true, body: { ...body, reserved: a.reserved } };
  }

  async balanceAsOf(point: { seq: number } | { at: string }): Promise<ReadResult<BalancesAsOf>> {
    const account = this.store.account;
    if (account === null) return NOT_FOUND;
    const seq = "seq" in point ? Math.min(point.seq, account.last_seq) : await this.history.seqAtTime(point.at);
    if (seq === 0) return { ok: true, body: { seq: 0, at: null, balance: 0, reserved: 0, available: 0 } };
    const row = await this.history.balancesAt(seq);
    assert(row !== null, "a seq up to the head has its event");
    return { ok: true, body: { seq, ...row, available: row.balance - row.reserved } };
  }

  async balancesAt(seq: number): Promise<{ seq: number; balance: number; reserved: number } | null> {
    const row = await this.history.balancesAt(seq);
    return row === null ? null : { seq, balance: row.balance, reserved: row.reserved };
  }

  segments(afterSeq: number, limit: number): ReadResult<{ segments: SegmentEntry[]; archived_through: number }> {
    if (this.store.account === null) return NOT_FOUND;
    const segments = this.index.entries(afterSeq, limit);
    return { ok: true, body: { segments, archived_through: this.index.archivedThrough } };
  }

  /**
   * A page of lots, oldest first (by the seq that created them). A lot's truth is the book in
   * memory where it is there (every lot with credit, and every lot changed since the checkpoint),
   * else its row: the rows are read past the cursor, those memory holds are taken from memory.
   */
  async lots(query: LotsQuery, clockMs: number): Promise<ReadResult<LotsPage> | { ok: false; badCursor: true }> {
    if (this.store.account === null) return NOT_FOUND;
    // The time the runner expired the lots at (never behind the last event's).
    const nowMs = eventTime(this.store.account, clockMs);
    assert(Number.isSafeInteger(query.limit) && query.limit >= 1 && query.limit <= LOTS_PAGE_LIMIT_MAX, "limit");
    const key = query.cursor === undefined ? [0, ""] : decodeCursor(query.cursor, 2);
    if (key === null || typeof key[0] !== "number" || typeof key[1] !== "string") return { ok: false, badCursor: true };
    const [afterSeq, afterId] = key as [number, string];
    const memory = this.store.lots.inMemory();
    const inMemory = new Set(memory.map((lot) => lot.lot_id));
    // Rows that memory holds are stale or new; the others are current, so SQL may filter them.
    const fetched = query.limit + inMemory.size;
    const where = `(created_seq > ?1 OR (created_seq = ?1 AND lot_id > ?2))${STATUS_SQL[query.status ?? "any"]}`;
    const params = query.status === undefined ? [afterSeq, afterId] : [afterSeq, afterId, nowMs];
    const raw = this.store.lots.list(where, params, fetched);
    // A full fetch may stop short of lots memory holds: those past its last row wait for the next page.
    const bound = raw.length === fetched ? raw.at(-1) : undefined;
    const candidates = memory.filter(
      (lot) =>
        byCreation(lot, { created_seq: afterSeq, lot_id: afterId }) > 0 &&
        (bound === undefined || byCreation(lot, bound) <= 0) &&
        (query.status === undefined || lotStatus(lot, nowMs) === query.status),
    );
    const matches = [...raw.filter((lot) => !inMemory.has(lot.lot_id)), ...candidates].sort(byCreation);
    const page = matches.slice(0, query.limit);
    const data = await Promise.all(
      page.map(async (lot) => lotView(lot, (await this.history.balancesAt(lot.created_seq))?.at ?? "", nowMs)),
    );
    const last = page.at(-1);
    const more = last !== undefined && (matches.length > query.limit || bound !== undefined);
    return { ok: true, body: { data, next_cursor: more ? encodeCursor([last.created_seq, last.lot_id]) : null } };
  }

  async events(
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
}
