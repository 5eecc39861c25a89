/**
 * Behaviour a review of the account object's restructuring found wrong, each pinned by a test:
 * the alarm believed after an atomic batch rolls back, a refund of a due capture-on-expiry
 * hold, a schema newer than the code, and the log fields of a rejected operation.
 */
import { runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { migrate } from "../../durable-objects/schema";
import { EXPIRY_BATCH_MAX } from "../../src/domain/limits";
import { captureLogs } from "../../src/observability/log";
import { api, expectEveryAccountConsistent, openAccount, stub, useManualClock } from "../helpers";

afterEach(expectEveryAccountConsistent);

const realAlarm = (id: string) =>
  runInDurableObject(stub(id), (_i: AccountDurableObject, state) => state.storage.getAlarm());

describe("regressions", () => {
  it("keeps a later hold covered by the alarm after an atomic batch rolled back", async () => {
    const clock = useManualClock();
    const id = await openAccount(1_000);
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "far", amount: 1, ttl_seconds: 600 });
    // The batch reserves a hold due in 60 s, then fails: everything rolls back.
    const batch = await api("POST", `/v1/accounts/${id}/batch`, {
      atomic: true,
      operations: [
        { op: "reserve", reservation_id: "soon", amount: 1, ttl_seconds: 60 },
        { op: "charge", charge_id: "too-much", amount: 1_000_000 },
      ],
    });
    expect(batch.body.committed).toBe(false);
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "mid", amount: 1, ttl_seconds: 300 });
    const alarm = await realAlarm(id);
    expect(alarm).not.toBeNull();
    expect(alarm as number).toBeLessThanOrEqual(clock.now() + 300_000);
  });

  it("settles a due capture-on-expiry hold before refunding it, even past the first expiry batch", async () => {
    const clock = useManualClock();
    const id = await openAccount(10_000);
    const operations = Array.from({ length: EXPIRY_BATCH_MAX }, (_, i) => ({
      op: "reserve",
      reservation_id: `h${i}`,
      amount: 1,
      ttl_seconds: 1,
    }));
    expect((await api("POST", `/v1/accounts/${id}/batch`, { operations })).status).toBe(200);
    const cap = { reservation_id: "cap", amount: 50, ttl_seconds: 2, on_expiry: "capture" };
    expect((await api("POST", `/v1/accounts/${id}/reservations`, cap)).status).toBe(201);
    clock.advance(3_000);
    const refund = await api("POST", `/v1/accounts/${id}/refunds`, { refund_id: "f", charge_id: "cap", amount: 50 });
    expect(refund.status).toBe(201);
    expect(refund.body.refund.charge_amount).toBe(50);
  });

  it("refuses to start on a schema newer than the code knows", async () => {
    const id = await openAccount(0);
    await runInDurableObject(stub(id), (_i: AccountDurableObject, state) => {
      const sql = state.storage.sql;
      const { version } = sql.exec<{ version: number }>("SELECT version FROM _schema").one();
      sql.exec("UPDATE _schema SET version = ?", version + 1);
      try {
        expect(() => migrate(sql)).toThrow(/newer than this code/);
      } finally {
        sql.exec("UPDATE _schema SET version = ?", version);
      }
    });
  });

  it("logs the caller's context and usage for a rejected operation too", async () => {
    const id = await openAccount(10);
    const capture = captureLogs();
    try {
      const context = { request_id: "req-rejected", user_id: "u-9", model: "m" };
      const reserve = { reservation_id: "big", amount: 500, context };
      expect((await api("POST", `/v1/accounts/${id}/reservations`, reserve)).status).toBe(402);
      const usage = { usage: { input_tokens: 7 } };
      expect((await api("POST", `/v1/accounts/${id}/reservations/none/capture`, usage)).status).toBe(404);
    } finally {
      capture.stop();
    }
    const lines = capture.lines.map((l) => JSON.parse(l.text) as Record<string, unknown>);
    const rejected = lines.find((l) => l.error_code === "insufficient_funds");
    expect(rejected).toMatchObject({ request_id: "req-rejected", user_id: "u-9", model: "m" });
    expect(lines.find((l) => l.error_code === "reservation_not_found")).toMatchObject({ input_tokens: 7 });
  });
});
