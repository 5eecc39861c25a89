/**
 * Sending webhook deliveries (issue 14). The URL guard runs again at send time (a URL that was
 * fine at creation may not be now: the guard's rules may have grown), redirects are never
 * followed (guardedFetch), and every attempt is bounded by WEBHOOK_TIMEOUT_MS. The outbound
 * fetch is a seam (`useWebhookFetch`) so tests put a fake receiver behind it, the way the clock
 * seam replaces time. Nothing here logs a URL, a secret or a body.
 */
import { clock } from "../clock";
import { type ConfigKeys, SecretDecryptionError } from "../security/secrets";
import { guardedFetch, OutboundUrlRefused } from "../security/url-guard";
import { afterAttempt } from "./backoff";
import { SIGNATURE_HEADER, signatureHeader } from "./signature";
import { type DeliveryRow, dueDeliveries, endpointTarget, nextDueMs, recordAttempt } from "./store";

/** One attempt may take this long, connection to last byte of the answer's head. */
export const WEBHOOK_TIMEOUT_MS = 10_000;
/** Deliveries one run (an alarm, a cron tick) attempts per owner; the rest wait the next run. */
export const WEBHOOK_SEND_BATCH_MAX = 20;

export type WebhookFetch = (url: string, init: RequestInit) => Promise<Response>;

let installed: WebhookFetch | undefined;

/** Test seam: routes every webhook request to `fetcher` until the returned function restores the default. */
export function useWebhookFetch(fetcher: WebhookFetch): () => void {
  const previous = installed;
  installed = fetcher;
  return () => {
    installed = previous;
  };
}

export interface AttemptResult {
  delivered: boolean;
  last_status: number | null;
  /**
   * null when delivered; else `http_status`, `timeout`, `network`, `url_refused`, `endpoint_deleted`
   * or `undecryptable` (the endpoint's URL or secret does not decrypt under the configured keys).
   */
  last_error: string | null;
}

/** Sends one delivery's body to its endpoint, signed now. Never throws for the receiver's faults. */
export async function attemptDelivery(db: D1Database, keys: ConfigKeys, row: DeliveryRow): Promise<AttemptResult> {
  let target: Awaited<ReturnType<typeof endpointTarget>>;
  try {
    target = await endpointTarget(db, keys, row.endpoint_id);
  } catch (error) {
    // A failed attempt like any other (it backs off, then fails): it must not stay first in line,
    // holding its owner's other deliveries (issue 31, defect 2). Restoring the key lets it through.
    if (error instanceof SecretDecryptionError)
      return { delivered: false, last_status: null, last_error: "undecryptable" };
    throw error;
  }
  if (target === null) return { delivered: false, last_status: null, last_error: "endpoint_deleted" };
  const t = Math.floor(clock.now() / 1000);
  const headers = {
    "content-type": "application/json",
    "user-agent": "openedge-ledger-webhooks/1",
    [SIGNATURE_HEADER]: await signatureHeader(target.secret, t, row.body),
    "Ledger-Event-Id": row.event_id,
    "Ledger-Delivery-Id": row.id,
  };
  try {
    const response = await guardedFetch(
      target.url,
      { method: "POST", headers, body: row.body, signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS) },
      installed as typeof fetch | undefined,
    );
    // The answer's body is not needed: cancel it so the connection is released.
    await response.body?.cancel();
    const ok = response.status >= 200 && response.status < 300;
    return { delivered: ok, last_status: response.status, last_error: ok ? null : "http_status" };
  } catch (error) {
    if (error instanceof OutboundUrlRefused) return { delivered: false, last_status: null, last_error: "url_refused" };
    const name = (error as { name?: string }).name;
    const timedOut = name === "TimeoutError" || name === "AbortError";
    return { delivered: false, last_status: null, last_error: timedOut ? "timeout" : "network" };
  }
}

/**
 * Attempts one delivery and records the outcome: delivered, pending with its next attempt on
 * the backoff schedule, or failed past WEBHOOK_ATTEMPTS_MAX. A deleted endpoint or a refused URL
 * fails at once.
 */
export async function sendAndRecord(db: D1Database, keys: ConfigKeys, row: DeliveryRow): Promise<AttemptResult> {
  const result = await attemptDelivery(db, keys, row);
  const attempts = row.attempts + 1;
  const nowMs = clock.now();
  // A deleted endpoint or a URL the guard refuses will not change by waiting: failed at once.
  const permanent = result.last_error === "endpoint_deleted" || result.last_error === "url_refused";
  const next = permanent
    ? { state: "failed" as const, next_attempt_at_ms: null }
    : afterAttempt(attempts, result.delivered, nowMs);
  await recordAttempt(
    db,
    row.id,
    { ...next, attempts, last_status: result.last_status, last_error: result.last_error },
    nowMs,
  );
  return result;
}

/**
 * Sends an owner's due deliveries (an account's, or the alerts' with null) and answers when the
 * owner should run again: the earliest pending attempt, or null when nothing is pending.
 */
export async function deliverDue(db: D1Database, keys: ConfigKeys, owner: string | null): Promise<number | null> {
  const due = await dueDeliveries(db, owner, clock.now(), WEBHOOK_SEND_BATCH_MAX);
  // One endpoint's slowness must not hold the others: attempts run concurrently, each bounded.
  // Every attempt is awaited to its record before a failure is reported: a run that failed
  // early while others were still in flight would be retried and send those again.
  const settled = await Promise.allSettled(due.map((row) => sendAndRecord(db, keys, row)));
  const failed = settled.find((result) => result.status === "rejected");
  if (failed !== undefined) throw failed.reason;
  return nextDueMs(db, owner);
}
