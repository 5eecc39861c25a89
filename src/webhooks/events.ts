/**
 * Webhook events (issue 14): what a receiver gets, as pure functions of what happened. Every
 * event has an `id` the receiver deduplicates on: a delivery retried, redelivered or sent to two
 * endpoints carries the same id.
 * - `account.low_balance`, `account.balance_recovered`: from the command that crossed the
 *   threshold (src/domain/low-balance.ts); the id is derived from that command's ledger event,
 *   so the same crossing can never produce two ids.
 * - `alert.firing`, `alert.resolved`: from an alert's transition (src/observability/alerts.ts).
 * - `lot.expired`: from a LotExpired ledger event (its id derived from it); `lot.expiring`: once
 *   per lot, a lead time before its expiry, while it has credit (its id names the lot and expiry).
 * - `limit.threshold_reached`, `limit.exhausted` (issue 28): once per limit, window and amount, from
 *   the command whose hold or charge took the window's peak across the threshold or the amount (its
 *   id names the limit, its terms' seq, the window and the amount).
 */

import type { LedgerEvent, LotExpired } from "../domain/events";
import type { Lot } from "../domain/lots";
import { type LowBalanceTransition, spendable } from "../domain/low-balance";
import { type LimitCrossing, type LimitEntry, limitView } from "../domain/spend-limits";
import type { AccountState } from "../domain/state";
import type { Transition } from "../observability/alerts";

export const WEBHOOK_EVENT_TYPES = [
  "account.low_balance",
  "account.balance_recovered",
  "alert.firing",
  "alert.resolved",
  "lot.expiring",
  "lot.expired",
  "limit.threshold_reached",
  "limit.exhausted",
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export interface WebhookEvent {
  id: string;
  type: WebhookEventType;
  /** RFC 3339 UTC: when the crossing or the transition happened. */
  created_at: string;
  /** The account the event concerns; null for alerts, which concern the whole ledger. */
  account_id: string | null;
  data: Record<string, string | number | null>;
}

/** The low-balance event of a crossing, identified by the ledger event that crossed. */
export function lowBalanceEvent(
  transition: Exclude<LowBalanceTransition, null>,
  after: AccountState,
  last: LedgerEvent,
): WebhookEvent {
  return {
    id: `evt_${last.event_id}`,
    type: transition,
    created_at: last.at,
    account_id: after.account_id,
    data: {
      account_id: after.account_id,
      currency: after.currency,
      available: spendable(after),
      threshold: after.low_balance_threshold,
      balance: after.balance,
      reserved: after.reserved,
      credit_limit: after.credit_limit,
      seq: last.seq,
    },
  };
}

/**
 * The event of an alert's transition. Its id names the alert and the moment of the transition,
 * so the one transition cannot produce two ids.
 */
export function alertEvent(transition: Transition): WebhookEvent {
  const { alert, to } = transition;
  const at = to === "alert.firing" ? alert.since : (alert.resolved_at ?? alert.since);
  return {
    id: `evt_${alert.rule}.${alert.subject ?? "all"}.${to === "alert.firing" ? "firing" : "resolved"}.${Date.parse(at)}`,
    type: to,
    created_at: at,
    account_id: null,
    data: {
      rule: alert.rule,
      subject: alert.subject,
      state: alert.state,
      value: alert.value,
      threshold: alert.threshold,
      since: alert.since,
      resolved_at: alert.resolved_at,
    },
  };
}

/** A lot's spendable remainder expired (issue 27): one per LotExpired event. */
export function lotExpiredEvent(
  event: LotExpired,
  account: Pick<AccountState, "account_id" | "currency">,
): WebhookEvent {
  return {
    id: `evt_${event.event_id}`,
    type: "lot.expired",
    created_at: event.at,
    account_id: account.account_id,
    data: {
      account_id: account.account_id,
      currency: account.currency,
      lot_id: event.lot_id,
      kind: event.kind,
      amount: event.amount,
      expires_at: event.expires_at,
      seq: event.seq,
    },
  };
}

/** A lot will expire within the lead time with credit in it (issue 27): once per lot and expiry. */
export function lotExpiringEvent(
  lot: Lot,
  account: Pick<AccountState, "account_id" | "currency">,
  nowMs: number,
): WebhookEvent {
  const expiresAt = new Date(lot.expires_at_ms as number).toISOString();
  return {
    id: `evt_lot_expiring.${account.account_id}.${lot.lot_id}.${lot.expires_at_ms}`,
    type: "lot.expiring",
    created_at: new Date(nowMs).toISOString(),
    account_id: account.account_id,
    data: {
      account_id: account.account_id,
      currency: account.currency,
      lot_id: lot.lot_id,
      kind: lot.kind,
      remaining: lot.remaining,
      held: lot.held,
      expires_at: expiresAt,
    },
  };
}

/** A limit's window crossed its threshold or its amount (issue 28): once per limit and window. */
export function limitEvent(
  crossing: LimitCrossing,
  entry: LimitEntry,
  account: Pick<AccountState, "account_id" | "currency">,
  last: LedgerEvent,
): WebhookEvent {
  const { limit, usage } = entry;
  const view = limitView(entry, Date.parse(last.at));
  const kind = crossing === "limit.exhausted" ? "exhausted" : "threshold";
  return {
    // The amount too: a limit raised within its window and crossed again is another crossing.
    id: `evt_limit_${kind}.${account.account_id}.${limit.limit_id}.${limit.since_seq}.${usage.window_start_ms}.${limit.amount}`,
    type: crossing,
    created_at: last.at,
    account_id: account.account_id,
    data: {
      account_id: account.account_id,
      currency: account.currency,
      limit_id: limit.limit_id,
      window: limit.window,
      window_start: view.window_start,
      resets_at: view.resets_at,
      amount: limit.amount,
      threshold_percent: limit.threshold_percent,
      spent: usage.spent,
      held: usage.held,
      remaining: view.remaining,
      seq: last.seq,
    },
  };
}
