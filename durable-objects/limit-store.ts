/**
 * The account's spend limits (issue 28) in its object: in memory whole (at most
 * LIMITS_PER_ACCOUNT_MAX, each with its current window's usage), in SQLite as one checkpoint row.
 *
 * As with the lots (lot-store.ts), the log is the truth: a command changes the limits in memory
 * and writes no row for them; every LIMITS_CHECKPOINT_EVENTS events (and before the archive
 * deletes events) the whole book is written as one row in the command's own transaction, and a
 * start reads it and folds the events after it with the same `evolveLimits` the commands use. So a
 * hold or a charge counted against three limits writes no more rows than one counted against none.
 */
import type { LedgerEvent } from "../src/domain/events";
import { evolveLimits } from "../src/domain/limit-events";
import { assert } from "../src/domain/money";
import { LIMITS_PER_ACCOUNT_MAX, type LimitBook, type LimitEntry } from "../src/domain/spend-limits";

/** Events the limits may run ahead of their row: what a start folds again, at most (plus one batch). */
export const LIMITS_CHECKPOINT_EVENTS = 1_024;

export interface LimitMemory {
  book: LimitBook;
  throughSeq: number;
}

export class LimitStore {
  book: LimitBook = new Map();
  /** The last seq the row includes. */
  throughSeq = 0;

  constructor(private readonly sql: SqlStorage) {}

  /** On start: the row, then the events after it (`tail` reads them in order). */
  load(tail: (afterSeq: number) => Iterable<LedgerEvent>): void {
    const row = this.sql
      .exec<{ limits: string; through_seq: number }>("SELECT limits, through_seq FROM limit_book WHERE id = 1")
      .one();
    const entries = JSON.parse(row.limits) as LimitEntry[];
    assert(entries.length <= LIMITS_PER_ACCOUNT_MAX, "at most LIMITS_PER_ACCOUNT_MAX limits");
    let book: LimitBook = new Map(entries.map((entry) => [entry.limit.limit_id, entry]));
    for (const event of tail(row.through_seq)) book = evolveLimits(book, event);
    this.book = book;
    this.throughSeq = row.through_seq;
  }

  /** After an append changed the limits to `after` (inside its transaction): the row when due. */
  afterAppend(after: LimitBook, lastSeq: number): { rows: number; next: LimitMemory } {
    if (lastSeq - this.throughSeq < LIMITS_CHECKPOINT_EVENTS) {
      return { rows: 0, next: { book: after, throughSeq: this.throughSeq } };
    }
    return { rows: this.write(after, lastSeq), next: { book: after, throughSeq: lastSeq } };
  }

  /** Writes the row if the limits ran ahead of it (in the caller's transaction; `commit` after). */
  checkpoint(lastSeq: number): { rows: number; next: LimitMemory } | null {
    if (lastSeq === this.throughSeq) return null;
    return { rows: this.write(this.book, lastSeq), next: { book: this.book, throughSeq: lastSeq } };
  }

  commit(next: LimitMemory): void {
    this.book = next.book;
    this.throughSeq = next.throughSeq;
  }

  memory(): LimitMemory {
    return { book: this.book, throughSeq: this.throughSeq };
  }

  private write(book: LimitBook, lastSeq: number): number {
    return this.sql.exec(
      "UPDATE limit_book SET limits = ?, through_seq = ? WHERE id = 1",
      JSON.stringify([...book.values()]),
      lastSeq,
    ).rowsWritten;
  }
}
