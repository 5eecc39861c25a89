// @ts-check
/**
 * The account's recent events, newest first, with the balance after each one, a page at a time
 * (GET /v1/accounts/{id}/events?after_seq=&limit=, which reads the account's own log in seq
 * order: the newest page starts EVENTS_PAGE before the head).
 */
import { explain, get } from "./api.js";
import { amount, h, replace, showError, showLoading, table } from "./dom.js";
import { formatTime } from "./time.js";

/** Events per page. */
export const EVENTS_PAGE = 20;

/** What each event type is called here, and which of its fields is the amount it moved. */
const KINDS = {
  AccountOpened: ["Account opened", null],
  AccountUpdated: ["Account updated", null],
  FundsCredited: ["Top-up", "amount"],
  FundsReserved: ["Hold opened", "amount"],
  ReservationExtended: ["Hold extended", null],
  ReservationCaptured: ["Hold captured", "amount"],
  ReservationReleased: ["Hold released", "reserved_amount"],
  ReservationExpired: ["Hold expired", "captured_amount"],
  AccountCharged: ["Charge", "amount"],
  ChargeRefunded: ["Refund", "amount"],
  BalanceAdjusted: ["Adjustment", "amount"],
};

/** The id an event is about. @param {Record<string, any>} event */
const subject = (event) =>
  event.credit_id ?? event.refund_id ?? event.charge_id ?? event.reservation_id ?? event.adjustment_id ?? "";

/**
 * Shows the page of events that ends at `top` (the newest seq shown).
 * @param {Element} body @param {{ accountId: string, currency: string, lastSeq: number,
 *   lifetime: import("./time.js").Lifetime }} view
 * @param {number} [top]
 */
export async function loadEvents(body, view, top = view.lastSeq) {
  showLoading(body, "events");
  const after = Math.max(0, top - EVENTS_PAGE);
  try {
    const path = `/v1/accounts/${encodeURIComponent(view.accountId)}/events?after_seq=${after}&limit=${top - after}`;
    const page = await get(path);
    if (view.lifetime.disposed) return;
    const rows = [...page.events].reverse().map((/** @type {Record<string, any>} */ event) => {
      const [label, field] = KINDS[/** @type {keyof typeof KINDS} */ (event.type)] ?? [event.type, null];
      return [
        h("td", { class: "num" }, String(event.seq)),
        h("td", { class: "time" }, formatTime(event.at)),
        h("td", {}, h("span", {}, label, " ", h("code", {}, subject(event)))),
        h("td", { class: "num" }, field === null ? "" : amount(event[field], view.currency)),
        h("td", { class: "num", "data-field": "balance_after" }, amount(event.balance_after, view.currency)),
        h("td", { class: "num" }, amount(event.reserved_after, view.currency)),
      ];
    });
    const pager = h(
      "div",
      { class: "pager" },
      h(
        "button",
        {
          type: "button",
          disabled: top >= view.lastSeq,
          onclick: () => void loadEvents(body, view, Math.min(view.lastSeq, top + EVENTS_PAGE)),
        },
        "Newer",
      ),
      h("span", {}, `events ${after + 1}–${top} of ${view.lastSeq}`),
      h(
        "button",
        { type: "button", disabled: after === 0, onclick: () => void loadEvents(body, view, after) },
        "Older",
      ),
    );
    replace(
      body,
      table(["#", "Time", "Event", "Amount", "Balance after", "Reserved after"], rows, { class: "events" }),
      pager,
    );
  } catch (error) {
    if (!view.lifetime.disposed) showError(body, explain(error, "audit:read", "the event log"));
  }
}
