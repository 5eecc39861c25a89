/**
 * Money is an integer count of minor units (cents for USD). These helpers make every
 * arithmetic step check that it stays an exact safe integer; a float or an overflow is a
 * programmer error and crashes (see `assert`), it is never rounded away.
 */
import { AssertionError } from "../errors";
import { BALANCE_ABS_MINOR_MAX } from "./limits";

export type Minor = number;

export { AssertionError };

/** Programmer errors and broken invariants: never caught, never turned into a response. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(`invariant violated: ${message}`);
}

export function isMinor(value: unknown): value is Minor {
  return typeof value === "number" && Number.isSafeInteger(value);
}

export function assertMinor(value: unknown, what: string): asserts value is Minor {
  assert(isMinor(value), `${what} must be a safe integer of minor units, got ${String(value)}`);
}

/** True when a balance-like value may be stored: exact, and inside the named bound. */
export function withinBalanceLimit(value: Minor): boolean {
  return Number.isSafeInteger(value) && Math.abs(value) <= BALANCE_ABS_MINOR_MAX;
}
