/**
 * API keys for real through the Worker: the secret shown once and stored only as a hash,
 * scopes, account restriction, revocation, failed authentications counted, per-key rate limits.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { api, expectEveryAccountConsistent, openAccount } from "../helpers";

afterEach(expectEveryAccountConsistent);

async function createKey(body: Record<string, unknown>) {
  const created = await api("POST", "/v1/admin/api-keys", body);
  expect(created.status).toBe(201);
  return created.body as { key: { id: string; prefix: string; scopes: string[] }; secret: string };
}

const as = (secret: string) => ({ authorization: `Bearer ${secret}` });

describe("API keys", () => {
  it("returns the secret once and stores only its hash", async () => {
    const { key, secret } = await createKey({ name: "gateway", scopes: ["ledger:write", "ledger:read"] });
    expect(secret).toMatch(/^oel_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$/);
    expect(secret.startsWith(key.prefix)).toBe(true);
    const listed = await api("GET", "/v1/admin/api-keys?limit=1000");
    const row = listed.body.data.find((k: { id: string }) => k.id === key.id);
    expect(row).toMatchObject({ name: "gateway", prefix: key.prefix, revoked_at: null, account_id: null });
    expect(JSON.stringify(listed.body)).not.toContain(secret.slice(13));
    const stored = await env.DB.prepare("SELECT * FROM api_keys WHERE id = ?").bind(key.id).first();
    expect(JSON.stringify(stored)).not.toContain(secret.slice(13));
    expect(stored?.secret_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("enforces scopes route by route", async () => {
    const id = await openAccount(100);
    const reader = await createKey({ name: "console", scopes: ["ledger:read"] });
    const writer = await createKey({ name: "gateway", scopes: ["ledger:write"] });
    const auditor = await createKey({ name: "auditor", scopes: ["audit:read"] });
    const expectStatus = async (secret: string, method: string, path: string, status: number, body?: unknown) => {
      const response = await api(method, path, body, as(secret));
      expect(response.status, `${method} ${path}`).toBe(status);
      if (status === 403) expect(response.body.code).toBe("forbidden");
    };
    await expectStatus(reader.secret, "GET", `/v1/accounts/${id}`, 200);
    await expectStatus(reader.secret, "GET", "/v1/reports/balances", 200);
    await expectStatus(reader.secret, "POST", `/v1/accounts/${id}/charges`, 403, { charge_id: "c", amount: 1 });
    await expectStatus(reader.secret, "GET", `/v1/accounts/${id}/events`, 403);
    await expectStatus(writer.secret, "POST", `/v1/accounts/${id}/charges`, 201, { charge_id: "c", amount: 1 });
    await expectStatus(writer.secret, "GET", `/v1/accounts/${id}`, 403);
    await expectStatus(writer.secret, "POST", `/v1/accounts/${id}/adjustments`, 403, {
      adjustment_id: "a",
      amount: 1,
      reason: "x",
    });
    await expectStatus(writer.secret, "PATCH", `/v1/accounts/${id}`, 403, { status: "frozen" });
    await expectStatus(writer.secret, "POST", "/v1/accounts", 403, { account_id: "new_one", currency: "USD" });
    await expectStatus(auditor.secret, "GET", `/v1/accounts/${id}/events/export`, 200);
    await expectStatus(auditor.secret, "GET", `/v1/accounts/${id}/checkpoint`, 200);
    await expectStatus(auditor.secret, "GET", `/v1/accounts/${id}/verify`, 200);
    await expectStatus(auditor.secret, "GET", "/v1/admin/api-keys", 403);
    await expectStatus(writer.secret, "POST", "/v1/admin/api-keys", 403, { name: "x", scopes: ["admin"] });
    // The scope is checked before the body: a key that may not use a route learns nothing.
    await expectStatus(reader.secret, "POST", `/v1/accounts/${id}/charges`, 403, { nonsense: true });
  });

  it("confines a restricted key to its account", async () => {
    const mine = await openAccount(100);
    const other = await openAccount(100);
    const key = await createKey({ name: "tenant", scopes: ["ledger:write", "ledger:read"], account_id: mine });
    const charge = (account: string, charge_id: string) =>
      api("POST", `/v1/accounts/${account}/charges`, { charge_id, amount: 5 }, as(key.secret));
    expect((await charge(mine, "c1")).status).toBe(201);
    const refused = await charge(other, "c1");
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe("forbidden");
    expect((await api("GET", `/v1/accounts/${other}`, undefined, as(key.secret))).status).toBe(403);
    expect((await api("GET", "/v1/reports/balances", undefined, as(key.secret))).status).toBe(403);
    const own = await api("GET", `/v1/reports/transactions?account_id=${mine}`, undefined, as(key.secret));
    expect(own.status).toBe(200);
    expect((await api("GET", `/v1/reports/transactions?account_id=${other}`, undefined, as(key.secret))).status).toBe(
      403,
    );
    expect((await api("GET", `/v1/accounts/${other}`)).body.balance).toBe(100);
  });

  it("revokes at once in this isolate, and answers 404 for an unknown key", async () => {
    const key = await createKey({ name: "short-lived", scopes: ["ledger:read"] });
    expect((await api("GET", "/v1/reports/balances", undefined, as(key.secret))).status).toBe(200);
    const revoked = await api("DELETE", `/v1/admin/api-keys/${key.key.id}`);
    expect(revoked.status).toBe(200);
    expect(revoked.body.revoked_at).not.toBeNull();
    expect((await api("GET", "/v1/reports/balances", undefined, as(key.secret))).status).toBe(401);
    expect((await api("DELETE", "/v1/admin/api-keys/key_01ARZ3NDEKTSV4RRFFQ69G5FAV")).body.code).toBe("key_not_found");
  });

  it("records last_used_at", async () => {
    const key = await createKey({ name: "used", scopes: ["ledger:read"] });
    await api("GET", "/v1/reports/balances", undefined, as(key.secret));
    const row = await env.DB.prepare("SELECT last_used_at FROM api_keys WHERE id = ?").bind(key.key.id).first();
    expect(row?.last_used_at).not.toBeNull();
  });
});

describe("authentication failures", () => {
  it("are counted per minute without storing the presented key", async () => {
    const count = async () =>
      (
        await env.DB.prepare(
          "SELECT COALESCE(SUM(count), 0) AS n FROM security_counters WHERE counter = 'auth_failed'",
        ).first<{ n: number }>()
      )?.n ?? 0;
    const before = await count();
    const presented = "oel_deadbeef_thisIsNotARealKeyButLooksLikeOneAAAAAAAAAAAAAAAA";
    for (const headers of [{ authorization: "" }, as(presented), as("wrong"), { authorization: "Basic abc" }]) {
      expect((await api("GET", "/v1/reports/balances", undefined, headers)).status).toBe(401);
    }
    expect(await count()).toBe(before + 4);
    const everything = await env.DB.prepare("SELECT * FROM security_counters").all();
    expect(JSON.stringify(everything.results)).not.toContain(presented);
  });
});

describe("rate limits", () => {
  it("answer 429 rate_limited with Retry-After past the per-key limit, and count the hits", async () => {
    const key = await createKey({ name: "busy", scopes: ["audit:read"] });
    const statuses: number[] = [];
    let limited: { status: number; headers: Headers; body: { code: string } } | undefined;
    for (let i = 0; i < 60 && limited === undefined; i++) {
      const response = await api("GET", "/v1/audit/public-key", undefined, as(key.secret));
      statuses.push(response.status);
      if (response.status === 429) limited = response;
    }
    expect(statuses[0]).toBe(200);
    expect(limited).toBeDefined();
    expect(limited?.body.code).toBe("rate_limited");
    expect(Number(limited?.headers.get("retry-after"))).toBeGreaterThan(0);
    const hits = await env.DB.prepare(
      "SELECT SUM(count) AS n FROM security_counters WHERE counter = 'rate_limited' AND subject = ?",
    )
      .bind(key.key.prefix)
      .first<{ n: number }>();
    expect(hits?.n).toBeGreaterThanOrEqual(1);
    // Another key is not affected.
    const fresh = await createKey({ name: "calm", scopes: ["audit:read"] });
    expect((await api("GET", "/v1/audit/public-key", undefined, as(fresh.secret))).status).toBe(200);
  });
});
