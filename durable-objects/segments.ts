/**
 * The segment index of an account object: the manifest of its sealed segments, one SQLite row
 * each (schema.ts `segments`), and how a segment's lines are read back from R2.
 *
 * A segment is an R2 object holding exactly the canonical export lines of a run of events
 * (src/audit/export-line.ts), next to its manifest entry (a JSON object; docs/archive.md). The
 * index finds the segment of a seq, or of a time, with one primary-key or index read: reads
 * never scan segments one by one.
 */

import { SEGMENT_FORMAT, type SegmentEntry } from "../src/contract";
import { LedgerError } from "../src/errors";

/** The R2 operations the archive uses: a seam, so tests can make R2 fail or lie. */
export interface ArchiveBucket {
  put(key: string, value: string | ArrayBuffer | ArrayBufferView, options?: R2PutOptions): Promise<unknown>;
  get(key: string, options?: R2GetOptions): Promise<R2ObjectBody | null>;
}

export { SEGMENT_FORMAT, type SegmentEntry };

/**
 * Every this many events a segment records the byte offset of its line, so a read of a seq
 * starts at most this many lines before it (an R2 range read), not at the segment's start.
 */
export const SEGMENT_OFFSET_STRIDE_EVENTS = 256;

/** What reads need of a segment, from its index row. */
export interface SegmentRow {
  first_seq: number;
  last_seq: number;
  first_at: string;
  last_at: string;
  balance: number;
  reserved: number;
  object: string;
  offsets: number[];
  bytes: number;
  sha256: string;
}

/** An archived segment could not be read back (missing or shorter than its manifest). */
export class ArchiveUnavailable extends LedgerError {
  override name = "ArchiveUnavailable";
  readonly code = "internal_error";
  readonly publicDetail = "The ledger failed to process the request.";
  override readonly log = "unhandled_error";
}

/** Zero-padded so that keys sort in seq order (a bucket listing is the history's order). */
const pad = (seq: number) => String(seq).padStart(16, "0");

/** Where an account's segments live in the bucket: one prefix per account. */
export function segmentPrefix(accountId: string): string {
  return `accounts/${accountId}/segments/`;
}

export function segmentKeys(accountId: string, firstSeq: number, lastSeq: number) {
  const stem = `${segmentPrefix(accountId)}${pad(firstSeq)}-${pad(lastSeq)}`;
  return { object: `${stem}.ndjson`, entry: `${stem}.manifest.json` };
}

type IndexRow = Omit<SegmentRow, "offsets" | "bytes" | "sha256"> & { offsets: string; entry: string };
const COLUMNS = "first_seq, last_seq, first_at, last_at, balance, reserved, object, offsets, entry";

function toSegment(row: IndexRow): SegmentRow {
  const entry = JSON.parse(row.entry) as SegmentEntry;
  const { entry: _entry, offsets, ...rest } = row;
  return { ...rest, offsets: JSON.parse(offsets) as number[], bytes: entry.bytes, sha256: entry.sha256 };
}

export class SegmentIndex {
  /** The last seq of the newest recorded segment (0: none); every seq up to it is read from R2. */
  archivedThrough = 0;
  count = 0;
  /** A recorded segment's events are still in the events table (kept in memory: read per command). */
  deleting = false;

  constructor(private readonly sql: SqlStorage) {
    const row = this.sql
      .exec<{ last: number | null; n: number }>("SELECT MAX(last_seq) AS last, COUNT(*) AS n FROM segments")
      .one();
    this.archivedThrough = row.last ?? 0;
    this.count = row.n;
    this.deleting = this.undeleted() !== null;
  }

  /** The segment holding `seq`, or null if `seq` is not archived. */
  containing(seq: number): SegmentRow | null {
    if (seq > this.archivedThrough || seq < 1) return null;
    const row = this.sql
      .exec<IndexRow>(`SELECT ${COLUMNS} FROM segments WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1`, seq)
      .toArray()[0];
    return row === undefined ? null : toSegment(row);
  }

  /** The newest segment whose first event is at or before `at`, or null. */
  startingAtOrBefore(at: string): SegmentRow | null {
    const row = this.sql
      .exec<IndexRow>(
        `SELECT ${COLUMNS} FROM segments WHERE first_at <= ? ORDER BY first_at DESC, first_seq DESC LIMIT 1`,
        at,
      )
      .toArray()[0];
    return row === undefined ? null : toSegment(row);
  }

  /** Up to `limit` segments after `afterSeq`, oldest first. */
  after(afterSeq: number, limit: number): SegmentRow[] {
    return this.sql
      .exec<IndexRow>(`SELECT ${COLUMNS} FROM segments WHERE first_seq > ? ORDER BY first_seq LIMIT ?`, afterSeq, limit)
      .toArray()
      .map(toSegment);
  }

  /** The manifest entries after `afterSeq`, oldest first (what is also in R2). */
  entries(afterSeq: number, limit: number): SegmentEntry[] {
    return this.sql
      .exec<{ entry: string }>(
        "SELECT entry FROM segments WHERE first_seq > ? ORDER BY first_seq LIMIT ?",
        afterSeq,
        limit,
      )
      .toArray()
      .map((row) => JSON.parse(row.entry) as SegmentEntry);
  }

  /** The newest segment's entry, or null. */
  newest(): SegmentEntry | null {
    const row = this.sql
      .exec<{ entry: string }>("SELECT entry FROM segments ORDER BY first_seq DESC LIMIT 1")
      .toArray()[0];
    return row === undefined ? null : (JSON.parse(row.entry) as SegmentEntry);
  }

  /** The segment whose events are still to be deleted from the events table, or null. */
  undeleted(): { first_seq: number; last_seq: number } | null {
    return (
      this.sql
        .exec<{ first_seq: number; last_seq: number }>(
          "SELECT first_seq, last_seq FROM segments WHERE deleted = 0 ORDER BY first_seq LIMIT 1",
        )
        .toArray()[0] ?? null
    );
  }

  /** Records a segment whose object was read back and checked (its events are deleted later). */
  record(entry: SegmentEntry, offsets: readonly number[]): void {
    this.sql.exec(
      `INSERT INTO segments (first_seq, last_seq, first_at, last_at, balance, reserved, object, offsets, entry, deleted)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`,
      entry.first_seq,
      entry.last_seq,
      entry.first_at,
      entry.last_at,
      entry.balance,
      entry.reserved,
      entry.object,
      JSON.stringify(offsets),
      JSON.stringify(entry),
    );
    this.archivedThrough = entry.last_seq;
    this.count += 1;
    this.deleting = true;
  }

  markDeleted(firstSeq: number): void {
    this.sql.exec("UPDATE segments SET deleted = 1 WHERE first_seq = ?", firstSeq);
    this.deleting = this.undeleted() !== null;
  }
}

/**
 * The lines of a byte stream, split by hand in large chunks (readline-like, without its cost).
 * `onChunk` sees every raw chunk (to hash the object while reading it). Stops reading, and
 * cancels the stream, when the consumer stops.
 */
export async function* streamLines(
  body: ReadableStream<Uint8Array>,
  onChunk?: (chunk: Uint8Array) => void,
): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  let done = false;
  try {
    for (;;) {
      const next = await reader.read();
      if (next.done) break;
      onChunk?.(next.value);
      pending += decoder.decode(next.value, { stream: true });
      let start = 0;
      for (let end = pending.indexOf("\n"); end !== -1; end = pending.indexOf("\n", start)) {
        yield pending.slice(start, end);
        start = end + 1;
      }
      pending = pending.slice(start);
    }
    done = true;
    pending += decoder.decode();
    if (pending.length > 0) yield pending;
  } finally {
    if (!done) await reader.cancel().catch(() => undefined);
  }
}

/**
 * The lines of segment `row` from the one holding `fromSeq` on, each with its seq: an R2 range
 * read from the nearest recorded offset at or before it.
 */
export async function* segmentLines(
  bucket: ArchiveBucket,
  row: SegmentRow,
  fromSeq: number,
): AsyncGenerator<{ seq: number; line: string }> {
  const stride = Math.floor((fromSeq - row.first_seq) / SEGMENT_OFFSET_STRIDE_EVENTS);
  const offset = row.offsets[stride] ?? 0;
  let seq = offset === 0 ? row.first_seq : row.first_seq + stride * SEGMENT_OFFSET_STRIDE_EVENTS;
  const object = await bucket.get(row.object, offset === 0 ? undefined : { range: { offset } });
  if (object === null) throw new ArchiveUnavailable(`segment ${row.object} is missing from the bucket`);
  for await (const line of streamLines(object.body)) {
    if (seq > row.last_seq) break;
    if (seq >= fromSeq) yield { seq, line };
    seq += 1;
  }
  if (seq <= row.last_seq) throw new ArchiveUnavailable(`segment ${row.object} ends at seq ${seq - 1}`);
}
