/**
 * A batch resolves each distinct price once, in D1 batches, not one sequential lookup per item
 * (issue 11). Counted on a D1 stand-in that records what it is asked.
 */
import { describe, expect, it } from "vitest";
import type { PriceRef } from "../../src/domain/pricing";
import { PriceCache } from "../../src/pricing/cache";
import { PRICE_RESOLVE_BATCH_MAX } from "../../src/pricing/store";

function countingDb() {
  const calls = { batches: 0, statements: 0, firsts: 0, alls: 0 };
  const statement = {
    bind: () => statement,
    first: async () => {
      calls.firsts += 1;
      return null;
    },
    all: async () => {
      calls.alls += 1;
      return { results: [] };
    },
  };
  const db = {
    prepare: () => statement,
    batch: async (statements: unknown[]) => {
      calls.batches += 1;
      calls.statements += statements.length;
      return statements.map(() => ({ results: [] }));
    },
  };
  return { db: db as unknown as D1Database, calls };
}

const price = (model: string): PriceRef => ({ service_id: "chat", provider: "p", model });

describe("price resolution for a batch", () => {
  it("reads each distinct price once, in batches of PRICE_RESOLVE_BATCH_MAX", async () => {
    const { db, calls } = countingDb();
    const cache = new PriceCache(db);
    const items = Array.from({ length: 1_000 }, (_, i) => price(`m${i % 250}`));
    await cache.prefetch(items);
    for (const item of items) expect(await cache.rules(item)).toEqual([]);
    expect(calls.statements).toBe(250);
    expect(calls.batches).toBe(Math.ceil(250 / PRICE_RESOLVE_BATCH_MAX));
    expect(calls.alls + calls.firsts).toBe(0);
  });

  it("does not read a price again once it is resolved", async () => {
    const { db, calls } = countingDb();
    const cache = new PriceCache(db);
    await cache.rules(price("a"));
    await cache.prefetch([price("a"), price("b"), price("b")]);
    expect(calls.statements).toBe(2);
  });
});
