/**
 * Spend limits (issue 28) over the pure decider and fold: windows, enforcement in the same
 * decision as the balance, holds sized to what is affordable, and a property test that the fold's
 * usage equals an independent fold of the events for every limit and window.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ChainVerifier } from "../../src/audit/verifier.mjs";
import type { Command } from "../../src/domain/commands";
import type { LedgerEvent } from "../../src/domain/events";
import type { PinnedRule } from "../../src/domain/pricing";
import { coveredOutputTokens } from "../../src/domain/rules";
import {
  crossings,
  type LimitScope,
  type LimitTerms,
  type LimitWindow,
  matches,
  usageAt,
  windowEndMs,
  windowStartMs,
} from "../../src/domain/spend-limits";
import { rechain, sha256Hex } from "../audit/forge";
import { budget } from "../budget";
import { capture, charge, codeOf, credit, expire, Ledger, open, refund, release, reserve } from "./given";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const setLimit = (limit_id: string, terms: Partial<LimitTerms> & { amount: number }): Command => ({
  type: "SetLimit",
  limit_id,
  terms: { applies_to: { api_key_id: "k1" }, window: "day", threshold_percent: 80, ...terms },
});
const asKey = (api_key_id: string, project_id?: string) => ({
  caller: { api_key_id, ...(project_id === undefined ? {} : { project_id }) },
});
const usageOf = (ledger: Ledger, limitId: string) => {
  const entry = ledger.state.limits.get(limitId);
  if (entry === undefined) throw new Error(`no limit ${limitId}`);
  const { spent, held } = usageAt(entry, ledger.now);
  return { spent, held };
};

describe("windows", () => {
  it("are calendar windows in UTC; a week starts on Monday", () => {
    const at = Date.parse("2026-12-09T15:30:00.000Z"); // a Wednesday
    expect(new Date(windowStartMs("day", at)).toISOString()).toBe("2026-12-09T00:00:00.000Z");
    expect(new Date(windowStartMs("week", at)).toISOString()).toBe("2026-12-07T00:00:00.000Z");
    expect(new Date(windowStartMs("month", at)).toISOString()).toBe("2026-12-01T00:00:00.000Z");
    expect(windowStartMs("total", at)).toBe(0);
    expect(new Date(windowEndMs("month", at) as number).toISOString()).toBe("2027-01-01T00:00:00.000Z");
    expect(new Date(windowEndMs("week", at) as number).toISOString()).toBe("2026-12-14T00:00:00.000Z");
    expect(windowEndMs("total", at)).toBeNull();
    // A Monday starts its own week; the Sunday before belongs to the week before.
    const monday = Date.parse("2026-12-07T00:00:00.000Z");
    expect(windowStartMs("week", monday)).toBe(monday);
    expect(windowStartMs("week", monday - 1)).toBe(monday - 7 * DAY);
  });

  it("match a command when every dimension named is the command's", () => {
    const dims: LimitScope = { api_key_id: "k1", project_id: "p1", model: "m" };
    expect(matches({ api_key_id: "k1" }, dims)).toBe(true);
    expect(matches({ api_key_id: "k1", project_id: "p1" }, dims)).toBe(true);
    expect(matches({ api_key_id: "k1", service_id: "s" }, dims)).toBe(false);
    expect(matches({ project_id: "p2" }, dims)).toBe(false);
  });
});

describe("enforcement", () => {
  it("refuses a hold past the limit with 402 limit_exceeded naming the limit, the window and what remains", () => {
    const ledger = new Ledger().given(open(), credit(10_000), setLimit("daily", { amount: 100 }));
    ledger.given(reserve("r1", 60, asKey("k1")));
    const refused = ledger.decide(reserve("r2", 50, asKey("k1")));
    expect(refused).toMatchObject({
      outcome: "rejected",
      rejection: { code: "limit_exceeded", facts: { limit_id: "daily", window: "day", remaining: 40, requested: 50 } },
    });
    // Another key is not limited; the same key fits what remains.
    ledger.given(reserve("r3", 500, asKey("k2")), reserve("r4", 40, asKey("k1")));
    // Short of both funds and the limit: funds are checked first, as for a charge.
    expect(codeOf(ledger.decide(reserve("r5", 20_000, asKey("k1"))))).toBe("insufficient_funds");
    expect(codeOf(ledger.decide(charge("c5", 20_000, asKey("k1"))))).toBe("insufficient_funds");
    expect(usageOf(ledger, "daily")).toEqual({ spent: 0, held: 100 });
    expect(ledger.log.find((e) => e.type === "FundsReserved" && e.reservation_id === "r4")).toMatchObject({
      limits: [{ limit_id: "daily", window_start: "2026-11-28T00:00:00.000Z" }],
    });
  });

  it("counts a capture's amount, an overage past the limit, a release's nothing, refunds back", () => {
    const ledger = new Ledger().given(open(), credit(10_000), setLimit("daily", { amount: 100 }));
    ledger.given(reserve("r1", 50, asKey("k1")), capture("r1", 30));
    expect(usageOf(ledger, "daily")).toEqual({ spent: 30, held: 0 });
    ledger.given(reserve("r2", 60, asKey("k1")), capture("r2", 90, { allow_overage: true }));
    expect(usageOf(ledger, "daily")).toEqual({ spent: 120, held: 0 });
    expect(codeOf(ledger.decide(charge("c1", 1, asKey("k1"))))).toBe("limit_exceeded");
    ledger.given(refund("rf", "r2", 40));
    expect(usageOf(ledger, "daily")).toEqual({ spent: 80, held: 0 });
    ledger.given(reserve("r3", 20, asKey("k1")), release("r3"), charge("c2", 20, asKey("k1")));
    expect(usageOf(ledger, "daily")).toEqual({ spent: 100, held: 0 });
    expect(codeOf(ledger.decide(reserve("r4", 1, asKey("k1"))))).toBe("limit_exceeded");
  });

  it("counts a hold in the window it was made in, even when captured after midnight", () => {
    const ledger = new Ledger().given(open(), credit(10_000));
    ledger.now = Date.parse("2026-11-28T23:50:00.000Z");
    ledger.given(setLimit("daily", { amount: 100 }), reserve("late", 80, asKey("k1")));
    expect(codeOf(ledger.decide(reserve("x", 30, asKey("k1"))))).toBe("limit_exceeded");
    ledger.tick(20 * 60_000); // 00:10 the next day: a new window
    expect(usageOf(ledger, "daily")).toEqual({ spent: 0, held: 0 });
    ledger.given(capture("late", 80));
    // Captured after midnight, it counted in yesterday's window, which no longer counts.
    expect(usageOf(ledger, "daily")).toEqual({ spent: 0, held: 0 });
    ledger.given(reserve("today", 100, asKey("k1")));
    expect(usageOf(ledger, "daily")).toEqual({ spent: 0, held: 100 });
  });

  it("keeps a window's usage when only the amount changes, starts anew with other terms", () => {
    const ledger = new Ledger().given(open(), credit(10_000), setLimit("l", { amount: 100 }));
    ledger.given(charge("c1", 70, asKey("k1")), setLimit("l", { amount: 80 }));
    expect(usageOf(ledger, "l")).toEqual({ spent: 70, held: 0 });
    expect(codeOf(ledger.decide(charge("c2", 11, asKey("k1"))))).toBe("limit_exceeded");
    // The same terms again are no event.
    const before = ledger.log.length;
    ledger.given(setLimit("l", { amount: 80 }));
    expect(ledger.log.length).toBe(before);
    ledger.given(setLimit("l", { amount: 80, window: "week" }));
    expect(usageOf(ledger, "l")).toEqual({ spent: 0, held: 0 });
    // A refund of a charge counted in the old terms gives nothing back to the new ones.
    ledger.given(refund("rf", "c1", 70));
    expect(usageOf(ledger, "l")).toEqual({ spent: 0, held: 0 });
    ledger.given({ type: "RemoveLimit", limit_id: "l" });
    expect(ledger.state.limits.size).toBe(0);
    expect(codeOf(ledger.decide({ type: "RemoveLimit", limit_id: "l" }))).toBe("limit_not_found");
  });

  it("answers a replayed reservation with its original event after the limit changed", () => {
    const ledger = new Ledger().given(open(), credit(10_000), setLimit("l", { amount: 100 }));
    ledger.given(reserve("r1", 90, asKey("k1")), setLimit("l", { amount: 10 }));
    const replay = ledger.decide(reserve("r1", 90, asKey("k1")));
    expect(replay).toMatchObject({ outcome: "replayed", event: { reservation_id: "r1", amount: 90 } });
  });

  it("settles expiring holds into their window like any end", () => {
    const ledger = new Ledger().given(open(), credit(10_000), setLimit("l", { amount: 100 }));
    ledger.given(reserve("r1", 40, { ...asKey("k1"), on_expiry: "capture", ttl_seconds: 60 }));
    ledger.tick(61_000).given(expire("r1"));
    expect(usageOf(ledger, "l")).toEqual({ spent: 40, held: 0 });
  });
});

describe("what a limit matches, and when it announces", () => {
  const rules: PinnedRule[] = [
    { rule_id: "out", unit: "output_token", price_minor: 1, per_units: 1, effective_from: "2026-01-01T00:00:00Z" },
  ];
  const priced = (reservation_id: string, model: string, contextModel: string) =>
    reserve(reservation_id, 50, {
      ...asKey("k1"),
      context: { model: contextModel },
      pricing: { price: { service_id: "chat", provider: "p", model }, rules, estimate: { output_token: 50 } },
    });

  it("takes a priced hold's service and model from its price, not from its context", () => {
    const ledger = new Ledger().given(open(), credit(10_000));
    ledger.given(setLimit("gpt", { applies_to: { model: "gpt-x" }, amount: 60 }));
    ledger.given(priced("r1", "gpt-x", "something-else"));
    expect(usageOf(ledger, "gpt")).toEqual({ spent: 0, held: 50 });
    expect(codeOf(ledger.decide(priced("r2", "gpt-x", "other")))).toBe("limit_exceeded");
  });

  it("announce a crossing only in the window it happens in, and name the amount", () => {
    const ledger = new Ledger().given(open(), credit(10_000));
    ledger.now = Date.parse("2026-11-28T23:59:00.000Z");
    ledger.given(setLimit("l", { amount: 100 }), reserve("r", 90, asKey("k1")));
    const before = ledger.state.limits;
    ledger.tick(2 * 60_000); // the next day: a late capture past the limit, into yesterday's window
    ledger.given(capture("r", 120, { allow_overage: true }));
    expect(crossings(before, ledger.state.limits, ledger.now)).toEqual([]);
    const today = ledger.state.limits;
    ledger.given(charge("c", 100, asKey("k1")));
    const crossed = crossings(today, ledger.state.limits, ledger.now).map((c) => c.crossing);
    expect(crossed).toEqual(["limit.threshold_reached", "limit.exhausted"]);
  });
});

describe("holds sized to what is affordable", () => {
  it("hold the most the balance and every limit allow, refused only below amount_min", () => {
    const ledger = new Ledger().given(open(), credit(500), setLimit("l", { amount: 300 }));
    ledger.given(charge("c", 100, asKey("k1")));
    // Limit: 200 left; balance: 400.
    ledger.given(reserve("r1", 1_000, { ...asKey("k1"), amount_min: 50 }));
    expect(ledger.log.at(-1)).toMatchObject({
      type: "FundsReserved",
      amount: 200,
      requested: { amount_min: 50, amount_max: 1_000 },
    });
    // The limit binds: 0 left.
    expect(ledger.decide(reserve("r2", 1_000, { ...asKey("k1"), amount_min: 1 }))).toMatchObject({
      rejection: { code: "limit_exceeded", facts: { limit_id: "l", remaining: 0 } },
    });
    // The balance binds: another key has 200 left to spend of the balance.
    ledger.given(reserve("r3", 1_000, { ...asKey("k2"), amount_min: 10 }));
    expect(ledger.log.at(-1)).toMatchObject({ amount: 200 });
    expect(codeOf(ledger.decide(reserve("r4", 1_000, { ...asKey("k2"), amount_min: 1 })))).toBe("insufficient_funds");
  });

  it("say how many output tokens of a priced estimate the held amount covers", () => {
    const rules: PinnedRule[] = [
      { rule_id: "in", unit: "input_token", price_minor: 1, per_units: 10, effective_from: "2026-01-01T00:00:00Z" },
      { rule_id: "out", unit: "output_token", price_minor: 3, per_units: 1, effective_from: "2026-01-01T00:00:00Z" },
    ];
    // 100 input tokens cost 10; each output token 3.
    const estimate = { input_token: 100, output_token: 1_000 };
    expect(coveredOutputTokens(rules, estimate, 10)).toBe(0);
    expect(coveredOutputTokens(rules, estimate, 40)).toBe(10);
    expect(coveredOutputTokens(rules, estimate, 42)).toBe(10);
    expect(coveredOutputTokens(rules, estimate, 3_010)).toBe(1_000);
    expect(coveredOutputTokens(rules.slice(0, 1), estimate, 40)).toBeNull();
  });
});

// ---------------------------------------------------------------- property

/** An independent fold of the events: usage per (limit, terms seq, window start), never forgetting. */
function foldUsage(log: readonly LedgerEvent[]) {
  const limits = new Map<string, { since: number; window: LimitWindow; scope: LimitScope }>();
  const usage = new Map<string, { spent: number; held: number }>();
  const cell = (id: string, since: number, start: number) => {
    const key = `${id}|${since}|${start}`;
    let u = usage.get(key);
    if (u === undefined) {
      u = { spent: 0, held: 0 };
      usage.set(key, u);
    }
    return u;
  };
  const holds = new Map<string, { amount: number; cells: { spent: number; held: number }[] }>();
  const charges = new Map<string, { spent: number; held: number }[]>();
  for (const e of log) {
    const at = Date.parse(e.at);
    const matching = (dims: LimitScope) =>
      [...limits]
        .filter(([, l]) => matches(l.scope, dims))
        .map(([id, l]) => cell(id, l.since, windowStartMs(l.window, at)));
    const dimsOf = (x: { caller?: LimitScope; context: LimitScope }): LimitScope => ({
      ...(x.caller ?? {}),
      ...(x.context.service_id === undefined ? {} : { service_id: x.context.service_id }),
      ...(x.context.model === undefined ? {} : { model: x.context.model }),
    });
    switch (e.type) {
      case "LimitSet": {
        const old = limits.get(e.limit_id);
        const same =
          old !== undefined &&
          old.window === e.terms.window &&
          JSON.stringify(old.scope) === JSON.stringify(e.terms.applies_to);
        limits.set(e.limit_id, { since: same ? old.since : e.seq, window: e.terms.window, scope: e.terms.applies_to });
        break;
      }
      case "LimitRemoved":
        limits.delete(e.limit_id);
        break;
      case "FundsReserved": {
        const cells = matching(dimsOf(e));
        for (const c of cells) c.held += e.amount;
        holds.set(e.reservation_id, { amount: e.amount, cells });
        break;
      }
      case "ReservationCaptured":
      case "ReservationReleased":
      case "ReservationExpired": {
        const hold = holds.get(e.reservation_id);
        if (hold === undefined) break;
        const captured =
          e.type === "ReservationCaptured" ? e.amount : e.type === "ReservationExpired" ? e.captured_amount : 0;
        for (const c of hold.cells) {
          c.held -= hold.amount;
          c.spent += captured;
        }
        if (captured > 0) charges.set(e.reservation_id, hold.cells);
        break;
      }
      case "AccountCharged": {
        const cells = matching(dimsOf(e));
        for (const c of cells) c.spent += e.amount;
        charges.set(e.charge_id, cells);
        break;
      }
      case "ChargeRefunded":
        for (const c of charges.get(e.charge_id) ?? []) c.spent -= e.amount;
        break;
      default:
        break;
    }
  }
  return { limits, usage };
}

/** The offline verifier over `events` as an export carries them: null, or its first failure. */
function verify(events: readonly unknown[]): unknown {
  const verifier = new ChainVerifier({ sha256Hex });
  for (const event of events) {
    const failure = verifier.push(JSON.parse(JSON.stringify(event)));
    if (failure !== null) return failure;
  }
  return null;
}

describe("the offline verifier", () => {
  it("accepts limits as the ledger records them, and names a forged limits field", () => {
    const ledger = new Ledger().given(open(), credit(10_000), setLimit("l", { amount: 100 }));
    ledger.given(
      reserve("r1", 60, asKey("k1")),
      capture("r1", 50),
      refund("rf", "r1", 20),
      charge("c", 60, asKey("k1")),
    );
    expect(verify(ledger.log)).toBeNull();
    const events = JSON.parse(JSON.stringify(ledger.log)) as Record<string, unknown>[];
    const forged = (i: number, change: (e: Record<string, unknown>) => void) => {
      const copy = structuredClone(events);
      change(copy[i] as Record<string, unknown>);
      return verify(rechain(copy, i));
    };
    const reserved = events.findIndex((e) => e.type === "FundsReserved");
    const captured = events.findIndex((e) => e.type === "ReservationCaptured");
    const charged = events.findIndex((e) => e.type === "AccountCharged");
    expect(forged(reserved, (e) => delete e.limits)).toMatchObject({
      seq: reserved + 1,
      reason: expect.stringMatching(/limits/),
    });
    expect(forged(captured, (e) => delete e.limits)).toMatchObject({ reason: expect.stringMatching(/limits/) });
    // A charge past the limit (the ledger refused it): 30 spent + 60 would pass 100... as 80.
    expect(
      forged(charged, (e) => Object.assign(e, { amount: 80, balance_after: (e.balance_after as number) - 20 })),
    ).toMatchObject({
      reason: expect.stringMatching(/passes its amount/),
    });
  });
});

const KEYS = ["k1", "k2"];
const step = fc.oneof(
  fc.record({
    kind: fc.constant("limit" as const),
    id: fc.constantFrom("a", "b", "c"),
    key: fc.constantFrom(...KEYS, undefined),
    model: fc.constantFrom("m1", undefined),
    window: fc.constantFrom(...(["day", "week", "total"] as const)),
    amount: fc.integer({ min: 0, max: 300 }),
  }),
  fc.record({ kind: fc.constant("remove" as const), id: fc.constantFrom("a", "b", "c") }),
  fc.record({
    kind: fc.constantFrom("reserve" as const, "charge" as const),
    key: fc.constantFrom(...KEYS),
    model: fc.constantFrom("m1", "m2"),
    amount: fc.integer({ min: 1, max: 120 }),
    sized: fc.boolean(),
  }),
  fc.record({
    kind: fc.constantFrom("capture" as const, "release" as const),
    n: fc.nat(),
    amount: fc.nat({ max: 150 }),
  }),
  fc.record({ kind: fc.constant("refund" as const), n: fc.nat(), amount: fc.integer({ min: 1, max: 60 }) }),
  fc.record({ kind: fc.constant("time" as const), ms: fc.integer({ min: 1, max: 2 * DAY }) }),
);

const HISTORIES = budget("PROPERTY_RUNS", 300, 60_000);

describe("random histories with limits", () => {
  it(
    "keep every limit's spent and held equal to an independent fold of the events, within its bound",
    () => {
      fc.assert(
        fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
          const ledger = new Ledger().given(open(1_000), credit(5_000));
          const holds: string[] = [];
          const charged: string[] = [];
          let n = 0;
          for (const s of steps) {
            n += 1;
            let command: Command | null = null;
            switch (s.kind) {
              case "limit": {
                const applies_to: LimitScope = {
                  ...(s.key === undefined ? {} : { api_key_id: s.key }),
                  ...(s.model === undefined ? {} : { model: s.model }),
                };
                if (Object.keys(applies_to).length === 0) applies_to.api_key_id = "k1";
                command = setLimit(s.id, { applies_to, window: s.window, amount: s.amount });
                break;
              }
              case "remove":
                command = { type: "RemoveLimit", limit_id: s.id };
                break;
              case "reserve":
              case "charge": {
                const extra = { ...asKey(s.key), context: { model: s.model } };
                if (s.kind === "charge") command = charge(`c${n}`, s.amount, extra);
                else command = reserve(`r${n}`, s.amount * 2, s.sized ? { ...extra, amount_min: s.amount } : extra);
                break;
              }
              case "capture":
              case "release": {
                const id = holds[s.n % Math.max(holds.length, 1)];
                if (id === undefined) break;
                command = s.kind === "release" ? release(id) : capture(id, s.amount, { allow_overage: true });
                break;
              }
              case "refund": {
                const id = charged[s.n % Math.max(charged.length, 1)];
                if (id !== undefined) command = refund(`rf${n}`, id, s.amount);
                break;
              }
              case "time":
                ledger.tick(s.ms);
                break;
            }
            if (command === null) continue;
            const decision = ledger.run(command);
            if (decision.outcome !== "accepted") continue;
            if (command.type === "ReserveFunds") holds.push(command.reservation_id);
            if (command.type === "ChargeAccount") charged.push(command.charge_id);
            if (command.type === "CaptureReservation") charged.push(command.reservation_id);
            // Every limit's current window, as the object keeps it, against the independent fold.
            const fold = foldUsage(ledger.log);
            expect([...ledger.state.limits.keys()].sort()).toEqual([...fold.limits.keys()].sort());
            for (const [id, entry] of ledger.state.limits) {
              const l = fold.limits.get(id);
              if (l === undefined) throw new Error(`fold lost ${id}`);
              const start = windowStartMs(entry.limit.window, ledger.now);
              const expected = fold.usage.get(`${id}|${l.since}|${start}`) ?? { spent: 0, held: 0 };
              const { spent, held } = usageAt(entry, ledger.now);
              expect({ spent, held }, `limit ${id} at step ${n}`).toEqual(expected);
              expect(held).toBeGreaterThanOrEqual(0);
            }
          }
          // The offline verifier's own fold of the limits accepts the whole history.
          expect(verify(ledger.log)).toBeNull();
        }),
        { numRuns: HISTORIES.numRuns },
      );
    },
    HISTORIES.timeout,
  );
});
