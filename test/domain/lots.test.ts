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
  bookOf,
  burnOrder,
  earmark,
  emptyBook,
  expireDue,
  type Funding,
  grant,
  LOT_PRIORITY_DEFAULT,
  LOTS_ACTIVE_MAX,
  type Lot,
  type LotBook,
  type LotKind,
  nextExpiryMs,
  REFUND_LOT_TTL_MS,
  type Returned,
  refund,
  settleHold,
  spend,
  withoutLots,
} from "../../src/domain/lots";
import { budget } from "../budget";
import { charge, codeOf, credit, Ledger, open, refund as refundCommand } from "./given";

const DAY_MS = 86_400_000;

function granted(
  book: LotBook,
  id: string,
  amount: number,
  kind: LotKind,
  seq: number,
  expiresAtMs: number | null = null,
  nowMs = 0,
) {
  return grant(
    book,
    { lot_id: id, kind, priority: LOT_PRIORITY_DEFAULT[kind], amount, expires_at_ms: expiresAtMs, created_seq: seq },
    nowMs,
  );
}

/** A paid lot of 100 granted first, then a promotional lot of 30 (which burns first). */
const paidThenPromo = (): LotBook =>
  granted(granted(emptyBook(), "paid", 100, "paid", 1).book, "promo", 30, "promotional", 2).book;

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
    const book = paidThenPromo();
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
    const book = paidThenPromo();
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
    // The hold captures part of it after the expiry: the released rest goes back, then expires at once.
    const captured = settleHold(due.book, held.funded_by, 12, 10 * DAY_MS + 1);
    expect(captured.funded_by).toEqual([{ lot_id: "promo", amount: 12 }]);
    expect(lot(captured.book, "promo")).toMatchObject({ remaining: 18, held: 0, expired: 70 });
    expect(nextExpiryMs(captured.book)).toBe(10 * DAY_MS);
    const lapsed = expireDue(captured.book, 10 * DAY_MS + 1);
    expect(lapsed.expired).toEqual([{ lot_id: "promo", amount: 18 }]);
    expect(lot(lapsed.book, "promo")).toMatchObject({ remaining: 0, held: 0, expired: 88 });
  });

  it("never draws on an expired lot: what is due expires first, then the charge draws on the rest", () => {
    let book = granted(emptyBook(), "promo", 100, "promotional", 1, DAY_MS).book;
    book = granted(book, "paid", 100, "paid", 2).book;
    const due = expireDue(book, DAY_MS);
    expect(due.expired).toEqual([{ lot_id: "promo", amount: 100 }]);
    expect(spend(due.book, 10, DAY_MS).funded_by).toEqual([{ lot_id: "paid", amount: 10 }]);
  });
});

describe("refunds", () => {
  const newLot = (tag: string) => (source: string | null, kind: LotKind) => `${source ?? "debt"}:${kind}:${tag}`;

  it("go back to the sources in the reverse of the order they paid in, the debt first", () => {
    let book = granted(emptyBook(), "promo", 30, "promotional", 1).book;
    book = granted(book, "paid", 20, "paid", 2).book;
    const charged = spend(book, 60, 0);
    expect(charged.funded_by).toEqual([
      { lot_id: "promo", amount: 30 },
      { lot_id: "paid", amount: 20 },
      { lot_id: null, amount: 10 },
    ]);
    const first = refund(charged.book, charged.funded_by, [], 25, 0, 9, newLot("r1"));
    expect(first.returned_to).toEqual([
      { source: null, to_lot_id: null, amount: 10 },
      { source: "paid", to_lot_id: "paid", amount: 15 },
    ]);
    const second = refund(first.book, charged.funded_by, first.returned_to, 35, 0, 10, newLot("r2"));
    expect(second.returned_to).toEqual([
      { source: "paid", to_lot_id: "paid", amount: 5 },
      { source: "promo", to_lot_id: "promo", amount: 30 },
    ]);
    expect(second.book.debt).toBe(0);
    expect(bookBalance(second.book)).toBe(50);
    const all = [...first.returned_to, ...second.returned_to];
    expect(() => refund(second.book, charged.funded_by, all, 1, 0, 11, newLot("r3"))).toThrow(/never exceeds/);
  });

  it("to a lot that has expired, make a new lot of its kind that expires REFUND_LOT_TTL_MS later", () => {
    const book = granted(emptyBook(), "promo", 30, "promotional", 1, DAY_MS).book;
    const charged = spend(book, 20, 0);
    const lapsed = expireDue(charged.book, DAY_MS).book;
    const back = refund(lapsed, charged.funded_by, [], 20, 2 * DAY_MS, 7, newLot("r"));
    expect(back.returned_to).toEqual([{ source: "promo", to_lot_id: "promo:promotional:r", amount: 20 }]);
    expect(lot(back.book, "promo:promotional:r")).toMatchObject({
      kind: "promotional",
      priority: LOT_PRIORITY_DEFAULT.promotional,
      amount: 20,
      remaining: 20,
      expires_at_ms: 2 * DAY_MS + REFUND_LOT_TTL_MS,
      created_seq: 7,
    });
    expect(lot(back.book, "promo")).toMatchObject({ remaining: 0, expired: 10 });
  });

  it("of a part charged on credit that a grant paid since, come back as that grant's kind", () => {
    const charged = spend(emptyBook(), 40, 0);
    const paidOff = granted(charged.book, "promo", 100, "promotional", 2);
    expect(paidOff.applied_to_debt).toBe(40);
    const back = refund(paidOff.book, charged.funded_by, [], 40, 0, 3, newLot("r"));
    expect(back.returned_to).toEqual([{ source: null, to_lot_id: "debt:promotional:r", amount: 40 }]);
    expect(lot(back.book, "debt:promotional:r")).toMatchObject({
      kind: "promotional",
      expires_at_ms: REFUND_LOT_TTL_MS,
    });
    expect(back.book.debt_paid_by).toEqual({ paid: 0, promotional: 0 });
  });

  it("of debt that both kinds paid, give paid credit back first: cash never comes back as expiring credit", () => {
    const a = spend(emptyBook(), 100, 0);
    const promo = granted(a.book, "promo", 100, "promotional", 2);
    const b = spend(promo.book, 100, 0);
    const cash = granted(b.book, "cash", 100, "paid", 4);
    expect(cash.book.debt_paid_by).toEqual({ paid: 100, promotional: 100 });
    const back = refund(cash.book, b.funded_by, [], 100, 0, 5, newLot("r"));
    expect(back.returned_to).toEqual([{ source: null, to_lot_id: "debt:paid:r", amount: 100 }]);
    expect(lot(back.book, "debt:paid:r")).toMatchObject({ kind: "paid", expires_at_ms: null });
    expect(back.book.debt_paid_by).toEqual({ paid: 0, promotional: 100 });
  });

  it("refuse a new lot's name that is taken, and read no source they do not credit", () => {
    let book = granted(emptyBook(), "a", 10, "paid", 1).book;
    book = granted(book, "b", 10, "paid", 2).book;
    const charged = spend(book, 15, 0);
    // A used up and left the book: a refund that B alone takes back does not need it.
    const back = refund(withoutLots(charged.book, ["a"]), charged.funded_by, [], 5, 0, 3, newLot("r"));
    expect(back.returned_to).toEqual([{ source: "b", to_lot_id: "b", amount: 5 }]);
    // C expired; the name the refund would give its new lot is X's.
    let taken = granted(emptyBook(), "c", 10, "paid", 1, DAY_MS).book;
    taken = granted(taken, "x", 10, "paid", 2).book;
    const spent = spend(taken, 5, 0);
    const lapsed = expireDue(spent.book, DAY_MS).book;
    expect(() => refund(lapsed, spent.funded_by, [], 5, DAY_MS, 4, () => "x")).toThrow(/is new/);
  });
});

describe("bad input", () => {
  it("is refused: amounts that are not positive safe integers, a grant born expired, a lot earmarked twice merges", () => {
    const book = granted(emptyBook(), "a", 100, "paid", 1).book;
    expect(() => spend(book, -5, 0)).toThrow(/amount/);
    expect(() => spend(book, 2.5, 0)).toThrow(/amount/);
    expect(() => earmark(book, 0, 0)).toThrow(/amount/);
    expect(() => settleHold(book, [], -3, 0)).toThrow(/amount/);
    expect(() => granted(book, "b", 10, "paid", 2, 5, 5)).toThrow(/before its expiry/);
    const held = earmark(book, 20, 0);
    const twice = settleHold(
      held.book,
      [
        { lot_id: "a", amount: 10 },
        { lot_id: "a", amount: 10 },
      ],
      20,
      0,
    );
    expect(lot(twice.book, "a")).toMatchObject({ remaining: 80, held: 0 });
    expect(twice.funded_by).toEqual([{ lot_id: "a", amount: 20 }]);
  });

  it("a command that did not expire what is due first is a broken invariant, not a decision", () => {
    const book = granted(emptyBook(), "promo", 100, "promotional", 1, DAY_MS).book;
    expect(() => spend(book, 10, DAY_MS)).toThrow(/expired before the command/);
  });
});

// ------------------------------------------------------------------ random histories

type Step =
  | { op: "grant"; kind: LotKind; amount: number; priority: number | null; ttlMs: number | null }
  | { op: "hold"; amount: number }
  | { op: "settle"; pick: number; capturePercent: number }
  | { op: "charge"; amount: number }
  | { op: "refund"; pick: number; percent: number }
  | { op: "time"; ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    op: fc.constant("grant" as const),
    kind: fc.constantFrom<LotKind>("paid", "promotional"),
    amount: fc.integer({ min: 1, max: 500 }),
    priority: fc.option(fc.constantFrom(0, 10, 50, 100)),
    ttlMs: fc.option(fc.constantFrom(1, DAY_MS - 1, DAY_MS, 3 * DAY_MS, 40 * DAY_MS)),
  }),
  fc.record({ op: fc.constant("hold" as const), amount: fc.integer({ min: 1, max: 300 }) }),
  fc.record({ op: fc.constant("settle" as const), pick: fc.nat(), capturePercent: fc.integer({ min: 0, max: 150 }) }),
  fc.record({ op: fc.constant("charge" as const), amount: fc.integer({ min: 1, max: 300 }) }),
  fc.record({ op: fc.constant("refund" as const), pick: fc.nat(), percent: fc.integer({ min: 1, max: 100 }) }),
  fc.record({ op: fc.constant("time" as const), ms: fc.constantFrom(1, 1_000, DAY_MS - 1, DAY_MS, 40 * DAY_MS) }),
);

interface World {
  book: LotBook;
  /** The balance, kept apart from the book: grants and refunds in, charges and expiries out. */
  balance: number;
  /** Each lot's money in minus money out, kept apart from the book: must equal its `remaining`. */
  ledger: Map<string, number>;
  holds: Funding[][];
  charges: { amount: number; funded_by: Funding[]; returned: Returned[] }[];
  now: number;
  seq: number;
}

/** The burn order as issue 27 states it, written apart from the module's comparator. */
function burnsBefore(a: Lot, b: Lot): boolean {
  const expiry = (l: Lot) => l.expires_at_ms ?? Number.POSITIVE_INFINITY;
  if (a.priority !== b.priority) return a.priority < b.priority;
  if (expiry(a) !== expiry(b)) return expiry(a) < expiry(b);
  return a.created_seq < b.created_seq;
}

const live = (l: Lot, now: number) => l.expires_at_ms === null || l.expires_at_ms > now;

/** After a draw: no live lot that burns before one drawn has spendable credit, and no debt while any does. */
function drewInOrder(after: LotBook, funded_by: readonly Funding[], now: number): void {
  const free = [...after.lots.values()].filter((l) => live(l, now) && l.remaining > l.held);
  for (const f of funded_by) {
    if (f.lot_id === null) {
      expect(
        free.map((l) => l.lot_id),
        "debt drawn while credit was spendable",
      ).toEqual([]);
      continue;
    }
    const drawn = after.lots.get(f.lot_id) as Lot;
    for (const other of free) expect(burnsBefore(other, drawn), `${other.lot_id} burns before ${f.lot_id}`).toBe(false);
  }
}

function move(w: World, lotId: string | null, amount: number): void {
  if (lotId !== null) w.ledger.set(lotId, (w.ledger.get(lotId) ?? 0) + amount);
}

function apply(w: World, s: Step): void {
  w.seq += 1;
  // The shell's part: what is due expires before the command; it is a money movement (LotExpired).
  const due = expireDue(w.book, w.now);
  w.book = due.book;
  for (const e of due.expired) move(w, e.lot_id, -e.amount);
  w.balance -= sum(due.expired);
  for (const l of w.book.lots.values()) if (!live(l, w.now)) expect(l.remaining - l.held, l.lot_id).toBe(0);
  switch (s.op) {
    case "grant": {
      const expires = s.ttlMs === null ? null : w.now + s.ttlMs;
      const id = `lot${w.seq}`;
      const made = grant(
        w.book,
        {
          lot_id: id,
          kind: s.kind,
          priority: s.priority ?? LOT_PRIORITY_DEFAULT[s.kind],
          amount: s.amount,
          expires_at_ms: expires,
          created_seq: w.seq,
        },
        w.now,
      );
      // The debt is paid first.
      expect(made.book.debt).toBe(Math.max(0, w.book.debt - s.amount));
      w.book = made.book;
      move(w, id, s.amount - made.applied_to_debt);
      w.balance += s.amount;
      break;
    }
    case "hold": {
      const held = earmark(w.book, s.amount, w.now);
      expect(sum(held.funded_by) + held.unfunded).toBe(s.amount);
      drewInOrder(held.book, held.funded_by, w.now);
      if (held.unfunded > 0) drewInOrder(held.book, [{ lot_id: null, amount: held.unfunded }], w.now);
      w.book = held.book;
      w.holds.push(held.funded_by);
      break;
    }
    case "settle": {
      if (w.holds.length === 0) return;
      const [earmarks] = w.holds.splice(s.pick % w.holds.length, 1) as [Funding[]];
      const amount = Math.floor((Math.max(sum(earmarks), 1) * s.capturePercent) / 100);
      const settled = settleHold(w.book, earmarks, amount, w.now);
      expect(sum(settled.funded_by)).toBe(amount);
      // Past its earmarks a capture draws like a charge.
      const past = settled.funded_by.filter((f) => !earmarks.some((e) => e.lot_id === f.lot_id));
      drewInOrder(settled.book, past, w.now);
      for (const f of settled.funded_by) move(w, f.lot_id, -f.amount);
      // What it released to a lot that expired expires at once (the shell's LotExpired events).
      const lapsed = expireDue(settled.book, w.now);
      for (const e of lapsed.expired) move(w, e.lot_id, -e.amount);
      w.book = lapsed.book;
      w.balance -= amount + sum(lapsed.expired);
      if (amount > 0) w.charges.push({ amount, funded_by: settled.funded_by, returned: [] });
      break;
    }
    case "charge": {
      const charged = spend(w.book, s.amount, w.now);
      expect(sum(charged.funded_by)).toBe(s.amount);
      drewInOrder(charged.book, charged.funded_by, w.now);
      for (const f of charged.funded_by) move(w, f.lot_id, -f.amount);
      w.book = charged.book;
      w.balance -= s.amount;
      w.charges.push({ amount: s.amount, funded_by: charged.funded_by, returned: [] });
      break;
    }
    case "refund": {
      const charge = w.charges[s.pick % Math.max(w.charges.length, 1)];
      if (charge === undefined) return;
      const left = charge.amount - charge.returned.reduce((total, r) => total + r.amount, 0);
      const amount = Math.ceil((left * s.percent) / 100);
      if (amount === 0) return;
      const before = w.book;
      const back = refund(
        w.book,
        charge.funded_by,
        charge.returned,
        amount,
        w.now,
        w.seq,
        (source, kind) => `${source ?? "debt"}~${kind}~${w.seq}`,
      );
      expect(back.returned_to.reduce((total, r) => total + r.amount, 0)).toBe(amount);
      for (const r of back.returned_to) {
        const source = r.source === null ? undefined : before.lots.get(r.source);
        // Back to the lot that paid while it lives; to a new lot once it expired.
        if (source !== undefined && live(source, w.now)) expect(r.to_lot_id).toBe(r.source);
        const made = back.book.lots.get(r.to_lot_id ?? "") as Lot;
        if (source !== undefined && !live(source, w.now)) {
          expect(back.created.map((c) => c.lot_id)).toContain(r.to_lot_id);
          expect(made).toMatchObject({
            kind: source.kind,
            priority: source.priority,
            expires_at_ms: w.now + REFUND_LOT_TTL_MS,
          });
        }
        // A debt part a grant paid since: promotional comes back for 30 days, paid for good.
        if (r.source === null && r.to_lot_id !== null) {
          expect(made.expires_at_ms).toBe(made.kind === "promotional" ? w.now + REFUND_LOT_TTL_MS : null);
        }
        move(w, r.to_lot_id, r.amount);
      }
      charge.returned.push(...back.returned_to);
      w.book = back.book;
      w.balance += amount;
      break;
    }
    case "time":
      w.now += s.ms;
      break;
  }
  assertBook(w.book, w.balance);
  for (const l of w.book.lots.values()) expect(l.remaining, l.lot_id).toBe(w.ledger.get(l.lot_id) ?? 0);
  // What the open holds earmark is exactly what the lots hold.
  const held = [...w.book.lots.values()].reduce((total, l) => total + l.held, 0);
  expect(held).toBe(w.holds.reduce((total, h) => total + sum(h), 0));
}

/** Budget (test/budget.ts): 1,000 histories of up to 80 steps; PROPERTY_RUNS=<n> runs n. */
const HISTORIES = budget("PROPERTY_RUNS", 1_000, 60_000);

describe("random histories", () => {
  it(
    "keep every lot's and the book's figures, the burn order and where refunds go, at every step",
    () => {
      fc.assert(
        fc.property(fc.array(step, { minLength: 1, maxLength: 80 }), (steps) => {
          const world: World = {
            book: emptyBook(),
            balance: 0,
            ledger: new Map(),
            holds: [],
            charges: [],
            now: 0,
            seq: 0,
          };
          for (const s of steps) apply(world, s);
        }),
        { numRuns: HISTORIES.numRuns },
      );
    },
    HISTORIES.timeout,
  );
});

describe("many lots", () => {
  it("keep 5,000 unspent credits of existing callers as lots, drawn oldest first", () => {
    const ledger = new Ledger().given(open());
    for (let i = 0; i < 5_000; i++) ledger.given(credit(2, `c${i}`));
    const book = ledger.state.book as LotBook;
    expect(book.live.size).toBe(5_000);
    assertBook(book, 10_000);
    ledger.given(charge("ch", 5));
    expect(ledger.log.at(-1)).toMatchObject({
      funded_by: [
        { lot_id: "c0", amount: 2 },
        { lot_id: "c1", amount: 2 },
        { lot_id: "c2", amount: 1 },
      ],
    });
    ledger.given(refundCommand("rf", "ch", 3));
    expect(ledger.log.at(-1)).toMatchObject({
      returned_to: [
        { source: "c2", to_lot_id: "c2", amount: 1 },
        { source: "c1", to_lot_id: "c1", amount: 2 },
      ],
    });
    assertBook(ledger.state.book as LotBook, 9_998);
    expect(ledger.state.book?.live.size).toBe(4_999);
  });

  it("refuse a grant past LOTS_ACTIVE_MAX lots with credit, and still spend and pay debt", () => {
    const ledger = new Ledger().given(open(100));
    const lots = Array.from(
      { length: LOTS_ACTIVE_MAX },
      (_, i): Lot => ({
        lot_id: `l${i}`,
        kind: "paid",
        priority: 50,
        amount: 1,
        remaining: 1,
        held: 0,
        expired: 0,
        expires_at_ms: null,
        created_seq: 1,
      }),
    );
    ledger.state.book = bookOf(lots);
    ledger.state.account = { ...ledger.account, balance: LOTS_ACTIVE_MAX };
    expect(codeOf(ledger.decide(credit(5, "one-more")))).toBe("too_many_lots");
    ledger.given(charge("all", LOTS_ACTIVE_MAX + 10));
    expect(ledger.state.book?.live.size).toBe(0);
    expect(ledger.state.book?.debt).toBe(10);
    // A grant no bigger than the debt makes no lot; one past it does, now that there is room.
    ledger.given(credit(10, "pays-debt"), credit(5, "new-lot"));
    expect(ledger.state.book?.live.size).toBe(1);
  });
});
