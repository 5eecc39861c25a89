/**
 * The persistent containers of a book of lots (src/domain/lot-index.ts) against the plain ones
 * they replace: a Map, and a sorted array. Every version stays as it was after later changes.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LOT_MAP_BUCKETS, LOT_ORDER_CHUNK, LotMap, LotOrder } from "../../src/domain/lot-index";
import { burnOrder, type Lot } from "../../src/domain/lots";

const lotNamed = (id: number, remaining = 1, priority = id % 7): Lot => ({
  lot_id: `lot_${id}`,
  kind: "paid",
  priority,
  amount: remaining,
  remaining,
  held: 0,
  expired: 0,
  expires_at_ms: id % 3 === 0 ? null : (id % 11) * 1_000,
  created_seq: id,
});

const ops = fc.array(
  fc.record({ set: fc.boolean(), id: fc.integer({ min: 0, max: 600 }), remaining: fc.integer({ min: 0, max: 9 }) }),
  { minLength: 1, maxLength: 1_500, size: "max" },
);

describe("LotMap", () => {
  it("answers as a Map would, keeps every older version whole, and names what changed", () => {
    fc.assert(
      fc.property(ops, (steps) => {
        let map = LotMap.empty<Lot>();
        const model = new Map<string, Lot>();
        const versions: [LotMap<Lot>, Map<string, Lot>][] = [];
        for (const [i, step] of steps.entries()) {
          const before = map;
          const lot = lotNamed(step.id, step.remaining);
          if (step.set) {
            map = map.with([lot]);
            model.set(lot.lot_id, lot);
            expect(map.changedSince(before)).toEqual([lot]);
          } else {
            map = map.without([lot.lot_id]);
            model.delete(lot.lot_id);
            expect(map.changedSince(before)).toEqual([]);
          }
          if (i % 50 === 0) versions.push([map, new Map(model)]);
        }
        versions.push([map, model]);
        for (const [version, expected] of versions) {
          expect(version.size).toBe(expected.size);
          const entries = [...version].sort(([a], [b]) => (a < b ? -1 : 1));
          expect(entries.map(([id]) => id)).toEqual([...expected.keys()].sort());
          for (const [id, lot] of entries) expect(lot === expected.get(id)).toBe(true);
        }
      }),
      { numRuns: 25, endOnFailure: true },
    );
  });

  it("copies only the buckets a change touches", () => {
    const lots = Array.from({ length: 10 * LOT_MAP_BUCKETS }, (_, i) => lotNamed(i));
    const map = LotMap.of(lots);
    const changed = { ...lotNamed(5), remaining: 0 };
    const after = map.with([changed]);
    expect(after.changedSince(map)).toEqual([changed]);
    expect(map.changedSince(after)).toEqual([lotNamed(5)]);
    expect(after.get("lot_5")).toBe(changed);
    expect(map.get("lot_5")).toEqual(lotNamed(5));
  });
});

describe("LotOrder", () => {
  it("iterates as the sorted array would, splitting and dropping chunks, every version whole", () => {
    fc.assert(
      fc.property(ops, (steps) => {
        let order = LotOrder.of([], burnOrder);
        let model: Lot[] = [];
        const versions: [LotOrder<Lot>, Lot[]][] = [];
        for (const step of steps) {
          const lot = lotNamed(step.id);
          const present = model.some((l) => l.lot_id === lot.lot_id);
          if (step.set && !present) {
            order = order.with(lot);
            model = [...model, lot].sort(burnOrder);
          } else if (!step.set && present) {
            order = order.without(lot);
            model = model.filter((l) => l.lot_id !== lot.lot_id);
          } else if (step.set) {
            expect(() => order.with(lot)).toThrow(/once/);
          } else {
            expect(() => order.without(lot)).toThrow(/is in the order/);
          }
          versions.push([order, model]);
        }
        for (const [version, expected] of versions) {
          expect(version.size).toBe(expected.length);
          expect([...version].map((l) => l.lot_id)).toEqual(expected.map((l) => l.lot_id));
        }
      }),
      { numRuns: 25, endOnFailure: true },
    );
  });

  it("builds from many lots in chunks that later inserts split", () => {
    const lots = Array.from({ length: 5 * LOT_ORDER_CHUNK }, (_, i) => lotNamed(i));
    let order = LotOrder.of(lots, burnOrder);
    const sorted = [...lots].sort(burnOrder).map((l) => l.lot_id);
    expect([...order].map((l) => l.lot_id)).toEqual(sorted);
    const more = Array.from({ length: 2 * LOT_ORDER_CHUNK }, (_, i) => lotNamed(10_000 + i, 1, 3));
    for (const lot of more) order = order.with(lot);
    expect([...order].map((l) => l.lot_id)).toEqual([...lots, ...more].sort(burnOrder).map((l) => l.lot_id));
  });
});
