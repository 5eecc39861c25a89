/**
 * The per-isolate metrics (issue 14): a flush is handed out at most every
 * METRICS_FLUSH_INTERVAL_MS, counts are kept per minute and bounded (minutes waiting, providers),
 * a refused flush is kept for the next one, and billing failures are the 5xx of money routes.
 * Times are explicit: this file sends no request, so nothing else counts meanwhile.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { monitorOf } from "../../src/observability/evaluate";
import {
  addMinute,
  boundProviders,
  emptyMinute,
  emptyProvider,
  METRICS_FLUSH_INTERVAL_MS,
  METRICS_PENDING_MINUTES_MAX,
  METRICS_PROVIDERS_MAX,
  type MetricsFlush,
  MINUTE_MS,
  type MinuteCounts,
  recordProvider,
  recordRequest,
  restoreMetrics,
  takeMetricsIfDue,
} from "../../src/observability/metrics";

const T0 = Date.UTC(2030, 0, 1, 0, 0, 0);
const request = (status: number, route = "GET /x") => ({
  route,
  status,
  latencyMs: 12,
  money: route.startsWith("POST"),
});

/** Empties what is pending and starts a new interval at `at` (a flush needs something to hand out). */
function drain(at: number): void {
  recordRequest(at, request(200, "drain"));
  expect(takeMetricsIfDue(at, true)).not.toBeNull();
}

describe("metrics flush", () => {
  it("hands out a flush at most every METRICS_FLUSH_INTERVAL_MS", () => {
    drain(T0);
    recordRequest(T0 + 1, request(200));
    expect(takeMetricsIfDue(T0 + METRICS_FLUSH_INTERVAL_MS - 1)).toBeNull();
    const flush = takeMetricsIfDue(T0 + METRICS_FLUSH_INTERVAL_MS);
    expect(flush?.minutes).toHaveLength(1);
    expect(flush?.minutes[0]?.[1].routes["GET /x"]).toMatchObject({ requests: 1, status: { "2xx": 1 } });
    // Nothing counted since: nothing to hand out, even when due.
    expect(takeMetricsIfDue(T0 + 10 * METRICS_FLUSH_INTERVAL_MS)).toBeNull();
  });

  it("keeps counts per minute, at most METRICS_PENDING_MINUTES_MAX of them, and says how many it dropped", () => {
    const start = T0 + 60 * MINUTE_MS;
    drain(start);
    const minutes = METRICS_PENDING_MINUTES_MAX + 2;
    for (let m = 0; m < minutes; m++)
      recordRequest(start + m * MINUTE_MS, request(500, "POST /v1/accounts/{account_id}/charges"));
    const flush = takeMetricsIfDue(start + minutes * MINUTE_MS, true);
    expect(flush?.minutes).toHaveLength(METRICS_PENDING_MINUTES_MAX);
    expect(flush?.dropped_minutes).toBe(2);
    expect(flush?.minutes.map(([minute]) => minute)[0]).toBe(start + 2 * MINUTE_MS);
    const counts = flush?.minutes[0]?.[1].routes["POST /v1/accounts/{account_id}/charges"];
    expect(counts).toMatchObject({ requests: 1, billing_failures: 1, status: { "5xx": 1 } });
  });

  it("keeps a flush the monitor refused for the next one", () => {
    const start = T0 + 200 * MINUTE_MS;
    drain(start);
    recordRequest(start, request(200));
    const refused = takeMetricsIfDue(start, true);
    expect(refused).not.toBeNull();
    recordRequest(start + 1, request(404));
    restoreMetrics(refused as NonNullable<typeof refused>);
    const next = takeMetricsIfDue(start + 2, true);
    expect(next?.minutes[0]?.[1].routes["GET /x"]).toMatchObject({ requests: 2, status: { "2xx": 1, "4xx": 1 } });
  });

  it("folds providers past METRICS_PROVIDERS_MAX into other; 4xx is not a provider failure", () => {
    const start = T0 + 300 * MINUTE_MS;
    drain(start);
    for (let i = 0; i < METRICS_PROVIDERS_MAX + 3; i++)
      recordProvider(start, { provider: `p${i}`, status: "429", latencyMs: 5 });
    recordProvider(start, { provider: "p0", status: "4xx", latencyMs: 5 });
    recordProvider(start, { provider: "p0", status: "ok", latencyMs: 5 });
    const providers = takeMetricsIfDue(start, true)?.minutes[0]?.[1].providers ?? {};
    expect(Object.keys(providers)).toHaveLength(METRICS_PROVIDERS_MAX + 1);
    expect(providers.other).toMatchObject({ requests: 3, failures: 3 });
    expect(providers.p0).toMatchObject({ requests: 3, failures: 1, statuses: { "429": 1, "4xx": 1, ok: 1 } });
  });

  it("counts providers named like Object's own properties as any other (issue 31, defect 9)", () => {
    const start = T0 + 350 * MINUTE_MS;
    drain(start);
    for (const provider of ["__proto__", "constructor", "toString", "__proto__"]) {
      recordProvider(start, { provider, status: "5xx", latencyMs: 5 });
    }
    const minute = takeMetricsIfDue(start, true)?.minutes[0]?.[1] as MinuteCounts;
    expect(Object.keys(minute.providers).sort()).toEqual(["__proto__", "constructor", "toString"]);
    expect(Object.getOwnPropertyDescriptor(minute.providers, "__proto__")?.value).toMatchObject({
      requests: 2,
      failures: 2,
    });
    expect(minute.providers.constructor).toMatchObject({ requests: 1 });
    // Nothing reached a prototype, and merging two minutes keeps them apart the same way.
    expect(Object.getPrototypeOf(minute.providers)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).requests).toBeUndefined();
    const merged = emptyMinute();
    addMinute(merged, JSON.parse(JSON.stringify(minute)) as MinuteCounts);
    addMinute(merged, JSON.parse(JSON.stringify(minute)) as MinuteCounts);
    expect(Object.getOwnPropertyDescriptor(merged.providers, "__proto__")?.value).toMatchObject({ requests: 4 });
    expect(Object.getPrototypeOf(merged.providers)).toBe(Object.prototype);
  });

  it("the monitor bounds merged providers too: past METRICS_PROVIDERS_MAX the fewest calls fold into other", async () => {
    const start = T0 + 400 * MINUTE_MS;
    // Two isolates, each within its own bound, together past it.
    const isolate = (from: number, calls: number): MetricsFlush => {
      const counts = emptyMinute();
      for (let i = from; i < from + METRICS_PROVIDERS_MAX; i++) {
        counts.providers[`p${i}`] = { ...emptyProvider(), requests: calls, failures: 1 };
      }
      return { minutes: [[start, counts]], dropped_minutes: 0 };
    };
    const minuteOf = (flush: MetricsFlush) => flush.minutes[0]?.[1] as MinuteCounts;
    const merged = boundProviders(addMinute(minuteOf(isolate(0, 5)), minuteOf(isolate(METRICS_PROVIDERS_MAX, 9))));
    expect(Object.keys(merged.providers)).toHaveLength(METRICS_PROVIDERS_MAX + 1);
    expect(merged.providers[`p${METRICS_PROVIDERS_MAX}`]).toMatchObject({ requests: 9 });
    expect(merged.providers.p0).toBeUndefined();
    expect(merged.providers.other).toMatchObject({
      requests: 5 * METRICS_PROVIDERS_MAX,
      failures: METRICS_PROVIDERS_MAX,
    });
    // The monitor stores them bounded.
    const monitor = monitorOf(env);
    await monitor.ingest(isolate(0, 5));
    await monitor.ingest(isolate(METRICS_PROVIDERS_MAX, 9));
    const stored = await runInDurableObject(monitor, (_instance, state) =>
      state.storage.sql.exec<{ counts: string }>("SELECT counts FROM minutes WHERE minute_ms = ?", start).one(),
    );
    expect(Object.keys((JSON.parse(stored.counts) as MinuteCounts).providers)).toHaveLength(METRICS_PROVIDERS_MAX + 1);
  });
});
