/**
 * `lot.expiring` and `lot.expired` (issue 27): sent once, signed and delivered like the other
 * events, on the clock seam. `lot.expiring` goes out when a lot with credit enters the lead time
 * (LOT_EXPIRING_LEAD_HOURS, 7 days by default), `lot.expired` from the LotExpired event.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import type { WebhookOutbox } from "../../durable-objects/outbox";
import { LOT_EXPIRING_LEAD_HOURS_DEFAULT } from "../../src/config";
import { api, expectEveryAccountConsistent, openAccount, stub, useManualClock } from "../helpers";
import { clearEndpoints, createEndpoint, deliveriesOf, fakeReceiver, HOOK_URL, outboxCount } from "./support";

afterEach(expectEveryAccountConsistent);

const DAY_MS = 86_400_000;
const LEAD_MS = LOT_EXPIRING_LEAD_HOURS_DEFAULT * 3_600_000;

describe("lot webhooks", () => {
  it("announce a lot entering its lead time once, and its expiry once, on the alarm", async () => {
    const time = useManualClock();
    const received = fakeReceiver([200]);
    await clearEndpoints();
    await createEndpoint({ url: HOOK_URL, events: ["lot.expiring", "lot.expired"] });
    const id = await openAccount();
    const expiresAt = time.now() + 10 * DAY_MS;
    const grant = { kind: "promotional", expires_at: new Date(expiresAt).toISOString() };
    expect((await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "promo", amount: 90, grant })).status).toBe(
      201,
    );
    // A paid lot that never expires is never announced.
    await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "paid", amount: 10 });

    time.advance(10 * DAY_MS - LEAD_MS - 1);
    await runDurableObjectAlarm(stub(id));
    expect(await deliveriesOf(id)).toEqual([]);
    time.advance(1);
    expect(await runDurableObjectAlarm(stub(id))).toBe(true);
    expect((await deliveriesOf(id)).map((d) => [d.event_type, d.state])).toEqual([["lot.expiring", "delivered"]]);
    // A second run announces nothing again, nor does a restart (the announcement is a row).
    await stub(id).wakeWebhooks();
    expect(await deliveriesOf(id)).toHaveLength(1);
    await evictDurableObject(stub(id));
    // The restarted object knows the lot was announced: nothing of its outbox is due.
    const wake = await runInDurableObject(stub(id), (instance: AccountDurableObject) =>
      (instance as unknown as { outbox: WebhookOutbox }).outbox.wakeAtMs(time.now()),
    );
    expect(wake).toBeNull();
    await runDurableObjectAlarm(stub(id));
    expect(await outboxCount(id)).toBe(0);
    expect(await deliveriesOf(id)).toHaveLength(1);

    time.advance(LEAD_MS);
    expect(await runDurableObjectAlarm(stub(id))).toBe(true);
    const deliveries = await deliveriesOf(id);
    expect(deliveries.map((d) => [d.event_type, d.state])).toEqual([
      ["lot.expiring", "delivered"],
      ["lot.expired", "delivered"],
    ]);
    expect(await outboxCount(id)).toBe(0);
    const bodies = received.map((r) => JSON.parse(r.body));
    expect(bodies.map((b) => b.type)).toEqual(["lot.expiring", "lot.expired"]);
    expect(bodies[0].data).toMatchObject({ lot_id: "promo", kind: "promotional", remaining: 90 });
    expect(bodies[1].data).toMatchObject({
      lot_id: "promo",
      amount: 90,
      expires_at: new Date(expiresAt).toISOString(),
    });
    expect(received.every((r) => r.headers["ledger-signature"]?.includes("v1="))).toBe(true);
  });
});
