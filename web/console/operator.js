// @ts-check
/**
 * The operator view's own panels (admin keys): every account by available balance, lowest first
 * (GET /v1/reports/balances?sort=available&order=asc), and the read side's projection lag and
 * dead letters (the report's `as_of`, GET /v1/admin/projection/dead-letters).
 */
import { explain, get } from "./api.js";
import { amount, h, nextPage, replace, showEmpty, showError, showLoading, table } from "./dom.js";
import { formatLag, formatTime } from "./time.js";

/** Accounts per page. */
export const ACCOUNTS_PAGE = 50;

/**
 * @param {Element} body @param {{ lifetime: import("./time.js").Lifetime, onAsOf: (asOf: any) => void }} view
 * @param {string | null} [cursor]
 */
export async function loadAccounts(body, view, cursor = null) {
  showLoading(body, "accounts");
  try {
    const query = `sort=available&order=asc&limit=${ACCOUNTS_PAGE}${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`;
    const page = await get(`/v1/reports/balances?${query}`);
    if (view.lifetime.disposed) return;
    if (cursor === null) view.onAsOf(page.as_of);
    if (page.data.length === 0) {
      showEmpty(body, "No accounts yet. Open one with POST /v1/accounts; it appears here once projected.");
      return;
    }
    const rows = page.data.map((/** @type {Record<string, any>} */ account) => [
      h("td", {}, h("a", { href: `#/account/${encodeURIComponent(account.account_id)}` }, account.account_id)),
      h("td", { class: "num", "data-field": "available" }, amount(account.available, account.currency)),
      h("td", { class: "num" }, amount(account.balance, account.currency)),
      h("td", { class: "num" }, amount(account.reserved, account.currency)),
      h("td", { class: "num" }, amount(account.credit_limit, account.currency)),
      h("td", {}, account.status),
      h("td", { class: "num" }, formatLag(account.projection_lag_ms)),
    ]);
    replace(
      body,
      table(["Account", "Available", "Balance", "Reserved", "Credit limit", "Status", "Projection lag"], rows, {
        class: "accounts",
      }),
      nextPage(page.next_cursor, "Next accounts", (next) => void loadAccounts(body, view, next)),
    );
  } catch (error) {
    if (!view.lifetime.disposed) showError(body, explain(error, "ledger:read", "the accounts"));
  }
}

/**
 * The read side's position: the worst projection lag of any account, and dead letters waiting.
 * @param {Element} body @param {any} asOf @param {{ lifetime: import("./time.js").Lifetime }} view
 */
export async function loadProjection(body, asOf, view) {
  try {
    const deadLetters = await get("/v1/admin/projection/dead-letters?limit=1");
    if (view.lifetime.disposed) return;
    replace(
      body,
      h(
        "dl",
        { class: "figures" },
        h("dt", {}, "Worst projection lag"),
        h("dd", { "data-field": "worst_projection_lag_ms" }, formatLag(asOf.worst_projection_lag_ms)),
        h("dt", {}, "Last projected"),
        h("dd", {}, formatTime(asOf.last_projected_at)),
        h("dt", {}, "Newest event"),
        h("dd", {}, formatTime(asOf.newest_event_at)),
        h("dt", {}, "Accounts"),
        h("dd", {}, String(asOf.accounts)),
        h("dt", {}, "Dead letters"),
        h(
          "dd",
          { "data-field": "dead_letters" },
          h(
            "span",
            { class: deadLetters.total === 0 ? "badge badge-ok" : "badge badge-warn" },
            String(deadLetters.total),
          ),
        ),
      ),
    );
  } catch (error) {
    if (!view.lifetime.disposed) showError(body, explain(error, "admin", "the projection status"));
  }
}
