/**
 * The ledger's rules as given/when/then over the pure decider. Error cases are tables in
 * precedence order: each row sets up a state where the rejection above it no longer applies.
 */
import { describe, expect, it } from "vitest";
import type { Command } from "../../src/domain/commands";
import { BALANCE_ABS_MINOR_MAX, OPEN_RESERVATIONS_MAX } from "../../src/domain/limits";
import { AssertionError } from "../../src/domain/money";
import { available } from "../../src/domain/state";
import {
  adjust,
  capture,
  charge,
  codeOf,
  credit,
  expire,
  extend,
  freeze,
  Ledger,
  open,
  refund,
  release,
  reserve,
  T0,
  unfreeze,
} from "./given";

describe("account", () => {
  it("rejects every command before the account is opened", () => {
    const commands: Command[] = [credit(1), reserve("r", 1), capture("r", 1), charge("c", 1), freeze()];
    for (const command of commands) expect(codeOf(new Ledger().decide(command))).toBe("account_not_found");
  });

  it("opens once; the same request again is a replay, a different one a conflict naming the field", () => {
    const ledger = new Ledger().given(open(500));
    expect(ledger.account).toMatchObject({ balance: 0, reserved: 0, credit_limit: 500, status: "active", last_seq: 1 });
    expect(codeOf(ledger.decide(open(500)))).toBe("replayed");
    const conflict = ledger.decide(open(0));
    expect(conflict).toMatchObject({ outcome: "rejected", rejection: { code: "idempotency_conflict" } });
    expect(conflict.outcome === "rejected" && conflict.rejection.facts?.field).toBe("credit_limit");
  });

  it("records an update only when it changes something", () => {
    const ledger = new Ledger().given(open());
    expect(ledger.run({ type: "UpdateAccount", credit_limit: 0, status: "active" })).toEqual({
      outcome: "accepted",
      events: [],
    });
    ledger.given({ type: "UpdateAccount", credit_limit: 300 });
    expect(ledger.log.at(-1)).toMatchObject({ type: "AccountUpdated", credit_limit: 300, changed: ["credit_limit"] });
    expect(ledger.account.last_seq).toBe(2);
  });
});

describe("credit", () => {
  it("adds to the balance and records balance_after", () => {
    const ledger = new Ledger().given(open(), credit(1000));
    expect(ledger.account.balance).toBe(1000);
    expect(ledger.log.at(-1)).toMatchObject({ type: "FundsCredited", amount: 1000, balance_after: 1000, seq: 2 });
  });

  it("is idempotent by credit_id", () => {
    const ledger = new Ledger().given(open(), credit(1000, "cr"));
    expect(codeOf(ledger.run(credit(1000, "cr")))).toBe("replayed");
    expect(codeOf(ledger.run(credit(999, "cr")))).toBe("idempotency_conflict");
    expect(codeOf(ledger.run(credit(1000, "cr", { reason: "other" })))).toBe("idempotency_conflict");
    expect(ledger.account.balance).toBe(1000);
    expect(ledger.account.last_seq).toBe(2);
  });

  it("refuses to leave the exact-integer range", () => {
    const ledger = new Ledger().given(open(), adjust("a1", 1_000_000_000_000_000), adjust("a2", 1_000_000_000_000_000));
    const over = BALANCE_ABS_MINOR_MAX - ledger.account.balance + 1;
    expect(codeOf(ledger.decide(credit(over)))).toBe("balance_limit_exceeded");
    expect(codeOf(ledger.decide(credit(over - 1)))).toBe("accepted");
  });
});

describe("reservation", () => {
  it("holds the amount: available drops, balance does not", () => {
    const ledger = new Ledger().given(open(), credit(1000), reserve("r1", 300));
    expect(ledger.account).toMatchObject({ balance: 1000, reserved: 300, open_reservations: 1 });
    expect(available(ledger.account)).toBe(700);
    expect(ledger.state.reservations.get("r1")).toMatchObject({
      status: "open",
      expires_at: new Date(T0 + 900_000).toISOString(),
    });
  });

  it("may spend into the credit limit but not past it", () => {
    const ledger = new Ledger().given(open(200), credit(100));
    expect(codeOf(ledger.decide(reserve("r", 300)))).toBe("accepted");
    const refused = ledger.decide(reserve("r", 301));
    expect(refused).toMatchObject({
      outcome: "rejected",
      rejection: { code: "insufficient_funds", facts: { available: 100, credit_limit: 200, requested: 301 } },
    });
  });

  it.each<[string, Command[], Command, string]>([
    ["unknown account first", [], reserve("r", 1), "account_not_found"],
    ["replay before any state rule", [open(), credit(10), reserve("r", 10), freeze()], reserve("r", 10), "replayed"],
    ["conflicting replay", [open(), credit(10), reserve("r", 10)], reserve("r", 5), "idempotency_conflict"],
    ["id used by a charge", [open(), credit(10), charge("x", 1)], reserve("x", 1), "idempotency_conflict"],
    ["frozen before funds", [open(), freeze()], reserve("r", 1_000), "account_frozen"],
    ["funds", [open(), credit(10)], reserve("r", 11), "insufficient_funds"],
  ])("precedence: %s", (_name, given, when, expected) => {
    expect(codeOf(new Ledger().given(...given).decide(when))).toBe(expected);
  });

  it("refuses more than OPEN_RESERVATIONS_MAX open holds", () => {
    const ledger = new Ledger().given(open(), credit(OPEN_RESERVATIONS_MAX + 1));
    for (let i = 0; i < OPEN_RESERVATIONS_MAX; i++) ledger.given(reserve(`r${i}`, 1));
    expect(codeOf(ledger.decide(reserve("one-more", 1)))).toBe("too_many_open_reservations");
    ledger.given(release("r0"));
    expect(codeOf(ledger.decide(reserve("one-more", 1)))).toBe("accepted");
  });
});

describe("capture", () => {
  it("charges the amount and releases the rest of the hold", () => {
    const ledger = new Ledger().given(open(), credit(1000), reserve("r", 300), capture("r", 120));
    expect(ledger.account).toMatchObject({ balance: 880, reserved: 0, open_reservations: 0 });
    expect(ledger.log.at(-1)).toMatchObject({
      type: "ReservationCaptured",
      reserved_amount: 300,
      amount: 120,
      released_amount: 180,
      overage: 0,
    });
    expect(ledger.state.charges.get("r")).toMatchObject({ kind: "capture", amount: 120, refunded: 0 });
  });

  it("may capture nothing", () => {
    const ledger = new Ledger().given(open(), credit(10), reserve("r", 10), capture("r", 0));
    expect(ledger.account).toMatchObject({ balance: 10, reserved: 0 });
    expect(ledger.state.reservations.get("r")?.status).toBe("captured");
  });

  it("refuses more than the hold unless allow_overage, which charges it all past the credit limit", () => {
    const ledger = new Ledger().given(open(50), credit(100), reserve("r", 100));
    expect(ledger.decide(capture("r", 101))).toMatchObject({
      rejection: { code: "capture_exceeds_reservation", facts: { reserved: 100, requested: 101 } },
    });
    ledger.given(capture("r", 400, { allow_overage: true }));
    expect(ledger.account.balance).toBe(-300);
    expect(ledger.log.at(-1)).toMatchObject({ overage: 300, allow_overage: true });
    // Past the credit limit: every new reservation or charge is refused until a top-up.
    expect(codeOf(ledger.decide(reserve("r2", 1)))).toBe("insufficient_funds");
    expect(codeOf(ledger.decide(charge("c2", 1)))).toBe("insufficient_funds");
    ledger.given(credit(251));
    expect(codeOf(ledger.decide(charge("c2", 1)))).toBe("accepted");
  });

  it("settles on a frozen account", () => {
    const ledger = new Ledger().given(open(), credit(10), reserve("r", 10), freeze());
    expect(codeOf(ledger.run(capture("r", 5)))).toBe("accepted");
  });

  it.each<[string, (Command | number)[], Command, string]>([
    ["unknown account", [], capture("r", 1), "account_not_found"],
    ["unknown reservation", [open()], capture("r", 1), "reservation_not_found"],
    ["exact replay of the capture", [open(), credit(5), reserve("r", 5), capture("r", 3)], capture("r", 3), "replayed"],
    [
      "different capture",
      [open(), credit(5), reserve("r", 5), capture("r", 3)],
      capture("r", 4),
      "idempotency_conflict",
    ],
    ["released earlier", [open(), credit(5), reserve("r", 5), release("r")], capture("r", 3), "reservation_not_open"],
    [
      "expired earlier",
      [open(), credit(5), reserve("r", 5), 900_000, expire("r")],
      capture("r", 3),
      "reservation_not_open",
    ],
    ["over the hold", [open(), credit(5), reserve("r", 5)], capture("r", 6), "capture_exceeds_reservation"],
  ])("precedence: %s", (_name, given, when, expected) => {
    expect(codeOf(new Ledger().given(...given).decide(when))).toBe(expected);
  });
});

describe("release and extend", () => {
  it("release gives the whole hold back, once", () => {
    const ledger = new Ledger().given(open(), credit(10), reserve("r", 10), release("r", "no output"));
    expect(ledger.account).toMatchObject({ balance: 10, reserved: 0 });
    expect(codeOf(ledger.decide(release("r", "no output")))).toBe("replayed");
    expect(codeOf(ledger.decide(release("r", "other")))).toBe("idempotency_conflict");
    expect(codeOf(ledger.decide(extend("r", 60)))).toBe("reservation_not_open");
  });

  it("extend moves the expiry from now and may switch on_expiry", () => {
    const ledger = new Ledger().given(open(), credit(10), reserve("r", 10, { ttl_seconds: 60 }));
    ledger.tick(30_000).given(extend("r", 600, null, "capture"));
    expect(ledger.state.reservations.get("r")).toMatchObject({
      expires_at: new Date(T0 + 30_000 + 600_000).toISOString(),
      on_expiry: "capture",
      ttl_seconds: 600,
    });
  });

  it("extend is idempotent by extension_id; without one every call extends again", () => {
    const ledger = new Ledger().given(open(), credit(10), reserve("r", 10), extend("r", 60, "e1"));
    expect(codeOf(ledger.decide(extend("r", 60, "e1")))).toBe("replayed");
    expect(codeOf(ledger.decide(extend("r", 61, "e1")))).toBe("idempotency_conflict");
    ledger.given(extend("r", 60), extend("r", 60));
    expect(ledger.log.filter((e) => e.type === "ReservationExtended")).toHaveLength(3);
  });
});

describe("expiry", () => {
  it("by the release rule gives the hold back", () => {
    const ledger = new Ledger().given(open(), credit(10), reserve("r", 10, { ttl_seconds: 1 })).tick(1_000);
    ledger.given(expire("r"));
    expect(ledger.account).toMatchObject({ balance: 10, reserved: 0 });
    expect(ledger.state.reservations.get("r")).toMatchObject({ status: "expired", captured_amount: null });
    expect(ledger.state.charges.has("r")).toBe(false);
  });

  it("by the capture rule charges the estimate, which becomes refundable", () => {
    const ledger = new Ledger().given(open(), credit(10), reserve("r", 8, { on_expiry: "capture", ttl_seconds: 1 }));
    ledger.tick(1_000).given(expire("r"));
    expect(ledger.account).toMatchObject({ balance: 2, reserved: 0 });
    expect(ledger.state.charges.get("r")).toMatchObject({ amount: 8, refunded: 0 });
    ledger.given(refund("rf", "r", 8));
    expect(ledger.account.balance).toBe(10);
  });

  it("is a programmer error before the expiry or twice", () => {
    const ledger = new Ledger().given(open(), credit(10), reserve("r", 10, { ttl_seconds: 10 }));
    expect(() => ledger.decide(expire("r"))).toThrow(AssertionError);
    ledger.tick(10_000).given(expire("r"));
    expect(() => ledger.decide(expire("r"))).toThrow(AssertionError);
  });
});

describe("charge and refund", () => {
  it("charges directly and refunds in parts up to the charge", () => {
    const ledger = new Ledger().given(
      open(),
      credit(100),
      charge("c", 60),
      refund("f1", "c", 20),
      refund("f2", "c", 40),
    );
    expect(ledger.account.balance).toBe(100);
    expect(ledger.state.charges.get("c")).toMatchObject({ amount: 60, refunded: 60 });
    expect(ledger.decide(refund("f3", "c", 1))).toMatchObject({
      rejection: { code: "refund_exceeds_charge", facts: { refundable: 0 } },
    });
  });

  it.each<[string, Command[], Command, string]>([
    ["unknown account", [], refund("f", "c", 1), "account_not_found"],
    ["replay", [open(), credit(5), charge("c", 5), refund("f", "c", 2)], refund("f", "c", 2), "replayed"],
    [
      "conflict on amount",
      [open(), credit(5), charge("c", 5), refund("f", "c", 2)],
      refund("f", "c", 3),
      "idempotency_conflict",
    ],
    [
      "conflict on charge",
      [open(), credit(5), charge("c", 5), refund("f", "c", 2)],
      refund("f", "d", 2),
      "idempotency_conflict",
    ],
    ["unknown charge", [open()], refund("f", "c", 1), "charge_not_found"],
    ["open reservation is no charge", [open(), credit(5), reserve("c", 5)], refund("f", "c", 1), "charge_not_found"],
    [
      "released reservation is no charge",
      [open(), credit(5), reserve("c", 5), release("c")],
      refund("f", "c", 1),
      "charge_not_found",
    ],
    ["over the charge", [open(), credit(5), charge("c", 5)], refund("f", "c", 6), "refund_exceeds_charge"],
  ])("refund precedence: %s", (_name, given, when, expected) => {
    expect(codeOf(new Ledger().given(...given).decide(when))).toBe(expected);
  });

  it("refunds a capture up to the captured amount, not the hold", () => {
    const ledger = new Ledger().given(open(), credit(100), reserve("r", 80), capture("r", 30));
    expect(codeOf(ledger.decide(refund("f", "r", 31)))).toBe("refund_exceeds_charge");
    expect(codeOf(ledger.decide(refund("f", "r", 30)))).toBe("accepted");
  });

  it.each<[string, Command[], Command, string]>([
    ["replay on a frozen account", [open(), credit(5), charge("c", 5), freeze()], charge("c", 5), "replayed"],
    ["id used by a reservation", [open(), credit(5), reserve("c", 1)], charge("c", 1), "idempotency_conflict"],
    ["frozen", [open(), credit(5), freeze()], charge("c", 1), "account_frozen"],
    ["funds", [open(), credit(5)], charge("c", 6), "insufficient_funds"],
    ["unfrozen again", [open(), credit(5), freeze(), unfreeze()], charge("c", 5), "accepted"],
  ])("charge precedence: %s", (_name, given, when, expected) => {
    expect(codeOf(new Ledger().given(...given).decide(when))).toBe(expected);
  });

  it("refunds on a frozen account", () => {
    const ledger = new Ledger().given(open(), credit(5), charge("c", 5), freeze());
    expect(codeOf(ledger.run(refund("f", "c", 5)))).toBe("accepted");
  });
});

describe("adjustment", () => {
  it("moves the balance either way, idempotent by adjustment_id", () => {
    const ledger = new Ledger().given(open(), adjust("a", -50, "chargeback"), adjust("b", 20));
    expect(ledger.account.balance).toBe(-30);
    expect(codeOf(ledger.decide(adjust("a", -50, "chargeback")))).toBe("replayed");
    expect(codeOf(ledger.decide(adjust("a", -50, "other reason")))).toBe("idempotency_conflict");
  });
});

describe("events", () => {
  it("carry contiguous seqs and the balances after each, so any past balance can be read", () => {
    const ledger = new Ledger().given(open(), credit(100), reserve("r", 40), capture("r", 25), refund("f", "r", 5));
    expect(ledger.log.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(ledger.log.map((e) => [e.balance_after, e.reserved_after])).toEqual([
      [0, 0],
      [100, 0],
      [100, 40],
      [75, 0],
      [80, 0],
    ]);
  });
});
