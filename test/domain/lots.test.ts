/**
 * Credit in lots (src/domain/lots.ts, issue 27): the burn order, holds that earmark lots, exact
 * expiry, refunds back to the sources, and debt. Given/when/then cases for each rule, then a
 * property test over random histories that checks, after every step, the book against a balance
 * kept independently, every lot within its bounds, every charge's funding summing to its amount,
 * and that no credit that burns first is left while later credit was drawn.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  assertBook,
  bookBalance,
  burnOrder,
  earmark,
  emptyBook,
  expireDue,
  type Funding,
  grant,
  LOT_PRIORITY_DEFAULT,
  type Lot,
  type LotBook,
  type LotKind,
  nextExpiryMs,
  REFUND_LOT_TTL_MS,
  refund,
  settleHold,
  spend,
} from "../../src/domain/lots";
import { budget } from "../budget";

const DAY_MS = 86_400_000;

function granted(
  book: LotBook,
  id: string,
  amount: number,
  kind: LotKind,
  seq: number,
  expiresAtMs: number | null = null,
) {
  return grant(book, {
    lot_id: id,
    kind,
    priority: LOT_PRIORITY_DEFAULT[kind],
    amount,
    expires_at_ms: expiresAtMs,
    created_seq: seq,
  });
}

const lot = (book: LotBook, id: string): Lot => book.lots.get(id) as Lot;
const sum = (parts: readonly Funding[]) => parts.reduce((total, f) => total + f.amount, 0);

describe("the burn order", () => {
  it("burns lower priority first, then the soonest expiry (never-expiring last), then the oldest", () => {
    let book = emptyBook();
    book = granted(book, "paid-old", 10, "paid", 1).book;
    book = granted(book, "paid-expiring", 10, "paid", 2, 5 * DAY_MS).book;
    book = granted(book, "promo-late", 10, "promotional", 3, 9 * DAY_MS).book;
    book = granted(book, "promo-soon", 10, "promotional", 4, 2 * DAY_MS).book;
    book = granted(book, "promo-forever", 10, "promotional", 5).book;
    const order = [...book.lots.values()].sort(burnOrder).map((l) => l.lot_id);
    expect(order).toEqual(["promo-soon", "promo-late", "promo-forever", "paid-expiring", "paid-old"]);
  });

  it("draws a charge across lots in that order and says which paid for it", () => {
    let book = granted(emptyBook(), "paid", 100, "paid", 1).book;
    book = granted(book, "promo", 30, "promotional", 2).book;
    const charged = spend(book, 50, 0);
    expect(charged.funded_by).toEqual([
      { lot_id: "promo", amount: 30 },
      { lot_id: "paid", amount: 20 },
    ]);
    expect(lot(charged.book, "promo").remaining).toBe(0);
    expect(bookBalance(charged.book)).toBe(80);
  });
});

describe("holds earmark lots", () => {
  it("earmarks in burn order; a capture consumes its earmarks in burn order, the rest goes back", () => {
    let book = granted(emptyBook(), "paid", 100, "paid", 1).book;
    book = granted(book, "promo", 30, "promotional", 2).book;
    const held = earmark(book, 50, 0);
    expect(held.funded_by).toEqual([
      { lot_id: "promo", amount: 30 },
      { lot_id: "paid", amount: 20 },
    ]);
    expect([lot(held.book, "promo").held, lot(held.book, "paid").held]).toEqual([30, 20]);
    const captured = settleHold(held.book, held.funded_by, 40, 0);
    expect(captured.funded_by).toEqual([
      { lot_id: "promo", amount: 30 },
      { lot_id: "paid", amount: 10 },
    ]);
    expect(lot(captured.book, "paid")).toMatchObject({ remaining: 90, held: 0 });
    expect(bookBalance(captured.book)).toBe(90);
  });

  it("a capture past its hold draws the overage in burn order, then on credit (debt)", () => {
    const book = granted(emptyBook(), "promo", 30, "promotional", 1).book;
    const held = earmark(book, 20, 0);
    const captured = settleHold(held.book, held.funded_by, 45, 0);
    expect(captured.funded_by).toEqual([
      { lot_id: "promo", amount: 30 },
      { lot_id: null, amount: 15 },
    ]);
    expect(captured.book.debt).toBe(15);
    expect(bookBalance(captured.book)).toBe(-15);
  });

  it("a hold no lot covers is unfunded; the next credit pays the debt before its lot holds anything", () => {
    const held = earmark(emptyBook(), 25, 0);
    expect(held).toMatchObject({ funded_by: [], unfunded: 25 });
    const captured = settleHold(held.book, held.funded_by, 25, 0);
    expect(captured.funded_by).toEqual([{ lot_id: null, amount: 25 }]);
    const credited = granted(captured.book, "paid", 100, "paid", 3);
    expect(credited.applied_to_debt).toBe(25);
    expect(lot(credited.book, "paid")).toMatchObject({ amount: 100, remaining: 75 });
    expect(credited.book.debt).toBe(0);
  });
});

describe("expiry", () => {
  it("expires a lot's spendable remainder at its time; what holds earmark stays theirs", () => {
    let book = granted(emptyBook(), "promo", 100, "promotional", 1, 10 * DAY_MS).book;
    const held = earmark(book, 30, 0);
    book = held.book;
    expect(nextExpiryMs(book)).toBe(10 * DAY_MS);
    expect(expireDue(book, 10 * DAY_MS - 1).expired).toEqual([]);
    const due = expireDue(book, 10 * DAY_MS);
    expect(due.expired).toEqual([{ lot_id: "promo", amount: 70 }]);
    expect(lot(due.book, "promo")).toMatchObject({ remaining: 30, held: 30, expired: 70 });
    expect(nextExpiryMs(due.book)).toBeNull();
    // The hold captures part of it after the expiry: the released rest expires at once.
    const captured = settleHold(due.book, held.funded_by, 12, 10 * DAY_MS + 1);
    expect(captured.funded_by).toEqual([{ lot_id: "promo", amount: 12 }]);
    expect(captured.expired).toEqual([{ lot_id: "promo", amount: 18 }]);
    expect(lot(captured.book, "promo")).toMatchObject({ remaining: 0, held: 0, expired: 88 });
  });

  it("never draws on an expired lot, even before the alarm expired it", () => {
    let book = granted(emptyBook(), "promo", 100, "promotional", 1, DAY_MS).book;
    book = granted(book, "paid", 100, "paid", 2).book;
    expect(spend(book, 10, DAY_MS).funded_by).toEqual([{ lot_id: "paid", amount: 10 }]);
  });
});

describe("refunds", () => {
  it("go back to the lots that paid, in reverse burn order, the debt first", () => {
    let book = granted(emptyBook(), "promo", 30, "promotional", 1).book;
    book = granted(book, "paid", 20, "paid", 2).book;
    const charged = spend(book, 60, 0);
    expect(charged.funded_by).toEqual([
      { lot_id: "promo", amount: 30 },
      { lot_id: "paid", amount: 20 },
      { lot_id: null, amount: 10 },
    ]);
    const first = refund(charged.book, charged.funded_by, [], 25, 0, 9, (id) => `${id}~r1`);
    expect(first.returned_to).toEqual([
      { lot_id: null, amount: 10 },
      { lot_id: "paid", amount: 15 },
    ]);
    const second = refund(first.book, charged.funded_by, first.returned_to, 35, 0, 10, (id) => `${id}~r2`);
    expect(second.returned_to).toEqual([
      { lot_id: "paid", amount: 5 },
      { lot_id: "promo", amount: 30 },
    ]);
    expect(second.book.debt).toBe(0);
    expect(bookBalance(second.book)).toBe(50);
    expect(() =>
      refund(second.book, charged.funded_by, [...first.returned_to, ...second.returned_to], 1, 0, 11, String),
    ).toThrow(/never exceeds/);
  });

  it("to a lot that has expired, make a new lot of its kind that expires REFUND_LOT_TTL_MS later", () => {
    const book = granted(emptyBook(), "promo", 30, "promotional", 1, DAY_MS).book;
    const charged = spend(book, 20, 0);
    const lapsed = expireDue(charged.book, DAY_MS).book;
    const back = refund(lapsed, charged.funded_by, [], 20, 2 * DAY_MS, 7, (id) => `${id}~refund`);
    expect(lot(back.book, "promo~refund")).toMatchObject({
      kind: "promotional",
      priority: LOT_PRIORITY_DEFAULT.promotional,
      remaining: 20,
      expires_at_ms: 2 * DAY_MS + REFUND_LOT_TTL_MS,
      created_seq: 7,
    });
    expect(lot(back.book, "promo")).toMatchObject({ remaining: 0, expired: 10 });
  });
});

// ------------------------------------------------------------------ random histories

type Step =
  | { op: "grant"; kind: LotKind; amount: number; ttlDays: number | null }
  | { op: "hold"; amount: number }
  | { op: "settle"; pick: number; capturePercent: number }
  | { op: "charge"; amount: number }
  | { op: "refund"; pick: number; percent: number }
  | { op: "time"; days: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    op: fc.constant("grant" as const),
    kind: fc.constantFrom<LotKind>("paid", "promotional"),
    amount: fc.integer({ min: 1, max: 500 }),
    ttlDays: fc.option(fc.integer({ min: 1, max: 10 })),
  }),
  fc.record({ op: fc.constant("hold" as const), amount: fc.integer({ min: 1, max: 300 }) }),
  fc.record({ op: fc.constant("settle" as const), pick: fc.nat(), capturePercent: fc.integer({ min: 0, max: 150 }) }),
  fc.record({ op: fc.constant("charge" as const), amount: fc.integer({ min: 1, max: 300 }) }),
  fc.record({ op: fc.constant("refund" as const), pick: fc.nat(), percent: fc.integer({ min: 1, max: 100 }) }),
  fc.record({ op: fc.constant("time" as const), days: fc.integer({ min: 1, max: 4 }) }),
);

interface World {
  book: LotBook;
  /** The balance, kept apart from the book: grants and refunds in, charges and expiries out. */
  balance: number;
  holds: Funding[][];
  charges: { amount: number; funded_by: Funding[]; returned: Funding[] }[];
  now: number;
  seq: number;
}

/** After a draw: no lot that burns before the last one drawn was left with spendable credit. */
function drewInOrder(after: LotBook, funded_by: readonly Funding[], now: number): void {
  const drawn = funded_by.flatMap((f) => (f.lot_id === null ? [] : [after.lots.get(f.lot_id) as Lot]));
  const last = drawn.sort(burnOrder).at(-1);
  if (last === undefined) return;
  for (const other of after.lots.values()) {
    const live = other.expires_at_ms === null || other.expires_at_ms > now;
    if (live && burnOrder(other, last) < 0) expect(other.remaining - other.held, other.lot_id).toBe(0);
  }
}

function apply(w: World, s: Step): void {
  w.seq += 1;
  // Expiry is a money movement: what lapses leaves the balance (LotExpired).
  const due = expireDue(w.book, w.now);
  w.book = due.book;
  w.balance -= sum(due.expired);
  switch (s.op) {
    case "grant": {
      const expires = s.ttlDays === null ? null : w.now + s.ttlDays * DAY_MS;
      w.book = granted(w.book, `lot${w.seq}`, s.amount, s.kind, w.seq, expires).book;
      w.balance += s.amount;
      break;
    }
    case "hold": {
      const held = earmark(w.book, s.amount, w.now);
      expect(sum(held.funded_by) + held.unfunded).toBe(s.amount);
      drewInOrder(held.book, held.funded_by, w.now);
      w.book = held.book;
      w.holds.push(held.funded_by);
      break;
    }
    case "settle": {
      if (w.holds.length === 0) return;
      const [earmarks] = w.holds.splice(s.pick % w.holds.length, 1) as [Funding[]];
      const amount = Math.floor((sum(earmarks) * s.capturePercent) / 100);
      const settled = settleHold(w.book, earmarks, amount, w.now);
      expect(sum(settled.funded_by)).toBe(amount);
      w.book = settled.book;
      w.balance -= amount + sum(settled.expired);
      if (amount > 0) w.charges.push({ amount, funded_by: settled.funded_by, returned: [] });
      break;
    }
    case "charge": {
      const charged = spend(w.book, s.amount, w.now);
      expect(sum(charged.funded_by)).toBe(s.amount);
      drewInOrder(charged.book, charged.funded_by, w.now);
      w.book = charged.book;
      w.balance -= s.amount;
      w.charges.push({ amount: s.amount, funded_by: charged.funded_by, returned: [] });
      break;
    }
    case "refund": {
      const charge = w.charges[s.pick % Math.max(w.charges.length, 1)];
      if (charge === undefined) return;
      const left = charge.amount - sum(charge.returned);
      const amount = Math.ceil((left * s.percent) / 100);
      if (amount === 0) return;
      const back = refund(w.book, charge.funded_by, charge.returned, amount, w.now, w.seq, (id) => `${id}~${w.seq}`);
      expect(sum(back.returned_to)).toBe(amount);
      charge.returned.push(...back.returned_to);
      w.book = back.book;
      w.balance += amount;
      break;
    }
    case "time":
      w.now += s.days * DAY_MS;
      break;
  }
  assertBook(w.book, w.balance);
  // What the open holds earmark is exactly what the lots hold.
  const held = [...w.book.lots.values()].reduce((total, l) => total + l.held, 0);
  expect(held).toBe(w.holds.reduce((total, h) => total + sum(h), 0));
}

/** Budget (test/budget.ts): 1,000 histories of up to 60 steps; PROPERTY_RUNS=<n> runs n. */
const HISTORIES = budget("PROPERTY_RUNS", 1_000, 60_000);

describe("random histories", () => {
  it(
    "keep balance = lots' remaining - debt, every lot in bounds, and the burn order, at every step",
    () => {
      fc.assert(
        fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
          const world: World = { book: emptyBook(), balance: 0, holds: [], charges: [], now: 0, seq: 0 };
          for (const s of steps) apply(world, s);
        }),
        { numRuns: HISTORIES.numRuns },
      );
    },
    HISTORIES.timeout,
  );
});
