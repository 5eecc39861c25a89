/**
 * The read side spans N D1 databases (shards), declared in the Wrangler configuration as the
 * bindings `DB` (shard 0), `DB_1`, ..., `DB_{N-1}`: N is the number of consecutive bindings, so
 * adding a database is adding a binding (docs/read-side.md, "Shards").
 *
 * An account lives in one shard, chosen by a stable hash of its id (jump consistent hash over
 * FNV-1a 64): growing N from n to m moves only the accounts that the new shards take, about
 * (m - n) / m of them, and never moves an account between two old shards.
 *
 * Shard 0 (`DB`) is also the control database: API keys, prices, security counters, the
 * projection's dead letters and the sweep's state live only there.
 */
import { guardD1 } from "./d1";

/** Most shards a deployment may declare (bounds a cross-shard report's fan-out). */
export const READ_SHARDS_MAX = 64;

export interface Shard {
  index: number;
  db: D1Database;
}

/** The shards of an environment: `DB`, `DB_1`, `DB_2`, ... while they exist. */
export function shardsOf(env: object): Shard[] {
  const bindings = env as Record<string, unknown>;
  const shards: Shard[] = [];
  for (let index = 0; index < READ_SHARDS_MAX; index++) {
    const db = bindings[index === 0 ? "DB" : `DB_${index}`];
    if (!isD1(db)) break;
    shards.push({ index, db: guardD1(db as D1Database) });
  }
  if (shards.length === 0) throw new Error("no read-side database: bind DB (wrangler.toml [[d1_databases]])");
  return shards;
}

/** Shard 0, the control database (keys, prices, webhooks, dead letters), its failures as D1Failure. */
export function controlDb(env: { DB: D1Database }): D1Database {
  return guardD1(env.DB);
}

function isD1(value: unknown): boolean {
  return typeof value === "object" && value !== null && typeof (value as D1Database).prepare === "function";
}

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK_64 = (1n << 64n) - 1n;

/** FNV-1a, 64 bits, over the UTF-8 bytes of a string. */
export function fnv1a64(text: string): bigint {
  let hash = FNV_OFFSET;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= BigInt(byte);
    hash = (hash * FNV_PRIME) & MASK_64;
  }
  return hash;
}

/** Jump consistent hash (Lamping and Veach, 2014): a bucket in [0, buckets). */
export function jumpHash(key: bigint, buckets: number): number {
  let k = key & MASK_64;
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    k = (k * 2862933555777941757n + 1n) & MASK_64;
    // As the reference: (b + 1) * (2^31 / ((key >> 33) + 1)) in doubles, truncated.
    j = Math.floor((b + 1) * (2 ** 31 / (Number(k >> 33n) + 1)));
  }
  return b;
}

/** The shard index of an account among `count` shards. Stable: a pure function of the id. */
export function shardIndexOf(accountId: string, count: number): number {
  if (count <= 1) return 0;
  return jumpHash(fnv1a64(accountId), count);
}

/** The shard that holds an account. */
export function shardFor(shards: readonly Shard[], accountId: string): Shard {
  const shard = shards[shardIndexOf(accountId, shards.length)];
  if (shard === undefined) throw new Error("shard out of range");
  return shard;
}
