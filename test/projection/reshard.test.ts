/**
 * Changing the number of read-side shards (docs/read-side.md, "Shards"): accounts projected
 * while the deployment had one database are moved by a reprojection into the new set, found
 * and repaired by reconcile, shard by shard, with every report answering as before.
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { directDelivery } from "../../src/projection/producer/delivery";
import { shardIndexOf, shardsOf } from "../../src/read-side/shards";
import { api, stub } from "../helpers";
import { drain, expectD1EqualsLog } from "./support";

const ONE_SHARD = [{ index: 0, db: env.DB }];

async function accountsIn(db: D1Database, ids: string[]): Promise<string[]> {
  const rows = await db
    .prepare("SELECT account_id FROM accounts WHERE account_id IN (SELECT value FROM json_each(?)) ORDER BY account_id")
    .bind(JSON.stringify(ids))
    .all<{ account_id: string }>();
  return rows.results.map((r) => r.account_id);
}

describe("changing the number of shards", () => {
  it("moves every account to its new home by reprojection, found by reconcile, with nothing lost", async () => {
    // At least eight accounts written while the deployment had one database (DB), with homes in
    // both shards of the new set (fixed ids: random ones all landed in one shard once in 128 runs).
    const ids: string[] = [];
    while (ids.length < 8 || new Set(ids.map((id) => shardIndexOf(id, 2))).size < 2) ids.push(`reshard_${ids.length}`);
    for (const id of ids) {
      await runInDurableObject(stub(id), (instance: AccountDurableObject) => {
        instance.projector.deliver = directDelivery(ONE_SHARD);
      });
      expect((await api("POST", "/v1/accounts", { account_id: id, currency: "USD" })).status).toBe(201);
      await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "c", amount: 500 });
      await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "open", amount: 50 });
      await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "x", amount: 70, context: { model: "m" } });
      await drain(id);
    }
    expect(await accountsIn(env.DB, ids)).toEqual([...ids].sort());
    const moving = ids.filter((id) => shardIndexOf(id, 2) === 1);
    expect(moving.length).toBeGreaterThan(0);
    expect(moving.length).toBeLessThan(ids.length);

    // Deployed with DB_1 added: the objects restart on the two shards. Reports filtered to a
    // moving account read its new home, DB_1, which does not have it yet; cross-account reports
    // still list it from DB.
    for (const id of ids) await evictDurableObject(stub(id));
    const mover = moving[0] as string;
    const lost = await api("GET", `/v1/reports/transactions?account_id=${mover}`);
    expect(lost.body.data).toEqual([]);

    // The documented step: reconcile each old shard with repair; misplaced accounts reproject.
    const found = await api("POST", "/v1/admin/reconcile", { shard: 0, repair: true, limit: 100 });
    expect(found.status).toBe(200);
    const misplaced = found.body.results
      .filter((r: { state: string }) => r.state === "misplaced")
      .map((r: { account_id: string; repaired: boolean }) => {
        expect(r.repaired).toBe(true);
        return r.account_id;
      });
    expect(misplaced.filter((id: string) => ids.includes(id)).sort()).toEqual([...moving].sort());

    // Each account now lives in exactly its home shard, and equals its log there.
    const [inDb, inDb1] = await Promise.all(shardsOf(env).map((s) => accountsIn(s.db, ids)));
    expect(inDb1).toEqual([...moving].sort());
    expect(inDb).toEqual(ids.filter((id) => !moving.includes(id)).sort());
    for (const id of ids) await expectD1EqualsLog(id);
    const after = await api("GET", "/v1/reports/balances?limit=1000");
    const all = after.body.data.map((r: { account_id: string }) => r.account_id);
    for (const id of ids) expect(all.filter((a: string) => a === id)).toHaveLength(1);
    const found2 = await api("GET", `/v1/reports/transactions?account_id=${mover}`);
    expect(found2.body.data.map((e: { seq: number }) => e.seq)).toEqual([1, 2, 3, 4]);
    // A second pass finds nothing left to move.
    const again = await api("POST", "/v1/admin/reconcile", { shard: 0, limit: 100 });
    expect(again.body.results.filter((r: { state: string }) => r.state === "misplaced")).toEqual([]);
  });
});

describe("reconcile per shard", () => {
  it("finds drift in either shard, by shard and across shards", async () => {
    // One account in each shard, chosen by their ids.
    const ids: string[] = [];
    for (let i = 0; ids.length < 2; i++) {
      const id = `drift_${i}_${crypto.randomUUID().slice(0, 6)}`;
      if (shardIndexOf(id, 2) === ids.length) ids.push(id);
    }
    for (const id of ids) {
      expect((await api("POST", "/v1/accounts", { account_id: id, currency: "USD" })).status).toBe(201);
      await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "c", amount: 500 });
      await drain(id);
    }
    const [db0, db1] = shardsOf(env).map((s) => s.db) as [D1Database, D1Database];
    await db0.prepare("UPDATE accounts SET balance = balance + 1 WHERE account_id = ?").bind(ids[0]).run();
    await db1.prepare("UPDATE accounts SET balance = balance + 1 WHERE account_id = ?").bind(ids[1]).run();
    const stateIn = async (shard: number, id: string) => {
      const page = await api("POST", "/v1/admin/reconcile", { shard, limit: 100 });
      return page.body.results.find((r: { account_id: string }) => r.account_id === id)?.state;
    };
    expect(await stateIn(0, ids[0] as string)).toBe("drift");
    expect(await stateIn(1, ids[1] as string)).toBe("drift");
    // Without a shard, the pages walk shard 0 then shard 1.
    const seen = new Map<string, string>();
    let cursor: string | undefined;
    do {
      const page = await api("POST", "/v1/admin/reconcile", { limit: 2, ...(cursor ? { cursor } : {}) });
      for (const r of page.body.results) seen.set(r.account_id, r.state);
      cursor = page.body.next_cursor ?? undefined;
    } while (cursor !== undefined);
    expect(ids.map((id) => seen.get(id))).toEqual(["drift", "drift"]);
    const repaired = await api("POST", "/v1/admin/reconcile", { account_ids: ids, repair: true });
    expect(repaired.body.results.map((r: { repaired: boolean }) => r.repaired)).toEqual([true, true]);
    for (const id of ids) await expectD1EqualsLog(id);
  });
});
