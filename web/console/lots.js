// @ts-check
/**
 * The account's lots of credit with credit left, in the order the ledger spends them
 * (GET /v1/accounts/{id}/lots?status=active): promotional lots and their expiry stand out.
 */
import { explain, get } from "./api.js";
import { amount, h, replace, showEmpty, showError, showLoading, table } from "./dom.js";
import { formatTime } from "./time.js";

/** Lots per request (the API's largest page). */
export const LOTS_PAGE = 1_000;

/**
 * The ledger's burn order (docs/api.md, "Credit in lots"): lower priority first, then the soonest
 * expiry (never last); ties keep the API's order, the lots' creation order (a stable sort).
 * @param {Record<string, any>} a @param {Record<string, any>} b
 */
export function burnOrder(a, b) {
  if (a.priority !== b.priority) return a.priority - b.priority;
  if (a.expires_at === b.expires_at) return 0;
  if (a.expires_at === null) return 1;
  if (b.expires_at === null) return -1;
  return a.expires_at < b.expires_at ? -1 : 1;
}

/**
 * Every lot with credit (at most LOTS_ACTIVE_MAX, 10,000), read page by page and sorted once, so the
 * order is the ledger's across the whole list.
 * @param {{ accountId: string, currency: string, lifetime: import("./time.js").Lifetime }} view
 */
async function activeLots(view) {
  /** @type {Record<string, any>[]} */
  const lots = [];
  let cursor = null;
  do {
    const query = `status=active&limit=${LOTS_PAGE}${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`;
    const page = await get(`/v1/accounts/${encodeURIComponent(view.accountId)}/lots?${query}`);
    lots.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor !== null && !view.lifetime.disposed);
  return lots.sort(burnOrder);
}

/**
 * @param {Element} body @param {{ accountId: string, currency: string, lifetime: import("./time.js").Lifetime }} view
 */
export async function loadLots(body, view) {
  showLoading(body, "lots");
  try {
    const lots = await activeLots(view);
    if (view.lifetime.disposed) return;
    if (lots.length === 0) {
      showEmpty(body, "No credit left in any lot. Credits and grants appear here until they are spent or expire.");
      return;
    }
    const rows = lots.map((/** @type {Record<string, any>} */ lot) => [
      h("td", {}, h("code", {}, lot.lot_id)),
      h("td", {}, h("span", { class: lot.kind === "promotional" ? "badge badge-warn" : "badge badge-ok" }, lot.kind)),
      h("td", { class: "num", "data-field": "remaining" }, amount(lot.remaining, view.currency)),
      h("td", { class: "num", "data-field": "held" }, amount(lot.held, view.currency)),
      h(
        "td",
        { class: lot.expires_at === null ? "time" : "time expiring", "data-field": "expires_at" },
        lot.expires_at === null ? "never" : formatTime(lot.expires_at),
      ),
      h("td", { class: "num" }, String(lot.priority)),
    ]);
    replace(body, table(["Lot", "Kind", "Remaining", "Held", "Expires", "Priority"], rows, { class: "lots" }));
  } catch (error) {
    if (!view.lifetime.disposed) showError(body, explain(error, "ledger:read", "the lots"));
  }
}
