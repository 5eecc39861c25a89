/**
 * Rolling windows over whole minutes of counts (src/observability/metrics.ts), pure: the monitor
 * keeps one merged row per minute and reads a window of N minutes as the N whole minutes before
 * the current one plus the current partial minute (windowStartMs). What GET /v1/admin/monitoring answers, and what the alert rules measure.
 */
import {
  ALERT_ALARM_WINDOW_MINUTES,
  ALERT_AUTH_WINDOW_MINUTES,
  ALERT_RATE_WINDOW_MINUTES,
  type Measurements,
} from "./alerts";
import {
  addMinute,
  addRoute,
  emptyMinute,
  emptyRoute,
  MINUTE_MS,
  type MinuteCounts,
  PROVIDER_STATUSES,
  quantile,
  type RouteCounts,
} from "./metrics";

/**
 * The start of the oldest minute of a window of `minutes`: the `minutes` whole minutes before
 * the current one, plus the current partial minute. Counts are kept per whole minute, so a
 * window can only be rounded outwards: it covers every event of the last `minutes` minutes
 * (and up to one minute more), never fewer. Read at the start of a minute (the cron's time), a
 * 10-minute window is the 10 minutes just ended; stopping at the current minute's start minus
 * 9 would make it 9.
 */
export function windowStartMs(nowMs: number, minutes: number): number {
  return nowMs - (nowMs % MINUTE_MS) - minutes * MINUTE_MS;
}

/** Merges the minutes of `rows` that fall in the window of `minutes` ending at `nowMs`. */
export function mergeWindow(
  rows: readonly (readonly [number, MinuteCounts])[],
  nowMs: number,
  minutes: number,
): MinuteCounts {
  const start = windowStartMs(nowMs, minutes);
  const end = nowMs - (nowMs % MINUTE_MS);
  const merged = emptyMinute();
  for (const [minute, counts] of rows) if (minute >= start && minute <= end) addMinute(merged, counts);
  return merged;
}

const latencies = (histogram: readonly number[]) => ({
  p50: quantile(histogram, 0.5),
  p95: quantile(histogram, 0.95),
  p99: quantile(histogram, 0.99),
});

function routeView(counts: RouteCounts) {
  return {
    requests: counts.requests,
    status: counts.status,
    rate_5xx: counts.requests === 0 ? 0 : counts.status["5xx"] / counts.requests,
    billing_failures: counts.billing_failures,
    alerted: counts.alerted,
    errors: counts.errors,
    latency_ms: latencies(counts.latency),
  };
}

/** The gauges read from D1 at the time of asking; null when the read failed (src/observability/gauges.ts). */
export interface Gauges {
  pending_refunds: number | null;
  dead_letters: number | null;
}

/** The monitoring view: the rate window per route and overall, and every measurement of the rules. */
export function monitoringView(rows: readonly (readonly [number, MinuteCounts])[], nowMs: number, gauges: Gauges) {
  const rates = mergeWindow(rows, nowMs, ALERT_RATE_WINDOW_MINUTES);
  const overall = emptyRoute();
  for (const counts of Object.values(rates.routes)) addRoute(overall, counts);
  return {
    at: new Date(nowMs).toISOString(),
    window_minutes: ALERT_RATE_WINDOW_MINUTES,
    overall: routeView(overall),
    routes: Object.entries(rates.routes)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([route, counts]) => ({ route, ...routeView(counts) })),
    providers: Object.entries(rates.providers)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([provider, counts]) => ({
        provider,
        requests: counts.requests,
        failures: counts.failures,
        failure_rate: counts.requests === 0 ? 0 : counts.failures / counts.requests,
        statuses: Object.fromEntries(PROVIDER_STATUSES.map((s) => [s, counts.statuses[s] ?? 0])),
        latency_ms: latencies(counts.latency),
      })),
    auth_failures_10m: mergeWindow(rows, nowMs, ALERT_AUTH_WINDOW_MINUTES).auth_failures,
    rate_limited: rates.rate_limited,
    d1_failures: rates.d1_failures,
    background_failures: rates.background_failures,
    projection_lag_p99_ms: quantile(rates.projection_lag, 0.99),
    alarms_exhausted_15m: mergeWindow(rows, nowMs, ALERT_ALARM_WINDOW_MINUTES).alarm_exhausted,
    pending_refunds: gauges.pending_refunds,
    dead_letters: gauges.dead_letters,
  };
}
export type MonitoringView = ReturnType<typeof monitoringView>;

/** What the alert rules measure, from the monitoring view. */
export function measurementsOf(view: MonitoringView): Measurements {
  const d1WriteFailures = Object.entries(view.d1_failures)
    .filter(([operation]) => operation.startsWith("write:"))
    .reduce((sum, [, n]) => sum + n, 0);
  return {
    // The 5xx rate counts only authenticated requests to ledger routes (RouteCounts.alerted).
    requests: view.overall.alerted.requests,
    errors_5xx: view.overall.alerted.errors_5xx,
    providers: Object.fromEntries(
      view.providers.map((p) => [p.provider, { requests: p.requests, failures: p.failures }]),
    ),
    d1_write_failures: d1WriteFailures,
    projection_lag_p99_ms: view.projection_lag_p99_ms,
    auth_failures: view.auth_failures_10m,
    alarms_exhausted: view.alarms_exhausted_15m,
    pending_refunds: view.pending_refunds,
    dead_letters: view.dead_letters,
  };
}
