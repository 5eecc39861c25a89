/**
 * `limit.threshold_reached` and `limit.exhausted` (issue 28): once per limit and window, from the
 * command that took the window's peak across the threshold or the amount; signed and delivered
 * like the other events; a new window may send them again.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { api, expectEveryAccountConsistent, openAccount, stub, useManualClock } from "../helpers";
import { clearEndpoints, createEndpoint, deliveriesOf, fakeReceiver, HOOK_URL } from "./support";

afterEach(expectEveryAccountConsistent);

describe("limit webhooks", () => {
  it("announce the threshold and exhaustion once per window", async () => {
    const time = useManualClock(Date.parse("2026-12-09T08:00:00.000Z"));
    const received = fakeReceiver([200]);
    await clearEndpoints();
    await createEndpoint({ url: HOOK_URL, events: ["limit.threshold_reached", "limit.exhausted"] });
    const id = await openAccount(10_000);
    const put = await api("PUT", `/v1/accounts/${id}/limits/daily`, {
      applies_to: { project_id: "p" },
      window: "day",
      amount: 100,
    });
    expect(put.status).toBe(200);
    const charge = (charge_id: string, amount: number) =>
      api("POST", `/v1/accounts/${id}/charges`, { charge_id, amount, context: { project_id: "p" } });
    await charge("a", 50);
    await runDurableObjectAlarm(stub(id));
    expect(await deliveriesOf(id)).toEqual([]);
    await charge("b", 30); // 80: the threshold (80%)
    await api("POST", `/v1/accounts/${id}/refunds`, { refund_id: "rb", charge_id: "b", amount: 30 });
    await charge("c", 30); // back to 80: the peak did not rise, nothing again
    await charge("d", 20); // 100: exhausted
    await runDurableObjectAlarm(stub(id));
    // Both were written at the same clock time: the order they are delivered in is not part of it.
    const sent = async () => (await deliveriesOf(id)).map((d) => `${d.event_type} ${d.state}`).sort();
    expect(await sent()).toEqual(["limit.exhausted delivered", "limit.threshold_reached delivered"]);
    const bodies = received.map((r) => JSON.parse(r.body));
    const of = (type: string) => bodies.find((b) => b.type === type)?.data;
    expect(of("limit.threshold_reached")).toMatchObject({ limit_id: "daily", window: "day", amount: 100, spent: 80 });
    expect(of("limit.threshold_reached")).toMatchObject({ remaining: 20 });
    expect(of("limit.exhausted")).toMatchObject({ limit_id: "daily", spent: 100, remaining: 0 });
    expect(received.every((r) => r.headers["ledger-signature"]?.includes("v1="))).toBe(true);
    // The next day is another window.
    time.advance(24 * 3_600_000);
    await charge("e", 85);
    await runDurableObjectAlarm(stub(id));
    expect(await sent()).toEqual([
      "limit.exhausted delivered",
      "limit.threshold_reached delivered",
      "limit.threshold_reached delivered",
    ]);
  });
});
