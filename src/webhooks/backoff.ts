/**
 * The retry schedule of a webhook delivery (issue 14), pure. After a failed attempt number n
 * (1-based) the next one waits WEBHOOK_BACKOFF_BASE_MS * 2^(n-1), capped at
 * WEBHOOK_BACKOFF_CAP_MS; after WEBHOOK_ATTEMPTS_MAX attempts the delivery is `failed` and stays
 * listed for an admin to redeliver. It is never dropped.
 */

/** Attempts in all, the first included: 1 min, 2, 4, ... 64 min apart (about 2 h 7 min in all). */
export const WEBHOOK_ATTEMPTS_MAX = 8;
export const WEBHOOK_BACKOFF_BASE_MS = 60_000;
export const WEBHOOK_BACKOFF_CAP_MS = 6 * 3_600_000;

export type DeliveryState = "pending" | "delivered" | "failed";

/** The wait after failed attempt number `attempts` (1-based). */
export function retryDelayMs(attempts: number): number {
  if (!(Number.isSafeInteger(attempts) && attempts >= 1)) throw new RangeError("attempts is a whole number >= 1");
  return Math.min(WEBHOOK_BACKOFF_BASE_MS * 2 ** (attempts - 1), WEBHOOK_BACKOFF_CAP_MS);
}

/** The state after attempt number `attempts` at `nowMs`, and when the next attempt is due. */
export function afterAttempt(
  attempts: number,
  delivered: boolean,
  nowMs: number,
  attemptsMax: number = WEBHOOK_ATTEMPTS_MAX,
): { state: DeliveryState; next_attempt_at_ms: number | null } {
  if (delivered) return { state: "delivered", next_attempt_at_ms: null };
  if (attempts >= attemptsMax) return { state: "failed", next_attempt_at_ms: null };
  return { state: "pending", next_attempt_at_ms: nowMs + retryDelayMs(attempts) };
}
