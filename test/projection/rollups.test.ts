/**
 * Rollups (issue 12) equal a fold of the log.
 *
 * Pure (src/projection/rollups.ts): over random timed logs of the real decider, the rows equal
 * an independent aggregation written here; folding the log in any split gives the same rows; the
 * object keeps only the current buckets; each row's L and R balance its movements; the kept
 * state survives its encoding.
 *
 * In D1, through real account objects: the batches a history's projection sent (of random sizes,
 * some failing and retried) are applied again redelivered, reordered and duplicated, and the
 * rollups still equal the fold of the log. An object projected before rollups existed rebuilds
 * them once.
 *
 * Budget (test/budget.ts): each property runs a fixed 25 cases; PROPERTY_RUNS (pure) and
 * HISTORY_RUNS (objects) raise them.
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import type { LedgerEvent } from "../../src/domain/events";
import { applyMessages } from "../../src/projection/consumer/apply";
import { directDelivery } from "../../src/projection/producer/delivery";
import type { Delivery } from "../../src/projection/producer/projector";
import {
  bucketOf,
  decodeRollupState,
  encodeRollupState,
  foldRollups,
  lotKindsOfLog,
  NO_DIMENSION,
  ROLLUP_DIMENSIONS,
  ROLLUP_SUMS,
  type Rollup,
  type RollupState,
  rollupsOfLog,
} from "../../src/projection/rollups";
import type { ProjectionMessage } from "../../src/projection/wire";
import { shardsOf } from "../../src/read-side/shards";
import { budget } from "../budget";
import { expectEveryAccountConsistent, stub, useManualClock } from "../helpers";
import { d1Rollups, dbOf, drain, editRollups, expectD1EqualsLog, expectRollupsEqualLog, logOf } from "./support";
import { ceilDay, DAY_MS, runTimed, timedLog, timedStepsArb } from "./timed";

afterEach(expectEveryAccountConsistent);

const T0 = Date.parse("2026-11-28T10:17:00.000Z");

type Plain = Record<string, string | number>;

/** An independent aggregation of a log by (grain, bucket, dimensions): what the rollups must hold. */
function reference(log: readonly LedgerEvent[]): Map<string, Plain> {
  const rows = new Map<string, Plain>();
  const kinds = new Map<string, string>();
  for (const e of log) {
    if ((e.type === "FundsCredited" || e.type === "BalanceAdjusted") && e.grant !== undefined) {
      kinds.set(e.lot_id as string, e.grant.kind);
    }
    if (e.type === "ChargeRefunded") for (const lot of e.created_lots ?? []) kinds.set(lot.lot_id, lot.kind);
    const context = "context" in e ? e.context : {};
    const caller = "caller" in e ? (e.caller ?? {}) : {};
    const dims: string[] = [
      context.service_id,
      context.provider,
      context.model,
      context.alias,
      caller.api_key_id,
      caller.project_id,
    ].map((d) => d ?? "");
    for (const [grain, bucket] of [
      ["hour", `${e.at.slice(0, 13)}:00:00.000Z`],
      ["day", `${e.at.slice(0, 10)}T00:00:00.000Z`],
    ] as const) {
      const key = JSON.stringify([grain, bucket, ...dims]);
      const row: Plain = rows.get(key) ?? {
        grain,
        bucket,
        service_id: dims[0] as string,
        provider: dims[1] as string,
        model: dims[2] as string,
        alias: dims[3] as string,
        api_key_id: dims[4] as string,
        project_id: dims[5] as string,
      };
      const add = (field: string, n: number) => {
        row[field] = ((row[field] as number | undefined) ?? 0) + n;
      };
      add("events", 1);
      Object.assign(row, { seq: e.seq, balance_after: e.balance_after, reserved_after: e.reserved_after });
      const journal = (group: string, delta: number) => {
        const b1 = e.balance_after;
        const b0 = b1 - delta;
        add(`${group}_l`, Math.max(b1, 0) - Math.max(b0, 0));
        add(`${group}_r`, Math.max(-b1, 0) - Math.max(-b0, 0));
      };
      // A counted movement: its count, its amount, and the journal lines of its balance change.
      const movement = (count: string, amount: number, group: string, delta: number) => {
        add(count, 1);
        add(`${count.replace(/s$/, "")}_amount`, amount);
        if (delta !== 0) journal(group, delta);
      };
      if (e.type === "FundsCredited") movement("credits", e.amount, "credit", e.amount);
      else if (e.type === "AccountCharged") movement("direct_charges", e.amount, "charge", -e.amount);
      else if (e.type === "ReservationCaptured") {
        movement("captures", e.amount, "charge", -e.amount);
        add("input_tokens", e.usage.input_tokens ?? 0);
        add("output_tokens", e.usage.output_tokens ?? 0);
        add("cached_tokens", e.usage.cached_tokens ?? 0);
      } else if (e.type === "ReservationExpired" && e.on_expiry === "capture") {
        movement("expiry_captures", e.captured_amount, "charge", -e.captured_amount);
      } else if (e.type === "ChargeRefunded") movement("refunds", e.amount, "refund", e.amount);
      else if (e.type === "BalanceAdjusted") {
        add("adjustments", 1);
        add(e.amount > 0 ? "adjustment_up_amount" : "adjustment_down_amount", Math.abs(e.amount));
        journal(e.amount > 0 ? "adjustment_up" : "adjustment_down", e.amount);
      } else if (e.type === "LotExpired") {
        add("lot_expired_amount", e.amount);
        journal("lot_expiry", -e.amount);
      }
      // Lots, by kind: grants (what paid the debt is consumed at once), what paid, refunds back, expiries.
      if ((e.type === "FundsCredited" || e.type === "BalanceAdjusted") && e.grant !== undefined) {
        add(`${e.grant.kind}_granted`, e.amount);
        add(`${e.grant.kind}_consumed`, e.applied_to_debt ?? 0);
      }
      if ("funded_by" in e && e.type !== "FundsReserved") {
        for (const f of e.funded_by ?? []) if (f.lot_id !== null) add(`${kinds.get(f.lot_id)}_consumed`, f.amount);
      }
      if (e.type === "ChargeRefunded") {
        for (const r of e.returned_to ?? [])
          if (r.to_lot_id !== null) add(`${kinds.get(r.to_lot_id)}_refunded`, r.amount);
      }
      if (e.type === "LotExpired") add(`${e.kind}_expired`, e.amount);
      rows.set(key, row);
    }
  }
  for (const row of rows.values()) for (const s of ROLLUP_SUMS) row[s] ??= 0;
  return rows;
}

function plain(rollup: Rollup): Plain {
  const { sums, ...rest } = rollup;
  return { ...rest, ...Object.fromEntries(ROLLUP_SUMS.map((s) => [s, Number(sums[s])])) };
}

const keyOf = (r: Plain | Rollup) => JSON.stringify([r.grain, r.bucket, ...ROLLUP_DIMENSIONS.map((d) => r[d])]);

function byKey(rows: Iterable<Rollup>): Map<string, Plain> {
  return new Map([...rows].map((r) => [keyOf(r), plain(r)]));
}

const PROPERTY = budget("PROPERTY_RUNS", 25, 60_000);

describe("rollups, pure", () => {
  it("equal an independent aggregation of the log", { timeout: PROPERTY.timeout }, () => {
    fc.assert(
      fc.property(timedStepsArb(60), (steps) => {
        const log = timedLog(steps, T0);
        expect(byKey(rollupsOfLog(log))).toEqual(reference(log));
      }),
      { numRuns: PROPERTY.numRuns },
    );
  });

  it("are the same folded in any split, and the kept state holds only the current buckets", () => {
    fc.assert(
      fc.property(timedStepsArb(60), fc.array(fc.nat(), { maxLength: 8 }), (steps, cuts) => {
        const log = timedLog(steps, T0);
        const kindsOf = lotKindsOfLog(log);
        const bounds = [...new Set(cuts.map((c) => c % (log.length + 1)))].sort((a, b) => a - b);
        let state: RollupState = new Map();
        const rows = new Map<string, Rollup>();
        let from = 0;
        for (const to of [...bounds, log.length]) {
          // Through the stored form, as the object keeps it between flushes.
          // The object names the kinds of lots made before the split (lotKindsOfLog stands in for it).
          const folded = foldRollups(decodeRollupState(encodeRollupState(state)), log.slice(from, to), kindsOf);
          for (const row of folded.touched) rows.set(keyOf(row), row);
          state = folded.state;
          from = to;
        }
        expect(byKey(rows.values())).toEqual(byKey(rollupsOfLog(log)));
        const last = log.at(-1) as LedgerEvent;
        for (const row of state.values()) {
          expect(row.bucket).toBe(
            row.grain === "day" ? `${last.at.slice(0, 10)}T00:00:00.000Z` : `${last.at.slice(0, 13)}:00:00.000Z`,
          );
        }
      }),
      { numRuns: PROPERTY.numRuns },
    );
  });

  it("balance each movement: delta = L - R per counter account, and the money adds up to the balance", () => {
    fc.assert(
      fc.property(timedStepsArb(60), (steps) => {
        const log = timedLog(steps, T0);
        const days = rollupsOfLog(log).filter((r) => r.grain === "day");
        const total = (f: (r: Rollup) => bigint) => days.reduce((sum, r) => sum + f(r), 0n);
        const s = (r: Rollup) => r.sums;
        const charges = (r: Rollup) => s(r).direct_charge_amount + s(r).capture_amount + s(r).expiry_capture_amount;
        expect(total((r) => s(r).credit_l - s(r).credit_r)).toBe(total((r) => s(r).credit_amount));
        expect(total((r) => s(r).charge_l - s(r).charge_r)).toBe(total((r) => -charges(r)));
        expect(total((r) => s(r).refund_l - s(r).refund_r)).toBe(total((r) => s(r).refund_amount));
        expect(total((r) => s(r).adjustment_up_l - s(r).adjustment_up_r)).toBe(total((r) => s(r).adjustment_up_amount));
        expect(total((r) => s(r).adjustment_down_l - s(r).adjustment_down_r)).toBe(
          total((r) => -s(r).adjustment_down_amount),
        );
        const net = total(
          (r) =>
            s(r).credit_amount -
            charges(r) +
            s(r).refund_amount +
            s(r).adjustment_up_amount -
            s(r).adjustment_down_amount,
        );
        expect(net).toBe(BigInt((log.at(-1) as LedgerEvent).balance_after));
        expect(total((r) => s(r).events)).toBe(BigInt(log.length));
      }),
      { numRuns: PROPERTY.numRuns },
    );
  });

  it("put a time in the bucket its Date says, from the text's prefix or, in any other form, through Date", () => {
    const viaDate = (at: string, size: number) => new Date(Math.floor(Date.parse(at) / size) * size).toISOString();
    const times = fc.sample(
      fc.date({ min: new Date("1970-01-01"), max: new Date("9999-12-31"), noInvalidDate: true }),
      {
        numRuns: 500,
        seed: 7,
      },
    );
    for (const at of [...times.map((t) => t.toISOString()), "2026-11-29T23:59:59.999Z", "2026-11-30T00:00:00.000Z"]) {
      expect(bucketOf(at, "hour"), at).toBe(viaDate(at, 3_600_000));
      expect(bucketOf(at, "day"), at).toBe(viaDate(at, 86_400_000));
    }
    // Not the toISOString form: no prefix is taken.
    expect(bucketOf("2026-11-29T23:30:00+02:00", "day")).toBe("2026-11-29T00:00:00.000Z");
    expect(bucketOf("2026-11-29T23:30:00Z", "hour")).toBe("2026-11-29T23:00:00.000Z");
  });

  it("count events without a usage context under no dimension", () => {
    const rows = rollupsOfLog(timedLog([], T0));
    expect(rows.map((r) => [r.grain, r.bucket, r.service_id, r.model, r.sums.events])).toEqual([
      ["hour", "2026-11-28T10:00:00.000Z", NO_DIMENSION, NO_DIMENSION, 1n],
      ["day", "2026-11-28T00:00:00.000Z", NO_DIMENSION, NO_DIMENSION, 1n],
    ]);
  });
});

/** Replaces the object's delivery (lives until the object is evicted). */
async function setSink(accountId: string, deliver: Delivery) {
  await runInDurableObject(stub(accountId), (instance: AccountDurableObject) => {
    instance.projector.deliver = deliver;
  });
}

/**
 * Delivers messages as a queue may: in the given order, in small batches, again and again until
 * every one is final (a gap is retried in a later round, as the consumer's retry does).
 */
async function deliverLikeAQueue(messages: ProjectionMessage[], batchSize: number): Promise<number> {
  let pending = messages;
  let rounds = 0;
  while (pending.length > 0) {
    rounds += 1;
    if (rounds > messages.length + 1) throw new Error("redelivery made no progress");
    const retry: ProjectionMessage[] = [];
    for (let i = 0; i < pending.length; i += batchSize) {
      const batch = pending.slice(i, i + batchSize);
      const outcomes = await applyMessages(shardsOf(env), batch);
      batch.forEach((m, j) => {
        expect(outcomes[j]).not.toBe("invalid");
        if (outcomes[j] === "gap") retry.push(m);
      });
    }
    pending = retry;
  }
  return rounds;
}

/** A permutation of `items` drawn from `seed` (Fisher-Yates over a small 32-bit generator). */
function shuffle<T>(items: T[], seed: number): T[] {
  let state = seed >>> 0;
  const next = () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

describe("rollups in D1", () => {
  // Each case drives a real account object through up to 40 commands, then replays its batches:
  // a few seconds for all 25 alone, several times that under the full suite on 2 cores. 180 s.
  const HISTORIES = budget("HISTORY_RUNS", 25, 180_000);
  it("equal the fold of the log when the batches are redelivered, reordered and duplicated", {
    timeout: HISTORIES.timeout,
  }, async () => {
    const time = useManualClock(ceilDay(Date.now() + DAY_MS));
    await fc.assert(
      fc.asyncProperty(
        timedStepsArb(40),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        fc.integer(),
        async (steps, failures, duplicates, seed) => {
          const delivered: ProjectionMessage[] = [];
          let calls = 0;
          const real = directDelivery(shardsOf(env));
          const deliver: Delivery = async (messages) => {
            calls += 1;
            // Some flushes fail: their events reach D1 later, in bigger batches.
            if (failures[calls % failures.length]) throw new Error("D1_ERROR: injected");
            const result = await real(messages);
            delivered.push(...messages.slice(0, result.accepted));
            return result;
          };
          const id = await runTimed(time, steps, (opened) => setSink(opened, deliver));
          failures.fill(false);
          await drain(id);
          expect(delivered.length).toBeGreaterThan(0);
          const log = await logOf(id);
          await expectRollupsEqualLog(id, log);
          const replay = shuffle([...delivered.keys(), ...duplicates.map((n) => n % delivered.length)], seed).map(
            (i) => delivered[i] as ProjectionMessage,
          );
          // Every message again, in a random order, some several times: nothing moves.
          expect(await deliverLikeAQueue(replay, 3)).toBe(1);
          await expectRollupsEqualLog(id, log);
          // From nothing: the same messages, reordered and duplicated, rebuild exactly the log's fold.
          const db = dbOf(id);
          for (const table of ["accounts", "event_pages", "open_holds", "rollup_rows"]) {
            await db.prepare(`DELETE FROM ${table} WHERE account_id = ?`).bind(id).run();
          }
          await deliverLikeAQueue(replay, 1 + ((seed >>> 0) % 4));
          await expectD1EqualsLog(id);
          time.advance(DAY_MS);
        },
      ),
      { numRuns: HISTORIES.numRuns },
    );
  });

  it("are rebuilt once, from the log, for an object projected before rollups existed", async () => {
    const time = useManualClock(ceilDay(Date.now() + DAY_MS) + 3 * DAY_MS);
    const steps = fc.sample(timedStepsArb(30), { numRuns: 1, seed: 12 })[0] ?? [];
    const id = await runTimed(time, steps);
    await drain(id);
    const built = await d1Rollups(id);
    // As an object of the previous version left it: a cursor without rollups, none in D1.
    await runInDurableObject(stub(id), (_instance: AccountDurableObject, state) => {
      state.storage.sql.exec("UPDATE projection SET rollups = NULL");
    });
    await editRollups(id, () => null);
    await evictDurableObject(stub(id));
    const status = await stub(id).projectionStatus();
    expect(status.projected_seq).toBe(status.last_seq);
    await drain(id);
    expect(await d1Rollups(id)).toEqual(built);
    await expectRollupsEqualLog(id);
  });
});
