/**
 * An account's whole history, read as one: the sealed segments in R2 (found through the
 * segment index, never by scanning segments) and the tail in the events table. Every reader of
 * past events goes through it: the events listing, the export's tail, point-in-time balances,
 * verification, the projection's rebuild and the replay of an archived operation.
 *
 * R2 objects never change once recorded, so a read that awaits R2 cannot see a torn history:
 * seqs up to the index's `archivedThrough` are read from R2, the rest from SQLite, whose rows
 * are deleted only after their segment is recorded.
 */
import { createHash } from "node:crypto";
import type { LedgerEvent } from "../src/domain/events";
import { EVENTS_PAGE_LIMIT_MAX } from "../src/domain/limits";
import { assert } from "../src/domain/money";
import type { ProjectionSource } from "../src/projection/producer/projector";
import {
  type ArchiveBucket,
  ArchiveUnavailable,
  type SegmentIndex,
  type SegmentRow,
  segmentLines,
  streamLines,
} from "./segments";
import { type AccountStore, SealedEventNeeded } from "./store";

export interface Balances {
  at: string;
  balance: number;
  reserved: number;
}

/** A page of verified reading, or where and why the history could not be read. */
export type HistoryPage = { events: LedgerEvent[] } | { failure: { seq: number; reason: string } };

const yieldTurn = () => new Promise((resolve) => setTimeout(resolve, 0));

export class History {
  constructor(
    private readonly store: AccountStore,
    private readonly index: SegmentIndex,
    private readonly bucket: () => ArchiveBucket | null,
  ) {}

  private archive(): ArchiveBucket {
    const bucket = this.bucket();
    if (bucket === null) throw new ArchiveUnavailable("the account has archived segments but no ARCHIVE bucket");
    return bucket;
  }

  /** The first seq kept in the events table for reads (everything before it is in R2). */
  get tailFirstSeq(): number {
    return this.index.archivedThrough + 1;
  }

  /** Up to `limit` events after `afterSeq`, from one segment or from the tail (a page stops at a segment's end). */
  async events(afterSeq: number, limit: number): Promise<LedgerEvent[]> {
    const segment = this.index.containing(afterSeq + 1);
    if (segment === null) return this.store.readEvents(afterSeq, limit);
    const events: LedgerEvent[] = [];
    for await (const { line } of segmentLines(this.archive(), segment, afterSeq + 1)) {
      events.push(JSON.parse(line) as LedgerEvent);
      if (events.length >= limit) break;
    }
    return events;
  }

  /** Up to `limit` events after `afterSeq`, across segment ends (for readers that want a full run). */
  async span(afterSeq: number, limit: number): Promise<LedgerEvent[]> {
    const out: LedgerEvent[] = [];
    while (out.length < limit) {
      const page = await this.events(afterSeq + out.length, limit - out.length);
      if (page.length === 0) break;
      out.push(...page);
    }
    return out;
  }

  async event(seq: number): Promise<LedgerEvent> {
    const event = (await this.events(seq - 1, 1))[0];
    assert(event?.seq === seq, `event ${seq} is in the history`);
    return event;
  }

  /** The time and balances recorded by event `seq`, or null past the head. */
  async balancesAt(seq: number): Promise<Balances | null> {
    const segment = this.index.containing(seq);
    if (segment === null) return this.store.balancesAt(seq);
    // The manifest keeps each segment's end: no read of R2 for a seq at a segment's end.
    if (seq === segment.last_seq) return { at: segment.last_at, balance: segment.balance, reserved: segment.reserved };
    const event = await this.event(seq);
    return { at: event.at, balance: event.balance_after, reserved: event.reserved_after };
  }

  /**
   * The last seq whose event time is at or before `at` (0: before the account existed): a
   * binary search in the tail, or the one segment the index names (read up to that time).
   */
  async seqAtTime(at: string): Promise<number> {
    const tailFirst = this.tailFirstSeq;
    const tailFirstAt = this.store.balancesAt(tailFirst)?.at;
    if (tailFirstAt !== undefined && tailFirstAt <= at) return this.store.seqAtTime(at, tailFirst);
    if (tailFirst === 1) return 0;
    const segment = this.index.startingAtOrBefore(at);
    if (segment === null) return 0;
    if (segment.last_at <= at) return segment.last_seq;
    let found = segment.first_seq;
    for await (const { seq, line } of segmentLines(this.archive(), segment, segment.first_seq)) {
      if ((JSON.parse(line) as { at: string }).at > at) break;
      found = seq;
    }
    return found;
  }

  /**
   * The history up to `head` in pages, for verification: each segment streamed whole and its
   * length and SHA-256 compared with its manifest, then the tail. A segment that cannot be read,
   * or differs from its manifest, is a failure at its first seq.
   */
  async *pages(head: number): AsyncGenerator<HistoryPage> {
    for (let after = 0; after < head; ) {
      const segment = this.index.containing(after + 1);
      if (segment !== null) {
        // A segment recorded while this read the tail may start at or before `after`: the pages
        // resume past what was read (issue 29), while the segment is still checked whole.
        for await (const page of this.segmentPages(segment)) {
          if ("failure" in page) {
            yield page;
            continue;
          }
          const past = after;
          const fresh = page.events.filter((e) => e.seq > past);
          if (fresh.length > 0) yield { events: fresh };
        }
        after = segment.last_seq;
        continue;
      }
      const page = this.store.readEvents(after, Math.min(EVENTS_PAGE_LIMIT_MAX, head - after));
      const last = page.at(-1);
      if (last === undefined) {
        yield { failure: { seq: after + 1, reason: `the log ends at seq ${after}, before ${head}` } };
        return;
      }
      yield { events: page };
      after = last.seq;
      if (after < head) await yieldTurn();
    }
  }

  private async *segmentPages(segment: SegmentRow): AsyncGenerator<HistoryPage> {
    const name = `segment ${segment.first_seq}-${segment.last_seq}`;
    const object = await this.archive().get(segment.object);
    if (object === null) {
      yield { failure: { seq: segment.first_seq, reason: `${name} is missing from the bucket` } };
      return;
    }
    const hash = createHash("sha256");
    let bytes = 0;
    let page: LedgerEvent[] = [];
    let read = 0;
    for await (const line of streamLines(object.body, (chunk) => {
      hash.update(chunk);
      bytes += chunk.length;
    })) {
      try {
        page.push(JSON.parse(line) as LedgerEvent);
      } catch {
        // The lines before it are checked first: an earlier failure is the one to report.
        const seq = segment.first_seq + read + page.length;
        if (page.length > 0) yield { events: page };
        yield { failure: { seq, reason: `${name}: the line of seq ${seq} is not JSON` } };
        return;
      }
      if (page.length >= EVENTS_PAGE_LIMIT_MAX) {
        yield { events: page };
        read += page.length;
        page = [];
      }
    }
    if (page.length > 0) yield { events: page };
    const lines = read + page.length;
    if (lines < segment.last_seq - segment.first_seq + 1) {
      const seq = segment.first_seq + lines;
      yield { failure: { seq, reason: `${name} ends at seq ${seq - 1} (truncated)` } };
    } else if (bytes !== segment.bytes || hash.digest("hex") !== segment.sha256) {
      yield { failure: { seq: segment.first_seq, reason: `${name}: length or SHA-256 differ from its manifest` } };
    }
  }
}

/**
 * Sealed events one command may need: an ended reservation's FundsReserved and end events (a
 * replayed key's prior event is one of them, or the only one).
 */
export const SEALED_READS_PER_COMMAND_MAX = 2;

/**
 * Runs `work`; if it stopped for an event sealed in R2 (the prior event of a key it replays, or
 * one of the two events an ended reservation is rebuilt from; it wrote nothing: a batch's
 * transaction rolled back), reads that event from its segment and runs it again, up to
 * SEALED_READS_PER_COMMAND_MAX times per command. An event never changes once its key is recorded, so
 * the await cannot make the replay stale, and each run is atomic (no await inside it).
 */
export async function readingSealed<T>(
  store: AccountStore,
  history: History,
  commands: number,
  work: () => T,
): Promise<T> {
  // This call's own: other calls run while it waits on R2 (issue 29).
  const fetched = new Map<number, LedgerEvent>();
  for (let reads = 0; ; reads++) {
    try {
      return store.withSealed(fetched, work);
    } catch (error) {
      if (!(error instanceof SealedEventNeeded) || reads >= commands * SEALED_READS_PER_COMMAND_MAX) throw error;
      fetched.set(error.seq, await history.event(error.seq));
    }
  }
}

/**
 * What the projection reads (src/projection/producer/projector.ts): usually what the last commits
 * wrote, kept parsed in memory (`store.recent`), else the events table or the whole history.
 */
export function projectionSource(
  store: AccountStore,
  history: History,
  wake: () => void,
  log: (line: Record<string, unknown>) => void,
): ProjectionSource {
  const recent = store.recent;
  return {
    account: () => store.account,
    eventsAfter: (seq, limit) => recent.after(seq, limit) ?? store.readEvents(seq, limit),
    history: async (seq, limit) => recent.after(seq, limit) ?? history.span(seq, limit),
    event: (seq) => recent.get(seq) ?? store.keptEvent(seq),
    reserveSeq: (id) => store.reservationStatus(id)?.reserve_seq ?? null,
    lotKind: (id: string) => store.lots.current(id)?.kind ?? null,
    wake,
    forget: (seq) => recent.dropThrough(seq),
    log,
  };
}
