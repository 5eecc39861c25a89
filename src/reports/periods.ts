/**
 * Periods over the rollups (src/projection/rollups.ts): which hour and day rows cover a time
 * range. Pure.
 *
 * A range [from, to) with whole UTC hours for bounds is covered by the daily rows of the whole
 * days inside it and the hourly rows of the partial days at its edges. Daily rows are kept
 * forever; hourly rows for ROLLUPS_HOURLY_RETENTION_DAYS (src/projection/consumer/retention.ts), so a
 * range whose edges are not whole days must have them within that retention.
 */
import type { RollupGrain } from "../projection/rollups";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** One part of a cover: rows of `grain` with `from <= bucket < to` (null: unbounded). */
export interface Segment {
  grain: RollupGrain;
  from: string | null;
  to: string | null;
}

const iso = (ms: number) => new Date(ms).toISOString();
const floorTo = (ms: number, size: number) => Math.floor(ms / size) * size;
const ceilTo = (ms: number, size: number) => Math.ceil(ms / size) * size;

export function isWholeHour(time: string): boolean {
  return Date.parse(time) % HOUR_MS === 0;
}

export function isWholeDay(time: string): boolean {
  return Date.parse(time) % DAY_MS === 0;
}

/**
 * The rollup segments that cover [from, to) exactly (null bounds are unbounded). Both bounds
 * must be whole hours; whole days use only daily rows.
 */
export function coverPeriod(from: string | null, to: string | null): Segment[] {
  if (from !== null && !isWholeHour(from)) throw new Error(`not a whole hour: ${from}`);
  if (to !== null && !isWholeHour(to)) throw new Error(`not a whole hour: ${to}`);
  const fromMs = from === null ? null : Date.parse(from);
  const toMs = to === null ? null : Date.parse(to);
  if (fromMs !== null && toMs !== null && fromMs >= toMs) return [];
  const firstDay = fromMs === null ? null : ceilTo(fromMs, DAY_MS);
  const endDay = toMs === null ? null : floorTo(toMs, DAY_MS);
  if (fromMs !== null && toMs !== null && firstDay !== null && endDay !== null && firstDay > endDay) {
    // Inside one day: hours only.
    return [{ grain: "hour", from: iso(fromMs), to: iso(toMs) }];
  }
  const segments: Segment[] = [];
  if (fromMs !== null && firstDay !== null && fromMs < firstDay) {
    segments.push({ grain: "hour", from: iso(fromMs), to: iso(firstDay) });
  }
  if (firstDay === null || endDay === null || firstDay < endDay) {
    segments.push({
      grain: "day",
      from: firstDay === null ? null : iso(firstDay),
      to: endDay === null ? null : iso(endDay),
    });
  }
  if (toMs !== null && endDay !== null && endDay < toMs) {
    segments.push({ grain: "hour", from: iso(endDay), to: iso(toMs) });
  }
  return segments;
}

/**
 * The first hour whose hourly rows are certainly still kept at `nowMs`: the prune removes hours
 * older than the retention counted from ITS time, which is never later than now.
 */
export function hourlyKeptFrom(nowMs: number, hourlyRetentionDays: number): string {
  return iso(ceilTo(nowMs - hourlyRetentionDays * DAY_MS, HOUR_MS));
}

/** The hourly segments of a cover that reach before `keptFrom` (their rows may be pruned). */
export function prunedHours(segments: readonly Segment[], keptFrom: string): Segment[] {
  return segments.filter((s) => s.grain === "hour" && (s.from === null || s.from < keptFrom));
}

/** The SQL condition selecting a cover's rows, and its bound values (trusted column names). */
export function coverCondition(segments: readonly Segment[]): { sql: string; binds: string[] } {
  if (segments.length === 0) return { sql: "0", binds: [] };
  const binds: string[] = [];
  const parts = segments.map((s) => {
    const terms = ["grain = ?"];
    binds.push(s.grain);
    if (s.from !== null) {
      terms.push("bucket >= ?");
      binds.push(s.from);
    }
    if (s.to !== null) {
      terms.push("bucket < ?");
      binds.push(s.to);
    }
    return `(${terms.join(" AND ")})`;
  });
  return { sql: `(${parts.join(" OR ")})`, binds };
}
