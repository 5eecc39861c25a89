/**
 * The events of the last commits, kept parsed for the projection (durable-objects/recent-events.ts):
 * a cache of the log that must never differ from it, stay bounded, and let go once delivered.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { RECENT_EVENTS_MAX, RecentEvents } from "../../durable-objects/recent-events";
import type { AccountStore } from "../../durable-objects/store";
import type { LedgerEvent } from "../../src/domain/events";
import { directDelivery } from "../../src/projection/producer/delivery";
import { shardFor, shardsOf } from "../../src/read-side/shards";
import { api, expectEveryAccountConsistent, openAccount, stub, useManualClock } from "../helpers";

afterEach(expectEveryAccountConsistent);

const event = (seq: number) => ({ seq, type: "FundsCredited" }) as unknown as LedgerEvent;
const seqs = (events: readonly LedgerEvent[] | null) => events?.map((e) => e.seq) ?? null;
const storeOf = (instance: AccountDurableObject) => (instance as unknown as { store: AccountStore }).store;

describe("RecentEvents", () => {
  it("answers a run that starts with an event it holds, and only then", () => {
    const recent = new RecentEvents();
    recent.add([event(5), event(6), event(7)]);
    expect(seqs(recent.after(4, 10))).toEqual([5, 6, 7]);
    expect(seqs(recent.after(5, 1))).toEqual([6]);
    expect(recent.after(3, 10)).toBeNull();
    expect(recent.after(7, 10)).toBeNull();
    expect(recent.get(6)?.seq).toBe(6);
    expect(Object.isFrozen(recent.get(6))).toBe(true);
  });

  it("starts again after a gap, drops what was delivered or rolled back, and stays bounded", () => {
    const recent = new RecentEvents();
    recent.add([event(1), event(2)]);
    recent.add([event(9)]);
    expect(recent.get(1)).toBeUndefined();
    expect(seqs(recent.after(8, 5))).toEqual([9]);
    recent.add([event(10), event(11), event(12)]);
    recent.dropThrough(10);
    expect(seqs(recent.after(10, 5))).toEqual([11, 12]);
    recent.dropAfter(11);
    expect(seqs(recent.after(10, 5))).toEqual([11]);
    recent.add(Array.from({ length: RECENT_EVENTS_MAX + 10 }, (_, i) => event(12 + i)));
    expect(recent.size).toBe(RECENT_EVENTS_MAX);
    expect(recent.get(11 + RECENT_EVENTS_MAX + 10)).toBeDefined();
    expect(recent.get(22)).toBeDefined();
    expect(recent.get(21)).toBeUndefined();
  });
});

describe("the account object's recent events", () => {
  it("equal the log's rows after an atomic batch rolled back, and the read side equals the log", async () => {
    const id = await openAccount(1_000);
    // Delivery waits at a gate: until it opens, the cache keeps what the flush will deliver.
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    await runInDurableObject(stub(id), (instance: AccountDurableObject) => {
      const real = directDelivery(shardsOf(env));
      instance.projector.deliver = (messages) => gate.then(() => real(messages));
    });
    const rolledBack = await api("POST", `/v1/accounts/${id}/batch`, {
      atomic: true,
      operations: [
        { op: "credit", credit_id: "gone-1", amount: 5 },
        { op: "reserve", reservation_id: "gone-2", amount: 5 },
        { op: "charge", charge_id: "too-much", amount: 1_000_000 },
      ],
    });
    expect(rolledBack.body.committed).toBe(false);
    expect((await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "kept", amount: 7 })).status).toBe(201);
    await runInDurableObject(stub(id), (instance: AccountDurableObject) => {
      const store = storeOf(instance);
      const head = store.account?.last_seq ?? 0;
      const cached = store.recent.after(0, 100) ?? store.recent.after(head - 1, 100);
      expect(cached).not.toBeNull();
      expect(cached?.at(-1)?.seq).toBe(head);
      const first = cached?.[0]?.seq ?? 0;
      expect(cached).toEqual(store.readEvents(first - 1, 100));
      expect(cached?.some((e) => JSON.stringify(e).includes("gone-"))).toBe(false);
    });
    open();
    const status = await stub(id).catchUp();
    expect(status.projected_seq).toBe(status.last_seq);
    // The account's own read-side database (the tests run with two shards).
    const home = shardFor(shardsOf(env), id).db;
    const row = await home.prepare("SELECT balance, last_seq FROM accounts WHERE account_id = ?").bind(id).first();
    expect(row).toEqual({ balance: 1_007, last_seq: status.last_seq });
  });

  it("lets go of what was delivered, and of everything while the read side is down", async () => {
    useManualClock();
    const id = await openAccount(1_000);
    await stub(id).catchUp();
    await runInDurableObject(stub(id), async (instance: AccountDurableObject) => {
      expect(storeOf(instance).recent.size).toBe(0);
      instance.projector.deliver = async () => {
        throw new Error("D1_ERROR: injected outage");
      };
    });
    await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "c1", amount: 1 });
    await runInDurableObject(stub(id), async (instance: AccountDurableObject) => {
      await instance.projector.flush();
      expect(storeOf(instance).recent.size).toBe(0);
      instance.projector.deliver = directDelivery(shardsOf(env));
    });
    await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "c2", amount: 1 });
    const status = await stub(id).catchUp();
    expect(status.projected_seq).toBe(status.last_seq);
    await runInDurableObject(stub(id), (instance: AccountDurableObject) => {
      expect(storeOf(instance).recent.size).toBe(0);
    });
  });
});
