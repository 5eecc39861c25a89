// @ts-check
/**
 * The account's spend limits (GET /v1/accounts/{id}/limits, issue 28): what each applies to, its
 * window, and the window's spent, held and remaining, with a limit at or past its threshold marked.
 */
import { explain, get } from "./api.js";
import { amount, h, replace, showEmpty, showError, showLoading, table } from "./dom.js";
import { formatTime } from "./time.js";

/** "project_id p1, model m" from a limit's applies_to. @param {Record<string, string>} scope */
export function scopeText(scope) {
  return Object.entries(scope)
    .map(([dimension, value]) => `${dimension} ${value}`)
    .join(", ");
}

/**
 * At or past its threshold (spent + held), or exhausted: the row's state.
 * @param {Record<string, any>} limit
 * @returns {"exhausted" | "threshold" | "ok"}
 */
export function limitState(limit) {
  if (limit.remaining <= 0) return "exhausted";
  return (limit.spent + limit.held) * 100 >= limit.amount * limit.threshold_percent ? "threshold" : "ok";
}

const BADGE = { exhausted: "badge badge-warn", threshold: "badge badge-warn", ok: "badge badge-ok" };

/**
 * @param {Element} body @param {{ accountId: string, currency: string, lifetime: import("./time.js").Lifetime }} view
 */
export async function loadLimits(body, view) {
  showLoading(body, "spend limits");
  try {
    const { data } = await get(`/v1/accounts/${encodeURIComponent(view.accountId)}/limits`);
    if (view.lifetime.disposed) return;
    if (data.length === 0) {
      showEmpty(body, "No spend limits. An admin sets them per API key, project, service or model.");
      return;
    }
    const rows = data.map((/** @type {Record<string, any>} */ limit) => {
      const state = limitState(limit);
      return [
        h("td", {}, h("code", {}, limit.limit_id)),
        h("td", {}, scopeText(limit.applies_to)),
        h("td", {}, limit.window),
        h("td", { class: "num", "data-field": "amount" }, amount(limit.amount, view.currency)),
        h("td", { class: "num", "data-field": "spent" }, amount(limit.spent, view.currency)),
        h("td", { class: "num", "data-field": "held" }, amount(limit.held, view.currency)),
        h("td", { class: "num", "data-field": "remaining" }, amount(limit.remaining, view.currency)),
        h("td", {}, h("span", { class: BADGE[state], "data-field": "state" }, state)),
        h("td", { class: "time" }, limit.resets_at === null ? "never" : formatTime(limit.resets_at)),
      ];
    });
    const headers = ["Limit", "Applies to", "Window", "Amount", "Spent", "Held", "Remaining", "State", "Resets"];
    replace(body, table(headers, rows, { class: "limits" }));
  } catch (error) {
    if (!view.lifetime.disposed) showError(body, explain(error, "ledger:read", "the spend limits"));
  }
}
