// @ts-check
/**
 * The account's low-balance threshold and its state (issue 14's webhooks). A ledger without that
 * work answers accounts without `low_balance_threshold`: then this module adds nothing. Kept
 * apart so that the row can be wired or changed with the monitoring work alone.
 *
 * The state follows issue 14's rule: the account is low when its available balance counted with
 * its credit limit (balance − reserved + credit limit) is below the threshold; at the threshold
 * it is not low (the event fires on crossing below).
 */
import { amount, h } from "./dom.js";
import { toMinor } from "./money.js";

/**
 * The threshold's term and description for the balances list, or nothing when the account does
 * not carry the field.
 * @param {Record<string, unknown>} account
 * @returns {HTMLElement[]}
 */
export function thresholdRows(account) {
  if (!Object.hasOwn(account, "low_balance_threshold")) return [];
  const currency = String(account.currency);
  const threshold = toMinor(account.low_balance_threshold);
  const term = h("dt", {}, "Low-balance threshold");
  if (threshold === null) {
    return [term, h("dd", { "data-field": "low_balance_threshold" }, "off (no low-balance alert)")];
  }
  const available = toMinor(account.available);
  const creditLimit = toMinor(account.credit_limit) ?? 0n;
  const low = available !== null && available + creditLimit < threshold;
  return [
    term,
    h(
      "dd",
      { "data-field": "low_balance_threshold" },
      amount(account.low_balance_threshold, currency),
      " ",
      h(
        "span",
        { class: low ? "badge badge-warn" : "badge badge-ok", "data-threshold-state": low ? "low" : "ok" },
        low ? "below: low balance" : "above",
      ),
    ),
  ];
}
