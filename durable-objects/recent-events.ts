/**
 * The events of an account's last commits, kept parsed in memory until the projection has
 * delivered them. After a commit, the projection's flush reads exactly these events back (and a
 * capture's message looks up its hold's FundsReserved): without this, every event was written
 * as JSON, then read back and parsed again within the coalescing window.
 *
 * It is a cache of immutable rows, never a source of truth: a miss reads the events table.
 * Bounded by RECENT_EVENTS_MAX (the oldest go first); emptied up to the cursor when a delivery
 * is accepted, emptied whole when one fails (a read side that is down must not make objects
 * hold their backlog in memory), and cut back when an atomic batch rolls back. Its events are
 * frozen, so a reader can never change what another reads.
 */
import type { LedgerEvent } from "../src/domain/events";

/** Events kept at most (about 1 KB each): a few coalescing windows of a hot account. */
export const RECENT_EVENTS_MAX = 512;

export class RecentEvents {
  /** Contiguous seqs, oldest first (a Map iterates in insertion order). */
  private readonly bySeq = new Map<number, LedgerEvent>();

  get size(): number {
    return this.bySeq.size;
  }

  /** Events just committed; they follow the ones kept (a gap empties the cache first). */
  add(events: readonly LedgerEvent[]): void {
    for (const event of events) {
      if (this.bySeq.size > 0 && !this.bySeq.has(event.seq - 1)) this.bySeq.clear();
      this.bySeq.set(event.seq, Object.freeze(event));
    }
    for (const seq of this.bySeq.keys()) {
      if (this.bySeq.size <= RECENT_EVENTS_MAX) break;
      this.bySeq.delete(seq);
    }
  }

  get(seq: number): LedgerEvent | undefined {
    return this.bySeq.get(seq);
  }

  /**
   * Up to `limit` events after `afterSeq` when the cache holds the first of them (it then holds
   * every later one up to the head: commits are contiguous), else null (read the table).
   */
  after(afterSeq: number, limit: number): LedgerEvent[] | null {
    if (!this.bySeq.has(afterSeq + 1)) return null;
    const out: LedgerEvent[] = [];
    for (let seq = afterSeq + 1; out.length < limit; seq++) {
      const event = this.bySeq.get(seq);
      if (event === undefined) break;
      out.push(event);
    }
    return out;
  }

  /** The events through `seq` were delivered: their copies are no longer needed. */
  dropThrough(seq: number): void {
    for (const kept of this.bySeq.keys()) {
      if (kept > seq) break;
      this.bySeq.delete(kept);
    }
  }

  /** A batch rolled back: the events after `seq` were never committed. */
  dropAfter(seq: number): void {
    for (const kept of [...this.bySeq.keys()]) if (kept > seq) this.bySeq.delete(kept);
  }

  clear(): void {
    this.bySeq.clear();
  }
}
