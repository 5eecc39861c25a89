/**
 * The D1 projection inside workerd: random histories end up in D1 exactly as their logs say,
 * D1 failures (all, some, lost answers, a hang) lose nothing, duplicate nothing and delay no
 * response, and the cursor catches up.
 *
 * Budget (test/budget.ts): the random-history property runs a fixed 25 cases; HISTORY_RUNS=<n>
 * runs n instead. PRINT_MEASUREMENTS=1 prints the measured D1 rows per event.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { applyStats } from "../../src/projection/consumer/apply";
import { directDelivery } from "../../src/projection/producer/delivery";
import type { Delivery } from "../../src/projection/producer/projector";
import { shardsOf } from "../../src/read-side/shards";
import { budget, printMeasurements } from "../budget";
import { api, expectEveryAccountConsistent, openAccount, stub, useManualClock } from "../helpers";
import { commandArb, dbOf, deferred, drain, expectD1EqualsLog, expectJournalBalanced, runHistory } from "./support";

afterEach(expectEveryAccountConsistent);

/** Replaces the object's delivery (lives until the object is evicted). */
async function setSink(accountId: string, make: (real: Delivery) => Delivery): Promise<void> {
  await runInDurableObject(stub(accountId), (instance: AccountDurableObject) => {
    instance.projector.deliver = make(directDelivery(shardsOf(env)));
  });
}

async function d1EventCount(accountId: string): Promise<number> {
  const row = await dbOf(accountId)
    .prepare("SELECT COUNT(*) AS n FROM ledger_events WHERE account_id = ?")
    .bind(accountId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

/** Runs the alarm until the projection is caught up (retries are scheduled with backoff). */
async function catchUpThroughAlarm(accountId: string): Promise<number> {
  for (let runs = 1; runs <= 20; runs++) {
    await runDurableObjectAlarm(stub(accountId));
    const status = await stub(accountId).projectionStatus();
    if (status.projected_seq === status.last_seq) return runs;
  }
  throw new Error("the alarm did not catch the projection up");
}

describe("projection", () => {
  // Each case drives a real account object through up to 40 commands and compares D1 with its
  // log: a few seconds for all 25 alone, several times that under the full suite on 2 cores. 120 s.
  const HISTORIES = budget("HISTORY_RUNS", 25, 120_000);
  it("puts random histories into D1 exactly as their logs say", { timeout: HISTORIES.timeout }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(commandArb, { minLength: 1, maxLength: 40 }), async (commands) => {
        const id = await runHistory(commands);
        await drain(id);
        await expectD1EqualsLog(id);
      }),
      { numRuns: HISTORIES.numRuns },
    );
    await expectJournalBalanced();
  });

  it("writes each event once even when every statement is sent twice", async () => {
    const id = await openAccount(100);
    await setSink(id, (real) => async (statements) => {
      await real(statements);
      return real(statements);
    });
    for (let i = 0; i < 5; i++) await api("POST", `/v1/accounts/${id}/charges`, { charge_id: `c${i}`, amount: 3 });
    await drain(id);
    expect(await d1EventCount(id)).toBe(7);
    await expectD1EqualsLog(id);
  });
});

// A failed flush schedules its retry on the alarm, a second or more later. Each test here runs
// on a ManualClock a day ahead of the wall clock, so that alarm never fires by itself mid-test
// on a slow machine: retries happen only when the test runs the alarm or drains.
describe("projection under D1 failures", () => {
  it("loses and duplicates nothing while D1 is down, and catches up through the alarm", async () => {
    useManualClock();
    const id = await openAccount(1_000);
    await drain(id);
    let calls = 0;
    await setSink(id, () => async () => {
      calls += 1;
      throw new Error("D1_ERROR: injected outage");
    });
    const responses = [];
    for (let i = 0; i < 10; i++) {
      responses.push(await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: `r${i}`, amount: 10 }));
    }
    // Every command answered normally: D1's outage is not the caller's problem.
    expect(responses.map((r) => r.status)).toEqual(Array(10).fill(201));
    expect(calls).toBeGreaterThan(0);
    const down = await stub(id).projectionStatus();
    expect(down.projected_seq).toBe(2);
    expect(down.last_seq).toBe(12);
    expect(down.failures).toBeGreaterThan(0);
    expect(down.retry_at).not.toBeNull();
    expect(await d1EventCount(id)).toBe(2);
    // The retry is scheduled on the alarm, no later than the backoff.
    const alarm = await runInDurableObject(stub(id), (_i: AccountDurableObject, state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();
    expect(alarm as number).toBeLessThanOrEqual(Date.parse(down.retry_at as string));

    await setSink(id, (real) => real);
    expect(await catchUpThroughAlarm(id)).toBeGreaterThanOrEqual(1);
    expect(await d1EventCount(id)).toBe(12);
    await expectD1EqualsLog(id);
  });

  it("survives a flaky D1 (half the batches fail) under concurrent commands", async () => {
    useManualClock();
    const id = await openAccount(5_000);
    let n = 0;
    await setSink(id, (real) => async (statements) => {
      n += 1;
      if (n % 2 === 0) throw new Error("D1_ERROR: injected flake");
      return real(statements);
    });
    const writes = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        i % 3 === 0
          ? api("POST", `/v1/accounts/${id}/charges`, { charge_id: `c${i}`, amount: 7 })
          : api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: `r${i}`, amount: 11 }),
      ),
    );
    expect(writes.every((w) => w.status === 201)).toBe(true);
    await catchUpThroughAlarm(id);
    await setSink(id, (real) => real);
    await drain(id);
    expect(await d1EventCount(id)).toBe(32);
    await expectD1EqualsLog(id);
  });

  it("re-applies a batch whose answer was lost without duplicating it", async () => {
    useManualClock();
    const id = await openAccount(100);
    await drain(id);
    let lose = true;
    const lost = deferred();
    await setSink(id, (real) => async (statements) => {
      const result = await real(statements);
      if (lose) {
        lose = false;
        lost.resolve();
        throw new Error("network: answer lost after D1 committed");
      }
      return result;
    });
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c", amount: 40 });
    // The flush runs after the response: wait for its D1 write (and lost answer), not for time.
    await lost.promise;
    expect((await stub(id).projectionStatus()).projected_seq).toBe(2);
    expect(await d1EventCount(id)).toBe(3);
    await catchUpThroughAlarm(id);
    expect(await d1EventCount(id)).toBe(3);
    await expectD1EqualsLog(id);
  });

  it("answers commands while a D1 write hangs, and projects what came meanwhile after it", async () => {
    useManualClock();
    const id = await openAccount(100);
    await drain(id);
    const gate = deferred();
    let pending = 0;
    await setSink(id, (real) => async (statements) => {
      pending += 1;
      await gate.promise;
      pending -= 1;
      return real(statements);
    });
    const first = await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 10 });
    const second = await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c2", amount: 10 });
    // Both answered while the first flush is still waiting on D1.
    expect([first.status, second.status]).toEqual([201, 201]);
    expect(pending).toBe(1);
    gate.resolve();
    await drain(id);
    expect(await d1EventCount(id)).toBe(4);
    await expectD1EqualsLog(id);
  });
});

/** D1 rows written and statements run by the direct delivery while `run` runs (D1's own meta.rows_written). */
async function measure(run: () => Promise<void>): Promise<{ rows: number; statements: number; events: number }> {
  const before = { ...applyStats };
  await run();
  return {
    rows: applyStats.rowsWritten - before.rowsWritten,
    statements: applyStats.statements - before.statements,
    events: applyStats.eventsApplied - before.eventsApplied,
  };
}

describe("projection cost", () => {
  it("writes about one D1 row per flush at steady state, one flush per reserve+capture pair", async () => {
    // A clock that stays in one hour: no rollup bucket closes.
    useManualClock();
    const id = await openAccount(100_000);
    await drain(id);
    // Each pair's flush is awaited (drain) before the next pair: two events per flush, the
    // 1,000-account bench's shape (a caller reserves then captures within the coalescing window).
    const cost = await measure(async () => {
      for (let i = 0; i < 40; i++) {
        await stub(id).executeBatch(
          [
            {
              type: "ReserveFunds",
              reservation_id: `r${i}`,
              amount: 10,
              ttl_seconds: 600,
              on_expiry: "release",
              context: {},
              metadata: {},
            },
            {
              type: "CaptureReservation",
              reservation_id: `r${i}`,
              amount: 7,
              allow_overage: false,
              usage: { input_tokens: 5 },
              metadata: {},
            },
          ],
          true,
        );
        await drain(id);
      }
    });
    expect(cost.events).toBe(80);
    const perEvent = cost.rows / cost.events;
    if (printMeasurements())
      console.log(JSON.stringify({ d1_rows_written_per_event_two_per_flush: perEvent, ...cost }));
    // Per flush: the account row (its snapshot, tail and open rollups) and its `available` index
    // entry, and every 16 events a sealed page with its two index entries (unique key, time). The hold opened and closed within the flush writes nothing (its delete finds no row).
    expect(perEvent).toBeLessThanOrEqual(1.5);
    // Without the queue, two statements per flush (the closed hold's delete and the account
    // upsert), and the sealed page's every eighth flush; the queue's consumer shares them among
    // up to 100 messages (bench: d1_statements_per_1000_events).
    expect(cost.statements / cost.events).toBeLessThanOrEqual(1.1);
  });

  it("writes one account row per flush however many events the flush carries", async () => {
    useManualClock();
    const id = await openAccount(100_000);
    await drain(id);
    // D1 down while 100 commands commit: they reach D1 in one flush.
    await setSink(id, () => async () => {
      throw new Error("D1_ERROR: injected outage");
    });
    const operations = Array.from({ length: 100 }, (_, i) =>
      i % 2 === 0
        ? { op: "charge", charge_id: `c${i}`, amount: 3, context: { model: "m1" } }
        : { op: "charge", charge_id: `c${i}`, amount: 3, context: { model: "m2", provider: "p" } },
    );
    expect((await api("POST", `/v1/accounts/${id}/batch`, { operations })).status).toBe(200);
    await setSink(id, (real) => real);
    const cost = await measure(() => drain(id));
    expect(cost.events).toBe(100);
    if (printMeasurements())
      console.log(JSON.stringify({ d1_rows_written_per_event_100_per_flush: cost.rows / 100, ...cost }));
    // Seven messages (one per page) applied in one D1 batch: 6 sealed pages with their two index
    // entries each, the account row once with its index entry; no rollup bucket closes.
    expect(cost.rows / cost.events).toBeLessThanOrEqual(0.25);
    expect(cost.statements).toBeLessThanOrEqual(4);
    await expectD1EqualsLog(id);
  });
});

describe("waiting for a hold's settlement", () => {
  it("waits only while a few pending events open a hold that is still open", async () => {
    useManualClock();
    const id = await openAccount(1_000);
    await drain(id);
    // Deliveries refused: the events stay pending, as during a coalescing window.
    await setSink(id, () => async () => {
      throw new Error("D1_ERROR: held back");
    });
    const waiting = () =>
      runInDurableObject(stub(id), (instance: AccountDurableObject) => instance.projector.holdWorthWaiting());
    expect(await waiting()).toBe(false);
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r", amount: 10 });
    expect(await waiting()).toBe(true);
    await api("POST", `/v1/accounts/${id}/reservations/r/capture`, { amount: 4 });
    expect(await waiting()).toBe(false);
    // A busy account never waits: more than PROJECTION_HOLD_WAIT_EVENTS_MAX events pending.
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 1 });
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c2", amount: 1 });
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r2", amount: 10 });
    expect(await waiting()).toBe(false);
    await setSink(id, (real) => real);
    await drain(id);
    await setSink(id, () => async () => {
      throw new Error("D1_ERROR: held back");
    });
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r3", amount: 10 });
    await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c", amount: 1 });
    expect(await waiting()).toBe(true);
    // Released, the hold is closed by a pending event too: nothing left to wait for.
    await api("POST", `/v1/accounts/${id}/reservations/r3/release`, {});
    expect(await waiting()).toBe(false);
    await setSink(id, (real) => real);
    await drain(id);
    await expectD1EqualsLog(id);
  });
});

describe("the cursor's own write", () => {
  it("is written after every delivery by default (PROJECTION_CURSOR_WITH_COMMAND off)", async () => {
    useManualClock();
    const id = await openAccount(1_000);
    await drain(id);
    for (let i = 0; i < 2; i++) await api("POST", `/v1/accounts/${id}/charges`, { charge_id: `c${i}`, amount: 3 });
    const stored = await runInDurableObject(stub(id), async (instance: AccountDurableObject, state) => {
      expect(instance.projector.cursorWithCommand).toBe(false);
      await instance.projector.flush();
      return state.storage.sql.exec<{ projected_seq: number }>("SELECT projected_seq FROM projection").one()
        .projected_seq;
    });
    expect(stored).toBe(4);
    await evictDurableObject(stub(id));
    expect((await stub(id).projectionStatus()).projected_seq).toBe(4);
  });

  it("with the switch on, rides on the next command's commit; a restart before it sends again, as duplicates", async () => {
    useManualClock();
    const id = await openAccount(1_000);
    await runInDurableObject(stub(id), (instance: AccountDurableObject) => {
      instance.projector.cursorWithCommand = true;
    });
    await drain(id);
    for (let i = 0; i < 4; i++) await api("POST", `/v1/accounts/${id}/charges`, { charge_id: `c${i}`, amount: 3 });
    const stored = () =>
      runInDurableObject(stub(id), async (instance: AccountDurableObject, state) => {
        await instance.projector.flush();
        return state.storage.sql.exec<{ projected_seq: number }>("SELECT projected_seq FROM projection").one()
          .projected_seq;
      });
    // Each charge's commit wrote the cursor of the flush before it: the last flush's is not written.
    expect(await stored()).toBe(5);
    expect((await stub(id).projectionStatus()).projected_seq).toBe(6);
    await evictDurableObject(stub(id));
    expect((await stub(id).projectionStatus()).projected_seq).toBe(5);
    const before = applyStats.eventsApplied;
    await drain(id);
    // The resent message was a duplicate: nothing applied twice.
    expect(applyStats.eventsApplied).toBe(before);
    expect(await stored()).toBe(6);
    expect(await d1EventCount(id)).toBe(6);
    await expectD1EqualsLog(id);
  });
});
