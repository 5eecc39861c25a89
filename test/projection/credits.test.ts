/**
 * Credit in lots on the read side (issue 27): the credits report by kind, the statement's lot
 * movements and breakage, the trial balance's breakage line, and reconciliation of an account
 * whose lots expired. Time comes from a ManualClock on a whole hour.
 */
import { afterEach, describe, expect, it } from "vitest";
import { api, expectEveryAccountConsistent, openAccount, stub, useManualClock } from "../helpers";

afterEach(expectEveryAccountConsistent);

const HOUR_MS = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();

describe("credit by kind of lot", () => {
  it("reports granted, consumed, refunded back, expired and remaining, and the statement and journal agree", async () => {
    const t0 = Math.ceil((Date.now() + 2 * 24 * HOUR_MS) / HOUR_MS) * HOUR_MS;
    const time = useManualClock(t0);
    const id = await openAccount();
    const post = (path: string, body: unknown) => api("POST", `/v1/accounts/${id}${path}`, body);
    expect((await post("/credits", { credit_id: "paid", amount: 500 })).status).toBe(201);
    const promo = { kind: "promotional", expires_at: iso(t0 + HOUR_MS / 2) };
    expect((await post("/credits", { credit_id: "promo", amount: 100, grant: promo })).status).toBe(201);
    expect((await post("/charges", { charge_id: "c1", amount: 60 })).body.charge.funded_by).toEqual([
      { lot_id: "promo", amount: 60 },
    ]);
    time.advance(HOUR_MS / 2);
    expect((await post("/charges", { charge_id: "c2", amount: 100 })).body.charge.funded_by).toEqual([
      { lot_id: "paid", amount: 100 },
    ]);
    // Back to a new promotional lot: the one that paid has expired.
    const refund = await post("/refunds", { refund_id: "f", charge_id: "c1", amount: 60 });
    expect(refund.body.refund.returned_to).toEqual([{ source: "promo", to_lot_id: "refund/f/1", amount: 60 }]);
    const status = await stub(id).catchUp();
    expect(status.projected_seq).toBe(status.last_seq);

    const from = iso(t0);
    const to = iso(t0 + HOUR_MS);
    const report = await api("GET", `/v1/reports/credits?from=${from}&to=${to}&account_id=${id}`);
    expect(report.status).toBe(200);
    expect(report.body.data).toEqual([
      { kind: "paid", granted: "500", consumed: "100", refunded: "0", expired: "0", remaining: "400" },
      { kind: "promotional", granted: "100", consumed: "60", refunded: "60", expired: "40", remaining: "60" },
    ]);
    const lots = (await api("GET", `/v1/accounts/${id}`)).body.balance_by_kind;
    expect(lots).toEqual({ paid: 400, promotional: 60 });
    // A period after it: no movement, the same remaining.
    const later = await api("GET", `/v1/reports/credits?from=${to}&to=${iso(t0 + 2 * HOUR_MS)}&account_id=${id}`);
    expect(later.body.data.map((l: { granted: string; remaining: string }) => [l.granted, l.remaining])).toEqual([
      ["0", "400"],
      ["0", "60"],
    ]);

    const statement = (await api("GET", `/v1/accounts/${id}/statement?from=${from}&to=${to}`)).body;
    expect(statement.movements.expired).toEqual({ amount: 40 });
    expect(statement.lots).toEqual({
      paid: { granted: 500, consumed: 100, refunded: 0, expired: 0 },
      promotional: { granted: 100, consumed: 60, refunded: 60, expired: 40 },
    });
    const m = statement.movements;
    expect(statement.closing_balance).toBe(
      statement.opening_balance +
        m.credits.amount -
        m.charges.amount +
        m.refunds.amount +
        m.adjustments.amount -
        m.expired.amount,
    );
    expect(statement.closing_balance).toBe(460);

    const trial = (await api("GET", "/v1/reports/trial-balance")).body;
    expect(trial.balanced).toBe(true);
    expect(trial.data.map((l: { ledger_account: string }) => l.ledger_account)).toContain("breakage");
    const reconciled = await api("POST", "/v1/admin/reconcile", { account_ids: [id] });
    expect(reconciled.body.results.map((r: { state: string }) => r.state)).toEqual(["ok"]);
  });

  it("refuses a period that does not end after it starts", async () => {
    const at = "2026-01-01T00:00:00Z";
    const response = await api("GET", `/v1/reports/credits?from=${at}&to=${at}`);
    expect([response.status, response.body.code]).toEqual([400, "invalid_request"]);
  });
});
