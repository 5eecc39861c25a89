/**
 * Spend limits (issue 28) through the Worker and the account object: set, listed and removed as
 * events; enforced in the same decision as the balance under concurrency; the caller's key and
 * project from authentication; holds sized to what is affordable; limits kept across a restart.
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { LIMITS_CHECKPOINT_EVENTS } from "../../durable-objects/limit-store";
import { api, chargeInBatches, expectEveryAccountConsistent, openAccount, stub, useManualClock } from "../helpers";

afterEach(expectEveryAccountConsistent);

const as = (secret: string) => ({ authorization: `Bearer ${secret}` });

async function createKey(body: Record<string, unknown>) {
  const created = await api("POST", "/v1/admin/api-keys", body);
  expect(created.status).toBe(201);
  return created.body as { key: { id: string; project_id: string | null }; secret: string };
}

const putLimit = (id: string, limitId: string, body: unknown) =>
  api("PUT", `/v1/accounts/${id}/limits/${limitId}`, body);
const limits = async (id: string) => (await api("GET", `/v1/accounts/${id}/limits`)).body.data;

describe("spend limits", () => {
  it("are set, listed with the window's figures, and removed, each change an event in the chain", async () => {
    const time = useManualClock(Date.parse("2026-12-09T10:00:00.000Z"));
    const id = await openAccount(10_000);
    const set = await putLimit(id, "proj-day", { applies_to: { project_id: "p1" }, window: "day", amount: 500 });
    expect(set.status).toBe(200);
    expect(set.body.data).toEqual([
      {
        limit_id: "proj-day",
        applies_to: { project_id: "p1" },
        window: "day",
        amount: 500,
        threshold_percent: 80,
        window_start: "2026-12-09T00:00:00.000Z",
        spent: 0,
        held: 0,
        remaining: 500,
        resets_at: "2026-12-10T00:00:00.000Z",
      },
    ]);
    const reserved = await api("POST", `/v1/accounts/${id}/reservations`, {
      reservation_id: "r1",
      amount: 200,
      context: { project_id: "p1" },
    });
    expect(reserved.status).toBe(201);
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 100, context: { project_id: "p1" } });
    expect((await limits(id))[0]).toMatchObject({ spent: 100, held: 200, remaining: 200 });
    time.advance(14 * 3_600_000); // the next day
    expect((await limits(id))[0]).toMatchObject({
      window_start: "2026-12-10T00:00:00.000Z",
      spent: 0,
      held: 0,
      remaining: 500,
    });
    const removed = await api("DELETE", `/v1/accounts/${id}/limits/proj-day`);
    expect(removed.status).toBe(200);
    expect(removed.body.data).toEqual([]);
    expect((await api("DELETE", `/v1/accounts/${id}/limits/proj-day`)).status).toBe(404);
    const events = (await api("GET", `/v1/accounts/${id}/events?after_seq=0&limit=100`)).body.events;
    expect(events.map((e: { type: string }) => e.type).filter((t: string) => t.startsWith("Limit"))).toEqual([
      "LimitSet",
      "LimitRemoved",
    ]);
  });

  it("refuse bad input with 400 naming the field, and change nothing", async () => {
    const id = await openAccount(1_000);
    const cases: [unknown, string][] = [
      [{ applies_to: { project_id: "p" }, window: "year", amount: 1 }, "body.window"],
      [{ applies_to: { project_id: "p" }, window: "day", amount: -1 }, "body.amount"],
      [{ applies_to: {}, window: "day", amount: 1 }, "body.applies_to"],
      [{ applies_to: { project_id: "p" }, window: "day", amount: 1, threshold_percent: 0 }, "body.threshold_percent"],
    ];
    for (const [body, field] of cases) {
      const response = await putLimit(id, "l", body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.body.errors.map((e: { field: string }) => e.field)).toContain(field);
    }
    const reserve = (body: Record<string, unknown>) =>
      api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r", ...body });
    const both = await reserve({ amount: 10, amount_min: 1, amount_max: 20 });
    expect(both.status).toBe(400);
    const reversed = await reserve({ amount_min: 30, amount_max: 20 });
    expect(reversed.status).toBe(400);
    expect(reversed.body.errors.map((e: { field: string }) => e.field)).toContain("body.amount_min");
    expect(await limits(id)).toEqual([]);
    expect((await api("GET", `/v1/accounts/${id}`)).body).toMatchObject({ reserved: 0, last_seq: 2 });
  });

  it("hold exactly to the limit under 200 concurrent reserves of 10 under a day limit of 1,000", async () => {
    const id = await openAccount(1_000_000);
    const { key, secret } = await createKey({
      name: "gateway",
      scopes: ["ledger:write", "ledger:read"],
      project_id: "p1",
    });
    expect(key.project_id).toBe("p1");
    expect((await putLimit(id, "day", { applies_to: { project_id: "p1" }, window: "day", amount: 1_000 })).status).toBe(
      200,
    );
    // The bootstrap key (no per-key rate limit in the way), naming the project in the body.
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        api("POST", `/v1/accounts/${id}/reservations`, {
          reservation_id: `r${i}`,
          amount: 10,
          context: { project_id: "p1" },
        }),
      ),
    );
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(100);
    expect(statuses.filter((s) => s === 402)).toHaveLength(100);
    const refused = results.find((r) => r.status === 402);
    expect(refused?.body).toMatchObject({ code: "limit_exceeded", limit_id: "day", window: "day", remaining: 0 });
    expect((await limits(id))[0]).toMatchObject({ held: 1_000, remaining: 0 });
    // The key's id came from authentication: a limit on the key itself matches the same calls.
    const other = await openAccount(1_000);
    await putLimit(other, "key", { applies_to: { api_key_id: key.id }, window: "total", amount: 5 });
    const byKey = await api("POST", `/v1/accounts/${other}/charges`, { charge_id: "c", amount: 6 }, as(secret));
    expect(byKey.body).toMatchObject({ code: "limit_exceeded", limit_id: "key", remaining: 5 });
    expect((await api("POST", `/v1/accounts/${other}/charges`, { charge_id: "c", amount: 5 }, as(secret))).status).toBe(
      201,
    );
  });

  it("take the project of a bound key, refuse another in the body (403), and let an unbound key name one", async () => {
    const id = await openAccount(10_000);
    const bound = await createKey({ name: "bound", scopes: ["ledger:write"], project_id: "p1" });
    const free = await createKey({ name: "free", scopes: ["ledger:write"] });
    await putLimit(id, "p1", { applies_to: { project_id: "p1" }, window: "total", amount: 50 });
    const charge = (secret: string, charge_id: string, context: Record<string, string>) =>
      api("POST", `/v1/accounts/${id}/charges`, { charge_id, amount: 30, context }, as(secret));
    expect((await charge(bound.secret, "a", {})).status).toBe(201);
    const other = await charge(bound.secret, "b", { project_id: "p2" });
    expect(other.status).toBe(403);
    expect(other.body).toMatchObject({ code: "forbidden", field: "context.project_id" });
    expect((await charge(bound.secret, "c", { project_id: "p1" })).status).toBe(402);
    expect((await charge(free.secret, "d", { project_id: "p2" })).status).toBe(201);
    expect((await charge(free.secret, "e", { project_id: "p1" })).status).toBe(402);
    const events = (await api("GET", `/v1/accounts/${id}/events?after_seq=0&limit=100`)).body.events;
    expect(events.find((e: { charge_id?: string }) => e.charge_id === "a")).toMatchObject({
      caller: { api_key_id: bound.key.id, project_id: "p1" },
      limits: [{ limit_id: "p1" }],
    });
  });

  it("size a hold to what is affordable, and refuse it only below amount_min", async () => {
    const id = await openAccount(1_000);
    await putLimit(id, "all", { applies_to: { project_id: "p" }, window: "day", amount: 300 });
    const reserve = (reservation_id: string, amount_min: number, amount_max: number) =>
      api("POST", `/v1/accounts/${id}/reservations`, {
        reservation_id,
        amount_min,
        amount_max,
        context: { project_id: "p" },
      });
    const sized = await reserve("r1", 10, 2_000);
    expect(sized.status).toBe(201);
    expect(sized.body.reservation).toMatchObject({ amount: 300 });
    expect(sized.body.requested).toEqual({ amount_min: 10, amount_max: 2_000 });
    const refused = await reserve("r2", 1, 5);
    expect(refused.body).toMatchObject({ code: "limit_exceeded", remaining: 0 });
    // A replay answers what was held, whatever the limits say now.
    await putLimit(id, "all", { applies_to: { project_id: "p" }, window: "day", amount: 1 });
    const replay = await reserve("r1", 10, 2_000);
    expect(replay.status).toBe(201);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(replay.body.reservation).toMatchObject({ amount: 300 });
  });

  it("count a hold the alarm has not settled yet as settled when listed; refuse an unpriceable sized hold with 422", async () => {
    const time = useManualClock(Date.parse("2026-12-09T10:00:00.000Z"));
    const id = await openAccount(1_000);
    await putLimit(id, "p", { applies_to: { project_id: "p" }, window: "day", amount: 500 });
    await api("POST", `/v1/accounts/${id}/reservations`, {
      reservation_id: "short",
      amount: 100,
      ttl_seconds: 1,
      context: { project_id: "p" },
    });
    time.advance(2_000);
    expect((await limits(id))[0]).toMatchObject({ held: 0, spent: 0, remaining: 500 });
    const free = await api("POST", "/v1/admin/prices", {
      service_id: "svc",
      provider: "prov",
      model: "free",
      rules: [{ unit: "output_token", price_minor: 0, per_units: 1 }],
    });
    expect(free.status).toBe(201);
    const refused = await api("POST", `/v1/accounts/${id}/reservations`, {
      reservation_id: "free",
      price: { service_id: "svc", provider: "prov", model: "free" },
      estimate: { max_input_tokens: 1, max_output_tokens: 10 },
      amount_min: 1,
    });
    expect(refused.status).toBe(422);
    expect(refused.body.code).toBe("unpriceable");
  });

  it("keep their usage across a restart between checkpoints", async () => {
    const id = await openAccount(1_000_000);
    await putLimit(id, "l", { applies_to: { project_id: "p" }, window: "total", amount: 100_000 });
    await chargeInBatches(id, LIMITS_CHECKPOINT_EVENTS + 300, { caller: { project_id: "p" } });
    const through = await runInDurableObject(
      stub(id),
      (instance: AccountDurableObject) => instance.store.limits.throughSeq,
    );
    expect(through).toBeGreaterThanOrEqual(LIMITS_CHECKPOINT_EVENTS);
    const before = await limits(id);
    expect(before[0]).toMatchObject({ spent: 1_500 });
    await evictDurableObject(stub(id));
    expect(await limits(id)).toEqual(before);
  });
});
