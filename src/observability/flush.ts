/**
 * Hands this isolate's metrics to the monitor (durable-objects/monitor.ts), at most every
 * METRICS_FLUSH_INTERVAL_MS, as work after the response (`waitUntil`); and, in production, writes
 * one Analytics Engine data point per request. Neither adds an await to a request.
 */
import { clock } from "../clock";
import type { Env } from "../env";
import { writeLog } from "./log";
import { restoreMetrics, takeMetricsIfDue } from "./metrics";

/** The name of the one monitor object. */
export const MONITOR_NAME = "global";

/**
 * Schedules a flush if one is due; `waitUntil` keeps it alive past the response. Returns the
 * flush (never rejecting) for callers off any request path that may as well wait for it.
 */
export function flushMetricsIfDue(
  env: Env,
  waitUntil: (work: Promise<unknown>) => void,
  force = false,
): Promise<void> | null {
  const flush = takeMetricsIfDue(clock.now(), force);
  if (flush === null || env.MONITOR === undefined) return null;
  const sent = env.MONITOR.getByName(MONITOR_NAME)
    .ingest(flush)
    .catch((error: unknown) => {
      // Kept for the next flush (bounded by METRICS_PENDING_MINUTES_MAX).
      restoreMetrics(flush);
      writeLog(env, "warn", { msg: "metrics_flush_failed", error: (error as Error).name ?? "Error" });
    });
  waitUntil(sent);
  return sent;
}

/** One data point per request (route, status, latency); no-op without the binding. */
export function writeRequestDataPoint(env: Env, point: { route: string; status: number; latencyMs: number }): void {
  try {
    env.ANALYTICS?.writeDataPoint({
      indexes: [point.route],
      blobs: [point.route],
      doubles: [point.status, point.latencyMs],
    });
  } catch {
    // Dashboards only: a failed write must never fail a request.
  }
}
