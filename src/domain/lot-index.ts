/**
 * The containers of a book of lots (lots.ts), persistent: a movement derives a new book and the
 * old one stays whole (a decision works on the book the fold then moves again, and an atomic batch
 * rolls back to the book it started from). Copying one Map of every lot per movement made every
 * command cost O(lots) and held an account to 1,000 lots with credit; these copy a small part:
 *
 * - `LotMap`: lot id -> lot in LOT_MAP_BUCKETS buckets by a hash of the id. A change copies the
 *   bucket array and each bucket it touches: O(LOT_MAP_BUCKETS + lots / LOT_MAP_BUCKETS).
 * - `LotOrder`: lots sorted by a total order, in chunks of at most LOT_ORDER_CHUNK. An insert or a
 *   removal copies the chunk array and one chunk: O(lots / LOT_ORDER_CHUNK + LOT_ORDER_CHUNK).
 *   It keeps the lot as it was inserted: only the fields the order reads (kind, priority, expiry,
 *   created seq, id), which never change for a lot, may be read from it.
 *
 * At 100,000 lots a change copies about 1,600 + 1,600 references: tens of microseconds.
 */
import { assert } from "./money";

/** What the containers need of a lot (lots.ts's `Lot`): its id. */
interface Named {
  lot_id: string;
}

export const LOT_MAP_BUCKETS = 64;
export const LOT_ORDER_CHUNK = 64;

/** FNV-1a over the id's UTF-16 code units: a stable bucket for every id. */
function bucketOf(id: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i += 1) hash = Math.imul(hash ^ id.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % LOT_MAP_BUCKETS;
}

const NO_LOTS: ReadonlyMap<string, never> = new Map<string, never>();

export class LotMap<Lot extends Named> {
  private constructor(
    private readonly buckets: readonly ReadonlyMap<string, Lot>[],
    readonly size: number,
  ) {}

  static empty<Lot extends Named>(): LotMap<Lot> {
    return new LotMap<Lot>(
      Array.from({ length: LOT_MAP_BUCKETS }, () => NO_LOTS),
      0,
    );
  }

  static of<Lot extends Named>(lots: Iterable<Lot>): LotMap<Lot> {
    return LotMap.empty<Lot>().with(lots);
  }

  get(id: string): Lot | undefined {
    return this.buckets[bucketOf(id)]?.get(id);
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  /** This map with each lot set (by its id); each bucket touched is copied once. */
  with(lots: Iterable<Lot>): LotMap<Lot> {
    return this.edit(lots, (bucket, lot) => bucket.set(lot.lot_id, lot));
  }

  without(ids: Iterable<string>): LotMap<Lot> {
    return this.edit(ids, (bucket, id) => bucket.delete(id));
  }

  private edit<T>(items: Iterable<T>, change: (bucket: Map<string, Lot>, item: T) => void): LotMap<Lot> {
    let buckets: ReadonlyMap<string, Lot>[] | null = null;
    const copied = new Set<number>();
    let size = this.size;
    for (const item of items) {
      const index = bucketOf(typeof item === "string" ? item : (item as Named).lot_id);
      buckets ??= [...this.buckets];
      if (!copied.has(index)) {
        buckets[index] = new Map(buckets[index]);
        copied.add(index);
      }
      const bucket = buckets[index] as Map<string, Lot>;
      size -= bucket.size;
      change(bucket, item);
      size += bucket.size;
    }
    return buckets === null ? this : new LotMap(buckets, size);
  }

  /**
   * The lots here that `before` does not hold as the same object: what a movement from `before`
   * changed or added. Reads only the buckets the movement copied.
   */
  changedSince(before: LotMap<Lot>): Lot[] {
    const changed: Lot[] = [];
    this.buckets.forEach((bucket, index) => {
      const old = before.buckets[index];
      if (bucket === old) return;
      for (const [id, lot] of bucket) if (old?.get(id) !== lot) changed.push(lot);
    });
    return changed;
  }

  *entries(): IterableIterator<[string, Lot]> {
    for (const bucket of this.buckets) yield* bucket;
  }

  *keys(): IterableIterator<string> {
    for (const bucket of this.buckets) yield* bucket.keys();
  }

  *values(): IterableIterator<Lot> {
    for (const bucket of this.buckets) yield* bucket.values();
  }

  [Symbol.iterator](): IterableIterator<[string, Lot]> {
    return this.entries();
  }
}

/** Lots sorted by `compare` (a total order: 0 only for the same lot). */
export class LotOrder<Lot extends Named> {
  private constructor(
    private readonly chunks: readonly (readonly Lot[])[],
    private readonly compare: (a: Lot, b: Lot) => number,
    readonly size: number,
  ) {}

  static of<Lot extends Named>(lots: readonly Lot[], compare: (a: Lot, b: Lot) => number): LotOrder<Lot> {
    const sorted = [...lots].sort(compare);
    const chunks: Lot[][] = [];
    for (let i = 0; i < sorted.length; i += LOT_ORDER_CHUNK / 2) chunks.push(sorted.slice(i, i + LOT_ORDER_CHUNK / 2));
    return new LotOrder(chunks, compare, sorted.length);
  }

  /** The chunk `lot` belongs in: the first whose last lot is not before it (else the last chunk). */
  private chunkFor(lot: Lot): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const chunk = this.chunks[mid] as readonly Lot[];
      if (this.compare(chunk[chunk.length - 1] as Lot, lot) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The first index in `chunk` whose lot is not before `lot`. */
  private indexIn(chunk: readonly Lot[], lot: Lot): number {
    let lo = 0;
    let hi = chunk.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.compare(chunk[mid] as Lot, lot) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  with(lot: Lot): LotOrder<Lot> {
    if (this.chunks.length === 0) return new LotOrder([[lot]], this.compare, 1);
    const c = this.chunkFor(lot);
    const chunk = [...(this.chunks[c] as readonly Lot[])];
    const i = this.indexIn(chunk, lot);
    assert(i === chunk.length || this.compare(chunk[i] as Lot, lot) !== 0, `lot ${lot.lot_id} is in the order once`);
    chunk.splice(i, 0, lot);
    const chunks = [...this.chunks];
    if (chunk.length > LOT_ORDER_CHUNK) {
      chunks.splice(c, 1, chunk.slice(0, chunk.length >>> 1), chunk.slice(chunk.length >>> 1));
    } else {
      chunks[c] = chunk;
    }
    return new LotOrder(chunks, this.compare, this.size + 1);
  }

  without(lot: Lot): LotOrder<Lot> {
    const c = this.chunkFor(lot);
    const old = this.chunks[c];
    const i = old === undefined ? -1 : this.indexIn(old, lot);
    assert(
      old !== undefined && i < old.length && this.compare(old[i] as Lot, lot) === 0,
      `lot ${lot.lot_id} is in the order`,
    );
    const chunk = [...old];
    chunk.splice(i, 1);
    const chunks = [...this.chunks];
    if (chunk.length === 0) chunks.splice(c, 1);
    else chunks[c] = chunk;
    return new LotOrder(chunks, this.compare, this.size - 1);
  }

  *[Symbol.iterator](): IterableIterator<Lot> {
    for (const chunk of this.chunks) yield* chunk;
  }
}
