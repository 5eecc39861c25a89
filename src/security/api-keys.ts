/**
 * Scoped API keys. A key is `oel_<8 hex>_<43 base64url>`: the first part (the prefix) names the
 * key in lists and logs and is not secret; the whole token is secret, shown once at creation,
 * and stored only as its SHA-256 (the token holds 32 random bytes, so a slow hash would add
 * nothing). Lookups go by that hash, through a per-isolate cache whose entries live
 * KEY_CACHE_TTL_MS, so a revocation takes effect everywhere within that time (and at once in
 * the isolate that revoked).
 */
import { ulid } from "ulid";
import { bytesToBase64url, bytesToHex } from "../encoding";

export const SCOPES = ["ledger:write", "ledger:read", "audit:read", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

/** How long a looked-up key is trusted before D1 is asked again. Bounds revocation delay. */
export const KEY_CACHE_TTL_MS = 5_000;
/** last_used_at is written at most this often per key (a write per request would be wasteful). */
export const KEY_LAST_USED_RESOLUTION_MS = 60_000;
export const KEY_NAME_LENGTH_MAX = 100;
/** Entries the per-isolate cache keeps at most (unknown tokens are not cached). */
const KEY_CACHE_ENTRIES_MAX = 10_000;
const KEY_SECRET_BYTES = 32;
const TOKEN_PATTERN = /^oel_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$/;

export interface Principal {
  /** "bootstrap" for the ADMIN_API_KEY secret, else the issued key's id. */
  key_id: string;
  /** Non-secret name of the key for logs: the token's prefix, or "bootstrap". */
  prefix: string;
  scopes: ReadonlySet<Scope>;
  /** A restricted key sees and moves only this account. */
  account_id: string | null;
}

export interface ApiKeyRecord {
  id: string;
  name: string;
  prefix: string;
  scopes: Scope[];
  account_id: string | null;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

interface Cached {
  principal: Principal;
  expiresAt: number;
  lastUsedWrittenAt: number;
}
const cache = new Map<string, Cached>();

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return bytesToHex(new Uint8Array(digest));
}

export async function createApiKey(
  db: D1Database,
  input: { name: string; scopes: Scope[]; account_id: string | null },
  now: Date,
): Promise<{ record: ApiKeyRecord; secret: string }> {
  const prefix = `oel_${bytesToHex(crypto.getRandomValues(new Uint8Array(4)))}`;
  const secret = `${prefix}_${bytesToBase64url(crypto.getRandomValues(new Uint8Array(KEY_SECRET_BYTES)))}`;
  const record: ApiKeyRecord = {
    id: `key_${ulid()}`,
    name: input.name,
    prefix,
    scopes: [...new Set(input.scopes)].sort() as Scope[],
    account_id: input.account_id,
    created_at: now.toISOString(),
    last_used_at: null,
    revoked_at: null,
  };
  await db
    .prepare(
      "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes, account_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(
      record.id,
      record.name,
      record.prefix,
      await sha256Hex(secret),
      JSON.stringify(record.scopes),
      record.account_id,
      record.created_at,
    )
    .run();
  return { record, secret };
}

interface ApiKeyRow {
  id: string;
  name: string;
  prefix: string;
  scopes: string;
  account_id: string | null;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

const RECORD_COLUMNS = "id, name, prefix, scopes, account_id, created_at, last_used_at, revoked_at";

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
 * Resolves a presented token to its principal, or null. `touch` receives the write that
 * records last_used_at (for waitUntil), at most once per KEY_LAST_USED_RESOLUTION_MS per key.
 */
export async function lookupApiKey(
  db: D1Database,
  token: string,
  nowMs: number,
  touch: (write: Promise<unknown>) => void,
): Promise<Principal | null> {
  if (!TOKEN_PATTERN.test(token)) return null;
  const hash = await sha256Hex(token);
  let entry = cache.get(hash);
  if (entry === undefined || entry.expiresAt <= nowMs) {
    const row = await db
      .prepare("SELECT id, prefix, scopes, account_id FROM api_keys WHERE secret_hash = ? AND revoked_at IS NULL")
      .bind(hash)
      .first<{ id: string; prefix: string; scopes: string; account_id: string | null }>();
    if (row === null) {
      cache.delete(hash);
      return null;
    }
    if (cache.size >= KEY_CACHE_ENTRIES_MAX) cache.clear();
    entry = {
      principal: {
        key_id: row.id,
        prefix: row.prefix,
        scopes: new Set(JSON.parse(row.scopes) as Scope[]),
        account_id: row.account_id,
      },
      expiresAt: nowMs + KEY_CACHE_TTL_MS,
      lastUsedWrittenAt: entry?.lastUsedWrittenAt ?? 0,
    };
    cache.set(hash, entry);
  }
  if (nowMs - entry.lastUsedWrittenAt >= KEY_LAST_USED_RESOLUTION_MS) {
    entry.lastUsedWrittenAt = nowMs;
    touch(
      db
        .prepare("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
        .bind(new Date(nowMs).toISOString(), entry.principal.key_id)
        .run(),
    );
  }
  return entry.principal;
}

/** Adds one to a per-minute security counter (auth failures, rate-limit hits). */
export function countSecurityEvent(db: D1Database, counter: string, subject: string, nowMs: number): Promise<unknown> {
  const minute = new Date(nowMs).toISOString().slice(0, 16);
  return db
    .prepare(
      "INSERT INTO security_counters (minute, counter, subject, count) VALUES (?, ?, ?, 1) ON CONFLICT (minute, counter, subject) DO UPDATE SET count = count + 1",
    )
    .bind(minute, counter, subject)
    .run();
}

export function hasScope(principal: Principal, scope: Scope): boolean {
  // An admin key may do everything; every other scope grants only itself.
  return principal.scopes.has("admin") || principal.scopes.has(scope);
}
