// @ts-check
/**
 * The open holds of an account, each counting down to its expiry, with its on-expiry rule
 * (GET /v1/reports/reservations?status=open). A hold past its expiry stays listed as "settling"
 * until the ledger's alarm has settled it and the read side shows it gone: the panel asks again
 * every EXPIRED_REFRESH_MS while one is shown.
 */
import { explain, get } from "./api.js";
import { amount, h, replace, showEmpty, showError, showLoading, table } from "./dom.js";
import { formatCountdown, formatTime } from "./time.js";

/** The holds one page shows (the first to expire). */
export const HOLDS_PAGE_MAX = 100;
/** How often the countdowns move. */
const TICK_MS = 1000;
/** How often the panel asks again while a hold past its expiry is still shown. */
export const EXPIRED_REFRESH_MS = 5000;

const ON_EXPIRY = {
  release: "release: given back",
  capture: "capture: charged in full",
};

/**
 * Loads and shows the open holds; `onChange` runs when a reload finds a different set (the
 * balances changed too).
 * @param {Element} body @param {{ accountId: string, currency: string,
 *   lifetime: import("./time.js").Lifetime, onChange: () => void }} view
 */
export function loadHolds(body, view) {
  let shown = "";
  let refreshing = false;
  const reload = async (/** @type {boolean} */ first) => {
    if (first) showLoading(body, "open holds");
    try {
      const path = `/v1/reports/reservations?status=open&account_id=${encodeURIComponent(view.accountId)}&limit=${HOLDS_PAGE_MAX}`;
      const page = await get(path);
      if (view.lifetime.disposed) return;
      const ids = page.data.map((/** @type {any} */ hold) => hold.reservation_id).join(",");
      if (!first && ids !== shown) view.onChange();
      shown = ids;
      renderHolds(body, page, view.currency);
      tick();
    } catch (error) {
      if (!view.lifetime.disposed) showError(body, explain(error, "ledger:read", "the open holds"));
    } finally {
      refreshing = false;
    }
  };
  const tick = () => {
    const expired = updateCountdowns(body);
    if (expired && !refreshing) {
      refreshing = true;
      view.lifetime.after(EXPIRED_REFRESH_MS, () => void reload(false));
    }
  };
  view.lifetime.every(TICK_MS, tick);
  void reload(true);
}

/** @param {Element} body @param {{ data: any[], next_cursor: string | null }} page @param {string} currency */
function renderHolds(body, page, currency) {
  if (page.data.length === 0) {
    showEmpty(
      body,
      "No open holds. A hold appears here while a reservation is open, until it is captured, released or expires.",
    );
    return;
  }
  const rows = page.data.map((hold) => [
    h("td", {}, h("code", {}, hold.reservation_id)),
    h("td", { class: "num" }, amount(hold.amount, currency)),
    h("td", { class: "time" }, formatTime(hold.expires_at)),
    h("td", { class: "countdown", "data-expires-ms": Date.parse(hold.expires_at) }),
    h("td", {}, ON_EXPIRY[/** @type {"release" | "capture"} */ (hold.on_expiry)] ?? hold.on_expiry),
  ]);
  replace(
    body,
    table(["Hold", "Amount", "Expires at", "Time left", "On expiry"], rows, { class: "holds" }),
    page.next_cursor === null
      ? null
      : h("p", { class: "note" }, `More holds are open: these are the ${HOLDS_PAGE_MAX} that expire first.`),
  );
}

/** Moves every countdown to now; true when one has reached its expiry. @param {Element} body */
function updateCountdowns(body) {
  let expired = false;
  for (const cell of body.querySelectorAll("[data-expires-ms]")) {
    const left = Number(cell.getAttribute("data-expires-ms")) - Date.now();
    if (left > 0) {
      cell.textContent = formatCountdown(left);
      cell.setAttribute("data-state", "counting");
    } else {
      expired = true;
      cell.textContent = "expired: settling";
      cell.setAttribute("data-state", "expired");
    }
  }
  return expired;
}
