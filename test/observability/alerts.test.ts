/**
 * The alert rules at their exact edges (issue 14), the thresholds' overrides, deduplication
 * (one transition when an alert fires, one when it resolves), the windows over whole minutes
 * driven by explicit times (never the wall clock), and the histogram's quantiles.
 */
import { describe, expect, it } from "vitest";
import { alertThresholds } from "../../src/config";
import {
  ALERT_THRESHOLDS_DEFAULT,
  type Alert,
  type AlertRule,
  type AlertThresholds,
  type Check,
  checkRules,
  evaluateAlerts,
  type Measurements,
} from "../../src/observability/alerts";
import {
  emptyHistogram,
  emptyMinute,
  MINUTE_MS,
  type MinuteCounts,
  observe,
  quantile,
  recordRequest,
  takeMetricsIfDue,
} from "../../src/observability/metrics";
import { measurementsOf, mergeWindow, monitoringView, windowStartMs } from "../../src/observability/windows";

const QUIET: Measurements = {
  requests: 0,
  errors_5xx: 0,
  providers: {},
  d1_write_failures: 0,
  projection_lag_p99_ms: null,
  auth_failures: 0,
  alarms_exhausted: 0,
  pending_refunds: 0,
  dead_letters: 0,
};

function check(
  measured: Partial<Measurements>,
  rule: AlertRule,
  thresholds: AlertThresholds = { ...ALERT_THRESHOLDS_DEFAULT },
): Check {
  const found = checkRules({ ...QUIET, ...measured }, { ...thresholds }).find((c) => c.rule === rule);
  if (found === undefined) throw new Error(`no check of ${rule}`);
  return found;
}

describe("alert rules at their edges", () => {
  // [rule, measurements, fires?], in the order of the table and then the ledger's own.
  const EDGES: readonly (readonly [AlertRule, Partial<Measurements>, boolean])[] = [
    ["worker_5xx_rate", { requests: 1_000, errors_5xx: 10 }, false], // exactly 1%
    ["worker_5xx_rate", { requests: 1_000, errors_5xx: 11 }, true],
    ["worker_5xx_rate", { requests: 100, errors_5xx: 1 }, false], // exactly 1% at the minimum count
    ["worker_5xx_rate", { requests: 100, errors_5xx: 2 }, true],
    ["worker_5xx_rate", { requests: 99, errors_5xx: 99 }, false], // below the minimum count
    ["worker_5xx_rate", { requests: 0, errors_5xx: 0 }, false],
    ["pending_refunds", { pending_refunds: 10 }, false],
    ["pending_refunds", { pending_refunds: 11 }, true],
    ["d1_write_failures", { d1_write_failures: 1 }, false], // once is not "repeated"
    ["d1_write_failures", { d1_write_failures: 2 }, true],
    ["auth_failures", { auth_failures: 100 }, false],
    ["auth_failures", { auth_failures: 101 }, true],
    ["projection_lag", { projection_lag_p99_ms: 60_000 }, false],
    ["projection_lag", { projection_lag_p99_ms: 60_001 }, true],
    ["projection_lag", { projection_lag_p99_ms: null }, false],
    ["dead_letters", { dead_letters: 0 }, false],
    ["dead_letters", { dead_letters: 1 }, true],
    ["alarm_retries_exhausted", { alarms_exhausted: 0 }, false],
    ["alarm_retries_exhausted", { alarms_exhausted: 1 }, true],
  ];

  it.each(EDGES)("%s with %j fires: %s", (rule, measured, fires) => {
    expect(check(measured, rule).firing).toBe(fires);
  });

  it("provider failure rate: above 5% over at least 20 calls, per provider", () => {
    const checks = checkRules(
      {
        ...QUIET,
        providers: {
          exact: { requests: 20, failures: 1 }, // exactly 5%
          above: { requests: 20, failures: 2 },
          few: { requests: 19, failures: 19 }, // below the minimum count
          many: { requests: 1_000, failures: 51 },
          edge: { requests: 1_000, failures: 50 },
        },
      },
      { ...ALERT_THRESHOLDS_DEFAULT },
    ).filter((c) => c.rule === "provider_failure_rate");
    expect(Object.fromEntries(checks.map((c) => [c.subject, c.firing]))).toEqual({
      above: true,
      edge: false,
      exact: false,
      few: false,
      many: true,
    });
    expect(checks.find((c) => c.subject === "above")).toMatchObject({ value: 0.1, threshold: 0.05 });
  });

  it("reports value and threshold in the rule's unit", () => {
    expect(check({ requests: 200, errors_5xx: 3 }, "worker_5xx_rate")).toMatchObject({ value: 0.015, threshold: 0.01 });
    expect(check({ auth_failures: 101 }, "auth_failures")).toMatchObject({ value: 101, threshold: 100 });
  });

  it("takes a threshold from a var of the constant's name; ignores what is not a whole number", () => {
    const t = alertThresholds({
      ALERT_AUTH_FAILURES_MAX: "5",
      ALERT_PENDING_REFUNDS_MAX: "-1",
      ALERT_DEAD_LETTERS_MAX: "x",
    });
    expect(t.ALERT_AUTH_FAILURES_MAX).toBe(5);
    expect(t.ALERT_PENDING_REFUNDS_MAX).toBe(ALERT_THRESHOLDS_DEFAULT.ALERT_PENDING_REFUNDS_MAX);
    expect(t.ALERT_DEAD_LETTERS_MAX).toBe(0);
    expect(check({ auth_failures: 5 }, "auth_failures", t).firing).toBe(false);
    expect(check({ auth_failures: 6 }, "auth_failures", t).firing).toBe(true);
    const strict = alertThresholds({ ALERT_WORKER_5XX_RATE_BP: "0", ALERT_WORKER_5XX_REQUESTS_MIN: "1" });
    expect(check({ requests: 1, errors_5xx: 1 }, "worker_5xx_rate", strict).firing).toBe(true);
  });
});

describe("alert lifecycle", () => {
  const T = (minute: number) => new Date(Date.UTC(2027, 0, 1, 0, minute)).toISOString();
  const auth = (n: number) => checkRules({ ...QUIET, auth_failures: n }, { ...ALERT_THRESHOLDS_DEFAULT });

  it("notifies once when an alert fires and once when it resolves", () => {
    let alerts: Alert[] = [];
    const transitions: string[] = [];
    const step = (n: number, minute: number) => {
      const result = evaluateAlerts(alerts, auth(n), T(minute));
      alerts = result.alerts;
      transitions.push(...result.transitions.map((t) => `${minute}:${t.alert.rule}:${t.to}`));
    };
    step(100, 0); // quiet: no alert at all
    expect(alerts).toEqual([]);
    step(101, 1);
    step(150, 2); // still firing: no second notification, value follows
    expect(alerts).toEqual([
      {
        rule: "auth_failures",
        subject: null,
        state: "firing",
        value: 150,
        threshold: 100,
        since: T(1),
        resolved_at: null,
      },
    ]);
    step(100, 3);
    step(0, 4); // still quiet
    expect(alerts[0]).toMatchObject({ state: "resolved", since: T(1), resolved_at: T(3), value: 100 });
    step(101, 5); // fires again: a new since
    expect(alerts[0]).toMatchObject({ state: "firing", since: T(5), resolved_at: null });
    expect(transitions).toEqual([
      "1:auth_failures:alert.firing",
      "3:auth_failures:alert.resolved",
      "5:auth_failures:alert.firing",
    ]);
  });

  it("resolves a provider's alert once the provider has no calls in the window, and lists firing first", () => {
    const provider = (requests: number, failures: number) =>
      checkRules(
        { ...QUIET, auth_failures: 101, providers: requests === 0 ? {} : { acme: { requests, failures } } },
        {
          ...ALERT_THRESHOLDS_DEFAULT,
        },
      );
    const fired = evaluateAlerts([], provider(20, 2), T(0));
    expect(fired.transitions.map((t) => [t.alert.rule, t.alert.subject, t.to])).toEqual([
      ["provider_failure_rate", "acme", "alert.firing"],
      ["auth_failures", null, "alert.firing"],
    ]);
    const gone = evaluateAlerts(fired.alerts, provider(0, 0), T(1));
    expect(gone.transitions.map((t) => [t.alert.subject, t.to])).toEqual([["acme", "alert.resolved"]]);
    expect(gone.alerts.map((a) => [a.rule, a.state])).toEqual([
      ["auth_failures", "firing"],
      ["provider_failure_rate", "resolved"],
    ]);
  });
});

describe("windows and histograms", () => {
  const NOW = Date.UTC(2027, 0, 1, 12, 30, 15);

  it("a window is the N whole minutes before the current one plus the current partial minute", () => {
    expect(windowStartMs(NOW, 10)).toBe(Date.UTC(2027, 0, 1, 12, 20));
    const minute = (start: number, authFailures: number): [number, MinuteCounts] => [
      start,
      { ...emptyMinute(), auth_failures: authFailures },
    ];
    const rows = [
      minute(Date.UTC(2027, 0, 1, 12, 19), 1_000), // 11 minutes back: outside
      minute(Date.UTC(2027, 0, 1, 12, 20), 60),
      minute(Date.UTC(2027, 0, 1, 12, 30), 41),
      minute(Date.UTC(2027, 0, 1, 12, 31), 1_000), // the future (a skewed isolate): outside
    ];
    expect(mergeWindow(rows, NOW, 10).auth_failures).toBe(101);
    // One minute later the oldest minute leaves the window.
    expect(mergeWindow(rows, NOW + MINUTE_MS, 10).auth_failures).toBe(1_041);
    expect(mergeWindow(rows, NOW + 2 * MINUTE_MS, 10).auth_failures).toBe(1_041);
    expect(mergeWindow(rows, NOW + 10 * MINUTE_MS, 10).auth_failures).toBe(1_041);
    expect(mergeWindow(rows, NOW + 11 * MINUTE_MS, 10).auth_failures).toBe(1_000);
    expect(mergeWindow(rows, NOW + 12 * MINUTE_MS, 10).auth_failures).toBe(0);
  });

  it("fires on 101 authentication failures spread evenly over the 10 minutes before a minute boundary", () => {
    const boundary = Date.UTC(2027, 0, 1, 12, 30);
    // 12:20 to 12:29, one row per minute: 11 in the first, 10 in each other (101 in all).
    const rows = Array.from({ length: 10 }, (_, i): [number, MinuteCounts] => [
      boundary - (10 - i) * MINUTE_MS,
      { ...emptyMinute(), auth_failures: i === 0 ? 11 : 10 },
    ]);
    const view = monitoringView(rows, boundary, { pending_refunds: 0, dead_letters: 0 });
    expect(view.auth_failures_10m).toBe(101);
    const auth = checkRules(measurementsOf(view), { ...ALERT_THRESHOLDS_DEFAULT }).find(
      (c) => c.rule === "auth_failures",
    );
    expect(auth).toMatchObject({ value: 101, firing: true });
    // The same failures read the minute after: the oldest minute (11) is past the window.
    expect(mergeWindow(rows, boundary + MINUTE_MS, 10).auth_failures).toBe(90);
  });

  it("rates 5xx over authenticated requests to ledger routes only (issue 31, defect 8)", () => {
    const boundary = Date.UTC(2027, 0, 1, 12, 30);
    const at = boundary - MINUTE_MS;
    // A spike of 2% among the ledger's own calls, under a flood of cheap requests.
    for (let i = 0; i < 2_000; i++)
      recordRequest(at, { route: "GET /healthz", status: 200, latencyMs: 1, money: false });
    for (let i = 0; i < 500; i++) {
      recordRequest(at, { route: "GET /v1/accounts/{account_id}", status: 401, latencyMs: 1, money: false });
      recordRequest(at, { route: "unmatched", status: 404, latencyMs: 1, money: false, authenticated: true });
    }
    const v1 = { route: "POST /v1/accounts/{account_id}/charges", latencyMs: 5, money: true, authenticated: true };
    for (let i = 0; i < 98; i++) recordRequest(at, { ...v1, status: 201 });
    recordRequest(at, { ...v1, status: 429 });
    for (let i = 0; i < 2; i++) recordRequest(at, { ...v1, status: 500 });
    const flushed = takeMetricsIfDue(at, true)?.minutes ?? [];
    const view = monitoringView(flushed, boundary, { pending_refunds: 0, dead_letters: 0 });
    expect(view.overall.requests).toBe(3_101);
    expect(view.overall.alerted).toEqual({ requests: 100, errors_5xx: 2 });
    const rate = checkRules(measurementsOf(view), { ...ALERT_THRESHOLDS_DEFAULT }).find(
      (c) => c.rule === "worker_5xx_rate",
    );
    expect(rate).toMatchObject({ value: 0.02, firing: true });
  });

  it("reads quantiles to the bucket's upper bound", () => {
    const h = emptyHistogram();
    expect(quantile(h, 0.99)).toBeNull();
    for (let i = 0; i < 99; i++) observe(h, 40);
    observe(h, 60_000);
    expect(quantile(h, 0.5)).toBe(50);
    expect(quantile(h, 0.99)).toBe(50);
    expect(quantile(h, 1)).toBe(60_000);
    observe(h, 60_001);
    // 2 of 101 above 50 ms: p99 (rank 100) lands in the (60 s, 120 s] bucket.
    expect(quantile(h, 0.99)).toBe(60_000);
    observe(h, 60_001);
    expect(quantile(h, 0.99)).toBe(120_000);
    observe(h, 10_000_000);
    expect(quantile(h, 1)).toBe(300_000);
  });
});
