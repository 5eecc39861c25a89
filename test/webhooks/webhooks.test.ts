/**
 * Webhooks (issue 14): endpoints refuse unsafe URLs and store nothing then; secrets and URLs are
 * encrypted at rest and absent from every log line; a low-balance crossing sends exactly one
 * signed event per crossing (also under 100 concurrent charges), re-armed by a recovery; failed
 * deliveries are retried on the backoff schedule by the account's alarm, then marked failed,
 * listed, and redelivered on request.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { captureLogs } from "../../src/observability/log";
import { encryptSecret, loadConfigKeys } from "../../src/security/secrets";
import { retryDelayMs, WEBHOOK_ATTEMPTS_MAX } from "../../src/webhooks/backoff";
import { pruneDeliveries, WEBHOOK_DELIVERIES_RETENTION_DAYS } from "../../src/webhooks/store";
import { api, expectEveryAccountConsistent, openAccount, stub, useManualClock } from "../helpers";
import {
  clearEndpoints,
  createEndpoint,
  deliveriesOf,
  fakeReceiver,
  HOOK_URL,
  outboxCount,
  receiverVerifies,
} from "./support";

afterEach(expectEveryAccountConsistent);

describe("webhook endpoints", () => {
  const REFUSED: readonly (readonly [string, string])[] = [
    ["http://hooks.example.com/", "not_https"],
    ["https://127.0.0.1/", "loopback"],
    ["https://[::1]/", "loopback"],
    ["https://169.254.169.254/latest/meta-data", "metadata"],
    ["https://10.0.0.1/", "private_ipv4"],
    ["https://2130706433/", "loopback"],
    ["https://0x7f000001/", "loopback"],
    ["https://0x0a000001/", "private_ipv4"],
    ["https://[::ffff:127.0.0.1]/", "ipv4_mapped"],
    ["https://[::ffff:10.0.0.1]/", "ipv4_mapped"],
    ["https://[::ffff:a9fe:a9fe]/", "ipv4_mapped"],
    ["https://localhost/", "localhost"],
  ];

  it.each(REFUSED)("refuses %s with 422 naming the url field, storing nothing", async (url, reason) => {
    await clearEndpoints();
    const refused = await createEndpoint({ url, events: ["account.low_balance"] });
    expect(refused.status).toBe(422);
    expect(refused.body.code).toBe("url_refused");
    expect(refused.body.errors).toHaveLength(1);
    expect(refused.body.errors[0].field).toBe("url");
    expect(refused.body.errors[0].message.split(":")[0]).toBe(reason);
    const count = await env.DB.prepare("SELECT COUNT(*) AS n FROM webhook_endpoints").first<{ n: number }>();
    expect(count?.n).toBe(0);
  });

  it("shows the whsec_ secret once, stores URL and secret encrypted, lists and deletes", async () => {
    await clearEndpoints();
    const created = await createEndpoint({ url: HOOK_URL, events: ["account.low_balance", "alert.firing"] });
    expect(created.status).toBe(201);
    expect(created.body.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(created.body).toMatchObject({
      url: HOOK_URL,
      events: ["account.low_balance", "alert.firing"],
      account_id: null,
    });
    const row = await env.DB.prepare("SELECT url, secret FROM webhook_endpoints WHERE id = ?")
      .bind(created.body.id)
      .first<{ url: string; secret: string }>();
    expect(row?.url.startsWith("enc:v1:")).toBe(true);
    expect(row?.secret.startsWith("enc:v1:")).toBe(true);
    expect(JSON.stringify(row)).not.toContain("receiver.example");
    expect(JSON.stringify(row)).not.toContain(created.body.secret.slice(6));

    const listed = await api("GET", "/v1/admin/webhook-endpoints");
    expect(listed.status).toBe(200);
    expect(listed.body.data).toEqual([
      {
        id: created.body.id,
        url: HOOK_URL,
        events: created.body.events,
        account_id: null,
        created_at: created.body.created_at,
      },
    ]);
    expect(JSON.stringify(listed.body)).not.toContain("whsec_");

    expect((await api("DELETE", `/v1/admin/webhook-endpoints/${created.body.id}`)).body).toEqual({
      id: created.body.id,
      deleted: true,
    });
    const again = await api("DELETE", `/v1/admin/webhook-endpoints/${created.body.id}`);
    expect(again.status).toBe(404);
    expect(again.body.code).toBe("webhook_endpoint_not_found");
  });

  it("is admin only, and refused to a key restricted to one account", async () => {
    const reader = await api("POST", "/v1/admin/api-keys", { name: "r", scopes: ["ledger:read", "ledger:write"] });
    const tenant = await api("POST", "/v1/admin/api-keys", {
      name: "t",
      scopes: ["ledger:read"],
      account_id: "acct_t",
    });
    for (const key of [reader.body.secret, tenant.body.secret]) {
      const headers = { authorization: `Bearer ${key}` };
      for (const [method, path] of [
        ["GET", "/v1/admin/webhook-endpoints"],
        ["GET", "/v1/admin/webhook-deliveries"],
        ["GET", "/v1/admin/alerts"],
        ["GET", "/v1/admin/monitoring"],
      ] as const) {
        const refused = await api(method, path, undefined, headers);
        expect(refused.status, `${method} ${path}`).toBe(403);
      }
      const created = await api(
        "POST",
        "/v1/admin/webhook-endpoints",
        { url: HOOK_URL, events: ["account.low_balance"] },
        headers,
      );
      expect(created.status).toBe(403);
    }
  });

  it("refuses alert events on an endpoint restricted to one account", async () => {
    const refused = await createEndpoint({ url: HOOK_URL, events: ["alert.firing"], account_id: "acct_x" });
    expect(refused.status).toBe(400);
    expect(refused.body.errors[0].field).toBe("body.events");
  });
});

describe("account.low_balance", () => {
  it("PATCH sets and clears the threshold as an event in the account's log", async () => {
    const id = await openAccount(10_000);
    const set = await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: 5_000 });
    expect(set.status).toBe(200);
    expect(set.body.low_balance_threshold).toBe(5_000);
    const cleared = await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: null });
    expect(cleared.body.low_balance_threshold).toBeNull();
    const events = await api("GET", `/v1/accounts/${id}/events`);
    const updates = events.body.events.filter((e: { type: string }) => e.type === "AccountUpdated");
    expect(updates.map((e: { low_balance_threshold: number | null }) => e.low_balance_threshold)).toEqual([
      5_000,
      null,
    ]);
    expect(updates[0].changed).toEqual(["low_balance_threshold"]);
    for (const bad of [0, -1, 1.5, "100"]) {
      const refused = await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: bad });
      expect(refused.status).toBe(400);
      expect(refused.body.errors[0].field).toBe("body.low_balance_threshold");
    }
  });

  it("sends one signed event per crossing, re-armed by the recovery", async () => {
    const clock = useManualClock();
    await clearEndpoints();
    const received = fakeReceiver([200]);
    const endpoint = await createEndpoint({
      url: HOOK_URL,
      events: ["account.low_balance", "account.balance_recovered"],
    });
    const id = await openAccount(10_000);
    await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: 5_000 });
    // Spendable 5,000 is not below 5,000: nothing. 4,999 is: one event.
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 5_000 });
    expect(await outboxCount(id)).toBe(0);
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c2", amount: 1 });
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c3", amount: 1 });
    expect(await outboxCount(id)).toBe(1);
    expect(await runDurableObjectAlarm(stub(id))).toBe(true);
    expect(await outboxCount(id)).toBe(0);
    expect(received).toHaveLength(1);
    const [first] = received;
    const event = JSON.parse(first?.body ?? "");
    expect(event).toMatchObject({
      type: "account.low_balance",
      account_id: id,
      data: { available: 4_999, threshold: 5_000 },
    });
    expect(event.id).toMatch(/^evt_/);
    expect(first?.url).toBe(HOOK_URL);
    expect(first?.headers["ledger-event-id"]).toBe(event.id);
    const nowSeconds = Math.floor(clock.now() / 1000);
    expect(
      receiverVerifies(first?.headers["ledger-signature"] ?? "", endpoint.body.secret, first?.body ?? "", nowSeconds),
    ).toBe(true);
    // A wrong secret, a changed body and a stale timestamp all fail the receiver's check.
    expect(
      receiverVerifies(first?.headers["ledger-signature"] ?? "", "whsec_other", first?.body ?? "", nowSeconds),
    ).toBe(false);
    expect(
      receiverVerifies(first?.headers["ledger-signature"] ?? "", endpoint.body.secret, `${first?.body} `, nowSeconds),
    ).toBe(false);
    expect(
      receiverVerifies(
        first?.headers["ledger-signature"] ?? "",
        endpoint.body.secret,
        first?.body ?? "",
        nowSeconds + 301,
      ),
    ).toBe(false);

    // Back to exactly the threshold: still low (nothing); above it: recovered (once); below
    // again: a second low_balance.
    await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "t1", amount: 2 });
    expect(await outboxCount(id)).toBe(0);
    await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "t2", amount: 2 });
    expect(await outboxCount(id)).toBe(1);
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c4", amount: 10 });
    await runDurableObjectAlarm(stub(id));
    // Attempts run concurrently: order the received events by the seq that crossed.
    received.sort((a, b) => JSON.parse(a.body).data.seq - JSON.parse(b.body).data.seq);
    expect(received.map((r) => JSON.parse(r.body).type)).toEqual([
      "account.low_balance",
      "account.balance_recovered",
      "account.low_balance",
    ]);
    expect(new Set(received.map((r) => JSON.parse(r.body).id)).size).toBe(3);
    expect((await deliveriesOf(id)).map((d) => d.state)).toEqual(["delivered", "delivered", "delivered"]);
  });

  it("at exactly the threshold the account stays as it was: recovery needs above, a new crossing below", async () => {
    useManualClock();
    await clearEndpoints();
    const id = await openAccount(100);
    await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: 50 });
    const outboxTypes = () =>
      runInDurableObject(stub(id), (_instance, state) =>
        state.storage.sql
          .exec<{ body: string }>("SELECT body FROM webhook_outbox ORDER BY created_at_ms, event_id")
          .toArray()
          .map((row) => JSON.parse(row.body) as { data: { seq: number }; type: string })
          .sort((a, b) => a.data.seq - b.data.seq)
          .map((event) => event.type),
      );
    const steps: [string, string, number][] = [
      ["charges", "c1", 51], // 49: low
      ["credits", "t1", 1], // 50: exactly, still low
      ["charges", "c2", 1], // 49: still low, no second low_balance
      ["credits", "t2", 2], // 51: above, recovered
      ["charges", "c3", 1], // 50: exactly, still recovered
    ];
    for (const [path, key, amount] of steps) {
      const id_field = path === "charges" ? "charge_id" : "credit_id";
      expect((await api("POST", `/v1/accounts/${id}/${path}`, { [id_field]: key, amount })).status).toBe(201);
    }
    expect(await outboxTypes()).toEqual(["account.low_balance", "account.balance_recovered"]);
  });

  it("counts a hold: spendable is balance - reserved + credit_limit", async () => {
    useManualClock();
    await clearEndpoints();
    fakeReceiver([200]);
    await createEndpoint({ url: HOOK_URL, events: ["account.low_balance"] });
    const id = await openAccount(1_000, 500);
    await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: 1_000 });
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r1", amount: 500, ttl_seconds: 60 });
    expect(await outboxCount(id)).toBe(0);
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r2", amount: 1, ttl_seconds: 60 });
    expect(await outboxCount(id)).toBe(1);
  });

  it("sends exactly one account.low_balance under 100 concurrent charges", async () => {
    useManualClock();
    await clearEndpoints();
    const received = fakeReceiver([200]);
    await createEndpoint({ url: HOOK_URL, events: ["account.low_balance"] });
    const id = await openAccount(10_000);
    await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: 5_000 });
    const charges = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        stub(id).execute({ type: "ChargeAccount", charge_id: `c${i}`, amount: 100, context: {}, metadata: {} }),
      ),
    );
    expect(charges.every((c) => c.ok)).toBe(true);
    expect(await outboxCount(id)).toBe(1);
    await runDurableObjectAlarm(stub(id));
    // Attempts run concurrently: order the received events by the seq that crossed.
    received.sort((a, b) => JSON.parse(a.body).data.seq - JSON.parse(b.body).data.seq);
    expect(received.map((r) => JSON.parse(r.body).type)).toEqual(["account.low_balance"]);
    expect(await deliveriesOf(id)).toHaveLength(1);
  });
});

describe("delivery", () => {
  it("retries on the backoff schedule against a receiver that fails, then succeeds", async () => {
    const clock = useManualClock();
    await clearEndpoints();
    // A redirect is a failure: the receiver's Location is never followed.
    const received = fakeReceiver([500, 302, 200]);
    await createEndpoint({ url: HOOK_URL, events: ["account.low_balance"] });
    const id = await openAccount(100);
    await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: 50 });
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 60 });
    const start = clock.now();
    await runDurableObjectAlarm(stub(id));
    let [delivery] = await deliveriesOf(id);
    expect(delivery).toMatchObject({ state: "pending", attempts: 1, next_attempt_at_ms: start + retryDelayMs(1) });
    // Not due yet: the alarm sends nothing.
    clock.advance(retryDelayMs(1) - 1);
    await runDurableObjectAlarm(stub(id));
    expect(received).toHaveLength(1);
    clock.advance(1);
    await runDurableObjectAlarm(stub(id));
    [delivery] = await deliveriesOf(id);
    expect(delivery).toMatchObject({
      state: "pending",
      attempts: 2,
      next_attempt_at_ms: clock.now() + retryDelayMs(2),
    });
    clock.advance(retryDelayMs(2));
    await runDurableObjectAlarm(stub(id));
    [delivery] = await deliveriesOf(id);
    expect(delivery).toMatchObject({ state: "delivered", attempts: 3, next_attempt_at_ms: null });
    expect(received.map((r) => r.answered)).toEqual([500, 302, 200]);
    // Every attempt carries the same event id, for the receiver to deduplicate.
    expect(new Set(received.map((r) => r.headers["ledger-event-id"])).size).toBe(1);
    expect(retryDelayMs(1)).toBe(60_000);
    expect(retryDelayMs(2)).toBe(120_000);
  });

  it("records an endpoint it cannot decrypt as a failed attempt, and lists it marked (issue 31, defect 2)", async () => {
    const clock = useManualClock();
    await clearEndpoints();
    const received = fakeReceiver([200]);
    const endpoint = await createEndpoint({ url: HOOK_URL, events: ["account.low_balance"] });
    // Its secret and URL were sealed under a key the Worker no longer has.
    await env.DB.prepare("UPDATE webhook_endpoints SET secret = url, url = secret WHERE id = ?")
      .bind(endpoint.body.id)
      .run();
    const id = await openAccount(100);
    await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: 50 });
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 60 });
    await runDurableObjectAlarm(stub(id));
    const [delivery] = await deliveriesOf(id);
    expect(delivery).toMatchObject({
      state: "pending",
      attempts: 1,
      last_error: "undecryptable",
      next_attempt_at_ms: clock.now() + retryDelayMs(1),
    });
    expect(received).toHaveLength(0);
    const listed = await api("GET", "/v1/admin/webhook-endpoints");
    expect(listed.status).toBe(200);
    expect(listed.body.data).toEqual([
      expect.objectContaining({ id: endpoint.body.id, url: null, undecryptable: true }),
    ]);
  });

  it("marks a delivery failed after the limit, lists it, and redelivers it on request", async () => {
    const clock = useManualClock();
    await clearEndpoints();
    const statuses = Array.from({ length: WEBHOOK_ATTEMPTS_MAX }, () => 500);
    const received = fakeReceiver([...statuses, 200]);
    const endpoint = await createEndpoint({ url: HOOK_URL, events: ["account.low_balance"] });
    const id = await openAccount(100);
    await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: 50 });
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 60 });
    for (let attempt = 1; attempt <= WEBHOOK_ATTEMPTS_MAX; attempt++) {
      await runDurableObjectAlarm(stub(id));
      if (attempt < WEBHOOK_ATTEMPTS_MAX) clock.advance(retryDelayMs(attempt));
    }
    expect(received).toHaveLength(WEBHOOK_ATTEMPTS_MAX);
    const failed = await api("GET", `/v1/admin/webhook-deliveries?state=failed&endpoint_id=${endpoint.body.id}`);
    expect(failed.body.data).toHaveLength(1);
    expect(failed.body.data[0]).toMatchObject({
      state: "failed",
      attempts: WEBHOOK_ATTEMPTS_MAX,
      last_status: 500,
      last_error: "http_status",
      next_attempt_at: null,
      event_type: "account.low_balance",
      account_id: id,
    });
    // Nothing more is tried by the alarm.
    clock.advance(86_400_000);
    await runDurableObjectAlarm(stub(id));
    expect(received).toHaveLength(WEBHOOK_ATTEMPTS_MAX);
    const redelivered = await api("POST", `/v1/admin/webhook-deliveries/${failed.body.data[0].id}/redeliver`);
    expect(redelivered.status).toBe(200);
    expect(redelivered.body).toMatchObject({ state: "delivered", attempts: 1, last_status: 200, last_error: null });
    expect(received).toHaveLength(WEBHOOK_ATTEMPTS_MAX + 1);
    const missing = await api("POST", "/v1/admin/webhook-deliveries/whd_00000000000000000000000000/redeliver");
    expect(missing.status).toBe(404);
  });

  it("fails a delivery whose endpoint was deleted, and one whose URL the guard refuses at send time", async () => {
    const clock = useManualClock();
    await clearEndpoints();
    const received = fakeReceiver([500]);
    const gone = await createEndpoint({ url: HOOK_URL, events: ["account.low_balance"] });
    const refused = await createEndpoint({ url: "https://other.receiver.example/", events: ["account.low_balance"] });
    // The stored URL becomes one the guard refuses (as if the guard's rules had grown since).
    const keys = await loadConfigKeys(env);
    const loopback = await encryptSecret(keys, "https://127.0.0.1/", `webhook_endpoints/${refused.body.id}/url`);
    const id = await openAccount(100);
    await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: 50 });
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 60 });
    await runDurableObjectAlarm(stub(id));
    expect(received).toHaveLength(2);
    await env.DB.prepare("DELETE FROM webhook_endpoints WHERE id = ?").bind(gone.body.id).run();
    await env.DB.prepare("UPDATE webhook_endpoints SET url = ? WHERE id = ?").bind(loopback, refused.body.id).run();
    clock.advance(retryDelayMs(1));
    await runDurableObjectAlarm(stub(id));
    expect(received).toHaveLength(2);
    const listed = await api("GET", "/v1/admin/webhook-deliveries");
    const byEndpoint = new Map(listed.body.data.map((d: { endpoint_id: string }) => [d.endpoint_id, d]));
    expect(byEndpoint.get(gone.body.id)).toMatchObject({
      state: "failed",
      attempts: 2,
      last_error: "endpoint_deleted",
    });
    expect(byEndpoint.get(refused.body.id)).toMatchObject({
      state: "failed",
      attempts: 2,
      last_status: null,
      last_error: "url_refused",
    });
  });

  it("writes no URL and no secret to any log line", async () => {
    const clock = useManualClock();
    await clearEndpoints();
    const logs = captureLogs();
    try {
      fakeReceiver([500, 200]);
      const endpoint = await createEndpoint({ url: HOOK_URL, events: ["account.low_balance"] });
      await createEndpoint({ url: "https://10.0.0.1/secret-path", events: ["account.low_balance"] });
      const id = await openAccount(100);
      await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: 50 });
      await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 60 });
      await runDurableObjectAlarm(stub(id));
      clock.advance(retryDelayMs(1));
      await runDurableObjectAlarm(stub(id));
      await api("GET", "/v1/admin/webhook-endpoints");
      await api("GET", "/v1/admin/webhook-deliveries");
      const text = logs.lines.map((l) => l.text).join("\n");
      expect(logs.lines.length).toBeGreaterThan(0);
      for (const forbidden of [
        "receiver.example",
        "token=abc",
        "secret-path",
        "10.0.0.1",
        "whsec_",
        endpoint.body.secret,
      ]) {
        expect(text).not.toContain(forbidden);
      }
    } finally {
      logs.stop();
    }
  });

  it("prunes delivered records past the retention, keeps failed ones, and logs the failed past their bound", async () => {
    const clock = useManualClock();
    await clearEndpoints();
    const old = new Date(clock.now() - (WEBHOOK_DELIVERIES_RETENTION_DAYS + 1) * 86_400_000).toISOString();
    const insert = (id: string, state: string) =>
      env.DB.prepare(
        `INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, account_id, body, state, attempts,
           created_at, updated_at) VALUES (?, 'whe_x', ?, 'account.low_balance', NULL, '{}', ?, 1, ?, ?)`,
      )
        .bind(id, `evt_${id}`, state, old, old)
        .run();
    await insert("whd_delivered", "delivered");
    await insert("whd_failed_1", "failed");
    await insert("whd_failed_2", "failed");
    await insert("whd_failed_3", "failed");
    const remaining = async () =>
      (await env.DB.prepare("SELECT id FROM webhook_deliveries ORDER BY id").all<{ id: string }>()).results.map(
        (r) => r.id,
      );
    // Past the retention: the delivered one goes, the failed ones stay for an admin.
    const kept = await pruneDeliveries(env.DB, clock.now());
    expect(kept).toEqual({ delivered: 1, failed: [] });
    expect(await remaining()).toEqual(["whd_failed_1", "whd_failed_2", "whd_failed_3"]);
    // Past the bound (here 2), the oldest failed one is pruned and named for the log.
    const bounded = await pruneDeliveries(env.DB, clock.now(), 2);
    expect(bounded.failed.map((f) => f.id)).toEqual(["whd_failed_1"]);
    expect(bounded.failed[0]).toEqual({
      id: "whd_failed_1",
      endpoint_id: "whe_x",
      event_id: "evt_whd_failed_1",
      event_type: "account.low_balance",
    });
    expect(await remaining()).toEqual(["whd_failed_2", "whd_failed_3"]);
  });
});
