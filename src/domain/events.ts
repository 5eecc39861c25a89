/**
 * Events: what happened to an account (past-tense names). They are the only source of truth:
 * stored append-only with a contiguous `seq` from 1, never updated or deleted. Every event
 * carries `balance_after` and `reserved_after`, so any past balance can be read from the log
 * and the original response of any operation can be rendered again from its event.
 */
import type { AccountStatus, Caller, Metadata, OnExpiry, Usage, UsageContext } from "./commands";
import type { Funding, LotGrant, LotKind, Returned } from "./lots";

export type { LotGrant };

import type { Minor } from "./money";
import type { PinnedPricing, PriceComputation } from "./pricing";
import type { Counted, LimitTerms } from "./spend-limits";

export type { Caller };

/** What a hold sized to what is affordable asked for (issue 28). */
export interface FundsReservedRequest {
  amount_min: Minor;
  amount_max: Minor;
  /** With a token price: how many output tokens of the estimate the held amount covers. */
  output_tokens_covered?: number;
}

/** Where a hold or a charge counted against spend limits (issue 28); absent where none matched. */
export interface LimitFields {
  limits?: Counted[];
}

interface EventBase {
  seq: number;
  event_id: string;
  /** RFC 3339 UTC timestamp with milliseconds. */
  at: string;
  balance_after: Minor;
  reserved_after: Minor;
  /** SHA-256 of the previous hash and this event's canonical JSON (src/domain/chain.ts). */
  hash: string;
}

export interface AccountOpened extends EventBase {
  type: "AccountOpened";
  account_id: string;
  currency: string;
  credit_limit: Minor;
  metadata: Metadata;
  /**
   * True when the account keeps its credit in lots from its first event (issue 27). Absent from
   * accounts opened before lots existed: their book starts at their `LotsOpened` event.
   */
  lots?: true;
}

/*
 * Lot fields (issue 27). They are optional in the types because events written before lots
 * existed lack them; once an account keeps lots (`AccountOpened.lots` or `LotsOpened`), every
 * money event carries its own, and `evolve` asserts it (src/domain/lot-events.ts).
 */

/** A grant's lot fields: the lot it created and what of the amount paid the debt first. */
export interface GrantFields {
  lot_id?: string;
  grant?: LotGrant;
  applied_to_debt?: Minor;
}

/** What paid for a spend, in the order it was drawn; `lot_id` null: the debt (credit limit). */
export interface FundedFields {
  funded_by?: Funding[];
}

/** A lot a refund created: where a source lot had expired, or where a grant paid the debt since. */
export interface RefundedLot {
  lot_id: string;
  kind: LotKind;
  priority: number;
  expires_at: string | null;
}

/** A lot as `LotsOpened` states it. */
export interface OpenedLot extends LotGrant {
  lot_id: string;
  amount: Minor;
  remaining: Minor;
}

export interface AccountUpdated extends EventBase {
  type: "AccountUpdated";
  /** Values after the update; `changed` names which of them the update changed. */
  credit_limit: Minor;
  status: AccountStatus;
  /**
   * The low-balance threshold after the update (null: off). Absent from events written before
   * issue 14, which leave it as it was (off).
   */
  low_balance_threshold?: Minor | null;
  changed: AccountUpdatedField[];
}

export type AccountUpdatedField = "credit_limit" | "status" | "low_balance_threshold";

export interface FundsCredited extends EventBase, GrantFields {
  type: "FundsCredited";
  credit_id: string;
  amount: Minor;
  reason: string | null;
  metadata: Metadata;
}

export interface FundsReserved extends EventBase, LimitFields {
  type: "FundsReserved";
  caller?: Caller;
  /** A hold sized to what is affordable: what was asked; `amount` is what was held. */
  requested?: FundsReservedRequest;
  /** The lots the hold earmarks, in burn order; a `lot_id` null entry is what no lot covers. */
  funded_by?: Funding[];
  reservation_id: string;
  amount: Minor;
  ttl_seconds: number;
  expires_at: string;
  on_expiry: OnExpiry;
  context: UsageContext;
  metadata: Metadata;
  /** Present when the hold was priced: the pinned rules, the estimate and how `amount` was computed. */
  pricing?: PinnedPricing & { computation: PriceComputation };
}

export interface ReservationExtended extends EventBase {
  type: "ReservationExtended";
  reservation_id: string;
  extension_id: string | null;
  ttl_seconds: number;
  previous_expires_at: string;
  expires_at: string;
  on_expiry: OnExpiry;
}

/** What a hold's end says of its lots: the earmarks it held (copied from the hold). */
interface EndFields extends LimitFields {
  earmarks?: Funding[];
}

export interface ReservationCaptured extends EventBase, EndFields, FundedFields {
  type: "ReservationCaptured";
  /** The hold's caller (issue 28), as its context is: the charge's rollups are by key and project. */
  caller?: Caller;
  reservation_id: string;
  /** The hold that this capture closes. */
  reserved_amount: Minor;
  /** Charged to the balance; the capture is a charge whose charge_id is the reservation_id. */
  amount: Minor;
  /** Part of the hold given back: max(reserved_amount - amount, 0). */
  released_amount: Minor;
  /** Part of the charge beyond the hold: max(amount - reserved_amount, 0). */
  overage: Minor;
  allow_overage: boolean;
  /** The reservation's logging context, copied so that every charge event is self-contained. */
  context: UsageContext;
  usage: Usage;
  metadata: Metadata;
  /** Present when `amount` was computed from `usage` at the pinned price: every line of it. */
  pricing?: PriceComputation;
}

export interface ReservationReleased extends EventBase, EndFields {
  type: "ReservationReleased";
  reservation_id: string;
  reserved_amount: Minor;
  reason: string | null;
}

export interface ReservationExpired extends EventBase, EndFields, FundedFields {
  type: "ReservationExpired";
  caller?: Caller;
  reservation_id: string;
  reserved_amount: Minor;
  on_expiry: OnExpiry;
  /** With on_expiry=capture the whole estimate is charged (charge_id = reservation_id). */
  captured_amount: Minor;
  released_amount: Minor;
  /** The reservation's logging context (a capture by expiry is a charge too). */
  context: UsageContext;
}

export interface AccountCharged extends EventBase, FundedFields, LimitFields {
  type: "AccountCharged";
  caller?: Caller;
  charge_id: string;
  amount: Minor;
  context: UsageContext;
  metadata: Metadata;
}

export interface ChargeRefunded extends EventBase, LimitFields {
  type: "ChargeRefunded";
  refund_id: string;
  charge_id: string;
  amount: Minor;
  reason: string | null;
  /** The charge's amount and its refunded total after this refund. */
  charge_amount: Minor;
  charge_refunded_total: Minor;
  /** Where each part went: the source that paid it and the lot credited (null: the debt). */
  returned_to?: Returned[];
  /** The lots this refund created (each named by a `returned_to` entry). */
  created_lots?: RefundedLot[];
}

/** A positive adjustment is a grant (a lot); a negative one spends like a charge. */
export interface BalanceAdjusted extends EventBase, GrantFields, FundedFields {
  type: "BalanceAdjusted";
  adjustment_id: string;
  /** Signed and non-zero. */
  amount: Minor;
  reason: string;
}

/** A lot's spendable remainder expired at its `expires_at` (breakage). */
export interface LotExpired extends EventBase {
  type: "LotExpired";
  lot_id: string;
  kind: LotKind;
  amount: Minor;
  /** The lot's expiry (the event's time is when the ledger applied it, at or after). */
  expires_at: string;
}

/**
 * An account opened before lots existed starts keeping them (decision 0006): its positive
 * balance becomes one paid lot that never expires, a negative one the debt, and its open holds
 * earmark that lot in the order they were made.
 */
export interface LotsOpened extends EventBase {
  type: "LotsOpened";
  lots: OpenedLot[];
  debt: Minor;
  earmarks: { reservation_id: string; funded_by: Funding[] }[];
}

/** A spend limit set (issue 28): new, or its amount or threshold changed. */
export interface LimitSet extends EventBase {
  type: "LimitSet";
  limit_id: string;
  terms: LimitTerms;
}

export interface LimitRemoved extends EventBase {
  type: "LimitRemoved";
  limit_id: string;
}

export type LedgerEvent =
  | AccountOpened
  | AccountUpdated
  | FundsCredited
  | FundsReserved
  | ReservationExtended
  | ReservationCaptured
  | ReservationReleased
  | ReservationExpired
  | AccountCharged
  | ChargeRefunded
  | BalanceAdjusted
  | LotExpired
  | LotsOpened
  | LimitSet
  | LimitRemoved;

/** The events that end a reservation: a capture, a release, an expiry. Each hold ends once. */
export type ReservationEnd = ReservationCaptured | ReservationReleased | ReservationExpired;

export function endsReservation(event: LedgerEvent): event is ReservationEnd {
  return (
    event.type === "ReservationCaptured" || event.type === "ReservationReleased" || event.type === "ReservationExpired"
  );
}

export type LedgerEventType = LedgerEvent["type"];

export const LEDGER_EVENT_TYPES: readonly LedgerEventType[] = [
  "AccountOpened",
  "AccountUpdated",
  "FundsCredited",
  "FundsReserved",
  "ReservationExtended",
  "ReservationCaptured",
  "ReservationReleased",
  "ReservationExpired",
  "AccountCharged",
  "ChargeRefunded",
  "BalanceAdjusted",
  "LotExpired",
  "LotsOpened",
  "LimitSet",
  "LimitRemoved",
];

/** An event before the shell has stamped it; decide() produces these in order. */
export type EventBody<E extends LedgerEvent = LedgerEvent> = E extends LedgerEvent ? Omit<E, keyof EventBase> : never;

/** Net change of the posted balance and of the reserved total that an event causes. */
export function eventEffect(event: EventBody): { balance: Minor; reserved: Minor } {
  switch (event.type) {
    case "AccountOpened":
    case "AccountUpdated":
    case "ReservationExtended":
    case "LotsOpened":
    case "LimitSet":
    case "LimitRemoved":
      return { balance: 0, reserved: 0 };
    case "LotExpired":
      return { balance: -event.amount, reserved: 0 };
    case "FundsCredited":
      return { balance: event.amount, reserved: 0 };
    case "FundsReserved":
      return { balance: 0, reserved: event.amount };
    case "ReservationCaptured":
      return { balance: -event.amount, reserved: -event.reserved_amount };
    case "ReservationReleased":
      return { balance: 0, reserved: -event.reserved_amount };
    case "ReservationExpired":
      return { balance: -event.captured_amount, reserved: -event.reserved_amount };
    case "AccountCharged":
      return { balance: -event.amount, reserved: 0 };
    case "ChargeRefunded":
      return { balance: event.amount, reserved: 0 };
    case "BalanceAdjusted":
      return { balance: event.amount, reserved: 0 };
    default:
      return unreachable(event);
  }
}

export function unreachable(value: never): never {
  throw new Error(`unreachable: ${JSON.stringify(value)}`);
}
