// @ts-check
/**
 * The monitoring windows and the alerts (issue 14: GET /v1/admin/monitoring and
 * GET /v1/admin/alerts, admin scope). A ledger without that work answers those routes 404: each
 * panel then says that monitoring is not available on this ledger, and nothing else changes.
 * Kept apart so that the panels can be wired or changed with the monitoring work alone.
 *
 * The monitoring body is read loosely (issue 14 names its figures, not their field names): the
 * `overall` window's numbers are shown as a list and each route of `routes` as a table row.
 */
import { ApiError, explain, get } from "./api.js";
import { h, replace, showEmpty, showError, showLoading, table } from "./dom.js";
import { formatTime } from "./time.js";

/** @param {unknown} error */
const missing = (error) => error instanceof ApiError && error.status === 404;

const NOT_AVAILABLE =
  "Monitoring is not available on this ledger: it answers 404 for this route (the monitoring release, issue 14, is not deployed here).";

/** A figure for people: numbers and strings as they are, objects and lists compacted. @param {unknown} value */
const figure = (value) =>
  value === null || value === undefined ? "—" : typeof value === "object" ? JSON.stringify(value) : String(value);

/** @param {Element} body @param {{ lifetime: import("./time.js").Lifetime }} view */
export async function loadMonitoring(body, view) {
  showLoading(body, "monitoring");
  try {
    const windows = await get("/v1/admin/monitoring");
    if (view.lifetime.disposed) return;
    const overall = windows.overall ?? windows;
    const scalars = Object.entries(overall).filter(([, value]) => typeof value !== "object" || value === null);
    const routes = Array.isArray(windows.routes)
      ? windows.routes
      : Object.entries(windows.routes ?? {}).map(([route, window]) => ({ route, ...window }));
    const columns = [...new Set(routes.flatMap((/** @type {object} */ route) => Object.keys(route)))];
    replace(
      body,
      h(
        "dl",
        { class: "figures" },
        ...scalars.flatMap(([name, value]) => [h("dt", {}, name.replaceAll("_", " ")), h("dd", {}, figure(value))]),
      ),
      routes.length === 0
        ? null
        : table(
            columns.map((name) => name.replaceAll("_", " ")),
            routes.map((/** @type {Record<string, unknown>} */ route) =>
              columns.map((name) => h("td", {}, figure(route[name]))),
            ),
          ),
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
      showEmpty(body, "No alert has fired. Rules are evaluated every minute.");
      return;
    }
    const rows = alerts.map((/** @type {Record<string, any>} */ alert) => [
      h("td", {}, alert.rule),
      h("td", {}, h("span", { class: alert.state === "firing" ? "badge badge-bad" : "badge badge-ok" }, alert.state)),
      h("td", { class: "num" }, figure(alert.value)),
      h("td", { class: "num" }, figure(alert.threshold)),
      h("td", { class: "time" }, formatTime(alert.since)),
      h("td", { class: "time" }, formatTime(alert.resolved_at)),
    ]);
    replace(body, table(["Rule", "State", "Value", "Threshold", "Since", "Resolved"], rows, { class: "alerts" }));
  } catch (error) {
    if (view.lifetime.disposed) return;
    if (missing(error)) showEmpty(body, NOT_AVAILABLE.replace("for this route", "for /v1/admin/alerts"));
    else showError(body, explain(error, "admin", "the alerts"));
  }
}
