// @ts-check
/**
 * The monitoring windows and the alerts (GET /v1/admin/monitoring and GET /v1/admin/alerts, admin
 * scope; docs/monitoring.md). A ledger without monitoring answers those routes 404: each panel then
 * says that monitoring is not available on this ledger, and nothing else changes.
 *
 * Rates are fractions in the API and shown as percentages; latencies are milliseconds (to the
 * histogram bucket's upper bound, null without requests). None of these figures is money.
 */
import { ApiError, explain, get } from "./api.js";
import { h, replace, showEmpty, showError, showLoading, table } from "./dom.js";
import { formatTime } from "./time.js";

/** @param {unknown} error */
const missing = (error) => error instanceof ApiError && error.status === 404;

const NOT_AVAILABLE = "Monitoring is not available on this ledger: it answers 404 for this route.";

/** @param {unknown} value */
const count = (value) => (typeof value === "number" ? String(value) : "—");
/** A fraction as a percentage with two decimals. @param {unknown} rate */
const percent = (rate) => (typeof rate === "number" ? `${(rate * 100).toFixed(2)} %` : "—");
/** @param {unknown} value */
const ms = (value) => (typeof value === "number" ? `${value} ms` : "—");
/** The sum of a per-operation count map. @param {Record<string, number> | undefined} counts */
const total = (counts) => Object.values(counts ?? {}).reduce((sum, n) => sum + n, 0);

/**
 * The overall figures of a monitoring answer, each with the field it shows (data-field).
 * @param {any} m @returns {[string, string, string][]}
 */
function figures(m) {
  const latency = m.overall.latency_ms;
  return [
    ["requests", `Requests (last ${m.window_minutes} min)`, count(m.overall.requests)],
    ["rate_5xx", "5xx rate", percent(m.overall.rate_5xx)],
    ["latency", "Latency p50 / p95 / p99", `${ms(latency.p50)} / ${ms(latency.p95)} / ${ms(latency.p99)}`],
    ["billing_failures", "Billing failures", count(m.overall.billing_failures)],
    ["auth_failures_10m", "Authentication failures (10 min)", count(m.auth_failures_10m)],
    ["rate_limited", "Rate-limited requests", count(m.rate_limited)],
    ["d1_failures", "D1 failures", count(total(m.d1_failures))],
    ["pending_refunds", "Pending refunds", count(m.pending_refunds)],
    ["projection_lag_p99_ms", "Projection lag p99", ms(m.projection_lag_p99_ms)],
    ["dead_letters", "Dead letters", count(m.dead_letters)],
    ["alarms_exhausted_15m", "Alarm retries exhausted (15 min)", count(m.alarms_exhausted_15m)],
  ];
}

/** @param {any} m */
function monitoringTables(m) {
  const routes = m.routes.map((/** @type {any} */ r) => [
    h("td", { class: "route" }, r.route),
    h("td", { class: "num" }, count(r.requests)),
    h("td", { class: "num" }, percent(r.rate_5xx)),
    h("td", { class: "num" }, ms(r.latency_ms.p50)),
    h("td", { class: "num" }, ms(r.latency_ms.p99)),
  ]);
  const providers = m.providers.map((/** @type {any} */ p) => [
    h("td", {}, p.provider),
    h("td", { class: "num" }, count(p.requests)),
    h("td", { class: "num" }, percent(p.failure_rate)),
    h("td", { class: "num" }, ms(p.latency_ms.p99)),
  ]);
  return [
    routes.length === 0 ? null : table(["Route", "Requests", "5xx rate", "p50", "p99"], routes, { class: "routes" }),
    providers.length === 0
      ? null
      : table(["Provider", "Calls", "Failure rate", "p99"], providers, { class: "providers" }),
  ];
}

/** @param {Element} body @param {{ lifetime: import("./time.js").Lifetime }} view */
export async function loadMonitoring(body, view) {
  showLoading(body, "monitoring");
  try {
    const m = await get("/v1/admin/monitoring");
    if (view.lifetime.disposed) return;
    replace(
      body,
      h(
        "dl",
        { class: "figures" },
        ...figures(m).flatMap(([field, label, value]) => [h("dt", {}, label), h("dd", { "data-field": field }, value)]),
      ),
      ...monitoringTables(m),
      h("p", { class: "note" }, `As of ${formatTime(m.at)}.`),
    );
  } catch (error) {
    if (view.lifetime.disposed) return;
    if (missing(error)) showEmpty(body, NOT_AVAILABLE);
    else showError(body, explain(error, "admin", "the monitoring windows"));
  }
}

/** @param {Element} body @param {{ lifetime: import("./time.js").Lifetime }} view */
export async function loadAlerts(body, view) {
  showLoading(body, "alerts");
  try {
    const alerts = (await get("/v1/admin/alerts")).data;
    if (view.lifetime.disposed) return;
    if (alerts.length === 0) {
      showEmpty(body, "No alert has fired. Rules are evaluated every minute and when this page reads them.");
      return;
    }
    const rows = alerts.map((/** @type {Record<string, any>} */ alert) => [
      h("td", {}, alert.subject ? `${alert.rule} (${alert.subject})` : alert.rule),
      h("td", {}, h("span", { class: alert.state === "firing" ? "badge badge-bad" : "badge badge-ok" }, alert.state)),
      h("td", { class: "num" }, String(alert.value)),
      h("td", { class: "num" }, String(alert.threshold)),
      h("td", { class: "time" }, formatTime(alert.since)),
      h("td", { class: "time" }, formatTime(alert.resolved_at)),
    ]);
    replace(body, table(["Rule", "State", "Value", "Threshold", "Since", "Resolved"], rows, { class: "alerts" }));
  } catch (error) {
    if (view.lifetime.disposed) return;
    if (missing(error)) showEmpty(body, NOT_AVAILABLE);
    else showError(body, explain(error, "admin", "the alerts"));
  }
}
