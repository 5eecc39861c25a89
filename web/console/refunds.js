// @ts-check
/** The account's refunds of the last days, oldest first, a page at a time (GET /v1/reports/refunds). */
import { explain, get } from "./api.js";
import { amount, h, nextPage, replace, showEmpty, showError, showLoading, table } from "./dom.js";
import { formatTime, utcDay } from "./time.js";

/** Refunds per page. */
export const REFUNDS_PAGE = 20;
/** How far back the panel lists refunds, in days (the usage chart's window). */
export const REFUNDS_DAYS = 30;

/**
 * @param {Element} body @param {{ accountId: string, currency: string, lifetime: import("./time.js").Lifetime }} view
 * @param {string | null} [cursor]
 */
export async function loadRefunds(body, view, cursor = null) {
  showLoading(body, "refunds");
  try {
    const from = utcDay(Date.now(), 1 - REFUNDS_DAYS);
    const query = `account_id=${encodeURIComponent(view.accountId)}&from=${from}&limit=${REFUNDS_PAGE}`;
    const page = await get(
      `/v1/reports/refunds?${query}${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`,
    );
    if (view.lifetime.disposed) return;
    if (page.data.length === 0) {
      showEmpty(body, `No refunds in the last ${REFUNDS_DAYS} days. Refunds of charges appear here.`);
      return;
    }
    const rows = page.data.map((/** @type {Record<string, any>} */ refund) => [
      h("td", { class: "time" }, formatTime(refund.created_at)),
      h("td", {}, h("code", {}, refund.refund_id)),
      h("td", {}, h("code", {}, refund.charge_id)),
      h("td", { class: "num" }, amount(refund.amount, view.currency)),
      h(
        "td",
        { class: "num" },
        h(
          "span",
          {},
          amount(refund.charge_refunded_total, view.currency),
          " of ",
          amount(refund.charge_amount, view.currency),
        ),
      ),
      h("td", { class: "wide" }, refund.reason ?? ""),
    ]);
    replace(
      body,
      table(["Time", "Refund", "Charge", "Amount", "Charge refunded", "Reason"], rows, { class: "refunds" }),
      nextPage(page.next_cursor, "Later refunds", (next) => void loadRefunds(body, view, next)),
    );
  } catch (error) {
    if (!view.lifetime.disposed) showError(body, explain(error, "ledger:read", "the refunds"));
  }
}
