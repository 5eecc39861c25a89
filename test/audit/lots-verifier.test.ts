/**
 * The offline verifier's own fold of the lots (issue 27, src/audit/verifier.mjs) against the
 * domain's: random histories made by the real decider (decide + stamp + evolve, with the shell's
 * expiry sweep before every command and a clock that advances past lots' and holds' expiries) are
 * pushed event by event into a ChainVerifier, which must accept each one and hold, at every seq,
 * the very lots and debt the domain's book holds. Then one lot field at a time is forged (and the
 * chain recomputed, as a forger who knows the algorithm would): the verifier fails at that seq,
 * naming the field. A log from before lots verifies, and its lots start at LotsOpened. Last, a real
 * account object's export verifies, and the verifier's lots and balances are the account's.
 *
 * Budget (test/budget.ts): a fixed 1,000 histories of up to 60 steps, about 24,000 events, checked
 * event by event: about 3 s alone (PROPERTY_RUNS=<n> for more; PRINT_MEASUREMENTS=1 prints the
 * event count, the time and how often each kind of lot movement happened).
 */
import { exports } from "cloudflare:workers";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { ChainVerifier } from "../../src/audit/verifier.mjs";
import type { Command, OnExpiry } from "../../src/domain/commands";
import { decide, stamp } from "../../src/domain/decide";
import type { EventBody, LedgerEvent } from "../../src/domain/events";
import { lotsOpenedBody } from "../../src/domain/lot-events";
import type { Funding, LotBook, LotKind } from "../../src/domain/lots";
import { evolve, initialState, type LedgerState } from "../../src/domain/state";
import { budget, printMeasurements } from "../budget";
import { charge, refund } from "../domain/given";
import { AUTH, account, api, expectEveryAccountConsistent, openAccount, textOf, useManualClock } from "../helpers";
import { rechain, sha256Hex } from "./forge";

const T0 = Date.UTC(2030, 0, 1);
type Raw = Record<string, unknown>;

/** The domain's book in the shape of the verifier's `lots()`. */
function bookOf(book: LotBook | null) {
  if (book === null) return null;
  const lots = Object.fromEntries(
    [...book.lots.values()].map((lot) => [
      lot.lot_id,
      {
        kind: lot.kind,
        priority: lot.priority,
        amount: lot.amount,
        remaining: lot.remaining,
        held: lot.held,
        expired: lot.expired,
        expires_at_ms: lot.expires_at_ms,
        created_seq: lot.created_seq,
      },
    ]),
  );
  return { lots, debt: book.debt };
}

/** The real decider and fold; every event it appends goes to `onEvent` with the book before it. */
class Ledger {
  state: LedgerState = initialState();
  readonly events: LedgerEvent[] = [];
  private n = 0;
  constructor(private readonly onEvent: (event: LedgerEvent, before: LotBook | null) => void = () => {}) {}

  run(command: Command, now: number): LedgerEvent[] {
    const decision = decide(command, this.state, now);
    if (decision.outcome !== "accepted") return [];
    return this.append(decision.events, now);
  }

  append(bodies: readonly EventBody[], now: number): LedgerEvent[] {
    const stamped = stamp(bodies, this.state.account, now, () => `ev${++this.n}`);
    for (const event of stamped) {
      const before = this.state.book;
      this.state = evolve(this.state, event);
      this.events.push(event);
      this.onEvent(event, before);
    }
    return stamped;
  }

  /** The shell's sweep before every command: holds due, and (inside the decision) lots due. */
  sweep(now: number): void {
    const due = [...this.state.reservations.values()]
      .filter((r) => r.status === "open" && Date.parse(r.expires_at) <= now)
      .map((r) => r.reservation_id);
    this.run({ type: "ExpireReservations", reservation_ids: due }, now);
  }
}

/**
 * A verifier fed with each event as it would read it from an export (parsed JSON); `where` says
 * how the history got there, for a failure's message.
 */
function verifierFor(
  check: (verifier: ChainVerifier, event: LedgerEvent, before: LotBook | null) => void,
  where: () => string = () => "",
) {
  const verifier = new ChainVerifier({ sha256Hex });
  return {
    verifier,
    onEvent: (event: LedgerEvent, before: LotBook | null) => {
      const failure = verifier.push(JSON.parse(JSON.stringify(event)));
      expect(failure, `seq ${event.seq} ${JSON.stringify(event)}${where()}`).toBeNull();
      check(verifier, event, before);
    },
  };
}

/** The lots' remaining by kind, as the verifier's summary states it. */
function byKindOf(book: LotBook | null) {
  if (book === null) return null;
  const out = { paid: 0, promotional: 0 };
  for (const lot of book.lots.values()) out[lot.kind] += lot.remaining;
  return out;
}

// ------------------------------------------------------------------ random histories

interface Terms {
  kind: LotKind;
  priority: number;
  expiresInMs: number | null;
}

type Op =
  | { op: "credit"; amount: number; terms: Terms | null }
  | { op: "reserve"; amount: number; ttl: number; onExpiry: OnExpiry }
  | { op: "capture"; pick: number; percent: number; overage: boolean }
  | { op: "release"; pick: number }
  | { op: "charge"; amount: number }
  | { op: "refund"; pick: number; percent: number }
  | { op: "adjust"; amount: number; terms: Terms | null };

interface Scenario {
  creditLimit: number;
  steps: { advanceMs: number; op: Op }[];
}

const amountArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 300 }) },
  { weight: 1, arbitrary: fc.integer({ min: 300, max: 2_000 }) },
);
const termsArb: fc.Arbitrary<Terms | null> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(null) },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constantFrom<LotKind>("paid", "promotional"),
      priority: fc.oneof(fc.constantFrom(0, 10, 50, 100), fc.integer({ min: 0, max: 100 })),
      expiresInMs: fc.oneof(
        { weight: 2, arbitrary: fc.constant(null) },
        { weight: 3, arbitrary: fc.integer({ min: 1_000, max: 180_000 }) },
      ),
    }),
  },
);
const pickArb = fc.nat({ max: 1_000 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant("credit" as const), amount: amountArb, terms: termsArb }) },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("reserve" as const),
      amount: amountArb,
      ttl: fc.constantFrom(1, 5, 30, 60, 300),
      onExpiry: fc.constantFrom<OnExpiry>("release", "capture"),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("capture" as const),
      pick: pickArb,
      percent: fc.oneof(fc.constantFrom(0, 50, 100, 150), fc.integer({ min: 0, max: 160 })),
      overage: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("release" as const), pick: pickArb }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("charge" as const), amount: amountArb }) },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("refund" as const),
      pick: pickArb,
      percent: fc.oneof(fc.constant(100), fc.integer({ min: 1, max: 100 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({ amount: amountArb, negative: fc.boolean(), terms: termsArb })
      .map(({ amount, negative, terms }) =>
        negative ? { op: "adjust" as const, amount: -amount, terms: null } : { op: "adjust" as const, amount, terms },
      ),
  },
);
const advanceArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 3_000 }) },
  { weight: 3, arbitrary: fc.integer({ min: 3_000, max: 60_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 60_000, max: 240_000 }) },
);
const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  creditLimit: fc.constantFrom(100, 500, 2_000),
  steps: fc.array(fc.record({ advanceMs: advanceArb, op: opArb }), { minLength: 1, maxLength: 60, size: "max" }),
});

const grantOf = (terms: Terms | null, now: number) =>
  terms === null
    ? {}
    : {
        grant: {
          kind: terms.kind,
          priority: terms.priority,
          expires_at: terms.expiresInMs === null ? null : new Date(now + terms.expiresInMs).toISOString(),
        },
      };

/** The command an op names now (holds and charges are picked among those that exist), or null. */
function commandOf(op: Op, state: LedgerState, now: number, n: number): Command | null {
  switch (op.op) {
    case "credit":
      return {
        type: "CreditFunds",
        credit_id: `k${n}`,
        amount: op.amount,
        reason: null,
        metadata: {},
        ...grantOf(op.terms, now),
      };
    case "reserve":
      return {
        type: "ReserveFunds",
        reservation_id: `r${n}`,
        amount: op.amount,
        ttl_seconds: op.ttl,
        on_expiry: op.onExpiry,
        context: {},
        metadata: {},
      };
    case "capture": {
      const open = [...state.reservations.values()].filter((r) => r.status === "open");
      const r = open[op.pick % Math.max(open.length, 1)];
      if (r === undefined) return null;
      const amount = Math.floor((r.amount * op.percent) / 100);
      const allow_overage = amount > r.amount || op.overage;
      return {
        type: "CaptureReservation",
        reservation_id: r.reservation_id,
        amount,
        allow_overage,
        usage: {},
        metadata: {},
      };
    }
    case "release": {
      const open = [...state.reservations.values()].filter((r) => r.status === "open");
      const r = open[op.pick % Math.max(open.length, 1)];
      return r === undefined ? null : { type: "ReleaseReservation", reservation_id: r.reservation_id, reason: null };
    }
    case "charge":
      return { type: "ChargeAccount", charge_id: `ch${n}`, amount: op.amount, context: {}, metadata: {} };
    case "refund": {
      const refundable = [...state.charges.values()].filter((c) => c.amount > c.refunded);
      const c = refundable[op.pick % Math.max(refundable.length, 1)];
      if (c === undefined) return null;
      const amount = Math.max(1, Math.floor(((c.amount - c.refunded) * op.percent) / 100));
      return { type: "RefundCharge", refund_id: `f${n}`, charge_id: c.charge_id, amount, reason: null };
    }
    case "adjust":
      return {
        type: "AdjustBalance",
        adjustment_id: `a${n}`,
        amount: op.amount,
        reason: "correction",
        ...grantOf(op.terms, now),
      };
  }
}

/** What a lot event exercises, for the tally that proves the generators reach every case. */
function featuresOf(event: LedgerEvent, before: LotBook | null): string[] {
  const out: string[] = [];
  const at = Date.parse(event.at);
  const debtIn = (parts: Funding[] | undefined) => (parts ?? []).some((f) => f.lot_id === null);
  switch (event.type) {
    case "LotExpired":
      out.push("lot expired");
      break;
    case "FundsReserved":
      if (debtIn(event.funded_by)) out.push("unfunded hold");
      break;
    case "ReservationCaptured":
    case "ReservationExpired": {
      const lapsed = (event.earmarks ?? []).some((f) => {
        const lot = before?.lots.get(f.lot_id as string);
        return lot?.expires_at_ms != null && lot.expires_at_ms <= at;
      });
      if (lapsed) out.push("a hold's lot expired before its end");
      if (event.type === "ReservationCaptured" && event.overage > 0) out.push("overage");
      if (event.type === "ReservationExpired" && event.captured_amount > 0) out.push("capture by expiry");
      if (debtIn(event.funded_by)) out.push("charge into debt");
      break;
    }
    case "AccountCharged":
      if (debtIn(event.funded_by)) out.push("charge into debt");
      break;
    case "FundsCredited":
      if ((event.applied_to_debt ?? 0) > 0) out.push("grant paid the debt");
      if (event.grant?.expires_at != null) out.push("expiring grant");
      break;
    case "BalanceAdjusted":
      out.push(event.amount > 0 ? "adjustment grant" : "adjustment spend");
      if (debtIn(event.funded_by)) out.push("adjustment into debt");
      break;
    case "ChargeRefunded":
      for (const part of event.returned_to ?? []) {
        if (part.to_lot_id === null) out.push("refund to the debt");
        else if (part.source === null) out.push("refund as what a grant paid of the debt");
        else if (part.source === part.to_lot_id) out.push("refund to its own lot");
        else out.push("refund to a new lot for an expired one");
      }
      break;
    default:
      break;
  }
  return out;
}

function runScenario(scenario: Scenario, tally: Map<string, number>): number {
  const trace: string[] = [];
  const where = () => `\n--- trace ---\n${trace.join("\n")}`;
  const { verifier, onEvent } = verifierFor((v, event, before) => {
    trace.push(`  seq ${event.seq} ${event.type}`);
    expect(v.lots(), `seq ${event.seq}${where()}`).toEqual(bookOf(ledger.state.book));
    expect(v.summary()).toMatchObject({
      debt: ledger.state.book?.debt ?? null,
      balance_by_kind: byKindOf(ledger.state.book),
    });
    for (const feature of featuresOf(event, before)) tally.set(feature, (tally.get(feature) ?? 0) + 1);
  }, where);
  const ledger = new Ledger(onEvent);
  let now = T0;
  ledger.run(
    { type: "OpenAccount", account_id: "acct_lots", currency: "USD", credit_limit: scenario.creditLimit, metadata: {} },
    now,
  );
  scenario.steps.forEach((step, n) => {
    now += step.advanceMs;
    ledger.sweep(now);
    const command = commandOf(step.op, ledger.state, now, n);
    if (command === null) return;
    trace.push(`t+${now - T0}ms ${JSON.stringify(command)}`);
    if (ledger.run(command, now).length === 0) trace.push("  (rejected)");
  });
  expect(verifier.summary()).toMatchObject({
    head_seq: ledger.state.account?.last_seq,
    balance: ledger.state.account?.balance,
    reserved: ledger.state.account?.reserved,
  });
  return ledger.events.length;
}

describe("the verifier's fold of the lots", () => {
  // 1,000 histories take about 3 s alone; 60 s is room for a slow machine under the full suite.
  // The count is fixed, so a slow machine runs the same cases.
  const HISTORIES = budget("PROPERTY_RUNS", 1_000, 60_000);
  it("accepts every history the domain makes, and holds its lots and debt at every seq", {
    timeout: HISTORIES.timeout,
  }, () => {
    const tally = new Map<string, number>();
    let events = 0;
    const started = Date.now();
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        events += runScenario(scenario, tally);
      }),
      { numRuns: HISTORIES.numRuns, seed: 27 },
    );
    if (printMeasurements()) {
      console.log(`${HISTORIES.numRuns} histories, ${events} events, ${Date.now() - started} ms`, [...tally]);
    }
    expect(events).toBeGreaterThan(HISTORIES.numRuns * 10);
    for (const feature of [
      "lot expired",
      "unfunded hold",
      "a hold's lot expired before its end",
      "overage",
      "capture by expiry",
      "charge into debt",
      "grant paid the debt",
      "expiring grant",
      "adjustment grant",
      "adjustment spend",
      "adjustment into debt",
      "refund to the debt",
      "refund as what a grant paid of the debt",
      "refund to its own lot",
      "refund to a new lot for an expired one",
    ]) {
      expect(tally.get(feature) ?? 0, `${feature} never happened: ${JSON.stringify([...tally])}`).toBeGreaterThan(0);
    }
  });
});

// ------------------------------------------------------------------ forged lot fields

/**
 * A fixed history that moves lots every way: a promotional lot that expires between a hold and its
 * capture (part of the hold goes back to it and lapses), a charge into debt, a grant that pays the
 * debt, refunds to a live lot, to a new lot for the expired one, to the debt and as what a grant
 * paid of it, adjustments both ways, and a hold released.
 */
function fixedHistory(): Raw[] {
  const ledger = new Ledger();
  const at = (ms: number, command: Command) => {
    ledger.sweep(T0 + ms);
    expect(ledger.run(command, T0 + ms).length, JSON.stringify(command)).toBeGreaterThan(0);
  };
  const promo = { kind: "promotional" as const, priority: 10, expires_at: new Date(T0 + 10_000).toISOString() };
  at(0, { type: "OpenAccount", account_id: "acct_fixed", currency: "USD", credit_limit: 1_000, metadata: {} });
  at(0, { type: "CreditFunds", credit_id: "k1", amount: 100, grant: promo, reason: null, metadata: {} });
  at(0, { type: "CreditFunds", credit_id: "k2", amount: 200, reason: null, metadata: {} });
  at(0, {
    type: "ReserveFunds",
    reservation_id: "r1",
    amount: 80,
    ttl_seconds: 60,
    on_expiry: "release",
    context: {},
    metadata: {},
  });
  at(0, charge("ch1", 50));
  at(20_000, {
    type: "CaptureReservation",
    reservation_id: "r1",
    amount: 30,
    allow_overage: false,
    usage: {},
    metadata: {},
  });
  at(20_000, charge("ch2", 400));
  at(20_000, { type: "CreditFunds", credit_id: "k3", amount: 100, reason: null, metadata: {} });
  at(20_000, refund("f1", "ch1", 50));
  at(20_000, refund("f2", "ch2", 300));
  at(20_000, {
    type: "AdjustBalance",
    adjustment_id: "a1",
    amount: 50,
    reason: "goodwill",
    grant: { ...promo, expires_at: new Date(T0 + 60_000).toISOString() },
  });
  at(20_000, { type: "AdjustBalance", adjustment_id: "a2", amount: -20, reason: "fee" });
  at(20_000, {
    type: "ReserveFunds",
    reservation_id: "r2",
    amount: 100,
    ttl_seconds: 60,
    on_expiry: "release",
    context: {},
    metadata: {},
  });
  at(30_000, { type: "ReleaseReservation", reservation_id: "r2", reason: null });
  return ledger.events.map((e) => JSON.parse(JSON.stringify(e)) as Raw);
}

function verify(events: Raw[]) {
  const verifier = new ChainVerifier({ sha256Hex });
  for (const event of events) {
    const failure = verifier.push(event);
    if (failure !== null) return { failure, verifier };
  }
  return { failure: null, verifier };
}

type Forgery = (event: Raw) => Raw;
const fundingOf = (event: Raw, field = "funded_by") => event[field] as Funding[];

describe("forged lot fields", () => {
  const history = fixedHistory();
  const find = (what: string, match: (event: Raw) => boolean) => {
    const i = history.findIndex(match);
    expect(i, what).toBeGreaterThan(0);
    return i;
  };
  const charge1 = find("ch1", (e) => e.type === "AccountCharged" && e.charge_id === "ch1");
  const capture = find("the capture", (e) => e.type === "ReservationCaptured");
  const lapse = find("the lapse", (e) => e.type === "LotExpired");
  const debtGrant = find("k3", (e) => e.type === "FundsCredited" && e.credit_id === "k3");
  const refundToNew = find("f1", (e) => e.type === "ChargeRefunded" && e.refund_id === "f1");
  const refundOfDebt = find("f2", (e) => e.type === "ChargeRefunded" && e.refund_id === "f2");
  const hold = find("r1", (e) => e.type === "FundsReserved" && e.reservation_id === "r1");
  const release = find("r2's release", (e) => e.type === "ReservationReleased");

  it("the history verifies, and moves lots every way the forgeries below need", () => {
    const { failure, verifier } = verify(history);
    expect(failure).toBeNull();
    expect(history[lapse]).toMatchObject({ lot_id: "k1", amount: 50 });
    expect(history[debtGrant]).toMatchObject({ applied_to_debt: 100 });
    expect(history[refundToNew]?.created_lots).toHaveLength(1);
    expect(history[refundOfDebt]?.returned_to).toEqual([
      { source: null, to_lot_id: null, amount: 130 },
      { source: null, to_lot_id: "refund/f2/1", amount: 100 },
      { source: "k2", to_lot_id: "k2", amount: 70 },
    ]);
    expect(verifier.summary()).toMatchObject({ debt: 0, balance_by_kind: { paid: 200, promotional: 50 } });
  });

  const cases: [string, number, Forgery, RegExp][] = [
    [
      "a charge's funded_by names another lot",
      charge1,
      (e) => ({ ...e, funded_by: fundingOf(e).map((f, i) => (i === 0 ? { ...f, lot_id: "k2" } : f)) }),
      /^funded_by is .*the lots give/,
    ],
    [
      "a charge's funded_by moves a unit between its lots",
      charge1,
      (e) => ({ ...e, funded_by: fundingOf(e).map((f, i) => ({ ...f, amount: f.amount + (i === 0 ? 1 : -1) })) }),
      /^funded_by is /,
    ],
    [
      "a charge's funded_by does not sum to its amount",
      charge1,
      (e) => ({ ...e, funded_by: fundingOf(e).slice(1) }),
      /^funded_by sums to 30, not 50/,
    ],
    [
      "a hold's funded_by earmarks the paid lot",
      hold,
      (e) => ({ ...e, funded_by: [{ lot_id: "k2", amount: 80 }] }),
      /^funded_by is /,
    ],
    [
      "a capture's earmarks differ from the hold's",
      capture,
      (e) => ({ ...e, earmarks: [{ lot_id: "k2", amount: 80 }] }),
      /^earmarks is .*as the hold earmarked them/,
    ],
    ["a capture's funded_by", capture, (e) => ({ ...e, funded_by: [{ lot_id: "k2", amount: 30 }] }), /^funded_by is /],
    [
      "a release that charges",
      release,
      (e) => ({ ...e, funded_by: [{ lot_id: "k2", amount: 1 }] }),
      /funded_by on a release/,
    ],
    [
      "applied_to_debt",
      debtGrant,
      (e) => ({ ...e, applied_to_debt: 0 }),
      /^applied_to_debt is 0, the debt of 230 makes it 100/,
    ],
    ["a grant without its lot", debtGrant, ({ lot_id: _lot, ...e }) => e, /lot_id, grant and applied_to_debt/],
    ["a grant that reuses a lot id", debtGrant, (e) => ({ ...e, lot_id: "k2" }), /lot_id k2 exists already/],
    [
      "a LotExpired amount (and its balance, consistently)",
      lapse,
      (e) => ({ ...e, amount: 49, balance_after: (e.balance_after as number) + 1 }),
      /^LotExpired amount is 49, lot k1's spendable remainder is 50/,
    ],
    [
      "a LotExpired expires_at",
      lapse,
      (e) => ({ ...e, expires_at: new Date(T0 + 9_000).toISOString() }),
      /^LotExpired expires_at/,
    ],
    ["a LotExpired kind", lapse, (e) => ({ ...e, kind: "paid" }), /^LotExpired kind/],
    [
      "a refund part back to an expired lot instead of a new one",
      refundToNew,
      (e) => ({
        ...e,
        created_lots: [],
        returned_to: (e.returned_to as Raw[]).map((p) => (p.source === "k1" ? { ...p, to_lot_id: "k1" } : p)),
      }),
      /^returned_to credits lot k1, which expired/,
    ],
    [
      "a refund's parts that do not sum to it",
      refundToNew,
      (e) => ({ ...e, returned_to: (e.returned_to as Raw[]).slice(1) }),
      /^returned_to sums to/,
    ],
    [
      "a refund that gives a source more than it paid",
      refundOfDebt,
      (e) => ({
        ...e,
        returned_to: [
          { source: null, to_lot_id: null, amount: 100 },
          { source: "k2", to_lot_id: "k2", amount: 200 },
        ],
        created_lots: [],
      }),
      /^returned_to gives 200 back to lot k2, which has 170 of charge ch2 left to get back/,
    ],
    [
      "a refund's new lot with another priority",
      refundToNew,
      (e) => ({ ...e, created_lots: (e.created_lots as Raw[]).map((l) => ({ ...l, priority: 50 })) }),
      /^created_lots: lot refund\/f1\/1 for expired lot k1 must have its kind and priority/,
    ],
    [
      "a refund that makes a lot while debt is left",
      refundOfDebt,
      (e) => ({
        ...e,
        returned_to: [
          { source: null, to_lot_id: "refund/f2/1", amount: 100 },
          { source: null, to_lot_id: null, amount: 130 },
          { source: "k2", to_lot_id: "k2", amount: 70 },
        ],
      }),
      /^returned_to makes lot refund\/f2\/1 while a debt of 130 is left/,
    ],
  ];

  it.each(cases)("catches %s at its seq, naming the field", (_name, index, forge, reason) => {
    const forged = rechain(
      history.map((e, i) => (i === index ? forge(e) : e)),
      index,
    );
    const { failure } = verify(forged);
    expect(failure).not.toBeNull();
    expect(failure?.seq).toBe(index + 1);
    expect(failure?.reason).toMatch(reason);
  });

  it("catches a LotExpired left out (the rest renumbered and rebalanced) at the next draw", () => {
    const amount = history[lapse]?.amount as number;
    const shifted = history
      .filter((_, i) => i !== lapse)
      .map((e, i) =>
        i < lapse ? e : { ...e, seq: (e.seq as number) - 1, balance_after: (e.balance_after as number) + amount },
      );
    const { failure } = verify(rechain(shifted, lapse));
    // The next event is the charge into debt: it would draw on the lot that should have lapsed.
    expect(shifted[lapse]).toMatchObject({ type: "AccountCharged", charge_id: "ch2" });
    expect(failure).toMatchObject({ seq: lapse + 1 });
    expect(failure?.reason).toMatch(/lot k1 expired at .* with 50 spendable, and no LotExpired took it/);
  });

  it("refuses lot fields before the account keeps lots, and LotsOpened twice", () => {
    // Without `lots` on AccountOpened, the first grant's lot fields are out of place.
    const { lots: _lots, ...opened } = history[0] as Raw;
    const first = verify(rechain([opened, ...history.slice(1)], 0)).failure;
    expect(first).toMatchObject({ seq: 2 });
    expect(first?.reason).toMatch(/^lot_id on an event before the account keeps lots/);
    const third = history[2] as Raw;
    const again: Raw = {
      type: "LotsOpened",
      lots: [],
      debt: 0,
      earmarks: [],
      seq: 4,
      event_id: "forged",
      at: third.at,
      balance_after: third.balance_after,
      reserved_after: third.reserved_after,
      hash: "",
    };
    const twice = verify(rechain([...history.slice(0, 3), again], 3)).failure;
    expect(twice).toMatchObject({ seq: 4 });
    expect(twice?.reason).toMatch(/lots are opened once/);
  });
});

// ------------------------------------------------------------------ a log from before lots

describe("a log from before lots", () => {
  /**
   * The real decider on an account opened before lots (its AccountOpened without `lots`), then the
   * shell's LotsOpened (decision 0006), then lot events: `negative` spends into the credit limit
   * first, so the lots start with a debt.
   */
  function legacyHistory(negative: boolean) {
    const { verifier, onEvent } = verifierFor((v) => {
      expect(v.lots()).toEqual(bookOf(ledger.state.book));
    });
    const ledger = new Ledger(onEvent);
    const now = T0;
    ledger.append(
      [{ type: "AccountOpened", account_id: "acct_old", currency: "USD", credit_limit: 500, metadata: {} }],
      now,
    );
    const run = (command: Command) => expect(ledger.run(command, now).length).toBeGreaterThan(0);
    run({ type: "CreditFunds", credit_id: "k1", amount: 300, reason: null, metadata: {} });
    run({ type: "ChargeAccount", charge_id: "ch1", amount: negative ? 400 : 100, context: {}, metadata: {} });
    run({ type: "RefundCharge", refund_id: "f0", charge_id: "ch1", amount: 10, reason: null });
    const reserve = (reservation_id: string, amount: number): Command => ({
      type: "ReserveFunds",
      reservation_id,
      amount,
      ttl_seconds: 300,
      on_expiry: "release",
      context: {},
      metadata: {},
    });
    run(reserve("r1", 120));
    run(reserve("r2", 50));
    run({ type: "ReleaseReservation", reservation_id: "r2", reason: null });
    run(reserve("r3", 40));
    const before = ledger.events.length;
    expect(ledger.state.book).toBeNull();
    expect(verifier.lots()).toBeNull();
    expect(verifier.summary()).toMatchObject({ debt: null, balance_by_kind: null });
    for (const event of ledger.events) expect(Object.keys(event)).not.toContain("funded_by");
    ledger.append([lotsOpenedBody(ledger.state)], now);
    const opened = ledger.events[before] as LedgerEvent;
    expect(opened.type).toBe("LotsOpened");
    run({
      type: "CaptureReservation",
      reservation_id: "r1",
      amount: 150,
      allow_overage: true,
      usage: {},
      metadata: {},
    });
    run({ type: "RefundCharge", refund_id: "f1", charge_id: "ch1", amount: 90, reason: null });
    run({
      type: "CreditFunds",
      credit_id: "k2",
      amount: 500,
      grant: { kind: "promotional", priority: 5, expires_at: null },
      reason: null,
      metadata: {},
    });
    run({ type: "ReleaseReservation", reservation_id: "r3", reason: null });
    run({ type: "ChargeAccount", charge_id: "ch2", amount: 30, context: {}, metadata: {} });
    run({ type: "RefundCharge", refund_id: "f2", charge_id: "r1", amount: 150, reason: null });
    return { ledger, verifier, opened };
  }

  it.each([
    ["a positive balance", false],
    ["a negative balance (debt)", true],
  ])("verifies with %s, and its lots start at LotsOpened", (_name, negative) => {
    const { ledger, verifier, opened } = legacyHistory(negative);
    expect(verifier.failure).toBeNull();
    expect(verifier.summary().head_seq).toBe(ledger.events.length);
    const lots = verifier.lots();
    expect(lots).toEqual(bookOf(ledger.state.book));
    expect(lots?.lots["legacy/balance"]).toMatchObject({ kind: "paid", created_seq: opened.seq });
    if (opened.type === "LotsOpened") expect(opened.debt > 0).toBe(negative);
  });

  it("catches a forged LotsOpened: lots that do not add up to the balance, or a hold left out", () => {
    const { ledger } = legacyHistory(false);
    const events = ledger.events.map((e) => JSON.parse(JSON.stringify(e)) as Raw);
    const i = events.findIndex((e) => e.type === "LotsOpened");
    const forge = (change: (e: Raw) => Raw) =>
      verify(
        rechain(
          events.map((e, j) => (j === i ? change(e) : e)),
          i,
        ),
      ).failure;
    const richer = forge((e) => ({ ...e, lots: (e.lots as Raw[]).map((l) => ({ ...l, remaining: 1_000 })) }));
    expect(richer).toMatchObject({ seq: i + 1 });
    expect(richer?.reason).toMatch(/remaining .* minus the debt .* is not the balance/);
    const leftOut = forge((e) => ({ ...e, earmarks: (e.earmarks as Raw[]).slice(1) }));
    expect(leftOut).toMatchObject({ seq: i + 1 });
    expect(leftOut?.reason).toMatch(/earmarks name 1 of the 2 open holds/);
  });
});

// ------------------------------------------------------------------ a real account's export

describe("a real account's export", () => {
  afterEach(expectEveryAccountConsistent);

  async function exportOf(accountId: string): Promise<Raw[]> {
    const response = await exports.default.fetch(`http://ledger.test/v1/accounts/${accountId}/events/export`, {
      headers: AUTH,
    });
    expect(response.status).toBe(200);
    const lines = (await textOf(response)).split("\n").filter((line) => line !== "");
    return lines.map((line) => JSON.parse(line) as Raw);
  }

  it("verifies, and the verifier's lots, debt and balances by kind are the account's", async () => {
    const clock = useManualClock();
    const id = await openAccount(0, 500);
    const post = async (path: string, body: unknown) => {
      const response = await api("POST", `/v1/accounts/${id}${path}`, body);
      expect(response.status, `${path} ${JSON.stringify(response.body)}`).toBeLessThan(300);
    };
    const expires_at = new Date(clock.now() + 10_000).toISOString();
    await post("/credits", { credit_id: "k1", amount: 100, grant: { kind: "promotional", expires_at } });
    await post("/credits", { credit_id: "k2", amount: 200 });
    await post("/reservations", { reservation_id: "r1", amount: 80 });
    await post("/charges", { charge_id: "c1", amount: 50 });
    clock.advance(20_000);
    await post("/reservations/r1/capture", { amount: 30 });
    await post("/charges", { charge_id: "c2", amount: 400 });
    await post("/credits", { credit_id: "k3", amount: 100 });
    await post("/refunds", { refund_id: "f1", charge_id: "c1", amount: 50 });
    await post("/refunds", { refund_id: "f2", charge_id: "c2", amount: 300 });
    await post("/adjustments", { adjustment_id: "a1", amount: -20, reason: "fee" });
    await post("/reservations", { reservation_id: "r2", amount: 60 });

    const events = await exportOf(id);
    expect(events.map((e) => e.type)).toContain("LotExpired");
    const { failure, verifier } = verify(events);
    expect(failure).toBeNull();
    const live = await account(id);
    expect(verifier.summary()).toMatchObject({
      head_seq: live.last_seq,
      balance: live.balance,
      reserved: live.reserved,
      debt: live.debt,
      balance_by_kind: live.balance_by_kind,
    });
    const read = await api("GET", `/v1/accounts/${id}/lots?limit=1000`);
    expect(read.status).toBe(200);
    const lots = verifier.lots();
    expect(Object.keys(lots?.lots ?? {}).sort()).toEqual(read.body.data.map((lot: Raw) => lot.lot_id).sort());
    for (const lot of read.body.data as Raw[]) {
      expect(lots?.lots[lot.lot_id as string], String(lot.lot_id)).toMatchObject({
        kind: lot.kind,
        priority: lot.priority,
        amount: lot.amount,
        remaining: lot.remaining,
        held: lot.held,
        expired: lot.expired_amount,
        expires_at_ms: lot.expires_at === null ? null : Date.parse(lot.expires_at as string),
      });
    }
  });
});
