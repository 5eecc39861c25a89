/**
 * Random histories spread over time (issue 12): commands with gaps of milliseconds to a day
 * between them, so that their events fall in many hour and day buckets, holds expire, and
 * batches of the projection span buckets. Shared by the rollup, statement and retention tests.
 */
import fc from "fast-check";
import { expect } from "vitest";
import type { ManualClock } from "../../src/clock";
import type { Command } from "../../src/domain/commands";
import type { LedgerEvent } from "../../src/domain/events";
import { Ledger } from "../domain/given";
import { stub } from "../helpers";
import { commandArb } from "./support";

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;

export interface TimedStep {
  command: Command;
  /** Milliseconds the clock moves before the command. */
  gapMs: number;
}

/** Mostly short gaps, some across hours, a few across days. */
export const gapArb: fc.Arbitrary<number> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 20 * 60_000 }) },
  { weight: 2, arbitrary: fc.integer({ min: HOUR_MS / 2, max: 5 * HOUR_MS }) },
  { weight: 1, arbitrary: fc.integer({ min: 20 * HOUR_MS, max: 30 * HOUR_MS }) },
);

/** Usage context over a few values of every rollup dimension (none included). */
const contextArb = fc.record(
  {
    service_id: fc.constantFrom("chat", "embed"),
    provider: fc.constantFrom("acme", "zeta"),
    model: fc.constantFrom("m1", "m2"),
    alias: fc.constantFrom("big", "small"),
  },
  { requiredKeys: [] },
);

/** The projection tests' commands, with contexts varied over every dimension. */
const varied: fc.Arbitrary<Command> = fc
  .tuple(commandArb, contextArb)
  .map(([command, context]) =>
    command.type === "ReserveFunds" || command.type === "ChargeAccount" ? { ...command, context } : command,
  );

export const timedStepsArb = (maxLength: number): fc.Arbitrary<TimedStep[]> =>
  fc.array(fc.record({ command: varied, gapMs: gapArb }), { minLength: 1, maxLength });

/** The whole UTC day at or after `ms`. */
export const ceilDay = (ms: number): number => Math.ceil(ms / DAY_MS) * DAY_MS;
export const iso = (ms: number): string => new Date(ms).toISOString();

let opened = 0;
/**
 * Opens an account at the clock's time and runs the steps through its object; returns its id.
 * `beforeOpen` runs inside the new object before its first command (e.g. to replace its sink).
 */
export async function runTimed(
  time: ManualClock,
  steps: readonly TimedStep[],
  beforeOpen?: (id: string) => Promise<void>,
  /** The account's id (default: a fresh one), and whether every step must be accepted. */
  options: { id?: string; everyStepAccepted?: boolean } = {},
): Promise<string> {
  opened += 1;
  const id = options.id ?? `timed_${opened}_${crypto.randomUUID().slice(0, 6)}`;
  const s = stub(id);
  await beforeOpen?.(id);
  const open = await s.execute({
    type: "OpenAccount",
    account_id: id,
    currency: "USD",
    credit_limit: 100,
    metadata: {},
  });
  expect(open.ok).toBe(true);
  for (const step of steps) {
    time.advance(step.gapMs);
    // Plain JSON: generated values may carry prototypes that RPC cannot serialise.
    const result = await s.execute(JSON.parse(JSON.stringify(step.command)) as Command);
    if (options.everyStepAccepted) expect(result.ok).toBe(true);
  }
  return id;
}

/**
 * The same steps through the pure decider (no object): the log an account would have. Holds
 * due at a step's time expire first, as the object settles them before each command.
 */
export function timedLog(steps: readonly TimedStep[], startMs: number): LedgerEvent[] {
  const ledger = new Ledger();
  ledger.now = startMs;
  ledger.run({ type: "OpenAccount", account_id: "acct", currency: "USD", credit_limit: 100, metadata: {} });
  for (const step of steps) {
    ledger.tick(step.gapMs);
    const due = [...ledger.state.reservations.values()]
      .filter((r) => r.status === "open" && Date.parse(r.expires_at) <= ledger.now)
      .map((r) => r.reservation_id);
    if (due.length > 0) ledger.run({ type: "ExpireReservations", reservation_ids: due });
    ledger.run(step.command);
  }
  return ledger.log;
}
