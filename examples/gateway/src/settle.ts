/**
 * Settling a hold (extend, capture, release) so that a failure is never silently dropped
 * (issue 11: a capture refused above the hold, or lost to a network error, used to be ignored
 * and the alarm later charged the estimate instead of the usage).
 *
 * A failure that may pass (the ledger unreachable, a 5xx, a 429) is retried, at most
 * SETTLE_ATTEMPTS_MAX times in all, after a backoff that doubles from `backoffMs` and waits
 * through the injected timer (so tests fire it themselves). Retrying is safe because every
 * settle body is fixed before the first attempt: the ledger answers a retry of an applied
 * command as a replay. A business rejection (4xx: the hold expired, a conflict) cannot pass by
 * retrying and is not retried. A settle that still fails is counted, logged without secrets,
 * and left to the ledger's expiry rule for the hold (`capture` once delivery started,
 * `release` before).
 */
import type { LedgerResult } from "../../../src/service";
import type { SetTimer } from "./upstream";

export interface GatewayStats {
  /** Settle calls that failed for good (after their retries, or at once for a rejection). */
  settle_failures: number;
  /** Retries made after a failure that could pass. */
  settle_retries: number;
  /** Captures above the hold: the provider reported more usage than its max_tokens allowed. */
  overage_captures: number;
}

export type SettleOp = "extend" | "capture" | "release";

/** One operational log line: names, ids, codes and counts only; never a key, a body or a prompt. */
export type GatewayLog = (line: Record<string, string | number>) => void;

/** A settle's outcome: the ledger's value, or why it failed. */
export type Settled<T> = { ok: true; value: T } | { ok: false; status: number; code: string };

/** What a thrown call (the binding failed, not the ledger) is recorded as. */
const UNREACHABLE = { ok: false, status: 503, code: "ledger_unreachable" } as const;

/** Attempts of one settle call, the first included. */
export const SETTLE_ATTEMPTS_MAX = 3;
/** Delay before the first retry; each further retry waits twice as long. */
export const SETTLE_BACKOFF_MS = 200;
/** A 5xx or a 429 may pass by retrying; any other failure is the ledger's final word. */
const mayPass = (failure: { status: number }) => failure.status >= 500 || failure.status === 429;

export function createSettler(options: { setTimer: SetTimer; backoffMs: number; log: GatewayLog }) {
  const stats: GatewayStats = { settle_failures: 0, settle_retries: 0, overage_captures: 0 };
  const sleep = (ms: number) =>
    ms <= 0 ? Promise.resolve() : new Promise<void>((resolve) => void options.setTimer(ms, resolve));

  async function attempt<T>(call: () => Promise<LedgerResult<T>>): Promise<Settled<T>> {
    try {
      const result = await call();
      return result.ok ? { ok: true, value: result.value } : { ok: false, status: result.status, code: result.code };
    } catch {
      return UNREACHABLE;
    }
  }

  /** Runs one settle call with its retries; `call` must send the same body every time. */
  async function run<T>(
    op: SettleOp,
    target: { accountId: string; reservationId: string },
    call: () => Promise<LedgerResult<T>>,
  ): Promise<Settled<T>> {
    let outcome = await attempt(call);
    let attempts = 1;
    while (!outcome.ok && mayPass(outcome) && attempts < SETTLE_ATTEMPTS_MAX) {
      await sleep(options.backoffMs * 2 ** (attempts - 1));
      stats.settle_retries += 1;
      attempts += 1;
      outcome = await attempt(call);
    }
    if (!outcome.ok) {
      stats.settle_failures += 1;
      options.log({
        event: "gateway_settle_failed",
        op,
        account_id: target.accountId,
        reservation_id: target.reservationId,
        status: outcome.status,
        code: outcome.code,
        attempts,
      });
    }
    return outcome;
  }

  return { run, stats };
}

export type Settler = ReturnType<typeof createSettler>;
