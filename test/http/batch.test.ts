/**
 * The batch API: up to 1,000 operations for one account, decided in order against the state the
 * previous left, committed in one transaction, per-item results like the single calls, atomic
 * batches that commit nothing on a rejection, per-item idempotency.
 */
import { afterEach, describe, expect, it } from "vitest";
import { BATCH_OPERATIONS_MAX } from "../../src/domain/limits";
import { account, api, expectEveryAccountConsistent, openAccount } from "../helpers";
import { logOf } from "../projection/support";

afterEach(expectEveryAccountConsistent);

describe("batch", () => {
  it("decides each item against the state the previous one left, with the single calls' statuses", async () => {
    const id = await openAccount(100);
    const response = await api("POST", `/v1/accounts/${id}/batch`, {
      operations: [
        { op: "reserve", reservation_id: "r1", amount: 80 },
        { op: "reserve", reservation_id: "r2", amount: 30 }, // only 20 left
        { op: "capture", reservation_id: "r1", amount: 50 },
        { op: "reserve", reservation_id: "r2", amount: 30 }, // now 50 left
        { op: "charge", charge_id: "c1", amount: 10 },
        { op: "refund", refund_id: "f1", charge_id: "c1", amount: 4 },
        { op: "extend", reservation_id: "r2", ttl_seconds: 60 },
        { op: "release", reservation_id: "r2" },
        { op: "credit", credit_id: "top", amount: 1 },
        { op: "capture", reservation_id: "nope", amount: 1 },
      ],
    });
    expect(response.status).toBe(200);
    expect(response.body.committed).toBe(true);
    const statuses = response.body.results.map((r: { status: number }) => r.status);
    expect(statuses).toEqual([201, 402, 200, 201, 201, 201, 200, 200, 201, 404]);
    expect(response.body.results[1].body).toMatchObject({ code: "insufficient_funds", available: 20 });
    expect(response.body.results[2].body).toMatchObject({ charge: { amount: 50 }, account: { balance: 50 } });
    expect(await account(id)).toMatchObject({ balance: 100 - 50 - 10 + 4 + 1, reserved: 0 });
    // Each item answered exactly as the single call does: a retry of one is a replay of it.
    const single = await api("POST", `/v1/accounts/${id}/reservations/r1/capture`, { amount: 50 });
    expect(single.headers.get("idempotent-replayed")).toBe("true");
    expect(single.body).toEqual(response.body.results[2].body);
  });

  it("replays per item: the same batch again changes nothing and marks every accepted item replayed", async () => {
    const id = await openAccount(100);
    const body = {
      operations: [
        { op: "charge", charge_id: "c1", amount: 10 },
        { op: "credit", credit_id: "k1", amount: 5 },
      ],
    };
    const first = await api("POST", `/v1/accounts/${id}/batch`, body);
    const second = await api("POST", `/v1/accounts/${id}/batch`, body);
    expect(second.body.results.map((r: { replayed?: boolean }) => r.replayed)).toEqual([true, true]);
    expect(second.body.results.map((r: { body: unknown }) => r.body)).toEqual(
      first.body.results.map((r: { body: unknown }) => r.body),
    );
    expect((await logOf(id)).length).toBe(4);
  });

  it("commits nothing when an atomic batch meets a rejection", async () => {
    const id = await openAccount(100);
    const before = await account(id);
    const response = await api("POST", `/v1/accounts/${id}/batch`, {
      atomic: true,
      operations: [
        { op: "charge", charge_id: "c1", amount: 60 },
        { op: "reserve", reservation_id: "r1", amount: 30 },
        { op: "charge", charge_id: "c2", amount: 60 }, // insufficient: aborts the lot
        { op: "credit", credit_id: "k", amount: 5 },
      ],
    });
    expect(response.body.committed).toBe(false);
    expect(response.body.results.map((r: { body: { code?: string } }) => r.body.code)).toEqual([
      "batch_aborted",
      "batch_aborted",
      "insufficient_funds",
      "batch_aborted",
    ]);
    expect(await account(id)).toEqual(before);
    // Nothing was consumed: the same ids work afterwards.
    expect((await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 60 })).status).toBe(201);
  });

  it("takes 1,000 operations and refuses 1,001; a batch body may exceed the single-call size limit", async () => {
    const id = await openAccount(0);
    const operations = Array.from({ length: BATCH_OPERATIONS_MAX }, (_, i) => ({
      op: "credit",
      credit_id: `credit_number_${String(i).padStart(6, "0")}`,
      amount: 1,
      reason: "bulk top-up from the batch endpoint",
    }));
    const response = await api("POST", `/v1/accounts/${id}/batch`, { operations });
    expect(response.status).toBe(200);
    expect(response.body.results.every((r: { status: number }) => r.status === 201)).toBe(true);
    expect(await account(id)).toMatchObject({ balance: BATCH_OPERATIONS_MAX, last_seq: BATCH_OPERATIONS_MAX + 1 });
    const tooMany = await api("POST", `/v1/accounts/${id}/batch`, {
      operations: [...operations, { op: "credit", credit_id: "one_more", amount: 1 }],
    });
    expect(tooMany.status).toBe(400);
    expect((await api("POST", `/v1/accounts/${id}/batch`, { operations: [] })).status).toBe(400);
    expect((await api("POST", `/v1/accounts/${id}/batch`, { operations: [{ op: "adjust", amount: 1 }] })).status).toBe(
      400,
    );
  });

  it("answers 404 for an unknown account", async () => {
    const response = await api("POST", "/v1/accounts/nobody/batch", {
      operations: [{ op: "credit", credit_id: "k", amount: 1 }],
    });
    expect(response.status).toBe(200);
    expect(response.body.results[0]).toMatchObject({ status: 404, body: { code: "account_not_found" } });
  });
});
