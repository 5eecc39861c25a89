/**
 * The webhook outbox under failure (issue 14 review): a hand-off that fails while D1 is down
 * arms the alarm at a backed-off retry time (never "now", which would spin), and the event is
 * delivered exactly once when D1 is back; an atomic batch that crossed the threshold and rolled
 * back leaves no wake behind; the next run's time survives eviction; and the counts recorded
 * inside alarms (the account's and the monitor's) reach the monitor.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, onTestFinished } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import type { MonitorDurableObject } from "../../durable-objects/monitor";
import { WEBHOOK_RUN_RETRY_BASE_MS, WEBHOOK_RUN_RETRY_CAP_MS, webhookRunRetryMs } from "../../durable-objects/outbox";
import { ALARM_RETRIES_MAX } from "../../durable-objects/scheduler";
import type { Command } from "../../src/domain/commands";
import { ALERT_THRESHOLDS_DEFAULT } from "../../src/observability/alerts";
import { monitorOf } from "../../src/observability/evaluate";
import { captureLogs } from "../../src/observability/log";
import { METRICS_FLUSH_INTERVAL_MS } from "../../src/observability/metrics";
import { retryDelayMs } from "../../src/webhooks/backoff";
import { api, expectEveryAccountConsistent, openAccount, stub, useManualClock, withFailingAlarmWork } from "../helpers";
import {
  clearEndpoints,
  createEndpoint,
  deliveriesOf,
  fakeReceiver,
  HOOK_URL,
  outboxCount,
  setObjectD1,
} from "./support";

afterEach(expectEveryAccountConsistent);

const alarmOf = (target: DurableObjectStub) =>
  runInDurableObject(target, (_instance, state) => state.storage.getAlarm());

/** An account with a low-balance endpoint and a threshold of 50, holding 100. */
async function lowBalanceAccount(): Promise<string> {
  await clearEndpoints();
  await createEndpoint({ url: HOOK_URL, events: ["account.low_balance"] });
  const id = await openAccount(100);
  await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: 50 });
  return id;
}

const charge = (charge_id: string, amount: number): Command => ({
  type: "ChargeAccount",
  charge_id,
  amount,
  context: {},
  metadata: {},
});

describe("the webhook outbox while D1 is down", () => {
  it("arms the alarm at the backed-off retry time, not now; delivers once after D1 recovers", async () => {
    const clock = useManualClock();
    const received = fakeReceiver([200]);
    const id = await lowBalanceAccount();
    await setObjectD1(stub(id), true);
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 60 });
    expect(await outboxCount(id)).toBe(1);
    expect(await runDurableObjectAlarm(stub(id))).toBe(true);
    expect(await outboxCount(id)).toBe(1);
    expect(await alarmOf(stub(id))).toBe(clock.now() + WEBHOOK_RUN_RETRY_BASE_MS);
    // Still down at the retry: the wait doubles (and is capped).
    clock.advance(WEBHOOK_RUN_RETRY_BASE_MS);
    await runDurableObjectAlarm(stub(id));
    expect(await alarmOf(stub(id))).toBe(clock.now() + 2 * WEBHOOK_RUN_RETRY_BASE_MS);
    expect(webhookRunRetryMs(2)).toBe(2 * WEBHOOK_RUN_RETRY_BASE_MS);
    expect(webhookRunRetryMs(1_000)).toBe(WEBHOOK_RUN_RETRY_CAP_MS);
    // A command meanwhile does not pull the wake back to now either.
    await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "t1", amount: 1 });
    expect(await alarmOf(stub(id))).toBe(clock.now() + 2 * WEBHOOK_RUN_RETRY_BASE_MS);
    expect(received).toHaveLength(0);

    await setObjectD1(stub(id), false);
    clock.advance(2 * WEBHOOK_RUN_RETRY_BASE_MS);
    await runDurableObjectAlarm(stub(id));
    expect(await outboxCount(id)).toBe(0);
    expect(received).toHaveLength(1);
    expect((await deliveriesOf(id)).map((d) => d.state)).toEqual(["delivered"]);
    // Nothing is left to send: a later alarm (if any) sends nothing again.
    clock.advance(WEBHOOK_RUN_RETRY_CAP_MS);
    await runDurableObjectAlarm(stub(id));
    expect(received).toHaveLength(1);
  });

  it("the monitor arms its alarm at the retry time and counts its own failed webhook write", async () => {
    // Days away from the other tests, so the monitor's minutes hold only this test's counts.
    const clock = useManualClock(Date.now() + 20 * 86_400_000);
    const monitor = monitorOf(env);
    await setObjectD1(monitor, true);
    try {
      const before = (await monitor.monitoring({ pending_refunds: 0, dead_letters: 0 })).d1_failures;
      expect(before["write:webhooks"]).toBeUndefined();
      await runInDurableObject(monitor, async (instance: MonitorDurableObject) => {
        // dead_letters fires: one alert event in the monitor's outbox, whose hand-off fails.
        await instance.evaluate({ pending_refunds: 0, dead_letters: 1 }, { ...ALERT_THRESHOLDS_DEFAULT });
        await instance.sendAlerts();
      });
      expect(await alarmOf(monitor)).toBe(clock.now() + WEBHOOK_RUN_RETRY_BASE_MS);
      const after = (await monitor.monitoring({ pending_refunds: 0, dead_letters: 0 })).d1_failures;
      expect(after["write:webhooks"]).toBe(1);
    } finally {
      await setObjectD1(monitor, false);
      await runInDurableObject(monitor, async (instance: MonitorDurableObject) => {
        await instance.evaluate({ pending_refunds: 0, dead_letters: 0 }, { ...ALERT_THRESHOLDS_DEFAULT });
      });
    }
  });
});

describe("the webhook outbox's wake", () => {
  it("is gone with an atomic batch that crossed the threshold and was rolled back", async () => {
    useManualClock();
    const id = await lowBalanceAccount();
    const batch = await runInDurableObject(stub(id), (instance: AccountDurableObject) =>
      instance.executeBatch([charge("c1", 60), charge("c2", 1_000)], true),
    );
    expect(batch.committed).toBe(false);
    expect(batch.results.map((r) => r.ok)).toEqual([true, false]);
    expect(await outboxCount(id)).toBe(0);
    const wake = await runInDurableObject(stub(id), (instance: AccountDurableObject) =>
      (instance as unknown as { outbox: { wakeAtMs(): number | null } }).outbox.wakeAtMs(),
    );
    expect(wake).toBeNull();
  });

  it("survives eviction between retries: the fresh object retries at the next attempt", async () => {
    const clock = useManualClock();
    const received = fakeReceiver([500, 200]);
    const id = await lowBalanceAccount();
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 60 });
    await runDurableObjectAlarm(stub(id));
    expect(received.map((r) => r.answered)).toEqual([500]);
    await evictDurableObject(stub(id));
    clock.advance(retryDelayMs(1));
    // The fresh object knows its next attempt from SQLite: its alarm sends it.
    expect(await runDurableObjectAlarm(stub(id))).toBe(true);
    expect(received.map((r) => r.answered)).toEqual([500, 200]);
    expect((await deliveriesOf(id)).map((d) => d.state)).toEqual(["delivered"]);
  });
});

describe("a run in which one record fails", () => {
  it("records every other attempt before it reports the failure, and does not send them again", async () => {
    const clock = useManualClock();
    const received = fakeReceiver([200]);
    const id = await lowBalanceAccount();
    const broken = await createEndpoint({ url: "https://broken.receiver.example/", events: ["account.low_balance"] });
    // Recording the broken endpoint's attempt fails (D1 refuses that one update).
    await env.DB.prepare(
      `CREATE TRIGGER broken_record BEFORE UPDATE ON webhook_deliveries
       WHEN NEW.endpoint_id = '${broken.body.id}' BEGIN SELECT RAISE(ABORT, 'record refused'); END`,
    ).run();
    onTestFinished(async () => {
      await env.DB.prepare("DROP TRIGGER IF EXISTS broken_record").run();
    });
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 60 });
    await runDurableObjectAlarm(stub(id));
    // The run failed (the broken record threw), yet the good attempt was sent and recorded first.
    const toGood = () => received.filter((r) => !r.url.startsWith("https://broken.")).length;
    expect(toGood()).toBe(1);
    const good = (await deliveriesOf(id)).find((d) => d.state === "delivered");
    expect(good).toMatchObject({ attempts: 1 });
    expect(await alarmOf(stub(id))).toBe(clock.now() + WEBHOOK_RUN_RETRY_BASE_MS);
    clock.advance(WEBHOOK_RUN_RETRY_BASE_MS);
    await runDurableObjectAlarm(stub(id));
    // The retry sends the unrecorded one again (at least once), never the recorded one.
    expect(toGood()).toBe(1);
    await clearEndpoints();
  });
});

describe("counts recorded inside an account's alarm", () => {
  it("reach the monitor at the end of the alarm", async () => {
    const clock = useManualClock(Date.now() + 25 * 86_400_000);
    const id = await lowBalanceAccount();
    await setObjectD1(stub(id), true);
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 60 });
    // The flush after the command has run: the next is due an interval later.
    clock.advance(METRICS_FLUSH_INTERVAL_MS);
    await runDurableObjectAlarm(stub(id));
    await setObjectD1(stub(id), false);
    const view = await monitorOf(env).monitoring({ pending_refunds: 0, dead_letters: 0 });
    expect(view.d1_failures["write:webhooks"]).toBe(1);
  });
});

describe("the log policy on the failure paths", () => {
  it("writes no URL and no secret when webhooks, the monitor's alerts and the account's alarm fail", async () => {
    const clock = useManualClock(Date.now() + 35 * 86_400_000);
    const logs = captureLogs();
    try {
      fakeReceiver([500]);
      const id = await lowBalanceAccount();
      const endpoint = await createEndpoint({ url: HOOK_URL, events: ["alert.firing"] });
      // A webhook run that fails (D1 down during the hand-off).
      await setObjectD1(stub(id), true);
      await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 60 });
      await runDurableObjectAlarm(stub(id));
      await setObjectD1(stub(id), false);
      // The monitor's alert run that fails.
      const monitor = monitorOf(env);
      await setObjectD1(monitor, true);
      await runInDurableObject(monitor, async (instance: MonitorDurableObject) => {
        await instance.evaluate({ pending_refunds: 0, dead_letters: 1 }, { ...ALERT_THRESHOLDS_DEFAULT });
        await instance.sendAlerts();
      });
      await setObjectD1(monitor, false);
      // An account alarm past its retries.
      await withFailingAlarmWork(id, (instance) =>
        instance.alarm({ retryCount: ALARM_RETRIES_MAX, isRetry: true, scheduledTime: clock.now() }),
      );
      const messages = logs.lines.map((l) => JSON.parse(l.text).msg);
      for (const logged of ["webhooks_failed", "alert_webhooks_failed", "alarm_failed"]) {
        expect(messages).toContain(logged);
      }
      const text = logs.lines.map((l) => l.text).join("\n");
      for (const forbidden of ["receiver.example", "token=abc", "whsec_", endpoint.body.secret, "injected outage"]) {
        expect(text).not.toContain(forbidden);
      }
    } finally {
      logs.stop();
      await runInDurableObject(monitorOf(env), (instance: MonitorDurableObject) =>
        instance.evaluate({ pending_refunds: 0, dead_letters: 0 }, { ...ALERT_THRESHOLDS_DEFAULT }),
      );
    }
  });
});
