/**
 * The account Durable Object for real inside workerd: concurrency through the input gate,
 * idempotency under concurrent retries, expiry by alarm (on a ManualClock, run twice), eviction,
 * and rollback of a commit that breaks an invariant.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import type { AccountStore } from "../../durable-objects/store";
import { stamp } from "../../src/domain/decide";
import { AssertionError } from "../../src/domain/money";
import { initialState } from "../../src/domain/state";
import { account, api, expectEveryAccountConsistent, openAccount, stub, useManualClock } from "../helpers";

afterEach(expectEveryAccountConsistent);

/** Reads a reservation straight from the store, without triggering lazy expiry. */
async function storedReservation(accountId: string, reservationId: string) {
  return runInDurableObject(stub(accountId), (instance: AccountDurableObject) =>
    (instance as unknown as { store: AccountStore }).store.reservation(reservationId),
  );
}

async function eventCount(accountId: string): Promise<number> {
  return runInDurableObject(
    stub(accountId),
    (_instance: AccountDurableObject, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM events").one().n,
  );
}

describe("concurrency", () => {
  it("accepts exactly 100 of 200 concurrent reservations of 10 on a balance of 1000", async () => {
    const id = await openAccount(1000);
    const responses = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: `r${i}`, amount: 10 }),
      ),
    );
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(100);
    expect(statuses.filter((s) => s === 402)).toHaveLength(100);
    for (const refused of responses.filter((r) => r.status === 402)) {
      expect(refused.body).toMatchObject({ code: "insufficient_funds", available: 0 });
    }
    expect(await account(id)).toMatchObject({ balance: 1000, reserved: 1000, available: 0, open_reservations: 100 });
  });

  it("applies one refund once under 50 concurrent retries of the same refund id", async () => {
    const id = await openAccount(500);
    expect((await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 300 })).status).toBe(201);
    const before = await eventCount(id);
    const retries = await Promise.all(
      Array.from({ length: 50 }, () =>
        api("POST", `/v1/accounts/${id}/refunds`, { refund_id: "rf1", charge_id: "c1", amount: 100 }),
      ),
    );
    expect(retries.every((r) => r.status === 201)).toBe(true);
    expect(retries.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(49);
    // Every retry answers the very same body as the original.
    expect(new Set(retries.map((r) => JSON.stringify(r.body))).size).toBe(1);
    expect(await eventCount(id)).toBe(before + 1);
    expect(await account(id)).toMatchObject({ balance: 300 });
  });

  it("never lets two concurrent captures of one reservation both succeed", async () => {
    const id = await openAccount(100);
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r", amount: 100 });
    const [a, b] = await Promise.all([
      api("POST", `/v1/accounts/${id}/reservations/r/capture`, { amount: 60 }),
      api("POST", `/v1/accounts/${id}/reservations/r/release`, {}),
    ]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    const balance = (await account(id)).balance;
    expect(balance === 40 || balance === 100).toBe(true);
  });
});

describe("expiry", () => {
  // Time passes by a ManualClock (a day ahead of the wall clock, so the runtime never fires these
  // alarms by itself); the alarm runs when the test says, through runDurableObjectAlarm.
  const alarmOf = (accountId: string) =>
    runInDurableObject(stub(accountId), (_i: AccountDurableObject, state) => state.storage.getAlarm());

  it("is settled by the alarm by the release rule, not a millisecond early", async () => {
    const time = useManualClock();
    const id = await openAccount(100);
    const reserved = await api("POST", `/v1/accounts/${id}/reservations`, {
      reservation_id: "r",
      amount: 70,
      ttl_seconds: 1,
    });
    const expiresAt = Date.parse(reserved.body.reservation.expires_at);
    expect(expiresAt).toBe(time.now() + 1_000);
    expect(await alarmOf(id)).toBe(expiresAt);
    // A wake just before the expiry settles nothing and re-arms for the expiry.
    time.advance(999);
    expect(await runDurableObjectAlarm(stub(id))).toBe(true);
    expect(await storedReservation(id, "r")).toMatchObject({ status: "open" });
    expect(await alarmOf(id)).toBe(expiresAt);
    time.advance(1);
    expect(await runDurableObjectAlarm(stub(id))).toBe(true);
    expect(await storedReservation(id, "r")).toMatchObject({ status: "expired" });
    expect(await account(id)).toMatchObject({ balance: 100, reserved: 0, available: 100 });
  });

  it("by the capture rule charges the estimate; a second alarm run changes nothing", async () => {
    const time = useManualClock();
    const id = await openAccount(100);
    const s = stub(id);
    await api("POST", `/v1/accounts/${id}/reservations`, {
      reservation_id: "r",
      amount: 70,
      ttl_seconds: 1,
      on_expiry: "capture",
    });
    time.advance(1_000);
    expect(await runDurableObjectAlarm(s)).toBe(true);
    expect(await storedReservation(id, "r")).toMatchObject({ status: "expired", captured_amount: 70 });
    const events = await eventCount(id);
    // At-least-once delivery: the same alarm again, and a forced one, settle nothing twice.
    await runInDurableObject(s, (instance: AccountDurableObject) => instance.alarm());
    await runDurableObjectAlarm(s);
    expect(await eventCount(id)).toBe(events);
    expect(await account(id)).toMatchObject({ balance: 30, reserved: 0 });
    const refund = await api("POST", `/v1/accounts/${id}/refunds`, { refund_id: "f", charge_id: "r", amount: 70 });
    expect(refund.status).toBe(201);
  });

  it("settles a due reservation before a late capture can use it", async () => {
    const time = useManualClock();
    const id = await openAccount(100);
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r", amount: 50, ttl_seconds: 1 });
    // No alarm runs: the command itself settles what is due at its time.
    time.advance(1_000);
    const late = await api("POST", `/v1/accounts/${id}/reservations/r/capture`, { amount: 50 });
    expect(late.status).toBe(409);
    expect(late.body).toMatchObject({ code: "reservation_not_open", reservation_status: "expired" });
  });

  it("keeps the alarm at or before the earliest open expiry, and re-arms after eviction", async () => {
    const id = await openAccount(100);
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "late", amount: 1, ttl_seconds: 600 });
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "early", amount: 1, ttl_seconds: 300 });
    const alarm = () => runInDurableObject(stub(id), (_i: AccountDurableObject, state) => state.storage.getAlarm());
    const early = (await api("GET", `/v1/accounts/${id}/reservations/early`)).body.expires_at;
    expect(await alarm()).toBe(Date.parse(early));
    // A lost alarm (e.g. local dev restarted) is put back when the object starts again. (The
    // projection is caught up and its cursor written first: a restart with an unwritten cursor
    // would rightly arm the alarm at once, to send those messages again.)
    await stub(id).catchUp();
    await runInDurableObject(stub(id), (_i: AccountDurableObject, state) => state.storage.deleteAlarm());
    await evictDurableObject(stub(id));
    await account(id);
    expect(await alarm()).toBe(Date.parse(early));
  });
});

describe("durability", () => {
  it("loses nothing when the object is evicted between every step", async () => {
    const id = await openAccount(1_000);
    const steps: [string, unknown][] = [
      [`/v1/accounts/${id}/reservations`, { reservation_id: "r1", amount: 400 }],
      [`/v1/accounts/${id}/reservations/r1/capture`, { amount: 150 }],
      [`/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 100 }],
      [`/v1/accounts/${id}/refunds`, { refund_id: "f1", charge_id: "r1", amount: 50 }],
      [`/v1/accounts/${id}/reservations`, { reservation_id: "r2", amount: 200 }],
    ];
    for (const [path, body] of steps) {
      expect((await api("POST", path, body)).status).toBeLessThan(300);
      await evictDurableObject(stub(id));
    }
    expect(await account(id)).toMatchObject({ balance: 800, reserved: 200, available: 600, last_seq: 7 });
    // Replays after eviction still answer from the log.
    const replay = await api("POST", `/v1/accounts/${id}/reservations/r1/capture`, { amount: 150 });
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(replay.body.account).toMatchObject({ balance: 850, last_seq: 4 });
  });

  it("rolls back a commit that breaks an invariant and keeps serving", async () => {
    const id = await openAccount(100);
    const before = await eventCount(id);
    await runInDurableObject(stub(id), (instance: AccountDurableObject) => {
      const state = initialState();
      // biome-ignore lint/suspicious/noExplicitAny: reaching into the shell to simulate a corrupt event
      const shell = instance as any;
      state.account = shell.store.account;
      const [event] = stamp(
        [{ type: "FundsCredited", credit_id: "bad", amount: 5, reason: null, metadata: {} }],
        shell.store.account,
        Date.now(),
        () => "ev",
      );
      // A corrupt balance_after must be caught by the append assertions, inside the transaction.
      expect(() => shell.store.append(state, [{ ...event, balance_after: 1 }])).toThrow(AssertionError);
    });
    expect(await eventCount(id)).toBe(before);
    expect(await account(id)).toMatchObject({ balance: 100, last_seq: before });
    expect((await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "bad", amount: 5 })).status).toBe(201);
  });
});
