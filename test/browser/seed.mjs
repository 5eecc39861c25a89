// @ts-check
/**
 * The history the browser tests look at, made through the ledger's API with the ledger's clock
 * moved day by day (never backwards): an account with usage on known days (one of them outside
 * the chart's 30 days), a captured hold, a refund, enough events for two pages, and an open hold
 * that expires HOLD_TTL_SECONDS after T0; two more accounts for the operator's list.
 */

const DAY_MS = 86_400_000;
/** The open hold's lifetime: long enough for the page to load before the test pauses its clock. */
export const HOLD_TTL_SECONDS = 600;
/** Small charges on the day before T0, so that the events take more than one page. */
const SMALL_CHARGES = 16;

/**
 * T0, the time the open hold is made: noon UTC, three days ahead of the real clock, so the
 * hold's real alarm lies days ahead and never fires during a test (the test runs it).
 * @param {number} realNowMs
 */
export function testEpoch(realNowMs) {
  return Math.floor(realNowMs / DAY_MS) * DAY_MS + 3 * DAY_MS + 12 * 3_600_000;
}

/**
 * Makes the history; answers what the tests check against.
 * @param {Awaited<ReturnType<typeof import("./ledger.mjs").startLedger>>} ledger @param {number} t0
 */
export async function seedHistory(ledger, t0) {
  const { api } = ledger;
  const at = (/** @type {number} */ days) => ledger.setClock(t0 - days * DAY_MS);
  const post = (/** @type {string} */ path, /** @type {unknown} */ body) =>
    api.call("POST", `/v1/accounts/acct_main${path}`, body);
  const charge = (/** @type {string} */ id, /** @type {number} */ amount, /** @type {string} */ model) =>
    post("/charges", { charge_id: id, amount, context: { provider: "prov", model } });

  await at(40);
  await api.call("POST", "/v1/accounts", { account_id: "acct_main", currency: "USD", credit_limit: 2500 });
  await post("/credits", { credit_id: "topup_1", amount: 1_000_000 });
  await charge("ch_old", 111, "model-a"); // 40 days ago: outside the chart
  await at(20);
  await charge("ch_20", 1_250, "model-a");
  await at(12);
  await charge("ch_12a", 4_000, "model-a");
  await charge("ch_12b", 2_345, "model-b");
  await at(5);
  await post("/reservations", {
    reservation_id: "hold_5",
    amount: 3_000,
    context: { provider: "prov", model: "model-b" },
  });
  await post("/reservations/hold_5/capture", { amount: 2_222 });
  await at(1);
  for (let i = 0; i < SMALL_CHARGES; i++) await charge(`ch_small_${i}`, 10 + i, "model-a");
  await post("/refunds", { refund_id: "refund_1", charge_id: "ch_12a", amount: 1_500, reason: "failed request" });
  await at(0);
  // A day's spend limit on model-c, which today's charge takes past its threshold (80%).
  await api.call("PUT", "/v1/accounts/acct_main/limits/model-c-daily", {
    applies_to: { model: "model-c" },
    window: "day",
    amount: 1_000,
  });
  await charge("ch_today", 999, "model-c");
  // Promotional credit that expires in 20 days: spent first, so the hold below earmarks it.
  const promoExpiresAt = new Date(t0 + 20 * DAY_MS).toISOString();
  await post("/credits", {
    credit_id: "promo_welcome",
    amount: 5_000,
    grant: { kind: "promotional", expires_at: promoExpiresAt },
  });
  const hold = await post("/reservations", {
    reservation_id: "hold_open",
    amount: 7_777,
    ttl_seconds: HOLD_TTL_SECONDS,
    on_expiry: "release",
  });

  // Two more accounts with lower available balances, for the operator's list.
  await api.call("POST", "/v1/accounts", { account_id: "acct_low", currency: "USD" });
  await api.call("POST", "/v1/accounts/acct_low/credits", { credit_id: "topup_low", amount: 42 });
  await api.call("POST", "/v1/accounts", { account_id: "acct_yen", currency: "JPY" });
  await api.call("POST", "/v1/accounts/acct_yen/credits", { credit_id: "topup_yen", amount: 5_000 });
  for (const account of ["acct_main", "acct_low", "acct_yen"]) await ledger.projected(account);
  return { holdExpiresMs: Date.parse(hold.reservation.expires_at) };
}
