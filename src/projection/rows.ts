/**
 * Pure mapping from ledger events to the rows of the D1 read side. Incremental projection and
 * reprojection both go through these functions, which is why a rebuild equals the incremental
 * result column for column.
 */

import { canonicalJson } from "../domain/canonical";
import { USAGE_CONTEXT_FIELDS, type UsageContext } from "../domain/commands";
import { eventEffect, type LedgerEvent, unreachable } from "../domain/events";

export type Cell = string | number | null;

/** Column order of `ledger_events` (migrations/0001_read_side.sql). */
export const LEDGER_EVENT_COLUMNS = [
  "account_id",
  "seq",
  "event_id",
  "type",
  "created_at",
  "amount",
  "balance_delta",
  "reserved_delta",
  "balance_after",
  "reserved_after",
  "credit_id",
  "reservation_id",
  "charge_id",
  "refund_id",
  "adjustment_id",
  "extension_id",
  "reason",
  "currency",
  "credit_limit",
  "status",
  "on_expiry",
  "ttl_seconds",
  "expires_at",
  "reserved_amount",
  "released_amount",
  "overage",
  "charge_amount",
  "charge_refunded_total",
  ...USAGE_CONTEXT_FIELDS,
  "input_tokens",
  "output_tokens",
  "cached_tokens",
  "latency_ms",
  "usage_status",
  "error_code",
  "metadata",
] as const;
export type LedgerEventRow = Record<(typeof LEDGER_EVENT_COLUMNS)[number], Cell>;

/** Every column NULL: each row starts as a copy of it. */
const EMPTY_ROW = Object.freeze(Object.fromEntries(LEDGER_EVENT_COLUMNS.map((c) => [c, null])) as LedgerEventRow);

/** Flattens one event into its `ledger_events` row. */
export function ledgerEventRow(accountId: string, event: LedgerEvent): LedgerEventRow {
  const effect = eventEffect(event);
  return {
    ...EMPTY_ROW,
    account_id: accountId,
    seq: event.seq,
    event_id: event.event_id,
    type: event.type,
    created_at: event.at,
    balance_delta: effect.balance,
    reserved_delta: effect.reserved,
    balance_after: event.balance_after,
    reserved_after: event.reserved_after,
    ...eventColumns(event),
  };
}

type Columns = Partial<LedgerEventRow>;

/** The columns an event of each type fills. */
function eventColumns(event: LedgerEvent): Columns {
  switch (event.type) {
    case "AccountOpened":
      return {
        currency: event.currency,
        credit_limit: event.credit_limit,
        metadata: json(event.metadata),
      };
    case "AccountUpdated":
      return { credit_limit: event.credit_limit, status: event.status };
    case "FundsCredited":
      return {
        amount: event.amount,
        credit_id: event.credit_id,
        reason: event.reason,
        metadata: json(event.metadata),
      };
    case "AccountCharged":
      return {
        amount: event.amount,
        charge_id: event.charge_id,
        metadata: json(event.metadata),
        ...context(event.context),
      };
    case "ChargeRefunded":
      return {
        amount: event.amount,
        refund_id: event.refund_id,
        charge_id: event.charge_id,
        reason: event.reason,
        charge_amount: event.charge_amount,
        charge_refunded_total: event.charge_refunded_total,
      };
    case "BalanceAdjusted":
      return { amount: event.amount, adjustment_id: event.adjustment_id, reason: event.reason };
    case "LotExpired":
      return { amount: event.amount };
    case "LotsOpened":
      return {};
    case "LimitSet":
    case "LimitRemoved":
      return {};
    case "FundsReserved":
    case "ReservationExtended":
    case "ReservationCaptured":
    case "ReservationReleased":
    case "ReservationExpired":
      return reservationColumns(event);
    default:
      return unreachable(event);
  }
}

type ReservationEvent = Extract<
  LedgerEvent,
  {
    type:
      | "FundsReserved"
      | "ReservationExtended"
      | "ReservationCaptured"
      | "ReservationReleased"
      | "ReservationExpired";
  }
>;

/** The columns of a reservation's events: the hold, its expiry, its settlement. */
function reservationColumns(event: ReservationEvent): Columns {
  switch (event.type) {
    case "FundsReserved":
      return {
        amount: event.amount,
        reservation_id: event.reservation_id,
        on_expiry: event.on_expiry,
        ttl_seconds: event.ttl_seconds,
        expires_at: event.expires_at,
        metadata: json(event.metadata),
        ...context(event.context),
      };
    case "ReservationExtended":
      return {
        reservation_id: event.reservation_id,
        extension_id: event.extension_id,
        on_expiry: event.on_expiry,
        ttl_seconds: event.ttl_seconds,
        expires_at: event.expires_at,
      };
    case "ReservationCaptured":
      return {
        amount: event.amount,
        reservation_id: event.reservation_id,
        charge_id: event.reservation_id,
        reserved_amount: event.reserved_amount,
        released_amount: event.released_amount,
        overage: event.overage,
        input_tokens: event.usage.input_tokens ?? null,
        output_tokens: event.usage.output_tokens ?? null,
        cached_tokens: event.usage.cached_tokens ?? null,
        latency_ms: event.usage.latency_ms ?? null,
        usage_status: event.usage.status ?? null,
        error_code: event.usage.error_code ?? null,
        metadata: json(event.metadata),
        ...context(event.context),
      };
    case "ReservationReleased":
      return {
        amount: event.reserved_amount,
        reservation_id: event.reservation_id,
        reserved_amount: event.reserved_amount,
        released_amount: event.reserved_amount,
        reason: event.reason,
      };
    case "ReservationExpired":
      return {
        amount: event.captured_amount,
        reservation_id: event.reservation_id,
        charge_id: event.on_expiry === "capture" ? event.reservation_id : null,
        on_expiry: event.on_expiry,
        reserved_amount: event.reserved_amount,
        released_amount: event.released_amount,
        ...context(event.context),
      };
    default:
      return unreachable(event);
  }
}

/** The platform's logging fields, as columns. */
function context(c: UsageContext): Columns {
  return Object.fromEntries(USAGE_CONTEXT_FIELDS.map((field) => [field, c[field] ?? null]));
}

/**
 * Canonical JSON: the same cell whether the event was read from the events table (members in the
 * order they were written) or from a sealed segment (canonical order), so a rebuild from R2 equals
 * the incremental projection column for column.
 */
function json(value: unknown): string {
  return canonicalJson(value);
}
