/**
 * Monitoring end to end (issue 14): requests counted in this isolate reach the monitor by a
 * flush, GET /v1/admin/monitoring shows the windows, and the authentication-failure rule fires
 * at 101 failures in 10 minutes (not at 100) through GET /v1/admin/alerts, notifying a signed
 * `alert.firing` once and, when the window moves past them, `alert.resolved` once. Time is the
 * manual clock's.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { monitorOf } from "../../src/observability/evaluate";
import { flushMetricsIfDue } from "../../src/observability/flush";
import { api, useManualClock } from "../helpers";
import { fakeReceiver, receiverVerifies } from "../webhooks/support";

async function flush(): Promise<void> {
  const work: Promise<unknown>[] = [];
  flushMetricsIfDue(env, (p) => work.push(p), true);
  await Promise.all(work);
}

async function failAuthentication(times: number): Promise<void> {
  for (let i = 0; i < times; i++) {
    const response = await exports.default.fetch("http://ledger.test/v1/reports/balances", {
      headers: { authorization: "Bearer oel_wrong_key", "cf-connecting-ip": `203.0.113.${i % 250}` },
    });
    await response.arrayBuffer();
    expect([401, 429]).toContain(response.status);
  }
}

describe("monitoring", () => {
  it("fires the authentication-failure alert at 101 in 10 minutes, notifies once, and resolves once", async () => {
    const clock = useManualClock();
    await env.DB.prepare("DELETE FROM webhook_endpoints").run();
    const received = fakeReceiver([200]);
    const endpoint = await api("POST", "/v1/admin/webhook-endpoints", {
      url: "https://alerts.receiver.example/hook",
      events: ["alert.firing", "alert.resolved"],
    });
    await flush();

    await failAuthentication(100);
    await flush();
    const quiet = await api("GET", "/v1/admin/alerts");
    expect(quiet.status).toBe(200);
    expect(quiet.body.data.filter((a: { rule: string }) => a.rule === "auth_failures")).toEqual([]);

    await failAuthentication(1);
    await flush();
    const firing = await api("GET", "/v1/admin/alerts");
    const since = new Date(clock.now()).toISOString();
    expect(firing.body.data[0]).toEqual({
      rule: "auth_failures",
      subject: null,
      state: "firing",
      value: 101,
      threshold: 100,
      since,
      resolved_at: null,
    });
    await monitorOf(env).sendAlerts();
    // Read again, evaluated again: still firing, no second notification.
    clock.advance(60_000);
    expect((await api("GET", "/v1/admin/alerts")).body.data[0]).toMatchObject({ state: "firing", since });
    await monitorOf(env).sendAlerts();
    expect(received.map((r) => JSON.parse(r.body).type)).toEqual(["alert.firing"]);
    const [notified] = received;
    const now = Math.floor(clock.now() / 1000);
    expect(
      receiverVerifies(notified?.headers["ledger-signature"] ?? "", endpoint.body.secret, notified?.body ?? "", now),
    ).toBe(true);
    expect(JSON.parse(notified?.body ?? "")).toMatchObject({
      type: "alert.firing",
      account_id: null,
      data: { rule: "auth_failures", value: 101, threshold: 100 },
    });

    const monitoring = await api("GET", "/v1/admin/monitoring");
    expect(monitoring.status).toBe(200);
    expect(monitoring.body.auth_failures_10m).toBe(101);

    // Eleven minutes after: the window (the 10 whole minutes before the current one, and the
    // current one) no longer holds the failures' minute.
    clock.advance(10 * 60_000);
    const resolved = await api("GET", "/v1/admin/alerts");
    expect(resolved.body.data.find((a: { rule: string }) => a.rule === "auth_failures")).toMatchObject({
      state: "resolved",
      since,
      resolved_at: new Date(clock.now()).toISOString(),
    });
    await api("GET", "/v1/admin/alerts");
    await monitorOf(env).sendAlerts();
    expect(received.map((r) => JSON.parse(r.body).type)).toEqual(["alert.firing", "alert.resolved"]);
    expect(new Set(received.map((r) => JSON.parse(r.body).id)).size).toBe(2);
  });

  it("shows requests, 5xx rate and latency per route and overall", async () => {
    useManualClock();
    await flush();
    for (let i = 0; i < 3; i++) await api("GET", "/v1/accounts/nobody");
    await flush();
    const view = await api("GET", "/v1/admin/monitoring");
    const route = view.body.routes.find((r: { route: string }) => r.route === "GET /v1/accounts/{account_id}");
    expect(route).toMatchObject({
      requests: 3,
      status: { "4xx": 3, "5xx": 0 },
      rate_5xx: 0,
      errors: { account_not_found: 3 },
    });
    expect(route.latency_ms.p99).toEqual(expect.any(Number));
    expect(view.body.overall.requests).toBeGreaterThanOrEqual(3);
    expect(view.body).toMatchObject({ window_minutes: 5, pending_refunds: 0, dead_letters: 0 });
  });
});
