/**
 * Idempotency keys inside the account object: where a key is recorded is checked on every
 * append (a key the lookup would not find rolls the command back), stored keys are respelled
 * by the schema migration, and ids containing ':' no longer collide; rows stored as whole JSON
 * states are rebuilt as records and columns by a later migration.
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import {
  CHARGE_FUNDING_COLUMNS,
  CHARGE_LIMITS_COLUMN,
  ENDED_ROWS_AS_RECORDS,
  respellOperationKeys,
} from "../../durable-objects/schema";
import type { AccountStore } from "../../durable-objects/store";
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

describe("the migration to ended reservations as records and charges as columns", () => {
  it("rebuilds rows stored as whole JSON states, and the object answers as before", async () => {
    const id = await openAccount(1_000);
    const post = (path: string, body: unknown) => api("POST", `/v1/accounts/${id}${path}`, body);
    await post("/reservations", { reservation_id: "open", amount: 10, context: { model: "m" } });
    await post("/reservations", { reservation_id: "cap", amount: 300, metadata: { b: "1", a: "2" } });
    await post("/reservations/cap/extend", { ttl_seconds: 7_200, extension_id: "x", on_expiry: "capture" });
    const capture = await post("/reservations/cap/capture", { amount: 120 });
    await post("/reservations", { reservation_id: "rel", amount: 20 });
    await post("/reservations/rel/release", {});
    await post("/charges", { charge_id: "ch", amount: 40 });
    await post("/refunds", { refund_id: "f1", charge_id: "ch", amount: 15 });
    const reads = async () =>
      Promise.all(
        ["open", "cap", "rel"].map(async (r) => (await api("GET", `/v1/accounts/${id}/reservations/${r}`)).body),
      );
    const before = await reads();
    const rows = await runInDurableObject(stub(id), (instance: AccountDurableObject, state) => {
      const sql = state.storage.sql;
      const store = (instance as unknown as { store: AccountStore }).store;
      const ids = (table: string, column: string) =>
        sql
          .exec<Record<string, string>>(`SELECT ${column} AS id FROM ${table}`)
          .toArray()
          .map((r) => r.id as string);
      const reservations = ids("reservations", "reservation_id").map((r) => store.reservation(r));
      const charges = ids("charges", "charge_id").map((c) => store.charge(c));
      // Back to the layout of migration 1: every row a whole JSON state.
      sql.exec(`DROP TABLE reservations; DROP TABLE charges;
        CREATE TABLE reservations (reservation_id TEXT PRIMARY KEY, status TEXT NOT NULL, amount INTEGER NOT NULL,
          expires_at_ms INTEGER NOT NULL, state TEXT NOT NULL) WITHOUT ROWID;
        CREATE INDEX reservations_open_by_expiry ON reservations (expires_at_ms) WHERE status = 'open';
        CREATE TABLE charges (charge_id TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;`);
      for (const r of reservations) {
        if (r === null) continue;
        sql.exec(
          "INSERT INTO reservations VALUES (?, ?, ?, ?, ?)",
          r.reservation_id,
          r.status,
          r.amount,
          Date.parse(r.expires_at),
          JSON.stringify(r),
        );
      }
      for (const c of charges)
        if (c !== null) sql.exec("INSERT INTO charges VALUES (?, ?)", c.charge_id, JSON.stringify(c));
      sql.exec(ENDED_ROWS_AS_RECORDS);
      // The later migration of issue 27 adds what paid for each charge: these were charged with lots.
      sql.exec(CHARGE_FUNDING_COLUMNS);
      sql.exec(CHARGE_LIMITS_COLUMN);
      for (const c of charges) {
        if (c === null) continue;
        sql.exec("UPDATE charges SET funded_by = ? WHERE charge_id = ?", JSON.stringify(c.funded_by), c.charge_id);
        if (c.returned.length > 0) {
          sql.exec("UPDATE charges SET returned = ? WHERE charge_id = ?", JSON.stringify(c.returned), c.charge_id);
        }
      }
      return {
        reservations: sql
          .exec("SELECT reservation_id, status, end_seq IS NULL AS open, state IS NULL AS stateless FROM reservations")
          .toArray(),
        charges: sql.exec("SELECT charge_id, kind, amount, refunded FROM charges ORDER BY charge_id").toArray(),
      };
    });
    expect(rows.reservations).toEqual([
      { reservation_id: "cap", status: "captured", open: 0, stateless: 1 },
      { reservation_id: "open", status: "open", open: 1, stateless: 0 },
      { reservation_id: "rel", status: "released", open: 0, stateless: 1 },
    ]);
    expect(rows.charges).toEqual([
      { charge_id: "cap", kind: "capture", amount: 120, refunded: 0 },
      { charge_id: "ch", kind: "direct", amount: 40, refunded: 15 },
    ]);
    await evictDurableObject(stub(id));
    expect(await reads()).toEqual(before);
    const replay = await post("/reservations/cap/capture", { amount: 120 });
    expect([replay.status, replay.body]).toEqual([capture.status, capture.body]);
    const over = await post("/refunds", { refund_id: "f2", charge_id: "ch", amount: 26 });
    expect([over.status, over.body.code]).toEqual([422, "refund_exceeds_charge"]);
    expect((await post("/refunds", { refund_id: "f3", charge_id: "ch", amount: 25 })).status).toBe(201);
  });
});
