/**
 * Commands: what a caller asks the ledger to do (imperative names). They are already
 * validated for shape and limits at the edge (src/http/schemas.ts); the decider re-asserts
 * the limits it relies on. `now` is not part of a command: the shell passes it to `decide`.
 */
import { LOT_PRIORITY_DEFAULT, type LotGrant } from "./lots";
import type { Minor } from "./money";
import type { PinnedPricing } from "./pricing";
import type { LimitTerms } from "./spend-limits";

/** Who a hold or a charge is for (issue 28): from authentication, never from a body. */
export interface Caller {
  api_key_id?: string;
  project_id?: string;
}

/** The terms of a grant that names none: a paid lot at paid's default priority, never expiring. */
export const DEFAULT_GRANT: LotGrant = { kind: "paid", priority: LOT_PRIORITY_DEFAULT.paid, expires_at: null };

export type Metadata = Record<string, string | number | boolean>;
export type OnExpiry = "release" | "capture";
export type AccountStatus = "active" | "frozen";

/**
 * The platform's logging fields, in the order logs and the read side list them; projected into
 * the usage log by the reporting side and allowed in the request log line.
 */
export const USAGE_CONTEXT_FIELDS = ["request_id", "user_id", "service_id", "alias", "provider", "model"] as const;
export type UsageContext = { [field in (typeof USAGE_CONTEXT_FIELDS)[number]]?: string };

export interface Usage {
  input_tokens?: number;
  output_tokens?: number;
  cached_tokens?: number;
  latency_ms?: number;
  status?: string;
  error_code?: string;
}

export interface OpenAccount {
  type: "OpenAccount";
  account_id: string;
  currency: string;
  credit_limit: Minor;
  metadata: Metadata;
}

export interface UpdateAccount {
  type: "UpdateAccount";
  credit_limit?: Minor;
  status?: AccountStatus;
  /** The low-balance threshold (issue 14): a number sets it, null turns it off. */
  low_balance_threshold?: Minor | null;
}

export interface CreditFunds {
  type: "CreditFunds";
  credit_id: string;
  amount: Minor;
  /** The lot's terms; absent: a paid lot that never expires (`DEFAULT_GRANT`). */
  grant?: LotGrant;
  reason: string | null;
  metadata: Metadata;
}

export interface ReserveFunds {
  type: "ReserveFunds";
  reservation_id: string;
  /**
   * The hold. With `pricing` it must be the priced estimate (priceOf), which decide checks. With
   * `amount_min` it is the most to hold: the hold is what the balance and the limits allow.
   */
  amount: Minor;
  /** A hold sized to what is affordable (issue 28): refused only below this. */
  amount_min?: Minor;
  caller?: Caller;
  /** The price the Worker resolved (no D1 read inside the command) and the estimate; pinned. */
  pricing?: PinnedPricing;
  ttl_seconds: number;
  on_expiry: OnExpiry;
  context: UsageContext;
  metadata: Metadata;
}

export interface CaptureReservation {
  type: "CaptureReservation";
  reservation_id: string;
  /** The cost; null to compute it from `usage` at the reservation's pinned price. */
  amount: Minor | null;
  allow_overage: boolean;
  usage: Usage;
  metadata: Metadata;
}

export interface ReleaseReservation {
  type: "ReleaseReservation";
  reservation_id: string;
  reason: string | null;
}

export interface ExtendReservation {
  type: "ExtendReservation";
  reservation_id: string;
  /** Optional idempotency key of this extension; see docs/api.md, "Idempotency". */
  extension_id: string | null;
  ttl_seconds: number;
  /** Switch the settlement rule (e.g. to `capture` once the provider starts streaming). */
  on_expiry: OnExpiry | null;
}

export interface ChargeAccount {
  type: "ChargeAccount";
  charge_id: string;
  amount: Minor;
  caller?: Caller;
  context: UsageContext;
  metadata: Metadata;
}

export interface RefundCharge {
  type: "RefundCharge";
  refund_id: string;
  charge_id: string;
  amount: Minor;
  reason: string | null;
}

export interface AdjustBalance {
  type: "AdjustBalance";
  adjustment_id: string;
  amount: Minor;
  reason: string;
  /** A positive adjustment's lot terms (absent: `DEFAULT_GRANT`); never on a negative one. */
  grant?: LotGrant;
}

/** Sets a spend limit (issue 28): new, or new terms for the limit of this id. */
export interface SetLimit {
  type: "SetLimit";
  limit_id: string;
  terms: LimitTerms;
}

export interface RemoveLimit {
  type: "RemoveLimit";
  limit_id: string;
}

/** Settles every open reservation whose expiry is at or before `now` (bounded per call). */
export interface ExpireReservations {
  type: "ExpireReservations";
  reservation_ids: readonly string[];
}

export type Command =
  | OpenAccount
  | UpdateAccount
  | CreditFunds
  | ReserveFunds
  | CaptureReservation
  | ReleaseReservation
  | ExtendReservation
  | ChargeAccount
  | RefundCharge
  | AdjustBalance
  | ExpireReservations
  | SetLimit
  | RemoveLimit;

export type CommandType = Command["type"];
export type CommandOf<T extends CommandType> = Extract<Command, { type: T }>;
