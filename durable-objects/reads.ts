/**
 * The account object's reads that answer from its history (durable-objects/history.ts) rather
 * than from the snapshot alone: the chain's head, balances at a point of the log, a page of
 * events, the sealed segments' manifest. Each answers `account_not_found` before the account
 * is opened, and never writes.
 */
import type { BalancesAsOf, ChainHead, ReadResult, SegmentEntry } from "../src/contract";
import type { LedgerEvent } from "../src/domain/events";
import { EVENTS_PAGE_LIMIT_MAX } from "../src/domain/limits";
import { assert } from "../src/domain/money";
import type { History } from "./history";
import type { SegmentIndex } from "./segments";
import type { AccountStore } from "./store";

export const NOT_FOUND: { ok: false; rejection: { code: "account_not_found"; detail: string } } = {
  ok: false,
  rejection: { code: "account_not_found", detail: "The account does not exist." },
};

export class AccountReads {
  constructor(
    private readonly store: AccountStore,
    private readonly history: History,
    private readonly index: SegmentIndex,
  ) {}

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
