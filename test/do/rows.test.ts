/**
 * What a command costs in SQLite rows written (the runtime's own counter, which is what
 * Durable Objects bill). Deterministic, so it is a budget test, not a benchmark.
 * PRINT_MEASUREMENTS=1 prints the measured rows per command.
 */
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { printMeasurements } from "../budget";
import { api, openAccount, stub } from "../helpers";

/** The object's own counters of SQLite rows written: its commits', and the projection cursor's. */
function counters(accountId: string) {
  return runInDurableObject(stub(accountId), (instance: AccountDurableObject) => ({
    rows_written: instance.store.rowsWritten,
    projection_rows_written: instance.projector.rowsWritten,
  }));
}

/** Rows written by one command's commit, and by the projection cursor once it is in D1. */
async function rowsFor(accountId: string, call: () => Promise<{ status: number }>): Promise<number> {
  await stub(accountId).catchUp();
  const before = await counters(accountId);
  const response = await call();
  expect(response.status).toBeLessThan(300);
  const status = await stub(accountId).catchUp();
  expect(status.projected_seq).toBe(status.last_seq);
  const after = await counters(accountId);
  const projection = after.projection_rows_written - before.projection_rows_written;
  // One command alone is one flush: exactly one cursor row (batching amortises it under load).
  expect(projection).toBe(1);
  return after.rows_written - before.rows_written;
}

describe("rows written per command", () => {
  it("stays within the budget of each command", async () => {
    const id = await openAccount(10_000);
    const post = (path: string, body: unknown) => () => api("POST", `/v1/accounts/${id}${path}`, body);
    const rows = {
      credit: await rowsFor(id, post("/credits", { credit_id: "c", amount: 5 })),
      reserve_first: await rowsFor(id, post("/reservations", { reservation_id: "r1", amount: 5, ttl_seconds: 60 })),
      reserve_later_expiry: await rowsFor(
        id,
        post("/reservations", { reservation_id: "r2", amount: 5, ttl_seconds: 90 }),
      ),
      capture: await rowsFor(id, post("/reservations/r1/capture", { amount: 3 })),
      release: await rowsFor(id, post("/reservations/r2/release", {})),
      charge: await rowsFor(id, post("/charges", { charge_id: "ch", amount: 5 })),
      refund: await rowsFor(id, post("/refunds", { refund_id: "f", charge_id: "ch", amount: 1 })),
      adjustment: await rowsFor(id, post("/adjustments", { adjustment_id: "a", amount: -1, reason: "fix" })),
    };
    if (printMeasurements()) console.log(JSON.stringify({ rows_written_per_command: rows }));
    // One events row each, plus the entity rows the command changes (the open-hold index counts as one);
    // the projection cursor adds one row per flush on top (asserted in rowsFor).
    const budget = {
      credit: 2,
      reserve_first: 3,
      reserve_later_expiry: 3,
      capture: 3,
      release: 2,
      charge: 2,
      refund: 3,
      adjustment: 2,
    };
    for (const [command, n] of Object.entries(rows)) {
      expect(n, command).toBeGreaterThan(0);
      expect(n, command).toBeLessThanOrEqual(budget[command as keyof typeof budget]);
    }
  });
});

describe("rows written by the low-balance threshold (issue 14)", () => {
  it("costs nothing while no threshold is crossed, and two rows (outbox event, low flag) for the command that crosses", async () => {
    const id = await openAccount(10_000);
    const post = (path: string, body: unknown) => () => api("POST", `/v1/accounts/${id}${path}`, body);
    expect(await rowsFor(id, () => api("PATCH", `/v1/accounts/${id}`, { low_balance_threshold: 5_000 }))).toBe(2);
    const rows = {
      charge_above: await rowsFor(id, post("/charges", { charge_id: "c1", amount: 4_000 })),
      charge_crossing: await rowsFor(id, post("/charges", { charge_id: "c2", amount: 2_000 })),
      charge_below: await rowsFor(id, post("/charges", { charge_id: "c3", amount: 1 })),
      credit_recovering: await rowsFor(id, post("/credits", { credit_id: "t1", amount: 5_000 })),
    };
    if (printMeasurements()) console.log(JSON.stringify({ rows_written_low_balance: rows }));
    expect(rows).toEqual({ charge_above: 2, charge_crossing: 4, charge_below: 2, credit_recovering: 4 });
  });
});
