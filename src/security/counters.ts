/**
 * Security counters (failed authentications, rate-limit refusals), counted in memory per isolate
 * and written to D1 `security_counters` (migrations/0002_security.sql) in aggregate: strangers
 * cost no D1 write on the request path.
 *
 * - `countSecurityEvent` adds one to a (minute, counter, subject) cell in this isolate's memory.
 * - `flushSecurityCountersIfDue` hands back, at most once per SECURITY_COUNTERS_FLUSH_INTERVAL_MS
 *   per isolate, ONE D1 statement that upserts every pending cell (`count = count + excluded.count`);
 *   the caller runs it off the request path (`waitUntil`). The interval starts at the isolate's
 *   first counted event, so a flood costs one write per isolate per minute, however large.
 * - `maintainSecurityCounters` (the scheduled sweep) flushes what is due and prunes rows older
 *   than SECURITY_COUNTERS_RETENTION_MS, at most SECURITY_COUNTERS_PRUNE_ROWS_MAX rows per run.
 *
 * Counts are best effort by design: an isolate evicted before its next flush loses at most one
 * interval of counts, which is acceptable for spike alerting and keeps strangers free. Memory is
 * bounded by SECURITY_COUNTERS_PENDING_MAX cells; past it, new subjects fold into "other". The
 * cells hold counters and non-secret subjects only (a reason, a key prefix, "bootstrap",
 * "address"), never a presented key or a client address.
 */
import { type LogEnv, writeLog } from "../observability/log";
import { recordAuthFailure, recordD1Failure, recordRateLimited } from "../observability/metrics";
import { controlDb } from "../read-side/shards";

/** What the counters need from the Worker's environment. */
export interface CountersEnv extends LogEnv {
  DB: D1Database;
}

/** A flush is handed out at most this often per isolate. */
export const SECURITY_COUNTERS_FLUSH_INTERVAL_MS = 60_000;
/** Distinct (minute, counter, subject) cells kept in memory between flushes; more fold into "other". */
export const SECURITY_COUNTERS_PENDING_MAX = 500;
/** Rows older than this are pruned by the scheduled sweep. */
export const SECURITY_COUNTERS_RETENTION_MS = 30 * 24 * 3_600_000;
/** Rows deleted per scheduled run at most (each deleted row is a row written). */
export const SECURITY_COUNTERS_PRUNE_ROWS_MAX = 1_000;

/**
 * `auth_failed`: by "missing" (no bearer token) or "invalid" (anything else), whether answered
 * 401 or 429. `rate_limited`: by the issued key's prefix, "bootstrap", or "address" (an address
 * past its authentication-failure budget).
 */
export type SecurityCounter = "auth_failed" | "rate_limited";

export interface SecurityCount {
  minute: string;
  counter: SecurityCounter;
  subject: string;
  count: number;
}

const pending = new Map<string, SecurityCount>();
/** When the current interval started; null before this isolate's first event. */
let intervalStartedAt: number | null = null;

const UPSERT =
  "INSERT INTO security_counters (minute, counter, subject, count) " +
  "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]') " +
  "FROM json_each(?) WHERE true " +
  "ON CONFLICT (minute, counter, subject) DO UPDATE SET count = count + excluded.count";

const minuteOf = (nowMs: number) => new Date(nowMs).toISOString().slice(0, 16);

function add(minute: string, counter: SecurityCounter, subject: string, count: number): void {
  let key = `${minute}\u0000${counter}\u0000${subject}`;
  if (!pending.has(key) && pending.size >= SECURITY_COUNTERS_PENDING_MAX) {
    subject = "other";
    key = `${minute}\u0000${counter}\u0000${subject}`;
  }
  const cell = pending.get(key);
  if (cell === undefined) pending.set(key, { minute, counter, subject, count });
  else cell.count += count;
}

/** Adds one to a per-minute counter in this isolate's memory. Never touches D1. */
export function countSecurityEvent(counter: SecurityCounter, subject: string, nowMs: number): void {
  add(minuteOf(nowMs), counter, subject, 1);
  // The same event in the monitor's metrics (flushed every few seconds, for the alert rules).
  if (counter === "auth_failed") recordAuthFailure(nowMs);
  else recordRateLimited(nowMs);
  intervalStartedAt ??= nowMs;
}

/** The counts not yet written (a copy), for tests and diagnostics. */
export function pendingSecurityCounts(): SecurityCount[] {
  return [...pending.values()].map((cell) => ({ ...cell }));
}

/**
 * The write of everything pending, as one statement, when an interval has passed since the
 * last one (or the clock went backwards); null when nothing is due. Run it with `waitUntil`.
 */
export function flushSecurityCountersIfDue(env: CountersEnv, nowMs: number): Promise<void> | null {
  if (pending.size === 0 || intervalStartedAt === null) return null;
  const elapsed = nowMs - intervalStartedAt;
  if (elapsed >= 0 && elapsed < SECURITY_COUNTERS_FLUSH_INTERVAL_MS) return null;
  return flushSecurityCounters(env, nowMs);
}

/** Writes everything pending now, as one statement, and starts a new interval. */
export async function flushSecurityCounters(env: CountersEnv, nowMs: number): Promise<void> {
  intervalStartedAt = nowMs;
  if (pending.size === 0) return;
  const cells = [...pending.values()];
  pending.clear();
  try {
    await controlDb(env)
      .prepare(UPSERT)
      .bind(JSON.stringify(cells.map((c) => [c.minute, c.counter, c.subject, c.count])))
      .run();
  } catch (error) {
    // Kept for the next flush rather than lost (still bounded by SECURITY_COUNTERS_PENDING_MAX).
    for (const c of cells) add(c.minute, c.counter, c.subject, c.count);
    recordD1Failure(nowMs, "write:security_counters");
    writeLog(env, "error", { msg: "security_counters_flush_failed", error: (error as Error).message });
  }
}

/** Deletes at most SECURITY_COUNTERS_PRUNE_ROWS_MAX rows older than the retention; returns how many. */
export async function pruneSecurityCounters(db: D1Database, nowMs: number): Promise<number> {
  const result = await db
    .prepare(
      "DELETE FROM security_counters WHERE (minute, counter, subject) IN " +
        "(SELECT minute, counter, subject FROM security_counters WHERE minute < ? ORDER BY minute LIMIT ?)",
    )
    .bind(minuteOf(nowMs - SECURITY_COUNTERS_RETENTION_MS), SECURITY_COUNTERS_PRUNE_ROWS_MAX)
    .run();
  return result.meta.changes ?? 0;
}

/** The scheduled part: this isolate's due counts are written, old rows pruned (bounded). */
export async function maintainSecurityCounters(env: CountersEnv, nowMs: number): Promise<{ pruned: number }> {
  await flushSecurityCountersIfDue(env, nowMs);
  try {
    const pruned = await pruneSecurityCounters(controlDb(env), nowMs);
    if (pruned > 0) writeLog(env, "log", { msg: "security_counters_pruned", rows: pruned });
    return { pruned };
  } catch (error) {
    // The next run (a minute later) tries again; nothing is lost by waiting.
    writeLog(env, "error", { msg: "security_counters_prune_failed", error: (error as Error).message });
    return { pruned: 0 };
  }
}
