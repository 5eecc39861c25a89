/**
 * Usage pricing: the arithmetic (exact, rounded up once), priced reservations and captures in
 * the decider (pinning, idempotency across a price change), the price API, and the
 * service-binding API's typed results.
 *
 * Budget (test/budget.ts): the pricing property runs a fixed 300 cases; PROPERTY_RUNS=<n> runs
 * n instead, for a deeper local hunt.
 */
import { exports } from "cloudflare:workers";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { AMOUNT_MINOR_MAX } from "../../src/domain/limits";
import { type PinnedPricing, type PinnedRule, priceOf } from "../../src/domain/pricing";
import type { LedgerService } from "../../src/service";
import { budget } from "../budget";
import { codeOf, credit, Ledger, open, reserve } from "../domain/given";
import { api, expectEveryAccountConsistent, openAccount, useManualClock } from "../helpers";

afterEach(expectEveryAccountConsistent);

const rule = (unit: PinnedRule["unit"], price_minor: number, per_units: number, rule_id = `r_${unit}`): PinnedRule => ({
  rule_id,
  unit,
  price_minor,
  per_units,
  effective_from: "2026-01-01T00:00:00.000Z",
});

describe("priceOf", () => {
  it("sums exactly and rounds up once per charge, never per line", () => {
    // 1 token at 1/3 plus 1 token at 1/3: 2/3 -> 1 (per-line rounding would charge 2).
    const c = priceOf([rule("input_token", 1, 3), rule("output_token", 1, 3)], { input_token: 1, output_token: 1 });
    expect(c).toMatchObject({ exact_numerator: "2", exact_denominator: "3", amount: 1 });
    expect(priceOf([rule("request", 5, 1)], { request: 1 })?.amount).toBe(5);
    expect(priceOf([rule("input_token", 7, 10)], { input_token: 10 })).toMatchObject({
      amount: 7,
      exact_denominator: "1",
    });
    expect(priceOf([rule("input_token", 7, 10)], {})?.amount).toBe(0);
  });

  it("is exact far beyond 2^53 and refuses amounts over the limit", () => {
    const big = priceOf([rule("input_token", 1_000_000_000_000, 1)], { input_token: 1_000_000_000_000 });
    expect(big).toBeNull();
    const edge = priceOf([rule("input_token", AMOUNT_MINOR_MAX, 1)], { input_token: 1 });
    expect(edge?.amount).toBe(AMOUNT_MINOR_MAX);
  });

  // 300 cases take well under a second alone; 60 s leaves room for a slow 2-core machine running
  // the whole suite in parallel (the default 5 s did not).
  const PRICING = budget("PROPERTY_RUNS", 300, 60_000);
  it("equals ceil of the exact sum for random rules and quantities (checked with rationals)", {
    timeout: PRICING.timeout,
  }, () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            p: fc.integer({ min: 0, max: 10_000 }),
            d: fc.integer({ min: 1, max: 1_000_000 }),
            q: fc.integer({ min: 0, max: 10_000_000 }),
          }),
          {
            minLength: 1,
            maxLength: 4,
          },
        ),
        (lines) => {
          const units = ["input_token", "output_token", "cached_token", "request"] as const;
          const rules = lines.map((l, i) => rule(units[i] as PinnedRule["unit"], l.p, l.d));
          const quantities = Object.fromEntries(lines.map((l, i) => [units[i], l.q]));
          const c = priceOf(rules, quantities);
          // Independent check: the amount is the least integer n with n*D >= N over a common D.
          const D = lines.reduce((acc, l) => acc * BigInt(l.d), 1n);
          const N = lines.reduce((acc, l) => acc + BigInt(l.q) * BigInt(l.p) * (D / BigInt(l.d)), 0n);
          const n = BigInt(c?.amount ?? -1);
          expect(n * D >= N).toBe(true);
          expect((n - 1n) * D < N).toBe(true);
        },
      ),
      { numRuns: PRICING.numRuns },
    );
  });
});

describe("priced reservations in the decider", () => {
  const pricing = (rules: PinnedRule[]): PinnedPricing => ({
    price: { service_id: "chat", provider: "acme", model: "m" },
    rules,
    estimate: { input_token: 100, output_token: 50, request: 1 },
  });
  const A = [rule("input_token", 1, 10, "a_in"), rule("output_token", 2, 10, "a_out"), rule("request", 3, 1, "a_req")];
  const B = [rule("input_token", 2, 10, "b_in"), rule("output_token", 4, 10, "b_out"), rule("request", 6, 1, "b_req")];
  // A: 100/10 + 50*2/10 + 3 = 23; B: 46.

  it("pins the rules and the computation, and a retry after a price change replays the original", () => {
    const ledger = new Ledger().given(open(), credit(1_000), reserve("r", 23, { pricing: pricing(A) }));
    const r = ledger.state.reservations.get("r");
    expect(r?.pricing?.rules.map((x) => x.rule_id)).toEqual(["a_in", "a_out", "a_req"]);
    expect(ledger.log.at(-1)).toMatchObject({ pricing: { computation: { amount: 23 } } });
    expect(codeOf(ledger.decide(reserve("r", 46, { pricing: pricing(B) })))).toBe("replayed");
    const otherEstimate = { ...pricing(A), estimate: { input_token: 1, output_token: 1, request: 1 } };
    expect(codeOf(ledger.decide(reserve("r", 4, { pricing: otherEstimate })))).toBe("idempotency_conflict");
    expect(codeOf(ledger.decide(reserve("r", 23)))).toBe("idempotency_conflict");
  });

  it("captures from usage at the pinned price; without a pinned price it needs an amount", () => {
    const ledger = new Ledger().given(
      open(),
      credit(1_000),
      reserve("r", 23, { pricing: pricing(A) }),
      reserve("plain", 10),
    );
    const usage = { input_tokens: 30, output_tokens: 20 };
    const decided = ledger.run({
      type: "CaptureReservation",
      reservation_id: "r",
      amount: null,
      allow_overage: false,
      usage,
      metadata: {},
    });
    expect(decided.outcome).toBe("accepted");
    // 30/10 + 20*2/10 + 3 = 10
    expect(ledger.state.reservations.get("r")).toMatchObject({ captured_amount: 10, released_amount: 13 });
    const unpriced = ledger.decide({
      type: "CaptureReservation",
      reservation_id: "plain",
      amount: null,
      allow_overage: false,
      usage,
      metadata: {},
    });
    expect(codeOf(unpriced)).toBe("price_not_pinned");
    // The same priced capture again is a replay; with an explicit amount it is a conflict.
    const again = {
      type: "CaptureReservation" as const,
      reservation_id: "r",
      amount: null,
      allow_overage: false,
      usage,
      metadata: {},
    };
    expect(codeOf(ledger.decide(again))).toBe("replayed");
    expect(codeOf(ledger.decide({ ...again, amount: 10 }))).toBe("idempotency_conflict");
  });

  it("refuses an estimate that prices to nothing", () => {
    const ledger = new Ledger().given(open(), credit(1_000));
    const free = { ...pricing([rule("input_token", 0, 1)]), estimate: { input_token: 5 } };
    expect(codeOf(ledger.decide(reserve("r", 0, { pricing: free })))).toBe("unpriceable");
  });
});

describe("price API", () => {
  it("publishes append-only rules, never backdated, and answers what was in effect at a time", async () => {
    const body = {
      service_id: "svc",
      provider: "p",
      model: "m",
      rules: [{ unit: "input_token", price_minor: 150, per_units: 1_000_000 }],
    };
    // Time moves by a ManualClock at the real time (no alarms here; later tests see these prices).
    const time = useManualClock(Date.now());
    const first = await api("POST", "/v1/admin/prices", body);
    expect(first.status).toBe(201);
    const between = new Date(time.now()).toISOString();
    time.advance(1);
    const second = await api("POST", "/v1/admin/prices", {
      ...body,
      rules: [{ unit: "input_token", price_minor: 300, per_units: 1_000_000 }],
    });
    const now = await api("GET", "/v1/prices?service_id=svc&model=m");
    expect(now.body.data[0].rules[0]).toMatchObject({ rule_id: second.body.rules[0].rule_id, price_minor: 300 });
    const then = await api("GET", `/v1/prices?service_id=svc&model=m&at=${encodeURIComponent(between)}`);
    expect(then.body.data[0].rules[0]).toMatchObject({ rule_id: first.body.rules[0].rule_id, price_minor: 150 });
    const backdated = await api("POST", "/v1/admin/prices", { ...body, effective_from: "2020-01-01T00:00:00Z" });
    expect(backdated.status).toBe(400);
    const duplicateUnit = await api("POST", "/v1/admin/prices", { ...body, rules: [...body.rules, ...body.rules] });
    expect(duplicateUnit.status).toBe(400);
  });

  it("refuses a priced reservation when no price is in effect (422 price_not_found)", async () => {
    const id = await openAccount(100);
    const response = await api("POST", `/v1/accounts/${id}/reservations`, {
      reservation_id: "r",
      price: { service_id: "none", provider: "none", model: "none" },
      estimate: { max_input_tokens: 10, max_output_tokens: 10 },
    });
    expect(response.status).toBe(422);
    expect(response.body.code).toBe("price_not_found");
    expect((await api("GET", `/v1/accounts/${id}`)).body.last_seq).toBe(2);
  });
});

describe("service binding", () => {
  const service = (exports as unknown as { LedgerService: LedgerService }).LedgerService;

  it("answers typed results with the HTTP API's codes and statuses, never throws for business rejections", async () => {
    const id = await openAccount(100);
    const reserved = await service.reserve(id, { reservation_id: "r1", amount: 60 });
    expect(reserved).toMatchObject({
      ok: true,
      status: 201,
      replayed: false,
      value: { reservation: { status: "open" } },
    });
    const replay = await service.reserve(id, { reservation_id: "r1", amount: 60 });
    expect(replay).toMatchObject({ ok: true, replayed: true });
    const refused = await service.reserve(id, { reservation_id: "r2", amount: 60 });
    expect(refused).toMatchObject({ ok: false, status: 402, code: "insufficient_funds", facts: { available: 40 } });
    const conflict = await service.capture(id, "r1", { amount: 10 });
    expect(conflict.ok).toBe(true);
    expect(await service.capture(id, "r1", { amount: 11 })).toMatchObject({
      ok: false,
      status: 409,
      code: "idempotency_conflict",
    });
    expect(await service.release(id, "r1")).toMatchObject({ ok: false, code: "reservation_not_open" });
    expect(await service.getAccount(id)).toMatchObject({ ok: true, value: { balance: 90, reserved: 0 } });
    expect(await service.getAccount("nobody")).toMatchObject({ ok: false, status: 404, code: "account_not_found" });
    const invalid = await service.charge(id, { charge_id: "-bad", amount: -1 } as never);
    expect(invalid).toMatchObject({ ok: false, status: 400, code: "invalid_request" });
    expect((invalid as { errors: { field: string }[] }).errors.map((e) => e.field)).toEqual(
      expect.arrayContaining(["input.charge_id", "input.amount"]),
    );
    expect(await service.getReservation("bad id", "r1")).toMatchObject({ ok: false, code: "invalid_request" });
  });

  it("extends with a switch of on_expiry, and credits and refunds with the same idempotency as HTTP", async () => {
    const id = await openAccount(100);
    await service.reserve(id, { reservation_id: "r", amount: 10, on_expiry: "release" });
    const extended = await service.extend(id, "r", { ttl_seconds: 120, on_expiry: "capture", extension_id: "e1" });
    expect(extended).toMatchObject({ ok: true, value: { reservation: { on_expiry: "capture", ttl_seconds: 120 } } });
    expect(await service.credit(id, { credit_id: "c", amount: 5 })).toMatchObject({ ok: true, status: 201 });
    expect(await service.credit(id, { credit_id: "c", amount: 5 })).toMatchObject({ ok: true, replayed: true });
    await service.charge(id, { charge_id: "ch", amount: 20 });
    const refunds = await Promise.all(
      Array.from({ length: 10 }, () => service.refund(id, { refund_id: "f", charge_id: "ch", amount: 20 })),
    );
    expect(refunds.filter((r) => r.ok && !r.replayed)).toHaveLength(1);
    expect(await service.getAccount(id)).toMatchObject({ value: { balance: 105 } });
  });
});
