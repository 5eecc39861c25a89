/**
 * Rebuilding and checking the read side: reprojection equals incremental projection,
 * reconciliation finds tampered rows and lag, and the scheduled sweep settles a reservation
 * whose alarm was lost.
 */
import {
  createExecutionContext,
  createScheduledController,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import worker from "../../src/index";
import { directDelivery } from "../../src/projection/producer/delivery";
import { PROJECTION_BATCH_EVENTS_MAX } from "../../src/projection/producer/projector";
import { shardsOf } from "../../src/read-side/shards";
import { SWEEP_GRACE_MS } from "../../src/sweep";
import { api, expectEveryAccountConsistent, openAccount, stub, useManualClock } from "../helpers";
import { d1Rollups, dbOf, drain, editRollups, expectD1EqualsLog, tamperEvent } from "./support";

afterEach(expectEveryAccountConsistent);

/** Every projected column except the two that record when the projection ran. */
async function d1Rows(accountId: string) {
  const db = dbOf(accountId);
  const [events, reservations, account, rollups] = await Promise.all([
    db.prepare("SELECT * FROM ledger_events WHERE account_id = ? ORDER BY seq").bind(accountId).all(),
    db.prepare("SELECT * FROM reservations WHERE account_id = ? ORDER BY reservation_id").bind(accountId).all(),
    db.prepare("SELECT * FROM accounts WHERE account_id = ?").bind(accountId).first(),
    d1Rollups(accountId),
  ]);
  // The generation counts rebuilds, the only column a rebuild changes on purpose; previous_seq
  // records where the last update started, which depends on how the messages were batched.
  const {
    projected_at: _at,
    projection_lag_ms: _lag,
    generation: _generation,
    previous_seq: _previous,
    ...snapshot
  } = account ?? {};
  return { events: events.results, reservations: reservations.results, snapshot, rollups };
}

async function busyAccount(): Promise<string> {
  const id = await openAccount(1_000, 200);
  const post = (path: string, body: unknown) => api("POST", `/v1/accounts/${id}${path}`, body);
  await post("/reservations", { reservation_id: "r1", amount: 300, context: { model: "m", provider: "p" } });
  await post("/reservations/r1/capture", { amount: 250, usage: { input_tokens: 10, output_tokens: 20 } });
  await post("/reservations", { reservation_id: "r2", amount: 100, on_expiry: "capture" });
  await post("/reservations/r2/extend", { ttl_seconds: 120, extension_id: "e1" });
  await post("/reservations", { reservation_id: "r3", amount: 50 });
  await post("/reservations/r3/release", { reason: "no output" });
  await post("/charges", { charge_id: "c1", amount: 80, context: { service_id: "s" } });
  await post("/refunds", { refund_id: "f1", charge_id: "c1", amount: 30 });
  await post("/refunds", { refund_id: "f2", charge_id: "r1", amount: 50 });
  await post("/adjustments", { adjustment_id: "a1", amount: -5, reason: "fee" });
  await api("PATCH", `/v1/accounts/${id}`, { status: "frozen" });
  await drain(id);
  return id;
}

describe("reprojection", () => {
  it("rebuilds exactly what incremental projection wrote, column for column", async () => {
    const id = await busyAccount();
    const incremental = await d1Rows(id);
    expect(incremental.events).toHaveLength(13);
    // Rollups too: the hour and day rows of each dimension set the history used.
    expect(incremental.rollups.length).toBeGreaterThanOrEqual(6);
    const rebuilt = await api("POST", `/v1/admin/accounts/${id}/reproject`);
    expect(rebuilt.status).toBe(200);
    expect(rebuilt.body).toMatchObject({ last_seq: 13, projected_seq: 13, lag_ms: 0 });
    expect(await d1Rows(id)).toEqual(incremental);
    // And again: reprojection is idempotent.
    await api("POST", `/v1/admin/accounts/${id}/reproject`);
    expect(await d1Rows(id)).toEqual(incremental);
  });

  it("repairs tampered and missing rows", async () => {
    const id = await busyAccount();
    const good = await d1Rows(id);
    const db = dbOf(id);
    await tamperEvent(id, 5, "amount", 1);
    await db.prepare("DELETE FROM open_holds WHERE account_id = ? AND reservation_id = 'r2'").bind(id).run();
    await db.prepare("UPDATE accounts SET balance = 999999 WHERE account_id = ?").bind(id).run();
    await editRollups(id, (row) => (row.model === "m" ? null : { ...row, credit_amount: 1 }));
    expect(await d1Rows(id)).not.toEqual(good);
    await api("POST", `/v1/admin/accounts/${id}/reproject`);
    expect(await d1Rows(id)).toEqual(good);
    await expectD1EqualsLog(id);
  });

  it("answers 404 for an unknown account", async () => {
    const response = await api("POST", "/v1/admin/accounts/nobody-here/reproject");
    expect(response.status).toBe(404);
    expect(response.body.code).toBe("account_not_found");
  });
});

describe("reconciliation", () => {
  it("finds a tampered snapshot, a tampered event, tampered and missing rollups, and repairs them", async () => {
    const clean = await busyAccount();
    const snapshot = await busyAccount();
    const event = await busyAccount();
    const rollup = await busyAccount();
    const missing = await busyAccount();
    await dbOf(snapshot).prepare("UPDATE accounts SET balance = balance + 1 WHERE account_id = ?").bind(snapshot).run();
    const second =
      (
        await dbOf(event)
          .prepare("SELECT balance_delta FROM ledger_events WHERE account_id = ? AND seq = 2")
          .bind(event)
          .first<{ balance_delta: number }>()
      )?.balance_delta ?? 0;
    await tamperEvent(event, 2, "balance_delta", second - 7);
    await editRollups(rollup, (row) =>
      row.grain === "day" ? { ...row, refund_amount: String(BigInt(row.refund_amount) + 1n) } : row,
    );
    await editRollups(missing, (row) => (row.model === "m" ? null : row));
    const ids = [clean, snapshot, event, rollup, missing];
    const report = await api("POST", "/v1/admin/reconcile", { account_ids: ids });
    expect(report.status).toBe(200);
    expect(report.body.results.map((r: { state: string }) => r.state)).toEqual([
      "ok",
      "drift",
      "drift",
      "drift",
      "drift",
    ]);
    const repaired = await api("POST", "/v1/admin/reconcile", { account_ids: ids.slice(1), repair: true });
    expect(repaired.body.results.every((r: { repaired: boolean }) => r.repaired)).toBe(true);
    const after = await api("POST", "/v1/admin/reconcile", { account_ids: ids });
    expect(after.body.results.map((r: { state: string }) => r.state)).toEqual(["ok", "ok", "ok", "ok", "ok"]);
    for (const id of ids) await expectD1EqualsLog(id);
  });

  it("tells lag from drift, and pages through every account", async () => {
    // The failed flush schedules its retry on the alarm; on a ManualClock a day ahead that alarm
    // never fires by itself in the middle of the test (it would catch up and hide the lag).
    useManualClock();
    const id = await busyAccount();
    await runInDurableObject(stub(id), (instance: AccountDurableObject) => {
      instance.projector.deliver = async () => {
        throw new Error("D1_ERROR: injected outage");
      };
    });
    await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "late", amount: 1 });
    const lagging = await api("POST", "/v1/admin/reconcile", { account_ids: [id] });
    expect(lagging.body.results[0]).toMatchObject({ state: "lagging", repaired: false });
    await runInDurableObject(stub(id), (instance: AccountDurableObject) => {
      instance.projector.deliver = directDelivery(shardsOf(env));
    });
    const fixed = await api("POST", "/v1/admin/reconcile", { account_ids: [id], repair: true });
    expect(fixed.body.results[0]).toMatchObject({ state: "lagging", repaired: true });
    expect((await api("POST", "/v1/admin/reconcile", { account_ids: [id] })).body.results[0].state).toBe("ok");

    const seen = new Set<string>();
    let cursor: string | undefined;
    do {
      const page = await api("POST", "/v1/admin/reconcile", { limit: 2, ...(cursor ? { cursor } : {}) });
      expect(page.status).toBe(200);
      for (const r of page.body.results) seen.add(r.account_id);
      cursor = page.body.next_cursor ?? undefined;
    } while (cursor !== undefined);
    let all = 0;
    for (const shard of shardsOf(env)) {
      all += (await shard.db.prepare("SELECT COUNT(*) AS n FROM accounts").first<{ n: number }>())?.n ?? 0;
    }
    expect(seen.size).toBe(all);
  });
});

describe("scheduled sweep", () => {
  it("settles a reservation whose alarm was lost", async () => {
    const time = useManualClock();
    const id = await openAccount(100);
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r", amount: 60, ttl_seconds: 1 });
    await drain(id);
    // Lose the alarm, as local dev does across restarts.
    await runInDurableObject(stub(id), async (instance: AccountDurableObject, state) => {
      await state.storage.deleteAlarm();
      // biome-ignore lint/suspicious/noExplicitAny: the scheduler's belief about its alarm must be lost too
      (instance as any).scheduler.alarmAtMs = null;
    });
    // The hold expires, and the cron fires a grace period later.
    time.advance(1_000 + SWEEP_GRACE_MS + 1_000);
    const stored = () =>
      runInDurableObject(
        stub(id),
        (_i: AccountDurableObject, state) =>
          state.storage.sql.exec<{ status: string }>("SELECT status FROM reservations WHERE reservation_id = 'r'").one()
            .status,
      );
    expect(await stored()).toBe("open");
    const controller = createScheduledController({ scheduledTime: time.now() });
    const ctx = createExecutionContext();
    await worker.scheduled(controller, env, ctx);
    await waitOnExecutionContext(ctx);
    expect(await stored()).toBe("expired");
    const row = await dbOf(id)
      .prepare("SELECT status FROM reservations WHERE account_id = ? AND reservation_id = 'r'")
      .bind(id)
      .first<{ status: string }>();
    expect(row?.status).toBe("expired");
    const account = await dbOf(id)
      .prepare("SELECT reserved, balance FROM accounts WHERE account_id = ?")
      .bind(id)
      .first();
    expect(account).toEqual({ reserved: 0, balance: 100 });
  });
});

describe("reprojection under D1 failure", () => {
  it("leaves the cursor where D1 really is when a later batch fails, and catches up after", async () => {
    // The failed batch schedules a retry on the alarm: on a ManualClock a day ahead it cannot
    // fire (and move the cursor) before the test has looked at it.
    useManualClock();
    const id = await openAccount(0);
    for (let batch = 0; batch < 3; batch++) {
      const operations = Array.from({ length: 150 }, (_, i) => ({
        op: "credit",
        credit_id: `c${batch}_${i}`,
        amount: 1,
      }));
      expect((await api("POST", `/v1/accounts/${id}/batch`, { operations })).status).toBe(200);
    }
    await drain(id);
    let calls = 0;
    await runInDurableObject(stub(id), (instance: AccountDurableObject) => {
      const real = directDelivery(shardsOf(env));
      instance.projector.deliver = async (messages) => {
        calls += 1;
        if (calls === 2) throw new Error("D1_ERROR: injected failure in the second batch");
        return real(messages);
      };
    });
    const failed = await api("POST", `/v1/admin/accounts/${id}/reproject`);
    expect(failed.status).toBe(500);
    const status = await stub(id).projectionStatus();
    const inD1 = await dbOf(id)
      .prepare("SELECT COUNT(*) AS n FROM ledger_events WHERE account_id = ?")
      .bind(id)
      .first<{ n: number }>();
    // The first pass (the reset and PROJECTION_BATCH_EVENTS_MAX events) landed; the cursor says exactly that.
    expect(status.projected_seq).toBe(PROJECTION_BATCH_EVENTS_MAX);
    expect(inD1?.n).toBe(PROJECTION_BATCH_EVENTS_MAX);
    await drain(id);
    await expectD1EqualsLog(id);
  });
});
