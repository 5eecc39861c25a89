/**
 * A Durable Object's webhook outbox (issue 14): the account object's, and the monitor's for
 * alert events (durable-objects/monitor.ts). In the account object, a command that crosses the low-balance
 * threshold writes its event here inside the command's own transaction (no read, no extra
 * await: the crossing is a pure function of the account before and after, already in memory),
 * so the event exists exactly when the crossing does. The alarm then hands each event to the
 * delivery records in D1 (one per matching endpoint, idempotent) and deletes it; delivery and
 * its retries never run on a command's path.
 */
import { clock } from "../src/clock";
import type { LedgerEvent } from "../src/domain/events";
import { lowBalanceTransition } from "../src/domain/low-balance";
import type { AccountState } from "../src/domain/state";
import type { Env } from "../src/env";
import { loadConfigKeys } from "../src/security/secrets";
import { lowBalanceEvent, type WebhookEvent } from "../src/webhooks/events";
import { deliverDue } from "../src/webhooks/send";
import { enqueueDeliveries } from "../src/webhooks/store";

/** Outbox events handed off per alarm run; the alarm re-arms at once while more remain. */
export const OUTBOX_HANDOFF_BATCH_MAX = 50;

export class WebhookOutbox {
  /** True when an event was written since the last hand-off (the alarm must come). */
  private pendingSince: number | null = null;

  constructor(private readonly sql: SqlStorage) {
    // Events left by a hand-off that failed, or by an object evicted before its alarm ran.
    const row = sql.exec<{ at: number | null }>("SELECT MIN(created_at_ms) AS at FROM webhook_outbox").one();
    this.pendingSince = row.at;
  }

  /** Inside the command's transaction: writes the crossing's event, if it crossed. Returns rows written. */
  record(before: AccountState | null, after: AccountState, last: LedgerEvent, nowMs: number): number {
    const transition = lowBalanceTransition(before, after);
    if (transition === null) return 0;
    return this.add(lowBalanceEvent(transition, after, last), nowMs);
  }

  /** Writes one event (inside the caller's transaction); an id already waiting is kept once. */
  add(event: WebhookEvent, nowMs: number): number {
    const written = this.sql.exec(
      "INSERT OR IGNORE INTO webhook_outbox (event_id, body, created_at_ms) VALUES (?, ?, ?)",
      event.id,
      JSON.stringify(event),
      nowMs,
    ).rowsWritten;
    this.pendingSince ??= nowMs;
    return written;
  }

  /** When the alarm should hand events off: at once if any wait, else null. */
  wakeAtMs(): number | null {
    return this.pendingSince;
  }

  /** The oldest events waiting, at most `limit`. */
  waiting(limit: number = OUTBOX_HANDOFF_BATCH_MAX): WebhookEvent[] {
    return this.sql
      .exec<{ body: string }>("SELECT body FROM webhook_outbox ORDER BY created_at_ms, event_id LIMIT ?", limit)
      .toArray()
      .map((row) => JSON.parse(row.body) as WebhookEvent);
  }

  /** After their delivery records exist in D1: the events leave the outbox. */
  handedOff(ids: readonly string[]): void {
    for (const id of ids) this.sql.exec("DELETE FROM webhook_outbox WHERE event_id = ?", id);
    const row = this.sql.exec<{ at: number | null }>("SELECT MIN(created_at_ms) AS at FROM webhook_outbox").one();
    this.pendingSince = row.at;
  }
}

/**
 * One webhook run of an owner (an account, or null for the monitor's alerts): hands the outbox's
 * waiting events to their delivery records in D1, then sends the owner's due deliveries.
 * Answers when the owner's next attempt is due (null: nothing pending). Throws on a D1 failure;
 * the caller retries later, and the outbox keeps what was not handed off.
 */
export async function runWebhookOutbox(outbox: WebhookOutbox, env: Env, owner: string | null): Promise<number | null> {
  const waiting = outbox.waiting();
  if (waiting.length > 0) {
    await enqueueDeliveries(env.DB, waiting, clock.now());
    outbox.handedOff(waiting.map((event) => event.id));
  }
  return deliverDue(env.DB, await loadConfigKeys(env), owner);
}
