/**
 * Scoped API keys. A key is `oel_<8 hex>_<43 base64url>`: the first part (the prefix) names the
 * key in lists and logs and is not secret; the whole token is secret, shown once at creation,
 * and stored only as its SHA-256 (the token holds 32 random bytes, so a slow hash would add
 * nothing). Lookups go by that hash, through a per-isolate cache whose entries live
 * KEY_CACHE_TTL_MS, so a revocation takes effect everywhere within that time (and at once in
 * the isolate that revoked). Tokens that name no key are remembered too, for
 * UNKNOWN_KEY_CACHE_TTL_MS in at most UNKNOWN_KEY_CACHE_ENTRIES_MAX entries, so a stranger
 * repeating a made-up token costs no D1 read.
 *
 * Scopes are least privilege (docs/security.md has the table): `ledger:write` spends (reserve,
 * capture, release, extend, charge, batch of those), `ledger:refund` refunds, `ledger:fund`
 * credits, `ledger:read` and `audit:read` read, `admin` administers. An `admin` key may do
 * everything (it could issue itself any key anyway), but never on a key restricted to one
 * account: such a key cannot be created, and a legacy row that has both is denied `admin`.
 */

import { bytesToBase64url, bytesToHex } from "../encoding";
import { newUlid } from "../ids";
import { recordBackgroundFailure, recordD1Failure } from "../observability/metrics";

export const SCOPES = ["ledger:write", "ledger:refund", "ledger:fund", "ledger:read", "audit:read", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

/** How long a looked-up key is trusted before D1 is asked again. Bounds revocation delay. */
export const KEY_CACHE_TTL_MS = 5_000;
/** last_used_at is written at most this often per key (a write per request would be wasteful). */
export const KEY_LAST_USED_RESOLUTION_MS = 60_000;
export const KEY_NAME_LENGTH_MAX = 100;
/** Entries the per-isolate cache of valid keys keeps at most (the oldest is evicted first). */
export const KEY_CACHE_ENTRIES_MAX = 10_000;
/**
 * How long a token that names no key is answered from memory. Short, because a key created
 * meanwhile is not affected (a new key's token cannot have been presented before it existed)
 * and this only spares D1 from repeats.
 */
export const UNKNOWN_KEY_CACHE_TTL_MS = 10_000;
/**
 * Unknown tokens remembered per isolate at most; the oldest is evicted first, so a flood of
 * random tokens cannot grow memory (about 100 bytes an entry).
 */
export const UNKNOWN_KEY_CACHE_ENTRIES_MAX = 1_000;
const KEY_SECRET_BYTES = 32;
const TOKEN_PATTERN = /^oel_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$/;

/**
 * The bootstrap ADMIN_API_KEY must hold at least 32 random bytes, like CONFIG_ENCRYPTION_KEY.
 * It must be visible ASCII (a bearer token cannot carry whitespace: a pasted newline would lock
 * the door silently). A string cannot prove its randomness, so three checks stand for it:
 * - at least ADMIN_API_KEY_LENGTH_MIN characters: 43 is 32 bytes in unpadded base64url, the
 *   shortest common spelling of 32 bytes (`openssl rand -base64 32` gives 44, `-hex 32` 64,
 *   `npm start` 53);
 * - not a repetition of a shorter block ("abcabc...", "aaaa...");
 * - a character-frequency entropy estimate (length x Shannon entropy of its characters) of at
 *   least ADMIN_API_KEY_ENTROPY_BITS_MIN: random keys of the lengths above score 200 bits or
 *   more, placeholders made of a few characters score far less.
 */
export const ADMIN_API_KEY_LENGTH_MIN = 43;
export const ADMIN_API_KEY_ENTROPY_BITS_MIN = 128;

export interface Principal {
  /** "bootstrap" for the ADMIN_API_KEY secret, else the issued key's id. */
  key_id: string;
  /** Non-secret name of the key for logs: the token's prefix, or "bootstrap". */
  prefix: string;
  scopes: ReadonlySet<Scope>;
  /** A restricted key sees and moves only this account. */
  account_id: string | null;
  /** A key bound to a project (issue 28): its reserves and charges are for this project. */
  project_id: string | null;
}

export interface ApiKeyRecord {
  id: string;
  name: string;
  prefix: string;
  scopes: Scope[];
  account_id: string | null;
  project_id: string | null;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

interface Cached {
  principal: Principal;
  expiresAt: number;
  lastUsedWrittenAt: number;
}
/**
 * Valid keys by hash. An expired entry stays (until evicted) as a key this isolate has known:
 * it is looked up again, but as a known key, not as a stranger's token (src/http/auth.ts).
 */
const cache = new Map<string, Cached>();
/** Tokens that named no key, by hash: when the answer expires. */
const unknown = new Map<string, number>();

/** Sets `key` as the newest entry of `map`, evicting the oldest past `max`. */
function remember<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  while (map.size >= max) {
    const oldest = map.keys().next();
    if (oldest.done === true) break;
    map.delete(oldest.value);
  }
  map.set(key, value);
}

/** Sizes of the per-isolate caches (tests, diagnostics). */
export function keyCacheSizes(): { known: number; unknown: number } {
  return { known: cache.size, unknown: unknown.size };
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return bytesToHex(new Uint8Array(digest));
}

/** Creates a key. `admin` with `account_id` is refused (the schema refuses it first, with its field). */
export async function createApiKey(
  db: D1Database,
  input: { name: string; scopes: Scope[]; account_id: string | null; project_id: string | null },
  now: Date,
): Promise<{ record: ApiKeyRecord; secret: string }> {
  if (input.account_id !== null && input.scopes.includes("admin")) {
    throw new RangeError("an admin key cannot be restricted to one account");
  }
  const prefix = `oel_${bytesToHex(crypto.getRandomValues(new Uint8Array(4)))}`;
  const secret = `${prefix}_${bytesToBase64url(crypto.getRandomValues(new Uint8Array(KEY_SECRET_BYTES)))}`;
  const hash = await sha256Hex(secret);
  const record: ApiKeyRecord = {
    id: `key_${newUlid()}`,
    name: input.name,
    prefix,
    scopes: [...new Set(input.scopes)].sort() as Scope[],
    account_id: input.account_id,
    project_id: input.project_id,
    created_at: now.toISOString(),
    last_used_at: null,
    revoked_at: null,
  };
  await db
    .prepare(
      "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes, account_id, project_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(
      record.id,
      record.name,
      record.prefix,
      hash,
      JSON.stringify(record.scopes),
      record.account_id,
      record.project_id,
      record.created_at,
    )
    .run();
  unknown.delete(hash);
  return { record, secret };
}

interface ApiKeyRow {
  id: string;
  name: string;
  prefix: string;
  scopes: string;
  account_id: string | null;
  project_id: string | null;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

const RECORD_COLUMNS = "id, name, prefix, scopes, account_id, project_id, created_at, last_used_at, revoked_at";

function toRecord(row: ApiKeyRow): ApiKeyRecord {
  return { ...row, scopes: JSON.parse(row.scopes) as Scope[] };
}

export async function listApiKeys(db: D1Database, afterId: string, limit: number): Promise<ApiKeyRecord[]> {
  const rows = await db
    .prepare(`SELECT ${RECORD_COLUMNS} FROM api_keys WHERE id > ? ORDER BY id LIMIT ?`)
    .bind(afterId, limit)
    .all<ApiKeyRow>();
  return rows.results.map(toRecord);
}

/** Revokes a key; returns its record, or null if there is no such key. Idempotent. */
export async function revokeApiKey(db: D1Database, id: string, now: Date): Promise<ApiKeyRecord | null> {
  await db
    .prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
    .bind(now.toISOString(), id)
    .run();
  const row = await db.prepare(`SELECT ${RECORD_COLUMNS} FROM api_keys WHERE id = ?`).bind(id).first<ApiKeyRow>();
  // This isolate forgets the key at once; others within KEY_CACHE_TTL_MS.
  for (const [hash, entry] of cache) if (entry.principal.key_id === id) cache.delete(hash);
  return row === null ? null : toRecord(row);
}

/**
 * What this isolate knows about a presented token without asking D1:
 * - "malformed": not shaped like a key; it names none;
 * - "valid": a key seen valid within KEY_CACHE_TTL_MS (`principal` is set);
 * - "unknown": a token that named no key within UNKNOWN_KEY_CACHE_TTL_MS;
 * - "known": a key seen valid before, whose entry expired: D1 must confirm it again;
 * - "unseen": never seen here: only D1 can tell (a stranger's token costs this lookup).
 */
export interface KeyProbe {
  status: "malformed" | "valid" | "unknown" | "known" | "unseen";
  hash: string;
  principal: Principal | null;
}

export async function probeApiKey(token: string, nowMs: number): Promise<KeyProbe> {
  if (!TOKEN_PATTERN.test(token)) return { status: "malformed", hash: "", principal: null };
  const hash = await sha256Hex(token);
  const entry = cache.get(hash);
  if (entry !== undefined) {
    return entry.expiresAt > nowMs
      ? { status: "valid", hash, principal: entry.principal }
      : { status: "known", hash, principal: null };
  }
  const until = unknown.get(hash);
  if (until !== undefined && until > nowMs) return { status: "unknown", hash, principal: null };
  return { status: "unseen", hash, principal: null };
}

/**
 * Completes a probe: for "known" and "unseen", asks D1 and remembers the answer (valid or
 * unknown). Returns the principal, or null. `touch` receives the write that records
 * last_used_at (for waitUntil), at most once per KEY_LAST_USED_RESOLUTION_MS per key.
 */
export async function resolveApiKey(
  db: D1Database,
  probe: KeyProbe,
  nowMs: number,
  touch: (write: Promise<unknown>) => void,
): Promise<Principal | null> {
  if (probe.status === "malformed" || probe.status === "unknown") return null;
  let entry = cache.get(probe.hash);
  if (probe.status !== "valid" || entry === undefined) {
    const row = await db
      .prepare(
        "SELECT id, prefix, scopes, account_id, project_id FROM api_keys WHERE secret_hash = ? AND revoked_at IS NULL",
      )
      .bind(probe.hash)
      .first<{ id: string; prefix: string; scopes: string; account_id: string | null; project_id: string | null }>()
      .catch((error: unknown) => {
        recordD1Failure(nowMs, "read:key_lookup");
        throw error;
      });
    if (row === null) {
      cache.delete(probe.hash);
      remember(unknown, probe.hash, nowMs + UNKNOWN_KEY_CACHE_TTL_MS, UNKNOWN_KEY_CACHE_ENTRIES_MAX);
      return null;
    }
    unknown.delete(probe.hash);
    entry = {
      principal: {
        key_id: row.id,
        prefix: row.prefix,
        scopes: new Set(JSON.parse(row.scopes) as Scope[]),
        account_id: row.account_id,
        project_id: row.project_id,
      },
      expiresAt: nowMs + KEY_CACHE_TTL_MS,
      lastUsedWrittenAt: entry?.lastUsedWrittenAt ?? 0,
    };
    remember(cache, probe.hash, entry, KEY_CACHE_ENTRIES_MAX);
  }
  if (nowMs - entry.lastUsedWrittenAt >= KEY_LAST_USED_RESOLUTION_MS) {
    entry.lastUsedWrittenAt = nowMs;
    touch(
      db
        .prepare("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
        .bind(new Date(nowMs).toISOString(), entry.principal.key_id)
        .run()
        .catch((error: unknown) => {
          // Work after the response (waitUntil): counted, never thrown at nobody.
          recordD1Failure(nowMs, "write:key_last_used");
          recordBackgroundFailure(nowMs, "key_last_used");
          throw error;
        }),
    );
  }
  return entry.principal;
}

export function hasScope(principal: Principal, scope: Scope): boolean {
  // A key restricted to one account never holds admin, even a row written before that rule.
  if (principal.account_id !== null) return scope !== "admin" && principal.scopes.has(scope);
  // An admin key may do everything; every other scope grants only itself.
  return principal.scopes.has("admin") || principal.scopes.has(scope);
}

/**
 * Why the bootstrap ADMIN_API_KEY may not be used (the message names the variable, never its
 * value), or null when it is acceptable. Unset means "no bootstrap key" and is acceptable: the
 * door is then locked, never open.
 */
export function bootstrapKeyProblem(key: string | undefined): string | null {
  if (key === undefined) return null;
  if (checkedBootstrap?.key !== key) checkedBootstrap = { key, problem: checkBootstrapKey(key) };
  return checkedBootstrap.problem;
}

/** The last verdict (an isolate sees one bootstrap key; a rotated one replaces it). */
let checkedBootstrap: { key: string; problem: string | null } | undefined;

function checkBootstrapKey(key: string): string | null {
  if (typeof key !== "string") return "ADMIN_API_KEY is not a string";
  // A bearer token is visible ASCII; a pasted newline would make the key impossible to present.
  if (!/^[\x21-\x7e]*$/.test(key)) return "ADMIN_API_KEY contains whitespace or characters a bearer token cannot carry";
  if (key.length < ADMIN_API_KEY_LENGTH_MIN) {
    return `ADMIN_API_KEY has ${key.length} characters; at least ${ADMIN_API_KEY_LENGTH_MIN} (32 random bytes, base64url) are required`;
  }
  for (let period = 1; period <= key.length / 2; period++) {
    let repeats = true;
    for (let i = period; i < key.length && repeats; i++) repeats = key[i] === key[i - period];
    if (repeats) return "ADMIN_API_KEY is not random (it repeats a shorter block)";
  }
  if (estimatedEntropyBits(key) < ADMIN_API_KEY_ENTROPY_BITS_MIN) {
    return `ADMIN_API_KEY is not random enough (fewer than ${ADMIN_API_KEY_ENTROPY_BITS_MIN} bits by character frequency)`;
  }
  return null;
}

/** Length times the Shannon entropy of the text's character frequencies, in bits. */
function estimatedEntropyBits(text: string): number {
  const counts = new Map<string, number>();
  for (const ch of text) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) bits -= n * Math.log2(n / text.length);
  return bits;
}
