/**
 * Operational metrics (issue 14), counted in memory per isolate and flushed to the monitor
 * Durable Object (durable-objects/monitor.ts) at most every METRICS_FLUSH_INTERVAL_MS, off the
 * request path (`waitUntil`): no D1 write and no extra await per request.
 *
 * Counts are kept per minute (the monitor's rolling windows are whole minutes) and per route
 * (the declared route, e.g. "POST /v1/accounts/{account_id}/charges", or "unmatched": a fixed set).
 * Latency and projection lag are histograms over LATENCY_BUCKETS_MS, so p50/p95/p99 are read to
 * the bucket: the reported value is the upper bound of the bucket holding the rank.
 *
 * Bounded: routes are the declared ones; error codes the ProblemCode set; providers at most
 * METRICS_PROVIDERS_MAX (more fold into "other"); minutes pending at most
 * METRICS_PENDING_MINUTES_MAX (a monitor unreachable for longer loses the oldest minute, counted
 * in `dropped_minutes`). Metrics are best effort: an isolate evicted before its flush loses at
 * most one interval.
 */

/** Upper bounds of the histogram buckets, in ms; the last bucket is everything above. */
export const LATENCY_BUCKETS_MS: readonly number[] = [
  5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000,
];
/** An isolate hands its counts to the monitor at most this often. */
export const METRICS_FLUSH_INTERVAL_MS = 5_000;
export const METRICS_PROVIDERS_MAX = 32;
export const METRICS_PENDING_MINUTES_MAX = 10;
export const MINUTE_MS = 60_000;

export type StatusClass = "2xx" | "3xx" | "4xx" | "5xx";
/**
 * What the gateway reports of one provider call (issue 14). Failures are 401, 403, 429, 5xx and
 * timeout; "4xx" (any other client error: the request's own fault) and "ok" are not.
 */
export const PROVIDER_STATUSES = ["ok", "401", "403", "429", "5xx", "timeout", "4xx"] as const;
export type ProviderStatus = (typeof PROVIDER_STATUSES)[number];
const NOT_PROVIDER_FAILURES: ReadonlySet<ProviderStatus> = new Set(["ok", "4xx"]);

export interface RouteCounts {
  requests: number;
  status: Record<StatusClass, number>;
  errors: Record<string, number>;
  /** 5xx answers and invariant violations on money routes. */
  billing_failures: number;
  /**
   * What the 5xx-rate alert counts (issue 31, defect 8): authenticated requests to the ledger's
   * `/v1` routes that were not refused for their rate (not /healthz, the console, unmatched paths,
   * 401s or 429s, which cost nothing and would hide a spike), and their 5xx answers.
   */
  alerted: { requests: number; errors_5xx: number };
  latency: number[];
}

export interface ProviderCounts {
  requests: number;
  /** 401, 403, 429, 5xx and timeout. */
  failures: number;
  statuses: Partial<Record<ProviderStatus, number>>;
  latency: number[];
}

export interface MinuteCounts {
  routes: Record<string, RouteCounts>;
  auth_failures: number;
  rate_limited: number;
  /** D1 failures by operation (projection, key_lookup, counters, webhooks, ...). */
  d1_failures: Record<string, number>;
  /** Failures of work done after the response (`waitUntil`), by what it was. */
  background_failures: Record<string, number>;
  providers: Record<string, ProviderCounts>;
  projection_lag: number[];
  /** Accounts whose alarm ran out of retries this minute. */
  alarm_exhausted: number;
}

export function emptyHistogram(): number[] {
  return new Array(LATENCY_BUCKETS_MS.length + 1).fill(0);
}

export function emptyMinute(): MinuteCounts {
  return {
    routes: {},
    auth_failures: 0,
    rate_limited: 0,
    d1_failures: {},
    background_failures: {},
    providers: {},
    projection_lag: emptyHistogram(),
    alarm_exhausted: 0,
  };
}

export function observe(histogram: number[], valueMs: number): void {
  let i = LATENCY_BUCKETS_MS.findIndex((bound) => valueMs <= bound);
  if (i === -1) i = LATENCY_BUCKETS_MS.length;
  histogram[i] = (histogram[i] ?? 0) + 1;
}

/**
 * The q-quantile (0 < q <= 1) of a histogram: the upper bound of the bucket holding the
 * ceil(q * n)-th value; null when empty. A value past the last bound reads as that bound
 * (300 s: "300 s or more").
 */
export function quantile(histogram: readonly number[], q: number): number | null {
  const n = histogram.reduce((a, b) => a + b, 0);
  if (n === 0) return null;
  const rank = Math.ceil(q * n);
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    seen += histogram[i] ?? 0;
    if (seen >= rank) return LATENCY_BUCKETS_MS[Math.min(i, LATENCY_BUCKETS_MS.length - 1)] as number;
  }
  return LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.length - 1] as number;
}

function addHistogram(into: number[], from: readonly number[]): void {
  for (let i = 0; i < from.length; i++) into[i] = (into[i] ?? 0) + (from[i] ?? 0);
}

function addRecord(into: Record<string, number>, from: Readonly<Record<string, number | undefined>>): void {
  for (const [key, n] of Object.entries(from)) setOwn(into, key, (ownValue(into, key) ?? 0) + (n ?? 0));
}

/**
 * Keys come from callers (a provider's name over the service binding): `__proto__`, `constructor`
 * and their kind are read and written as own properties only, never through the prototype.
 */
function ownValue<T>(record: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

function setOwn<T>(record: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
}

/** The entry `key` of `record`, created by `make` when missing. */
function entry<T>(record: Record<string, T>, key: string, make: () => T): T {
  const existing = ownValue(record, key);
  if (existing !== undefined) return existing;
  const made = make();
  setOwn(record, key, made);
  return made;
}

export function emptyRoute(): RouteCounts {
  return {
    requests: 0,
    status: { "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0 },
    errors: {},
    billing_failures: 0,
    alerted: { requests: 0, errors_5xx: 0 },
    latency: emptyHistogram(),
  };
}

export function addRoute(into: RouteCounts, from: RouteCounts): void {
  into.requests += from.requests;
  addRecord(into.status, from.status);
  addRecord(into.errors, from.errors);
  into.billing_failures += from.billing_failures;
  // A flush from before the alerted counts has none: it adds nothing to them.
  into.alerted.requests += from.alerted?.requests ?? 0;
  into.alerted.errors_5xx += from.alerted?.errors_5xx ?? 0;
  addHistogram(into.latency, from.latency);
}

export function addProvider(into: ProviderCounts, from: ProviderCounts): void {
  into.requests += from.requests;
  into.failures += from.failures;
  addRecord(into.statuses, from.statuses);
  addHistogram(into.latency, from.latency);
}

export function emptyProvider(): ProviderCounts {
  return { requests: 0, failures: 0, statuses: {}, latency: emptyHistogram() };
}

/** Adds `from` into `into` (the monitor merges flushes; windows merge minutes). */
export function addMinute(into: MinuteCounts, from: MinuteCounts): MinuteCounts {
  for (const [route, counts] of Object.entries(from.routes)) addRoute(entry(into.routes, route, emptyRoute), counts);
  for (const [name, counts] of Object.entries(from.providers)) {
    addProvider(entry(into.providers, name, emptyProvider), counts);
  }
  into.auth_failures += from.auth_failures;
  into.rate_limited += from.rate_limited;
  addRecord(into.d1_failures, from.d1_failures);
  addRecord(into.background_failures, from.background_failures);
  addHistogram(into.projection_lag, from.projection_lag);
  into.alarm_exhausted += from.alarm_exhausted;
  return into;
}

/**
 * Bounds a merged minute's providers (the monitor merges isolates, each bounded on its own):
 * the METRICS_PROVIDERS_MAX with the most calls keep their names (ties by name), the rest fold
 * into "other".
 */
export function boundProviders(counts: MinuteCounts): MinuteCounts {
  const named = Object.entries(counts.providers).filter(([name]) => name !== "other");
  if (named.length <= METRICS_PROVIDERS_MAX) return counts;
  named.sort(([a, x], [b, y]) => y.requests - x.requests || (a < b ? -1 : 1));
  const providers: Record<string, ProviderCounts> = Object.fromEntries(named.slice(0, METRICS_PROVIDERS_MAX));
  const other = counts.providers.other ?? emptyProvider();
  for (const [, folded] of named.slice(METRICS_PROVIDERS_MAX)) addProvider(other, folded);
  providers.other = other;
  counts.providers = providers;
  return counts;
}

// ---------------------------------------------------------------- this isolate's counts

const pending = new Map<number, MinuteCounts>();
let lastFlushMs: number | null = null;
let droppedMinutes = 0;

function minute(nowMs: number): MinuteCounts {
  const start = nowMs - (nowMs % MINUTE_MS);
  let counts = pending.get(start);
  if (counts === undefined) {
    counts = emptyMinute();
    pending.set(start, counts);
    while (pending.size > METRICS_PENDING_MINUTES_MAX) {
      pending.delete(Math.min(...pending.keys()));
      droppedMinutes += 1;
    }
  }
  return counts;
}

const statusClass = (status: number): StatusClass =>
  status >= 500 ? "5xx" : status >= 400 ? "4xx" : status >= 300 ? "3xx" : "2xx";

export function recordRequest(
  nowMs: number,
  request: {
    route: string;
    status: number;
    latencyMs: number;
    errorCode?: string;
    money: boolean;
    authenticated?: boolean;
  },
): void {
  const counts = entry(minute(nowMs).routes, request.route, emptyRoute);
  counts.requests += 1;
  counts.status[statusClass(request.status)] += 1;
  if (alertedRequest(request)) {
    counts.alerted.requests += 1;
    if (request.status >= 500) counts.alerted.errors_5xx += 1;
  }
  if (request.errorCode !== undefined) counts.errors[request.errorCode] = (counts.errors[request.errorCode] ?? 0) + 1;
  if (request.money && request.status >= 500) counts.billing_failures += 1;
  observe(counts.latency, Math.max(0, request.latencyMs));
}

/** A request the 5xx-rate alert counts: authenticated, to a `/v1` route, not refused for its rate. */
export function alertedRequest(request: { route: string; status: number; authenticated?: boolean }): boolean {
  return (
    request.authenticated === true && / \/v1\//.test(request.route) && request.status !== 401 && request.status !== 429
  );
}

export function recordAuthFailure(nowMs: number): void {
  minute(nowMs).auth_failures += 1;
}

export function recordRateLimited(nowMs: number): void {
  minute(nowMs).rate_limited += 1;
}

export function recordD1Failure(nowMs: number, operation: string): void {
  const counts = minute(nowMs).d1_failures;
  counts[operation] = (counts[operation] ?? 0) + 1;
}

export function recordBackgroundFailure(nowMs: number, what: string): void {
  const counts = minute(nowMs).background_failures;
  counts[what] = (counts[what] ?? 0) + 1;
}

export function recordProjectionLag(nowMs: number, lagMs: number): void {
  observe(minute(nowMs).projection_lag, Math.max(0, lagMs));
}

export function recordAlarmExhausted(nowMs: number): void {
  minute(nowMs).alarm_exhausted += 1;
}

export function recordProvider(
  nowMs: number,
  report: { provider: string; status: ProviderStatus; latencyMs: number },
): void {
  const providers = minute(nowMs).providers;
  const name =
    Object.hasOwn(providers, report.provider) || Object.keys(providers).length < METRICS_PROVIDERS_MAX
      ? report.provider
      : "other";
  const counts = entry(providers, name, emptyProvider);
  counts.requests += 1;
  if (!NOT_PROVIDER_FAILURES.has(report.status)) counts.failures += 1;
  counts.statuses[report.status] = (counts.statuses[report.status] ?? 0) + 1;
  observe(counts.latency, Math.max(0, report.latencyMs));
}

/** What the monitor receives: whole minutes of counts, by minute start (epoch ms). */
export type MetricsFlush = { minutes: [number, MinuteCounts][]; dropped_minutes: number };

/** Takes this isolate's counts if a flush is due (or `force`); null when not due or empty. */
export function takeMetricsIfDue(nowMs: number, force = false): MetricsFlush | null {
  if (pending.size === 0) return null;
  if (!force && lastFlushMs !== null && nowMs - lastFlushMs >= 0 && nowMs - lastFlushMs < METRICS_FLUSH_INTERVAL_MS) {
    return null;
  }
  lastFlushMs = nowMs;
  const flush: MetricsFlush = { minutes: [...pending.entries()], dropped_minutes: droppedMinutes };
  pending.clear();
  droppedMinutes = 0;
  return flush;
}

/** A flush the monitor did not take: its counts wait for the next one (still bounded). */
export function restoreMetrics(flush: MetricsFlush): void {
  for (const [start, counts] of flush.minutes) addMinute(minute(start), counts);
  droppedMinutes += flush.dropped_minutes;
}
