/**
 * Idempotency keys inside the account object: where a key is recorded is checked on every
 * append (a key the lookup would not find rolls the command back), stored keys are respelled
 * by the schema migration, and ids containing ':' no longer collide.
 */
import { runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { respellOperationKeys } from "../../durable-objects/schema";
import { encodeKey, KEY_LOCATIONS, type KeyLocation } from "../../src/domain/keys";
import { AssertionError } from "../../src/domain/money";
import { api, expectEveryAccountConsistent, openAccount, stub } from "../helpers";

afterEach(expectEveryAccountConsistent);

const count = (id: string, table: string) =>
  runInDurableObject(
    stub(id),
    (_i: AccountDurableObject, state) =>
      state.storage.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`).one().n,
  );

describe("idempotency keys in the account object", () => {
  it("refuses to commit a command whose key would be recorded where the lookup does not read", async () => {
    const id = await openAccount(100);
    const events = await count(id, "events");
    // Simulates a new command whose key kind was given a wrong location: its credit would be
    // applied without a key record, and a retry would apply it twice.
    const locations = KEY_LOCATIONS as unknown as Record<string, KeyLocation>;
    const real = locations.credit as KeyLocation;
    locations.credit = { in: "reservation", seq: "reserve_seq" };
    try {
      await runInDurableObject(stub(id), async (instance: AccountDurableObject) => {
        const credit = { type: "CreditFunds", credit_id: "c2", amount: 5, reason: null, metadata: {} } as const;
        await expect(instance.execute(credit)).rejects.toThrow(AssertionError);
      });
    } finally {
      locations.credit = real;
    }
    expect(await count(id, "events")).toBe(events);
    const first = await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "c2", amount: 5 });
    const retry = await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "c2", amount: 5 });
    expect([first.status, retry.status, retry.headers.get("idempotent-replayed")]).toEqual([201, 201, "true"]);
    expect(await count(id, "events")).toBe(events + 1);
  });

  it("extends two reservations whose ids collided when keys were joined with ':'", async () => {
    const id = await openAccount(1_000);
    for (const r of ["r:1", "r"]) {
      expect((await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: r, amount: 10 })).status).toBe(
        201,
      );
    }
    const a = await api("POST", `/v1/accounts/${id}/reservations/r:1/extend`, { ttl_seconds: 600, extension_id: "x" });
    const b = await api("POST", `/v1/accounts/${id}/reservations/r/extend`, { ttl_seconds: 600, extension_id: "1:x" });
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(b.headers.get("idempotent-replayed")).toBeNull();
    expect(b.body.reservation.reservation_id).toBe("r");
  });

  it("respells keys stored in the old 'kind:id' form from the events that recorded them", async () => {
    const creditKey = { op: "credit", credit_id: "initial" } as const;
    const extendKey = { op: "extend", reservation_id: "r:1", extension_id: "x" } as const;
    const id = await openAccount(100);
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r:1", amount: 10 });
    await api("POST", `/v1/accounts/${id}/reservations/r:1/extend`, { ttl_seconds: 600, extension_id: "x" });
    const keys = await runInDurableObject(stub(id), (_i: AccountDurableObject, state) => {
      const sql = state.storage.sql;
      // Back to the old spelling, as an object written before the migration holds them.
      sql.exec("UPDATE operations SET key = 'credit:initial' WHERE key = ?", encodeKey(creditKey));
      sql.exec("UPDATE operations SET key = 'extend:r:1:x' WHERE key = ?", encodeKey(extendKey));
      respellOperationKeys(sql);
      return sql
        .exec<{ key: string }>("SELECT key FROM operations ORDER BY key")
        .toArray()
        .map((r) => r.key);
    });
    expect(keys).toEqual([encodeKey(creditKey), encodeKey(extendKey)].sort());
    const retry = await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "initial", amount: 100 });
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
  });
});
