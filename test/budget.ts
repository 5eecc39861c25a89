/**
 * Budgets of the property and fuzz tests (issue 10: `npm test` passes on any 2-core machine,
 * every time). Each one runs a FIXED number of cases, cheap enough for a slow machine under the
 * full parallel suite, with a generous per-test timeout stated where the test is defined. No
 * fast-check time limit (`interruptAfterTimeLimit`) is used: it would make the number of cases
 * depend on the machine's speed, and a slow machine would quietly test less.
 *
 * Deeper local hunts raise the counts through environment variables (vitest.config.ts passes
 * them into workerd as bindings, since the host's process.env is not visible there):
 *
 *   PROPERTY_RUNS  cases of each in-isolate property (decider vs model, pricing, canonical JSON)
 *   HISTORY_RUNS   cases of each property that drives real account objects (projection, audit)
 *   FUZZ_RUNS      requests of the HTTP fuzz test
 *
 * e.g. `PROPERTY_RUNS=50000 npx vitest run test/domain/property.test.ts`. With a count set, the
 * per-test timeout is lifted (0): a deep hunt takes as long as it takes.
 */
import { env } from "cloudflare:workers";

export type RunsVariable = "PROPERTY_RUNS" | "HISTORY_RUNS" | "FUZZ_RUNS";

export interface Budget {
  /** fast-check's numRuns. */
  numRuns: number;
  /** vitest's per-test timeout in ms (0: none). */
  timeout: number;
}

/** `numRuns` and `timeoutMs` unless `variable` is set to a positive integer, which replaces the count. */
export function budget(variable: RunsVariable, numRuns: number, timeoutMs: number): Budget {
  const raw: string | undefined = env[variable];
  if (raw === undefined || raw === "") return { numRuns, timeout: timeoutMs };
  const runs = Number(raw);
  if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`${variable} must be a positive integer, not "${raw}"`);
  return { numRuns: runs, timeout: 0 };
}

/** Whether measurements should be printed (PRINT_MEASUREMENTS=1); tests are quiet otherwise. */
export function printMeasurements(): boolean {
  return env.PRINT_MEASUREMENTS === "1";
}
