/**
 * Retention of the D1 read side (issue 12): raw events are a window, hourly rollups are kept for
 * a while, daily rollups forever. The scheduled handler (src/index.ts) calls `pruneReadSide` once
 * a minute per database; each run deletes at most a bounded number of rows.
 *
 * The raw-event window is [cutoff, now), where the cutoff is the later of:
 * - now minus RAW_EVENTS_WINDOW_DAYS, and
 * - the end of the newest bucket at which the window's estimated bytes (events counted by the
 *   rollups, newest first, times RAW_EVENT_BYTES_PER_ROW) pass RAW_EVENTS_WINDOW_BYTES_MAX: an
 *   hour where hourly rows are kept, a day before.
 * No event at or after the cutoff is ever deleted: raw events are stored in sealed pages
 * (src/projection/producer/message.ts), and a page leaves when its newest event is before the cutoff. The cutoff is recorded (`sweep_state`) when a prune first
 * removes events before it, so the reports can say from when the window is complete.
 *
 * Every statement is idempotent and depends only on the rows' times, so two runs at once, or a
 * run per shard, are safe. Arithmetic and defaults: docs/read-side.md#retention.
 */

import type { RetentionConfig } from "../../config";
import { rollupsOver } from "../rollups";
import { PROJECTION_PAGE_EVENTS } from "../wire";

/**
 * Bytes one raw event takes in D1 (its share of a sealed page, of the page's overflow pages and
 * index entries, and of its account's tail), rounded up from the 352 measured:
 * test/projection/retention.test.ts applies the projection's messages of 2,000 captures carrying
 * a request id, service, provider, model, alias and usage (10 accounts of 200 events: 12 sealed
 * pages and a tail of 8 each) and reads D1's own `size_after`, and checks this stays an upper
 * bound within 30%. A page's JSON is about 326 bytes an event; the rest is SQLite's overhead (555
 * when `event_pages` was WITHOUT ROWID: a 5 KB page then spilled into two overflow pages).
 */
export const RAW_EVENT_BYTES_PER_ROW = 380;

/** What one run may delete: bounded work and rows written per minute. */
export interface PruneLimits {
  /** Raw events deleted per run at most (each run is one cron tick: 100,000 a minute keeps up with ~1,600 events/s). */
  eventsPerRun: number;
  /** Raw events per DELETE statement (one D1 batch each, well inside D1's 30 s per query). */
  eventsPerStatement: number;
  /** Hourly rollup rows deleted per run at most. */
  hourlyRowsPerRun: number;
}

export const RAW_EVENTS_PRUNE_ROWS_MAX = 100_000;
export const RAW_EVENTS_PRUNE_STATEMENT_ROWS_MAX = 5_000;
export const ROLLUPS_PRUNE_ROWS_MAX = 50_000;
export const PRUNE_LIMITS: PruneLimits = {
  eventsPerRun: RAW_EVENTS_PRUNE_ROWS_MAX,
  eventsPerStatement: RAW_EVENTS_PRUNE_STATEMENT_ROWS_MAX,
  hourlyRowsPerRun: ROLLUPS_PRUNE_ROWS_MAX,
};

/** `sweep_state` key: the time from which `ledger_events` is complete (absent: since the start). */
export const RAW_EVENTS_COMPLETE_FROM_KEY = "raw_events_complete_from";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

export interface PruneReport {
  /** Start of the raw-event window: events before it were deleted, or are next. */
  cutoff: string;
  /** Whether the cutoff came from the bytes bound rather than the days. */
  bytes_bound: boolean;
  events_deleted: number;
  /** Sealed pages deleted (each up to PROJECTION_PAGE_EVENTS events). */
  pages_deleted: number;
  hourly_rollups_deleted: number;
}

const iso = (ms: number) => new Date(ms).toISOString();
const floorHour = (ms: number) => Math.floor(ms / HOUR_MS) * HOUR_MS;
const floorDay = (ms: number) => Math.floor(ms / DAY_MS) * DAY_MS;
const ceilDay = (ms: number) => Math.ceil(ms / DAY_MS) * DAY_MS;

/** One bounded prune of one read-side database at `nowMs`. */
export async function pruneReadSide(
  db: D1Database,
  config: RetentionConfig,
  nowMs: number,
  limits: PruneLimits = PRUNE_LIMITS,
): Promise<PruneReport> {
  const byDays = iso(nowMs - config.rawEventsWindowDays * DAY_MS);
  const byBytes = await bytesCutoff(db, config, nowMs);
  const cutoff = byBytes !== null && byBytes > byDays ? byBytes : byDays;
  const raw = await pruneRawEvents(db, cutoff, limits);
  const hourlyCutoff = iso(floorHour(nowMs - config.hourlyRetentionDays * DAY_MS));
  const hourly = await pruneHourlyRollups(db, hourlyCutoff, limits.hourlyRowsPerRun);
  return { cutoff, bytes_bound: cutoff !== byDays, ...raw, hourly_rollups_deleted: hourly };
}

/**
 * The cutoff that keeps the window's estimated bytes under the bound, or null if it holds
 * already. D1 reports the database's real size (`meta.size_after`); while the whole database is
 * under the bound, so are its raw events, and nothing is counted. Otherwise the rollups count
 * the events per bucket, newest first: hourly rows from the first whole day they are all kept,
 * daily rows before (a few thousand aggregated rows through the time index, never the events).
 * Buckets partly before the days bound count whole: the estimate only errs on the large side.
 */
async function bytesCutoff(db: D1Database, config: RetentionConfig, nowMs: number): Promise<string | null> {
  const size = (await db.prepare("SELECT 1").run()).meta.size_after;
  if (typeof size === "number" && size <= config.rawEventsWindowBytesMax) return null;
  const windowFrom = nowMs - config.rawEventsWindowDays * DAY_MS;
  const hoursFrom = Math.max(floorHour(windowFrom), ceilDay(nowMs - config.hourlyRetentionDays * DAY_MS));
  const source = rollupsOver(iso(floorDay(windowFrom)), null);
  const buckets = await db
    .prepare(
      `SELECT grain, bucket, SUM(events) AS n FROM ${source.sql}
       WHERE (grain = 'hour' AND bucket >= ?) OR (grain = 'day' AND bucket >= ? AND bucket < ?)
       GROUP BY grain, bucket ORDER BY bucket DESC`,
    )
    // Whole days before the hours (none when the hours reach back to the window's start).
    .bind(...source.binds, iso(hoursFrom), iso(floorDay(windowFrom)), iso(floorDay(hoursFrom)))
    .all<{ grain: "hour" | "day"; bucket: string; n: number }>();
  let bytes = 0;
  for (const b of buckets.results) {
    bytes += b.n * RAW_EVENT_BYTES_PER_ROW;
    // This bucket does not fit: the window starts after it.
    if (bytes > config.rawEventsWindowBytesMax)
      return iso(Date.parse(b.bucket) + (b.grain === "hour" ? HOUR_MS : DAY_MS));
  }
  return null;
}

// The oldest sealed pages wholly before the cutoff, in the time index's order: a page leaves only
// when its newest event is before the cutoff, so no event inside the window is ever deleted. An
// account's tail (its unsealed page, in its accounts row) stays: at most PROJECTION_PAGE_EVENTS - 1
// events per account older than the window.
const OLDEST = `SELECT account_id, first_seq, last_seq FROM event_pages
  WHERE first_at < ?1 AND last_at < ?1 ORDER BY first_at LIMIT ?2`;

async function pruneRawEvents(
  db: D1Database,
  cutoff: string,
  limits: PruneLimits,
): Promise<{ events_deleted: number; pages_deleted: number }> {
  const record = db
    .prepare(
      `INSERT INTO sweep_state (key, value) SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM event_pages WHERE first_at < ?2)
       ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)`,
    )
    .bind(RAW_EVENTS_COMPLETE_FROM_KEY, cutoff);
  let events = 0;
  let pages = 0;
  // Sealed pages hold exactly PROJECTION_PAGE_EVENTS events: whole pages within both bounds.
  const pagesPerStatement = Math.floor(limits.eventsPerStatement / PROJECTION_PAGE_EVENTS);
  if (pagesPerStatement < 1) throw new Error(`eventsPerStatement must hold a page (${PROJECTION_PAGE_EVENTS} events)`);
  for (;;) {
    const n = Math.min(pagesPerStatement, Math.floor((limits.eventsPerRun - events) / PROJECTION_PAGE_EVENTS));
    if (n < 1) break;
    const [, counted, deleted] = await db.batch([
      record,
      db.prepare(`SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) AS n FROM (${OLDEST})`).bind(cutoff, n),
      db
        .prepare(
          `DELETE FROM event_pages WHERE (account_id, first_seq) IN (SELECT account_id, first_seq FROM (${OLDEST}))`,
        )
        .bind(cutoff, n),
    ]);
    events += (counted?.results?.[0] as { n: number } | undefined)?.n ?? 0;
    const changes = deleted?.meta.changes ?? 0;
    pages += changes;
    if (changes < n) break;
  }
  return { events_deleted: events, pages_deleted: pages };
}

async function pruneHourlyRollups(db: D1Database, cutoff: string, rowsMax: number): Promise<number> {
  const result = await db
    .prepare(
      `DELETE FROM rollup_rows WHERE grain = 'hour' AND (account_id, grain, bucket, service_id, provider, model, alias) IN
         (SELECT account_id, grain, bucket, service_id, provider, model, alias FROM rollup_rows
          WHERE grain = 'hour' AND bucket < ? ORDER BY bucket LIMIT ?)`,
    )
    .bind(cutoff, rowsMax)
    .run();
  return result.meta.changes ?? 0;
}
