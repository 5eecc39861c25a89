/**
 * Pure mapping from ledger events to the rows of the D1 read side. Incremental projection and
 * reprojection both go through these functions, which is why a rebuild equals the incremental
 * result column for column.
 */

import { USAGE_CONTEXT_FIELDS, type UsageContext } from "../domain/commands";
import { eventEffect, type LedgerEvent, unreachable } from "../domain/events";
import type { AccountState } from "../domain/state";

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

const emptyRow = (): LedgerEventRow => Object.fromEntries(LEDGER_EVENT_COLUMNS.map((c) => [c, null])) as LedgerEventRow;

/** Flattens one event into its `ledger_events` row. */
export function ledgerEventRow(accountId: string, event: LedgerEvent): LedgerEventRow {
  const effect = eventEffect(event);
  return Object.assign(emptyRow(), {
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
  });
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

function json(value: unknown): string {
  return JSON.stringify(value);
}

/** How an event changes the `reservations` table, or null when it does not touch it. */
export type ReservationChange =
  | { kind: "insert"; row: Record<string, Cell> }
  | { kind: "update"; seq: number; reservation_id: string; set: Record<string, Cell> };

export function reservationChange(accountId: string, event: LedgerEvent): ReservationChange | null {
  switch (event.type) {
    case "FundsReserved":
      return {
        kind: "insert",
        row: {
          account_id: accountId,
          reservation_id: event.reservation_id,
          status: "open",
          amount: event.amount,
          captured_amount: null,
          released_amount: null,
          overage: 0,
          on_expiry: event.on_expiry,
          ttl_seconds: event.ttl_seconds,
          expires_at: event.expires_at,
          created_at: event.at,
          settled_at: null,
          request_id: event.context.request_id ?? null,
          service_id: event.context.service_id ?? null,
          provider: event.context.provider ?? null,
          model: event.context.model ?? null,
          reserve_seq: event.seq,
          updated_seq: event.seq,
        },
      };
    case "ReservationExtended":
      return update(event, {
        expires_at: event.expires_at,
        ttl_seconds: event.ttl_seconds,
        on_expiry: event.on_expiry,
      });
    case "ReservationCaptured":
      return update(event, {
        status: "captured",
        captured_amount: event.amount,
        released_amount: event.released_amount,
        overage: event.overage,
        settled_at: event.at,
      });
    case "ReservationReleased":
      return update(event, {
        status: "released",
        captured_amount: null,
        released_amount: event.reserved_amount,
        settled_at: event.at,
      });
    case "ReservationExpired":
      return update(event, {
        status: "expired",
        captured_amount: event.on_expiry === "capture" ? event.captured_amount : null,
        released_amount: event.released_amount,
        settled_at: event.at,
      });
    default:
      return null;
  }
}

function update(event: LedgerEvent & { reservation_id: string }, set: Record<string, Cell>): ReservationChange {
  return {
    kind: "update",
    seq: event.seq,
    reservation_id: event.reservation_id,
    set: { ...set, updated_seq: event.seq },
  };
}

/** The `accounts` row for a snapshot, stamped with when it was projected. */
export function accountRow(account: AccountState, projectedAtMs: number): Record<string, Cell> {
  const lag = Math.max(0, projectedAtMs - Date.parse(account.updated_at));
  return {
    account_id: account.account_id,
    currency: account.currency,
    balance: account.balance,
    reserved: account.reserved,
    available: account.balance - account.reserved,
    credit_limit: account.credit_limit,
    status: account.status,
    open_reservations: account.open_reservations,
    last_seq: account.last_seq,
    created_at: account.created_at,
    updated_at: account.updated_at,
    projected_at: new Date(projectedAtMs).toISOString(),
    projection_lag_ms: lag,
  };
}
