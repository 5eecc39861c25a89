// @ts-check
/**
 * The account's lots of credit with credit left, in the order the ledger spends them
 * (GET /v1/accounts/{id}/lots?status=active): promotional lots and their expiry stand out.
 */
import { explain, get } from "./api.js";
import { amount, h, nextPage, replace, showEmpty, showError, showLoading, table } from "./dom.js";
import { formatTime } from "./time.js";

/** Lots per page. */
export const LOTS_PAGE = 50;

/**
 * The ledger's burn order (docs/api.md, "Credit in lots"): lower priority first, then the soonest
 * expiry (never last), then the oldest.
 * @param {Record<string, any>} a @param {Record<string, any>} b
 */
export function burnOrder(a, b) {
  if (a.priority !== b.priority) return a.priority - b.priority;
  if (a.expires_at !== b.expires_at) {
    if (a.expires_at === null) return 1;
    if (b.expires_at === null) return -1;
    return a.expires_at < b.expires_at ? -1 : 1;
  }
  if (a.created_at !== b.created_at) return a.created_at < b.created_at ? -1 : 1;
  return a.lot_id < b.lot_id ? -1 : a.lot_id > b.lot_id ? 1 : 0;
}

/**
 * @param {Element} body @param {{ accountId: string, currency: string, lifetime: import("./time.js").Lifetime }} view
 * @param {string | null} [cursor]
 */
export async function loadLots(body, view, cursor = null) {
  showLoading(body, "lots");
  try {
    const query = `status=active&limit=${LOTS_PAGE}${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`;
    const page = await get(`/v1/accounts/${encodeURIComponent(view.accountId)}/lots?${query}`);
    if (view.lifetime.disposed) return;
    if (page.data.length === 0) {
      showEmpty(body, "No credit left in any lot. Credits and grants appear here until they are spent or expire.");
      return;
    }
    const rows = [...page.data]
      .sort(burnOrder)
      .map((/** @type {Record<string, any>} */ lot) => [
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
    replace(
      body,
      table(["Lot", "Kind", "Remaining", "Held", "Expires", "Priority"], rows, { class: "lots" }),
      nextPage(page.next_cursor, "More lots", (next) => void loadLots(body, view, next)),
    );
  } catch (error) {
    if (!view.lifetime.disposed) showError(body, explain(error, "ledger:read", "the lots"));
  }
}
