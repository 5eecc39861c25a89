/**
 * The account's book of lots (issue 27) in its object: in memory whole for every lot with credit
 * in it, in SQLite behind the log.
 *
 * The log is the truth; the `lots` rows and the `lot_book` row are a checkpoint of the book as of
 * `through_seq`. A command changes the book in memory and writes no lot row; every
 * LOTS_CHECKPOINT_EVENTS events (and before the archive deletes events) the lots that changed
 * since are written in the command's own transaction. On start the
 * object reads the checkpoint's lots with credit in them and folds the events after it with the
 * same `evolveBook` the commands use, so a reserve and a capture write no row for lots (the
 * platform bills rows written: decision 0008). A lot spent to nothing leaves the book at once, so
 * no movement scans it: it waits in `pending` until the checkpoint writes it, then stays a row, read
 * again when a refund credits it back, listed by `GET .../lots`.
 */
import type { LedgerEvent } from "../src/domain/events";
import { evolveBook } from "../src/domain/lot-events";
import {
  assertBook,
  bookOf,
  LOT_KINDS,
  type Lot,
  type LotBook,
  type LotKind,
  nextExpiryMs,
  withLots,
  withoutLots,
} from "../src/domain/lots";
import { assert } from "../src/domain/money";

/**
 * Events the book may run ahead of its checkpoint: what a start folds again, at most (plus one
 * batch). A checkpoint writes each lot changed since (twice for a lot it finds with credit that is
 * spent later, with its partial index entry): at 64 the hot reserve+capture paid 0.05 rows per
 * command and a credit+charge account 1.5; at 1,024 a start folds at most about 2,000 events
 * (a few tens of ms, once per start) and the rows are near a lot's one row (decision 0008).
 */
export const LOTS_CHECKPOINT_EVENTS = 1_024;

interface LotRow extends Record<string, SqlStorageValue> {
  lot_id: string;
  kind: string;
  priority: number;
  amount: number;
  remaining: number;
  held: number;
  expired: number;
  expires_at_ms: number | null;
  created_seq: number;
}

const LOT_COLUMNS = "lot_id, kind, priority, amount, remaining, held, expired, expires_at_ms, created_seq";

function lotOf(row: LotRow): Lot {
  assert((LOT_KINDS as readonly string[]).includes(row.kind), `lot ${row.lot_id} has a kind`);
  return { ...row, kind: row.kind as LotKind };
}

export interface LotMemory {
  book: LotBook | null;
  throughSeq: number;
  pending: ReadonlyMap<string, Lot>;
}

export class LotStore {
  /** The book: every lot with credit in it (null: the account keeps no lots yet, or there is no account). */
  book: LotBook | null = null;
  /** The last seq the rows include. */
  throughSeq = 0;
  /**
   * Lots changed since the checkpoint, as they are now: what the next checkpoint writes. A lot
   * spent to nothing leaves the book at once (so no movement scans it) and waits here.
   */
  private pending: ReadonlyMap<string, Lot> = new Map();
  /** Spent lots `ensure` loaded for a command: the next append drops those still spent. */
  private ensured = new Set<string>();

  constructor(private readonly sql: SqlStorage) {}

  /**
   * On start: the checkpoint, then the events after it (`tail` reads them in order). Returns
   * false when the account has no book yet (opened before lots; the runner opens them).
   */
  load(tail: (afterSeq: number) => Iterable<LedgerEvent>, balance: number): boolean {
    const head = this.sql
      .exec<{ debt: number; paid: number; promotional: number; through_seq: number }>(
        "SELECT debt, debt_paid_by_paid AS paid, debt_paid_by_promotional AS promotional, through_seq FROM lot_book WHERE id = 1",
      )
      .toArray()[0];
    if (head === undefined) return false;
    const rows = this.sql.exec<LotRow>(`SELECT ${LOT_COLUMNS} FROM lots WHERE remaining > 0`).toArray();
    this.book = bookOf(rows.map(lotOf), head.debt, { paid: head.paid, promotional: head.promotional });
    this.throughSeq = head.through_seq;
    for (const event of tail(head.through_seq)) {
      this.ensure(lotsNamed(event));
      const moved = this.moved(evolveBook(this.book, event));
      this.book = moved.book;
      this.pending = moved.pending;
    }
    // The rows and the tail, checked whole once per start (each event checks only what it moved).
    if (this.book !== null) assertBook(this.book, balance);
    return true;
  }

  /** Loads lots without credit that a command names (a refund's sources) into the book. */
  ensure(ids: Iterable<string>): void {
    const book = this.book;
    if (book === null) return;
    const lots = new Map<string, Lot>();
    for (const id of ids) {
      if (book.lots.has(id) || lots.has(id)) continue;
      const lot = this.pending.get(id) ?? this.row(id);
      if (lot === null) continue;
      lots.set(id, lot);
      this.ensured.add(id);
    }
    if (lots.size > 0) this.book = withLots(book, [...lots.values()]);
  }

  /** The book after a movement, spent lots out of it, and every changed lot pending its write. */
  private moved(after: LotBook | null): { book: LotBook | null; pending: ReadonlyMap<string, Lot> } {
    if (after === null) return { book: null, pending: this.pending };
    // What changed since the book in memory waits for its write; what has no credit leaves the book,
    // as do the spent lots a command loaded and left spent (a replay's, a refund's other sources).
    const changed = this.book === null ? [...after.lots.values()] : after.lots.changedSince(this.book.lots);
    const spent = new Set(changed.filter((lot) => lot.remaining === 0).map((lot) => lot.lot_id));
    for (const id of this.ensured) if (after.lots.get(id)?.remaining === 0) spent.add(id);
    this.ensured = new Set();
    const pending =
      changed.length === 0
        ? this.pending
        : new Map([...this.pending, ...changed.map((lot) => [lot.lot_id, lot] as const)]);
    return { book: spent.size === 0 ? after : withoutLots(after, [...spent]), pending };
  }

  /**
   * After an append's events changed the book to `after` (inside its transaction): notes what
   * changed, and writes the checkpoint when the book has run LOTS_CHECKPOINT_EVENTS ahead (or is
   * new). Returns the rows written. Memory is committed by `commit` after the transaction.
   */
  afterAppend(after: LotBook | null, lastSeq: number): { rows: number; next: LotMemory } {
    const moved = this.moved(after);
    const next = { book: moved.book, throughSeq: this.throughSeq, pending: moved.pending };
    const due = moved.book !== null && (this.book === null || lastSeq - this.throughSeq >= LOTS_CHECKPOINT_EVENTS);
    if (!due || moved.book === null) return { rows: 0, next };
    const rows = this.write(moved.book, moved.pending, lastSeq);
    return { rows, next: { book: moved.book, throughSeq: lastSeq, pending: new Map() } };
  }

  /** Writes the checkpoint if the book ran ahead of it (in the caller's transaction; `commit` after). */
  checkpoint(lastSeq: number): { rows: number; next: LotMemory } | null {
    if (this.book === null || lastSeq === this.throughSeq) return null;
    const rows = this.write(this.book, this.pending, lastSeq);
    return { rows, next: { book: this.book, throughSeq: lastSeq, pending: new Map() } };
  }

  commit(next: LotMemory): void {
    this.book = next.book;
    this.throughSeq = next.throughSeq;
    this.pending = next.pending;
  }

  /** Every lot the rows may hold stale or not at all: the book's and the pending ones. */
  inMemory(): Lot[] {
    return [...new Map([...this.pending, ...(this.book?.lots ?? [])]).values()];
  }

  /** When the next lot expires with credit in it (the alarm's), or null. */
  wakeAtMs(): number | null {
    return this.book === null ? null : nextExpiryMs(this.book);
  }

  memory(): LotMemory {
    return { book: this.book, throughSeq: this.throughSeq, pending: this.pending };
  }

  /** Lot `id` as it is now: from memory where it is there, else its row (null: none). */
  current(id: string): Lot | null {
    return this.book?.lots.get(id) ?? this.pending.get(id) ?? this.row(id);
  }

  private row(id: string): Lot | null {
    const row = this.sql.exec<LotRow>(`SELECT ${LOT_COLUMNS} FROM lots WHERE lot_id = ?`, id).toArray()[0];
    return row === undefined ? null : lotOf(row);
  }

  rowIds(): string[] {
    return this.sql
      .exec<{ lot_id: string }>("SELECT lot_id FROM lots")
      .toArray()
      .map((row) => row.lot_id);
  }

  /**
   * Rows of lots matching `where`, oldest first, at most `limit`. A row is current unless the book
   * in memory holds that lot (`GET .../lots` takes those from memory: durable-objects/reads.ts).
   */
  list(where: string, params: SqlStorageValue[], limit: number): Lot[] {
    assert(Number.isSafeInteger(limit) && limit > 0, "a page's limit");
    const sql = `SELECT ${LOT_COLUMNS} FROM lots WHERE ${where} ORDER BY created_seq, lot_id LIMIT ${limit}`;
    return this.sql
      .exec<LotRow>(sql, ...params)
      .toArray()
      .map(lotOf);
  }

  private write(book: LotBook, pending: ReadonlyMap<string, Lot>, lastSeq: number): number {
    let rows = 0;
    for (const lot of pending.values()) {
      rows += this.sql.exec(
        `INSERT INTO lots (${LOT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (lot_id) DO UPDATE SET remaining = excluded.remaining, held = excluded.held, expired = excluded.expired`,
        lot.lot_id,
        lot.kind,
        lot.priority,
        lot.amount,
        lot.remaining,
        lot.held,
        lot.expired,
        lot.expires_at_ms,
        lot.created_seq,
      ).rowsWritten;
    }
    rows += this.sql.exec(
      `INSERT INTO lot_book (id, debt, debt_paid_by_paid, debt_paid_by_promotional, through_seq) VALUES (1, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET debt = excluded.debt, debt_paid_by_paid = excluded.debt_paid_by_paid,
         debt_paid_by_promotional = excluded.debt_paid_by_promotional, through_seq = excluded.through_seq`,
      book.debt,
      book.debt_paid_by.paid,
      book.debt_paid_by.promotional,
      lastSeq,
    ).rowsWritten;
    return rows;
  }
}

/** Lots a refund credits back: the book may not hold them (they had no credit left). */
export function lotsNamed(event: LedgerEvent): string[] {
  if (event.type !== "ChargeRefunded" || event.returned_to === undefined) return [];
  return event.returned_to.flatMap((part) => (part.to_lot_id === null ? [] : [part.to_lot_id]));
}
