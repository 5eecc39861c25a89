/**
 * Credit in lots (issue 27) through the API and the account object: grants and their answers,
 * the burn order under holds, exact expiry on the clock seam (by a command and by the alarm),
 * refunds back to where the money came from, debt, bad input, the lots read, concurrency, a
 * restart between checkpoints, and an account opened before lots existed.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { LOTS_CHECKPOINT_EVENTS } from "../../durable-objects/lot-store";
import type { Command } from "../../src/domain/commands";
import { decide, stamp } from "../../src/domain/decide";
import { LEGACY_LOT_ID } from "../../src/domain/lot-events";
import { REFUND_LOT_TTL_MS } from "../../src/domain/lots";
import {
  account,
  api,
  chargeInBatches,
  expectEveryAccountConsistent,
  openAccount,
  stub,
  useManualClock,
} from "../helpers";

afterEach(expectEveryAccountConsistent);

const DAY_MS = 86_400_000;
const post = (id: string, path: string, body: unknown) => api("POST", `/v1/accounts/${id}${path}`, body);
const lots = async (id: string, query = "") => (await api("GET", `/v1/accounts/${id}/lots${query}`)).body;
const iso = (ms: number) => new Date(ms).toISOString();

describe("grants", () => {
  it("make a paid lot that never expires by default, named by the credit id", async () => {
    const id = await openAccount();
    const credit = await post(id, "/credits", { credit_id: "top-up", amount: 500 });
    expect(credit.status).toBe(201);
    expect(credit.body.credit).toMatchObject({
      lot_id: "top-up",
      grant: { kind: "paid", priority: 50, expires_at: null },
      applied_to_debt: 0,
    });
    expect(await account(id)).toMatchObject({ balance: 500, balance_by_kind: { paid: 500, promotional: 0 }, debt: 0 });
    const page = await lots(id);
    expect(page.data).toEqual([
      expect.objectContaining({
        lot_id: "top-up",
        kind: "paid",
        amount: 500,
        remaining: 500,
        held: 0,
        status: "active",
      }),
    ]);
    expect(page.next_cursor).toBeNull();
  });

  it("replay the same grant, however its expiry is spelled, and refuse a different one (409 naming grant)", async () => {
    const time = useManualClock();
    const id = await openAccount();
    const at = time.now() + DAY_MS;
    const grant = { kind: "promotional", expires_at: iso(at) };
    expect((await post(id, "/credits", { credit_id: "p", amount: 10, grant })).status).toBe(201);
    const offset = new Date(at + 3_600_000).toISOString().replace("Z", "+01:00");
    const replay = await post(id, "/credits", { credit_id: "p", amount: 10, grant: { ...grant, expires_at: offset } });
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    const other = await post(id, "/credits", { credit_id: "p", amount: 10, grant: { kind: "paid" } });
    expect([other.status, other.body.code, other.body.field]).toEqual([409, "idempotency_conflict", "grant"]);
    const none = await post(id, "/credits", { credit_id: "p", amount: 10 });
    expect([none.status, none.body.field]).toEqual([409, "grant"]);
  });

  it("refuse bad terms with 400 naming the field, and change nothing", async () => {
    const time = useManualClock();
    const id = await openAccount();
    const before = await account(id);
    const past = await post(id, "/credits", {
      credit_id: "c",
      amount: 10,
      grant: { kind: "paid", expires_at: iso(time.now()) },
    });
    expect([past.status, past.body.code, past.body.field]).toEqual([400, "lot_expiry_passed", "grant.expires_at"]);
    const kind = await post(id, "/credits", { credit_id: "c", amount: 10, grant: { kind: "gift" } });
    expect([kind.status, kind.body.code]).toEqual([400, "invalid_request"]);
    expect(kind.body.errors.map((e: { field: string }) => e.field)).toContain("body.grant.kind");
    const priority = await post(id, "/credits", { credit_id: "c", amount: 10, grant: { kind: "paid", priority: 101 } });
    expect(priority.body.errors.map((e: { field: string }) => e.field)).toContain("body.grant.priority");
    const negative = await post(id, "/adjustments", {
      adjustment_id: "a",
      amount: -5,
      reason: "x",
      grant: { kind: "paid" },
    });
    expect(negative.body.errors.map((e: { field: string }) => e.field)).toContain("body.grant");
    expect(await account(id)).toEqual(before);
    // The refused id was not consumed.
    expect((await post(id, "/credits", { credit_id: "c", amount: 10 })).status).toBe(201);
  });

  it("pay the debt first, and say so", async () => {
    const id = await openAccount(0, 1_000);
    const charge = await post(id, "/charges", { charge_id: "ch", amount: 300 });
    expect(charge.body.charge.funded_by).toEqual([{ lot_id: null, amount: 300 }]);
    expect(await account(id)).toMatchObject({ balance: -300, debt: 300 });
    const credit = await post(id, "/credits", { credit_id: "c", amount: 500 });
    expect(credit.body.credit.applied_to_debt).toBe(300);
    expect(await account(id)).toMatchObject({ balance: 200, debt: 0, balance_by_kind: { paid: 200 } });
    const [lot] = (await lots(id)).data;
    expect(lot).toMatchObject({ lot_id: "c", amount: 500, remaining: 200 });
  });
});

describe("the burn order", () => {
  it("earmarks promotional credit before paid, captures its earmarks, and releases the rest back", async () => {
    const time = useManualClock();
    const id = await openAccount();
    await post(id, "/credits", { credit_id: "paid", amount: 1_000 });
    await post(id, "/credits", {
      credit_id: "promo",
      amount: 100,
      grant: { kind: "promotional", expires_at: iso(time.now() + 7 * DAY_MS) },
    });
    const hold = await post(id, "/reservations", { reservation_id: "r", amount: 150 });
    expect(hold.body.reservation.funded_by).toEqual([
      { lot_id: "promo", amount: 100 },
      { lot_id: "paid", amount: 50 },
    ]);
    const capture = await post(id, "/reservations/r/capture", { amount: 120 });
    expect(capture.body.charge.funded_by).toEqual([
      { lot_id: "promo", amount: 100 },
      { lot_id: "paid", amount: 20 },
    ]);
    expect(await account(id)).toMatchObject({ balance: 980, balance_by_kind: { paid: 980, promotional: 0 } });
    const direct = await post(id, "/charges", { charge_id: "ch", amount: 5 });
    expect(direct.body.charge.funded_by).toEqual([{ lot_id: "paid", amount: 5 }]);
  });

  it("holds 100 concurrent reserves to the order: no promotional credit is left while paid was taken", async () => {
    const time = useManualClock();
    const id = await openAccount();
    const expiry = iso(time.now() + DAY_MS);
    await post(id, "/credits", { credit_id: "paid-a", amount: 2_000 });
    await post(id, "/credits", { credit_id: "promo-late", amount: 700, grant: { kind: "promotional" } });
    await post(id, "/credits", {
      credit_id: "promo-soon",
      amount: 500,
      grant: { kind: "promotional", expires_at: expiry },
    });
    const holds = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        post(id, "/reservations", { reservation_id: `r${i}`, amount: 20 + (i % 7) }),
      ),
    );
    expect(holds.every((h) => h.status === 201)).toBe(true);
    // In the order the object decided them (by seq): each earmarks the earliest credit left.
    const ordered = holds.map((h) => h.body).sort((a, b) => a.account.last_seq - b.account.last_seq);
    const order = ["promo-soon", "promo-late", "paid-a"];
    let reached = 0;
    for (const h of ordered) {
      const ids = h.reservation.funded_by.map((f: { lot_id: string }) => order.indexOf(f.lot_id));
      expect(Math.min(...ids)).toBeGreaterThanOrEqual(reached);
      reached = Math.max(...ids);
    }
    const total = ordered.reduce((sum, h) => sum + h.reservation.amount, 0);
    const byLot = Object.fromEntries(
      (await lots(id)).data.map((l: { lot_id: string; held: number }) => [l.lot_id, l.held]),
    );
    expect(byLot).toEqual({ "promo-soon": 500, "promo-late": 700, "paid-a": total - 1_200 });
  });
});

describe("expiry", () => {
  it("takes the unearmarked rest at expires_at by the alarm; the hold's part expires when it is released", async () => {
    const time = useManualClock();
    const id = await openAccount();
    const expiresAt = time.now() + 10_000;
    await post(id, "/credits", {
      credit_id: "p",
      amount: 100,
      grant: { kind: "promotional", expires_at: iso(expiresAt) },
    });
    await post(id, "/reservations", { reservation_id: "r", amount: 30 });
    const alarm = await runInDurableObject(stub(id), (_i: AccountDurableObject, state) => state.storage.getAlarm());
    expect(alarm).toBeLessThanOrEqual(expiresAt);
    time.advance(9_999);
    await runDurableObjectAlarm(stub(id));
    expect((await lots(id, "?status=active")).data).toHaveLength(1);
    time.advance(1);
    expect(await runDurableObjectAlarm(stub(id))).toBe(true);
    const expired = (await lots(id, "?status=expired")).data;
    expect(expired).toEqual([expect.objectContaining({ lot_id: "p", remaining: 30, held: 30, expired_amount: 70 })]);
    expect(await account(id)).toMatchObject({ balance: 30, reserved: 30, available: 0 });
    // The hold may still spend its part; what it releases expires at once.
    const capture = await post(id, "/reservations/r/capture", { amount: 12 });
    expect(capture.status, JSON.stringify(capture.body)).toBe(200);
    expect(capture.body.charge.funded_by).toEqual([{ lot_id: "p", amount: 12 }]);
    expect(await account(id)).toMatchObject({ balance: 0, reserved: 0 });
    const events = (await api("GET", `/v1/accounts/${id}/events`)).body.events;
    const types = events.map((e: { type: string }) => e.type);
    expect(types.slice(-3)).toEqual(["LotExpired", "ReservationCaptured", "LotExpired"]);
    expect(events.at(-1)).toMatchObject({ lot_id: "p", amount: 18, kind: "promotional", expires_at: iso(expiresAt) });
  });

  it("is applied before a command that comes after expires_at, with no alarm", async () => {
    const time = useManualClock();
    const id = await openAccount(0, 50);
    await post(id, "/credits", {
      credit_id: "p",
      amount: 40,
      grant: { kind: "promotional", expires_at: iso(time.now() + 1_000) },
    });
    time.advance(1_000);
    const charge = await post(id, "/charges", { charge_id: "ch", amount: 50 });
    expect(charge.body.charge.funded_by).toEqual([{ lot_id: null, amount: 50 }]);
    expect(await account(id)).toMatchObject({ balance: -50, debt: 50 });
  });
});

describe("refunds", () => {
  it("go back to the lots that paid in reverse order; to a new lot of its kind once the lot expired", async () => {
    const time = useManualClock();
    const id = await openAccount(0, 100);
    await post(id, "/credits", { credit_id: "paid", amount: 50 });
    await post(id, "/credits", {
      credit_id: "promo",
      amount: 30,
      grant: { kind: "promotional", expires_at: iso(time.now() + 1_000) },
    });
    const charge = await post(id, "/charges", { charge_id: "ch", amount: 100 });
    expect(charge.body.charge.funded_by).toEqual([
      { lot_id: "promo", amount: 30 },
      { lot_id: "paid", amount: 50 },
      { lot_id: null, amount: 20 },
    ]);
    time.advance(1_000);
    const first = await post(id, "/refunds", { refund_id: "f1", charge_id: "ch", amount: 60 });
    expect(first.body.refund.returned_to).toEqual([
      { source: null, to_lot_id: null, amount: 20 },
      { source: "paid", to_lot_id: "paid", amount: 40 },
    ]);
    const second = await post(id, "/refunds", { refund_id: "f2", charge_id: "ch", amount: 40 });
    expect(second.body.refund.returned_to).toEqual([
      { source: "paid", to_lot_id: "paid", amount: 10 },
      { source: "promo", to_lot_id: "refund/f2/1", amount: 30 },
    ]);
    const made = (await lots(id, "?status=active")).data.find((l: { lot_id: string }) => l.lot_id === "refund/f2/1");
    expect(made).toMatchObject({ kind: "promotional", amount: 30, expires_at: iso(time.now() + REFUND_LOT_TTL_MS) });
    expect(await account(id)).toMatchObject({ balance: 80, debt: 0, balance_by_kind: { paid: 50, promotional: 30 } });
  });
});

describe("the object", () => {
  it("keep no spent lot in memory that a replay or a refund loaded and left spent", async () => {
    const id = await openAccount();
    await post(id, "/credits", { credit_id: "a", amount: 10 });
    await post(id, "/credits", { credit_id: "b", amount: 10 });
    await post(id, "/charges", { charge_id: "ch", amount: 15 });
    // A replay of the charge loads its spent source, a; so does a refund that only b takes back.
    expect((await post(id, "/charges", { charge_id: "ch", amount: 15 })).headers.get("idempotent-replayed")).toBe(
      "true",
    );
    await post(id, "/refunds", { refund_id: "rf", charge_id: "ch", amount: 5 });
    await post(id, "/credits", { credit_id: "c", amount: 1 });
    const inMemory = await runInDurableObject(stub(id), (instance: AccountDurableObject) => [
      ...(instance.store.lots.book?.lots.keys() ?? []),
    ]);
    expect(inMemory.sort()).toEqual(["b", "c"]);
    await expectEveryAccountConsistent();
  });

  it("restarts between checkpoints with the same book, and lists lots by status across pages", async () => {
    const time = useManualClock();
    const id = await openAccount();
    for (let i = 0; i < 12; i++) {
      const grant = i % 3 === 0 ? { kind: "promotional", expires_at: iso(time.now() + 1_000) } : { kind: "paid" };
      await post(id, "/credits", { credit_id: `c${String(i).padStart(2, "0")}`, amount: 200, grant });
    }
    // Past a checkpoint (in batches, inside the object), then a tail after it that a start folds.
    await chargeInBatches(id, LOTS_CHECKPOINT_EVENTS);
    const through = await runInDurableObject(
      stub(id),
      (instance: AccountDurableObject) => instance.store.lots.throughSeq,
    );
    expect(through).toBeGreaterThan(LOTS_CHECKPOINT_EVENTS);
    for (let i = 0; i < 5; i++) await post(id, "/charges", { charge_id: `tail${i}`, amount: 1 });
    time.advance(1_000);
    const before = await lots(id, "?limit=1000");
    const accountBefore = await account(id);
    await evictDurableObject(stub(id));
    expect(await lots(id, "?limit=1000")).toEqual(before);
    expect(await account(id)).toEqual(accountBefore);
    const pages: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { data: { lot_id: string; status: string }[]; next_cursor: string | null } = await lots(
        id,
        `?status=active&limit=2${cursor === null ? "" : `&cursor=${cursor}`}`,
      );
      pages.push(...page.data.map((l) => l.lot_id));
      expect(page.data.every((l) => l.status === "active")).toBe(true);
      cursor = page.next_cursor;
    } while (cursor !== null);
    const active = before.data
      .filter((l: { status: string }) => l.status === "active")
      .map((l: { lot_id: string }) => l.lot_id);
    expect(pages).toEqual(active);
    expect((await api("GET", `/v1/accounts/${id}/lots?cursor=nope`)).status).toBe(400);
  });

  it("opens the lots of an account from before lots: one paid lot, the debt, its holds' earmarks", async () => {
    const id = `pre_lots_${crypto.randomUUID().slice(0, 8)}`;
    // A log written as before lots existed: no `lots` on AccountOpened, no lot fields anywhere.
    await runInDurableObject(stub(id), (instance: AccountDurableObject) => {
      const store = instance.store;
      let now = Date.now();
      const run = (command: Command) => {
        const state = store.loadSlice(command);
        now += 1;
        const decision = decide(command, state, now);
        if (decision.outcome !== "accepted") throw new Error(JSON.stringify(decision));
        const bodies = decision.events.map((body) => {
          const { lots: _none, ...rest } = body as typeof body & { lots?: true };
          return rest as typeof body;
        });
        let n = 0;
        store.append(
          state,
          stamp(bodies, store.account, now, () => `e${now}-${++n}`),
        );
      };
      run({ type: "OpenAccount", account_id: id, currency: "USD", credit_limit: 0, metadata: {} });
      run({ type: "CreditFunds", credit_id: "old", amount: 100, reason: null, metadata: {} });
      run({ type: "ChargeAccount", charge_id: "ch", amount: 40, context: {}, metadata: {} });
      const hold = {
        type: "ReserveFunds",
        ttl_seconds: 3_600,
        on_expiry: "release",
        context: {},
        metadata: {},
      } as const;
      run({ ...hold, reservation_id: "r1", amount: 50 });
      run({ ...hold, reservation_id: "r2", amount: 5 });
      expect(store.lots.book).toBeNull();
      // The open holds' rows as the code before lots wrote them: no funded_by in their state.
      for (const row of store.sql
        .exec<{ reservation_id: string; state: string }>(
          "SELECT reservation_id, state FROM reservations WHERE status = 'open'",
        )
        .toArray()) {
        const { funded_by: _none, ...old } = JSON.parse(row.state) as Record<string, unknown>;
        store.sql.exec(
          "UPDATE reservations SET state = ? WHERE reservation_id = ?",
          JSON.stringify(old),
          row.reservation_id,
        );
      }
    });
    await evictDurableObject(stub(id));
    // Verified as it is, before anything opens its lots: holds stored without funded_by included.
    expect((await stub(id).verify()).problems).toEqual([]);
    expect(await account(id)).toMatchObject({ balance: 60, reserved: 55, balance_by_kind: { paid: 60 }, debt: 0 });
    const events = (await api("GET", `/v1/accounts/${id}/events`)).body.events;
    expect(events.at(-1)).toMatchObject({
      type: "LotsOpened",
      debt: 0,
      lots: [{ lot_id: LEGACY_LOT_ID, kind: "paid", priority: 50, expires_at: null, amount: 60, remaining: 60 }],
      earmarks: [
        { reservation_id: "r1", funded_by: [{ lot_id: LEGACY_LOT_ID, amount: 50 }] },
        { reservation_id: "r2", funded_by: [{ lot_id: LEGACY_LOT_ID, amount: 5 }] },
      ],
    });
    const capture = await post(id, "/reservations/r1/capture", { amount: 50 });
    expect(capture.body.charge.funded_by).toEqual([{ lot_id: LEGACY_LOT_ID, amount: 50 }]);
    // A charge from before lots was paid by the legacy lot: its refund goes back there.
    const refund = await post(id, "/refunds", { refund_id: "f", charge_id: "ch", amount: 40 });
    expect(refund.body.refund.returned_to).toEqual([{ source: LEGACY_LOT_ID, to_lot_id: LEGACY_LOT_ID, amount: 40 }]);
    expect(await account(id)).toMatchObject({ balance: 50, balance_by_kind: { paid: 50 } });
  });
});
