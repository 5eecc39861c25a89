/**
 * API keys for real through the Worker: the secret shown once and stored only as a hash,
 * scopes (least privilege: spending, refunds and funding are separate), account restriction
 * (never with admin; tenant-wide routes refuse restricted keys), revocation, failed
 * authentications counted, per-key rate limits.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { clock } from "../../src/clock";
import { flushSecurityCounters, pendingSecurityCounts } from "../../src/security/counters";
import { account, api, expectEveryAccountConsistent, openAccount, useManualClock } from "../helpers";

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

  it("keeps ledger:write to spending: credits need ledger:fund, refunds ledger:refund", async () => {
    const id = await openAccount(1_000);
    const spender = await createKey({ name: "gateway", scopes: ["ledger:write"] });
    const funder = await createKey({ name: "payments", scopes: ["ledger:fund"] });
    const refunder = await createKey({ name: "support", scopes: ["ledger:refund"] });
    const call = (secret: string, path: string, body: unknown) =>
      api("POST", `/v1/accounts/${id}${path}`, body, as(secret));

    // The gateway's key spends...
    expect((await call(spender.secret, "/charges", { charge_id: "c1", amount: 100 })).status).toBe(201);
    const hold = await call(spender.secret, "/reservations", { reservation_id: "r1", amount: 50 });
    expect(hold.status).toBe(201);
    expect((await call(spender.secret, "/reservations/r1/extend", { ttl_seconds: 60 })).status).toBe(200);
    expect((await call(spender.secret, "/reservations/r1/capture", { amount: 20 })).status).toBe(200);
    // ...but cannot top up its own account, nor refund itself.
    const credit = await call(spender.secret, "/credits", { credit_id: "free_money", amount: 1_000_000 });
    expect(credit.status).toBe(403);
    expect(credit.body.code).toBe("forbidden");
    expect(credit.body.detail).toContain("ledger:fund");
    const refund = await call(spender.secret, "/refunds", { refund_id: "rf1", charge_id: "c1", amount: 100 });
    expect(refund.status).toBe(403);
    expect(refund.body.detail).toContain("ledger:refund");

    // The payments system funds and nothing else.
    expect((await call(funder.secret, "/credits", { credit_id: "topup", amount: 500 })).status).toBe(201);
    expect((await call(funder.secret, "/charges", { charge_id: "c2", amount: 1 })).status).toBe(403);
    expect((await call(funder.secret, "/refunds", { refund_id: "rf1", charge_id: "c1", amount: 1 })).status).toBe(403);
    // Refunds, bounded by their charge as always.
    expect((await call(refunder.secret, "/refunds", { refund_id: "rf1", charge_id: "c1", amount: 60 })).status).toBe(
      201,
    );
    const beyond = await call(refunder.secret, "/refunds", { refund_id: "rf2", charge_id: "c1", amount: 41 });
    expect(beyond.body.code).toBe("refund_exceeds_charge");
    expect((await call(refunder.secret, "/credits", { credit_id: "topup2", amount: 500 })).status).toBe(403);
    expect((await call(refunder.secret, "/charges", { charge_id: "c3", amount: 1 })).status).toBe(403);
    // 1,000 - 100 - 20 + 500 + 60: nothing the refused calls asked for.
    expect((await account(id)).balance).toBe(1_440);
  });

  it("checks every batch item's scope before any item runs", async () => {
    const id = await openAccount(1_000);
    const spender = await createKey({ name: "gateway", scopes: ["ledger:write"] });
    const batch = (secret: string, operations: unknown[]) =>
      api("POST", `/v1/accounts/${id}/batch`, { operations }, as(secret));
    const charge = { op: "charge", charge_id: "b_c1", amount: 10 };

    const minted = await batch(spender.secret, [charge, { op: "credit", credit_id: "b_free", amount: 1_000_000 }]);
    expect(minted.status).toBe(403);
    expect(minted.body.code).toBe("forbidden");
    expect(minted.body.detail).toContain("ledger:fund");
    expect(minted.body.detail).toContain("operations[1]");
    const refunded = await batch(spender.secret, [
      charge,
      { op: "refund", refund_id: "b_rf", charge_id: "b_c1", amount: 10 },
      { op: "credit", credit_id: "b_free", amount: 5 },
    ]);
    expect(refunded.status).toBe(403);
    expect(refunded.body.detail).toContain("ledger:refund");
    expect(refunded.body.detail).toContain("ledger:fund");
    // Nothing ran: not even the charge that came first.
    expect((await account(id)).balance).toBe(1_000);

    // Spending items alone pass; a key holding the item's scope too may batch it.
    const spent = await batch(spender.secret, [charge, { op: "reserve", reservation_id: "b_r", amount: 5 }]);
    expect(spent.status).toBe(200);
    expect(spent.body.results.map((r: { status: number }) => r.status)).toEqual([201, 201]);
    const payments = await createKey({ name: "payments+spend", scopes: ["ledger:write", "ledger:fund"] });
    const funded = await batch(payments.secret, [{ op: "credit", credit_id: "b_topup", amount: 7 }]);
    expect(funded.status).toBe(200);
    // A key without ledger:write may not use the batch route at all.
    const fundOnly = await createKey({ name: "payments", scopes: ["ledger:fund"] });
    expect((await batch(fundOnly.secret, [{ op: "credit", credit_id: "b_x", amount: 1 }])).status).toBe(403);
    expect((await account(id)).balance).toBe(1_000 - 10 + 7);
  });

  it("never creates an admin key restricted to one account, and stores nothing for the attempt", async () => {
    const id = await openAccount();
    const count = async () => (await env.DB.prepare("SELECT COUNT(*) AS n FROM api_keys").first<{ n: number }>())?.n;
    const before = await count();
    for (const scopes of [["admin"], ["ledger:write", "admin"]]) {
      const refused = await api("POST", "/v1/admin/api-keys", { name: "tenant-admin", scopes, account_id: id });
      expect(refused.status).toBe(400);
      expect(refused.body.code).toBe("invalid_request");
      expect(refused.body.errors).toEqual([{ field: "body.account_id", message: expect.stringContaining("admin") }]);
    }
    expect(await count()).toBe(before);
  });

  it("refuses admin to a legacy key that has admin and an account, and every tenant-wide route to restricted keys", async () => {
    const mine = await openAccount(100);
    // A row written before the rule: admin together with account_id.
    const legacy = `oel_0badc0de_${"L".repeat(43)}`;
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(legacy)));
    await env.DB.prepare(
      "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes, account_id, created_at) VALUES (?, 'legacy', 'oel_0badc0de', ?, ?, ?, ?)",
    )
      .bind(
        "key_01ARZ3NDEKTSV4RRFFQ69G5LEG",
        [...digest].map((b) => b.toString(16).padStart(2, "0")).join(""),
        JSON.stringify(["admin", "ledger:read"]),
        mine,
        new Date().toISOString(),
      )
      .run();
    // A restricted key with every scope it may hold.
    const tenant = await createKey({
      name: "tenant",
      scopes: ["ledger:write", "ledger:refund", "ledger:fund", "ledger:read", "audit:read"],
      account_id: mine,
    });
    const price = {
      service_id: "svc_11",
      provider: "p",
      model: "m",
      rules: [{ unit: "request", price_minor: 0, per_units: 1 }],
    };
    const tenantWide: [string, string, unknown?][] = [
      ["POST", "/v1/admin/prices", price],
      ["POST", "/v1/admin/api-keys", { name: "more", scopes: ["ledger:read"] }],
      ["GET", "/v1/admin/api-keys"],
      ["DELETE", `/v1/admin/api-keys/${tenant.key.id}`],
      ["POST", `/v1/admin/accounts/${mine}/reproject`],
      ["GET", `/v1/admin/accounts/${mine}/projection`],
      ["POST", "/v1/admin/reconcile", { account_ids: [mine], repair: true }],
      // Admin routes about its own account too: limits, status, adjustments.
      ["PATCH", `/v1/accounts/${mine}`, { credit_limit: 1_000_000 }],
      ["POST", `/v1/accounts/${mine}/adjustments`, { adjustment_id: "adj", amount: 1_000_000, reason: "mine" }],
      ["POST", "/v1/accounts", { account_id: "acct_new_11", currency: "USD" }],
    ];
    for (const secret of [legacy, tenant.secret]) {
      for (const [method, path, body] of tenantWide) {
        const response = await api(method, path, body, as(secret));
        expect(response.status, `${method} ${path}`).toBe(403);
        expect(response.body.code).toBe("forbidden");
      }
      // What the legacy key may still do: read its own account.
      expect((await api("GET", `/v1/accounts/${mine}`, undefined, as(secret))).status).toBe(200);
    }
    expect((await api("GET", "/v1/prices?service_id=svc_11")).body.data).toEqual([]);
    expect(await account(mine)).toMatchObject({ balance: 100, credit_limit: 0 });
    // An unrestricted admin key keeps every admin route.
    const operator = await createKey({ name: "operator", scopes: ["admin"] });
    expect((await api("POST", "/v1/admin/prices", price, as(operator.secret))).status).toBe(201);
    expect((await api("PATCH", `/v1/accounts/${mine}`, { credit_limit: 10 }, as(operator.secret))).status).toBe(200);
    expect(
      (await api("POST", `/v1/accounts/${mine}/credits`, { credit_id: "op", amount: 1 }, as(operator.secret))).status,
    ).toBe(201);
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
  it("are counted per minute in memory, then in D1, without storing the presented key", async () => {
    useManualClock();
    await flushSecurityCounters(env, clock.now());
    const count = async () =>
      (
        await env.DB.prepare(
          "SELECT COALESCE(SUM(count), 0) AS n FROM security_counters WHERE counter = 'auth_failed'",
        ).first<{ n: number }>()
      )?.n ?? 0;
    const before = await count();
    const presented = "oel_deadbeef_thisIsNotARealKeyButLooksLikeOneAAAAAAAAAAAAAAAA";
    for (const headers of [{ authorization: "" }, as(presented), as("wrong"), { authorization: "Basic abc" }]) {
      const response = await api("GET", "/v1/reports/balances", undefined, {
        ...headers,
        "cf-connecting-ip": "192.0.2.44",
      });
      expect(response.status).toBe(401);
    }
    // Not written on the request path: in this isolate's memory until the next flush.
    expect(await count()).toBe(before);
    const pending = pendingSecurityCounts().filter((c) => c.counter === "auth_failed");
    expect(pending.reduce((n, c) => n + c.count, 0)).toBe(4);
    await flushSecurityCounters(env, clock.now());
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
    // Counted in memory, written by the next flush.
    await flushSecurityCounters(env, clock.now());
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
