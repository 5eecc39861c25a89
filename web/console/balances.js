// @ts-check
/** The account's balances panel: balance, reserved, available, credit limit (GET /v1/accounts/{id}). */
import { amount, h, replace } from "./dom.js";
import { thresholdRows } from "./threshold.js";
import { formatTime } from "./time.js";

/** @type {[string, string][]} */
const AMOUNTS = [
  ["balance", "Balance"],
  ["reserved", "Reserved by open holds"],
  ["available", "Available (balance − reserved)"],
  ["credit_limit", "Credit limit"],
];

/**
 * Shows `account` (the ledger's account view) in the panel body.
 * @param {Element} body @param {Record<string, any>} account
 */
export function renderBalances(body, account) {
  const currency = String(account.currency);
  const items = AMOUNTS.flatMap(([field, label]) => [
    h("dt", {}, label),
    h("dd", { "data-field": field }, amount(account[field], currency)),
  ]);
  replace(
    body,
    h(
      "dl",
      { class: "figures" },
      ...items,
      ...thresholdRows(account),
      h("dt", {}, "Status"),
      h(
        "dd",
        { "data-field": "status" },
        h("span", { class: account.status === "active" ? "badge badge-ok" : "badge badge-warn" }, account.status),
      ),
    ),
    h(
      "p",
      { class: "note" },
      `${account.currency} · ${account.open_reservations} open hold(s) · event ${account.last_seq} · updated ${formatTime(account.updated_at)}`,
    ),
  );
}
