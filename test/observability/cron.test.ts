/**
 * The cron's part in monitoring (issue 14): the rules are evaluated every minute from D1's gauges
 * (a dead letter fires `dead_letters`; stale holds count as pending refunds), and an account whose
 * webhook retry was lost with its alarm is woken and delivers.
 */
import {
  createExecutionContext,
  createScheduledController,
  runDurableObjectAlarm,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { ALARM_RETRIES_MAX } from "../../durable-objects/scheduler";
import worker from "../../src/index";
import { monitorOf } from "../../src/observability/evaluate";
import { flushMetricsIfDue } from "../../src/observability/flush";
import { captureLogs } from "../../src/observability/log";
import { directDelivery } from "../../src/projection/producer/delivery";
import { shardsOf } from "../../src/read-side/shards";
import { SWEEP_GRACE_MS } from "../../src/sweep";
import { retryDelayMs } from "../../src/webhooks/backoff";
import { api, openAccount, stub, useManualClock, withFailingAlarmWork } from "../helpers";
import { fakeReceiver } from "../webhooks/support";

async function cron(scheduledTime: number): Promise<void> {
  await cronWith(env, scheduledTime);
}

/** One dead letter in shard 0, received at `atMs`: the dead_letters rule fires on it. */
async function addDeadLetter(id: string, atMs: number): Promise<void> {
  await env.DB.prepare(
    "INSERT INTO projection_dead_letters (id, account_id, from_seq, to_seq, generation, attempts, received_at, body) VALUES (?, 'acct_dl', 1, 1, 0, 10, ?, '{}')",
  )
    .bind(id, new Date(atMs).toISOString())
    .run();
}

/** The cron with an environment of its own (a malformed variable, say), and what it logged. */
async function cronWith(target: object, scheduledTime: number): Promise<Record<string, unknown>[]> {
  const logs = captureLogs();
  try {
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ scheduledTime }), target as typeof env, ctx);
    await waitOnExecutionContext(ctx);
    return logs.lines.map((line) => JSON.parse(line.text) as Record<string, unknown>);
  } finally {
    logs.stop();
  }
}

const ruleState = async (rule: string) => (await monitorOf(env).alerts()).find((a) => a.rule === rule)?.state;

describe("the cron's jobs", () => {
  it("run each on its own: a malformed retention stops its prune, named in the log, and no other job", async () => {
    const clock = useManualClock();
    await addDeadLetter("dl_cfg", clock.now());
    try {
      const logged = await cronWith({ ...env, RAW_EVENTS_WINDOW_DAYS: "0" }, clock.now());
      expect(
        logged.filter((line) => String(line.msg).endsWith("_failed") || line.msg === "alerts_not_evaluated"),
      ).toEqual([
        {
          msg: "retention_failed",
          error: "ConfigError",
          detail: 'RAW_EVENTS_WINDOW_DAYS must be a positive number, not "0"',
        },
      ]);
      // The alert rules were still evaluated in the same run.
      expect(await ruleState("dead_letters")).toBe("firing");
    } finally {
      await env.DB.prepare("DELETE FROM projection_dead_letters").run();
      clock.advance(60_000);
      await cron(clock.now());
    }
  });
});

describe("the cron's monitoring", () => {
  it("fires dead_letters for one dead letter and resolves it when the table is empty", async () => {
    const clock = useManualClock();
    await addDeadLetter("dl1", clock.now());
    await cron(clock.now());
    expect(await ruleState("dead_letters")).toBe("firing");
    await env.DB.prepare("DELETE FROM projection_dead_letters").run();
    clock.advance(60_000);
    await cron(clock.now());
    expect(await ruleState("dead_letters")).toBe("resolved");
  });

  it("counts holds past expiry plus the grace as pending refunds: 10 do not fire, 11 do", async () => {
    const clock = useManualClock();
    const id = await openAccount(10_000);
    // r0..r9 expire at t + 1 s, r10 at t + 2 s; nobody settles them (no alarm runs, no sweep, and
    // no command reaches the account, which would settle what is due first).
    for (let i = 0; i < 11; i++) {
      const ttl_seconds = i < 10 ? 1 : 2;
      const held = await api("POST", `/v1/accounts/${id}/reservations`, {
        reservation_id: `r${i}`,
        amount: 10,
        ttl_seconds,
      });
      expect(held.status).toBe(201);
    }
    clock.advance(SWEEP_GRACE_MS + 1_001);
    const ten = await api("GET", "/v1/admin/monitoring");
    expect(ten.body.pending_refunds).toBe(10);
    expect(
      (await api("GET", "/v1/admin/alerts")).body.data.find((a: { rule: string }) => a.rule === "pending_refunds"),
    ).toBe(undefined);
    clock.advance(1_000);
    const alerts = await api("GET", "/v1/admin/alerts");
    expect(alerts.body.data.find((a: { rule: string }) => a.rule === "pending_refunds")).toMatchObject({
      state: "firing",
      value: 11,
      threshold: 10,
    });
    // Settled (the alarm runs): nothing is pending any more.
    await runDurableObjectAlarm(stub(id));
    expect((await api("GET", "/v1/admin/monitoring")).body.pending_refunds).toBe(0);
  });

  it("wakes an account whose webhook retry was lost with its alarm", async () => {
    const clock = useManualClock();
    await env.DB.prepare("DELETE FROM webhook_endpoints").run();
    const received = fakeReceiver([500, 200]);
    await api("POST", "/v1/admin/webhook-endpoints", {
      url: "https://hooks.receiver.example/x",
      events: ["account.low_balance"],
    });
    const id = await openAccount(100);
    await api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: 50 });
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 60 });
    await runDurableObjectAlarm(stub(id));
    expect(received).toHaveLength(1);
    // The alarm is lost (local dev drops alarms across restarts): only the cron can notice.
    await runInDurableObject(stub(id), (_instance, state) => state.storage.deleteAlarm());
    clock.advance(retryDelayMs(1) + 60_000);
    await cron(clock.now());
    expect(received.map((r) => r.answered)).toEqual([500, 200]);
    const delivery = await env.DB.prepare("SELECT state, attempts FROM webhook_deliveries WHERE account_id = ?")
      .bind(id)
      .first();
    expect(delivery).toEqual({ state: "delivered", attempts: 2 });
  });
});

describe("failures the ledger's own rules watch", () => {
  async function flushMetrics(): Promise<void> {
    await flushMetricsIfDue(env, () => undefined, true);
  }

  it("fires d1_write_failures on the second failed D1 write in 5 minutes, not the first", async () => {
    // Days away from the other tests of this file, so their minutes are not in these windows.
    useManualClock(Date.now() + 5 * 86_400_000);
    const id = await openAccount(100);
    await stub(id).catchUp();
    await runInDurableObject(stub(id), (instance: AccountDurableObject) => {
      instance.projector.deliver = async () => {
        throw new Error("D1_ERROR: injected outage");
      };
    });
    await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "c1", amount: 1 });
    await flushMetrics();
    const once = await api("GET", "/v1/admin/monitoring");
    expect(once.body.d1_failures["write:projection"]).toBe(1);
    expect(
      (await api("GET", "/v1/admin/alerts")).body.data.find((a: { rule: string }) => a.rule === "d1_write_failures"),
    ).toBe(undefined);
    await runInDurableObject(stub(id), (instance: AccountDurableObject) => instance.projector.flush());
    await flushMetrics();
    const alerts = await api("GET", "/v1/admin/alerts");
    expect(alerts.body.data.find((a: { rule: string }) => a.rule === "d1_write_failures")).toMatchObject({
      state: "firing",
      value: 2,
      threshold: 2,
    });
    await runInDurableObject(stub(id), (instance: AccountDurableObject) => {
      instance.projector.deliver = directDelivery(shardsOf(env));
    });
  });

  it("fires alarm_retries_exhausted when an account's alarm runs out of retries", async () => {
    const clock = useManualClock(Date.now() + 10 * 86_400_000);
    const id = await openAccount(100);
    await withFailingAlarmWork(id, async (instance) => {
      await expect(instance.alarm({ retryCount: 0, isRetry: false, scheduledTime: clock.now() })).rejects.toThrow(
        "injected",
      );
      await instance.alarm({ retryCount: ALARM_RETRIES_MAX, isRetry: true, scheduledTime: clock.now() });
    });
    const alerts = await api("GET", "/v1/admin/alerts");
    expect(alerts.body.data.find((a: { rule: string }) => a.rule === "alarm_retries_exhausted")).toMatchObject({
      state: "firing",
      value: 1,
    });
  });
});
