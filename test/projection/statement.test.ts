/**
 * The statement (issue 12): `GET /v1/accounts/{id}/statement?from=&to=` equals a fold of the
 * account's events read from `GET /v1/accounts/{id}/events`, for random histories spread over
 * days and random periods of whole hours and whole days; and how periods are covered by hour and
 * day rollups (src/reports/periods.ts).
 *
 * Budget (test/budget.ts): the history property runs a fixed 25 cases (HISTORY_RUNS raises it),
 * the pure one 25 (PROPERTY_RUNS).
 */
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { coverPeriod, hourlyKeptFrom } from "../../src/reports/periods";
import { budget } from "../budget";
import { api, expectEveryAccountConsistent, openAccount, useManualClock } from "../helpers";
import { drain } from "./support";
import { ceilDay, DAY_MS, HOUR_MS, iso, runTimed, timedStepsArb } from "./timed";

afterEach(expectEveryAccountConsistent);

// biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected field by field
type Body = Record<string, any>;

interface EventJson {
  seq: number;
  type: string;
  at: string;
  balance_after: number;
  amount?: number;
  captured_amount?: number;
  on_expiry?: string;
}

async function eventsOf(id: string): Promise<EventJson[]> {
  const response = await api("GET", `/v1/accounts/${id}/events?limit=1000`);
  expect(response.status).toBe(200);
  expect(response.body.next_after_seq).toBeNull();
  return response.body.events;
}

const movement = (events: EventJson[], amount: (e: EventJson) => number) => ({
  count: events.length,
  amount: events.reduce((sum, e) => sum + amount(e), 0),
});

/** The statement a reader of the log computes for [from, to). */
function expectedStatement(log: EventJson[], from: string, to: string): Body {
  const inPeriod = log.filter((e) => e.at >= from && e.at < to);
  const of = (type: string) => inPeriod.filter((e) => e.type === type);
  const direct = movement(of("AccountCharged"), (e) => e.amount ?? 0);
  const capture = movement(of("ReservationCaptured"), (e) => e.amount ?? 0);
  const expiry = movement(
    of("ReservationExpired").filter((e) => e.on_expiry === "capture"),
    (e) => e.captured_amount ?? 0,
  );
  const adjustments = of("BalanceAdjusted");
  const up = adjustments.filter((e) => (e.amount ?? 0) > 0).reduce((s, e) => s + (e.amount ?? 0), 0);
  const down = adjustments.filter((e) => (e.amount ?? 0) < 0).reduce((s, e) => s - (e.amount ?? 0), 0);
  const balanceBefore = (time: string) => log.filter((e) => e.at < time).at(-1)?.balance_after ?? 0;
  return {
    from,
    to,
    opening_balance: balanceBefore(from),
    closing_balance: balanceBefore(to),
    movements: {
      credits: movement(of("FundsCredited"), (e) => e.amount ?? 0),
      charges: {
        count: direct.count + capture.count + expiry.count,
        amount: direct.amount + capture.amount + expiry.amount,
        direct,
        capture,
        expiry,
      },
      refunds: movement(of("ChargeRefunded"), (e) => e.amount ?? 0),
      adjustments: { count: adjustments.length, amount: up - down, increase_amount: up, decrease_amount: down },
    },
  };
}

async function statement(id: string, from: string, to: string): Promise<Body> {
  const response = await api("GET", `/v1/accounts/${id}/statement?from=${from}&to=${to}`);
  expect(response.status, JSON.stringify(response.body).slice(0, 400)).toBe(200);
  return response.body;
}

/** A period of whole hours (or whole days) around the history's span. */
const periodArb = fc.record({
  startHour: fc.integer({ min: -12, max: 24 * 6 }),
  hours: fc.integer({ min: 1, max: 24 * 4 }),
  wholeDays: fc.boolean(),
});

describe("statement", () => {
  const HISTORIES = budget("HISTORY_RUNS", 25, 180_000);
  it("equals a fold of the account's events for random periods", { timeout: HISTORIES.timeout }, async () => {
    const time = useManualClock(ceilDay(Date.now() + DAY_MS));
    await fc.assert(
      fc.asyncProperty(
        timedStepsArb(40),
        fc.array(periodArb, { minLength: 1, maxLength: 6 }),
        async (steps, periods) => {
          // Each history starts on a whole day of its own, a day after the previous one's end.
          time.advance(ceilDay(time.now() + DAY_MS) - time.now());
          const start = time.now();
          const id = await runTimed(time, steps);
          await drain(id);
          const log = await eventsOf(id);
          for (const p of periods) {
            let from = start + p.startHour * HOUR_MS;
            let to = from + p.hours * HOUR_MS;
            if (p.wholeDays) {
              from = Math.floor(from / DAY_MS) * DAY_MS;
              to = ceilDay(to);
            }
            const body = await statement(id, iso(from), iso(to));
            expect(body).toMatchObject({
              account_id: id,
              currency: "USD",
              ...expectedStatement(log, iso(from), iso(to)),
            });
            const m = body.movements;
            expect(body.closing_balance).toBe(
              body.opening_balance + m.credits.amount - m.charges.amount + m.refunds.amount + m.adjustments.amount,
            );
            expect(body.as_of.last_seq).toBe(log.at(-1)?.seq);
          }
          // Everything since the account opened, in whole days.
          const all = await statement(id, iso(Math.floor(start / DAY_MS) * DAY_MS), iso(ceilDay(time.now() + 1)));
          expect(all.closing_balance).toBe(log.at(-1)?.balance_after);
          expect(all.opening_balance).toBe(0);
        },
      ),
      { numRuns: HISTORIES.numRuns },
    );
  });

  it("refuses periods that are not whole hours, empty, or whose partial days are past the hourly retention", async () => {
    const time = useManualClock(ceilDay(Date.now() + DAY_MS) + 13 * HOUR_MS);
    const id = await openAccount(500);
    await drain(id);
    const now = time.now();
    const day = Math.floor(now / DAY_MS) * DAY_MS;
    const path = (from: number | string, to: number | string) =>
      `/v1/accounts/${id}/statement?from=${typeof from === "number" ? iso(from) : from}&to=${typeof to === "number" ? iso(to) : to}`;
    const old = day - 60 * DAY_MS;
    for (const [url, field] of [
      [path(now + 1, now + HOUR_MS), "from"],
      [path(day, "2026-11-28T13:30:00Z"), "to"],
      [path(day, day), "to"],
      [path(day + HOUR_MS, day), "to"],
      [`/v1/accounts/${id}/statement?from=${iso(day)}`, "to"],
      [path(old + HOUR_MS, day), "from"],
      [path(old, old + 5 * HOUR_MS), "to"],
    ] as const) {
      const response = await api("GET", url);
      expect(response.status, url).toBe(400);
      expect(response.body.code).toBe("invalid_request");
      expect(response.body.errors.map((e: { field: string }) => e.field)).toContain(`query.${field}`);
    }
    // Whole days are kept forever: a period from 60 days ago is answered.
    const body = await statement(id, iso(old), iso(day + DAY_MS));
    expect(body).toMatchObject({
      opening_balance: 0,
      closing_balance: 500,
      movements: { credits: { count: 1, amount: 500 } },
    });
    const unknown = await api("GET", `/v1/accounts/nobody-here/statement?from=${iso(day)}&to=${iso(day + DAY_MS)}`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe("account_not_found");
  });
});

describe("covering a period with hour and day rollups", () => {
  const PROPERTY = budget("PROPERTY_RUNS", 25, 60_000);
  const T = Date.parse("2026-11-01T00:00:00.000Z");
  it("covers every hour of [from, to) exactly once, with whole days as day rows", () => {
    fc.assert(
      fc.property(
        fc.option(fc.integer({ min: 0, max: 24 * 10 }), { nil: null }),
        fc.option(fc.integer({ min: 0, max: 24 * 10 }), { nil: null }),
        (a, b) => {
          const from = a === null ? null : iso(T + a * HOUR_MS);
          const to = b === null ? null : iso(T + b * HOUR_MS);
          const segments = coverPeriod(from, to);
          for (let h = -24; h < 24 * 11; h++) {
            const hour = iso(T + h * HOUR_MS);
            const inside = (from === null || hour >= from) && (to === null || hour < to);
            const holders = segments.filter((s) => {
              const start = s.grain === "hour" ? hour : iso(Math.floor(Date.parse(hour) / DAY_MS) * DAY_MS);
              return (s.from === null || start >= s.from) && (s.to === null || start < s.to);
            });
            expect(holders.length, `${hour} in [${from}, ${to})`).toBe(inside ? 1 : 0);
          }
          for (const s of segments.filter((x) => x.grain === "day")) {
            for (const bound of [s.from, s.to]) if (bound !== null) expect(Date.parse(bound) % DAY_MS).toBe(0);
          }
        },
      ),
      { numRuns: PROPERTY.numRuns },
    );
  });

  it("keeps hourly rows from the retention's start, rounded up to a whole hour", () => {
    expect(hourlyKeptFrom(Date.parse("2026-11-28T13:20:00Z"), 35)).toBe("2026-10-24T14:00:00.000Z");
    expect(coverPeriod("2026-11-28T00:00:00Z", "2026-11-30T00:00:00Z")).toEqual([
      { grain: "day", from: "2026-11-28T00:00:00.000Z", to: "2026-11-30T00:00:00.000Z" },
    ]);
    expect(coverPeriod("2026-11-28T05:00:00Z", "2026-11-28T09:00:00Z")).toEqual([
      { grain: "hour", from: "2026-11-28T05:00:00.000Z", to: "2026-11-28T09:00:00.000Z" },
    ]);
  });
});
