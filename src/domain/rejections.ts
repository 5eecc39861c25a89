/**
 * Expected failures are values, not exceptions: the decider returns one of these named
 * rejections, and `src/http/problem.ts` maps each code to its HTTP status in one place.
 * A rejected command writes nothing and does not consume its id.
 */

export type RejectionCode =
  /** The account has never been opened. */
  | "account_not_found"
  /** Capture, release, extend or refund names a reservation the account never had. */
  | "reservation_not_found"
  /** A refund names a charge the account never had. */
  | "charge_not_found"
  /** A known id arrived with a different body; `field` names the first differing field. */
  | "idempotency_conflict"
  /** The reservation already ended (captured, released or expired) by another operation. */
  | "reservation_not_open"
  /** The account is frozen: it refuses new reservations and charges, still settles the rest. */
  | "account_frozen"
  /** Reserve or charge above `available + credit_limit`. */
  | "insufficient_funds"
  /** Capture above the hold without `allow_overage`. */
  | "capture_exceeds_reservation"
  /** The refunds of a charge would exceed its amount. */
  | "refund_exceeds_charge"
  /** The balance or the reserved total would leave the exact-integer range. */
  | "balance_limit_exceeded"
  /** The account already holds OPEN_RESERVATIONS_MAX open reservations. */
  | "too_many_open_reservations"
  /** A capture without an amount, of a reservation that pinned no price. */
  | "price_not_pinned"
  /** A priced estimate or usage costs nothing, or more than AMOUNT_MINOR_MAX. */
  | "unpriceable"
  /** A grant's `expires_at` is not after the ledger's now (400, naming the field). */
  | "lot_expiry_passed"
  /** A grant or a refund would make one lot more than LOTS_ACTIVE_MAX with credit in it. */
  | "too_many_lots"
  /** A hold or charge would take a spend limit past its amount (issue 28). */
  | "limit_exceeded"
  /** A new spend limit past LIMITS_PER_ACCOUNT_MAX. */
  | "too_many_limits"
  | "limit_not_found";

export interface Rejection {
  code: RejectionCode;
  detail: string;
  /** Machine-readable facts about the rejection (e.g. `available`, `field`, `status`). */
  facts?: Record<string, string | number | boolean | null>;
}

export function reject(code: RejectionCode, detail: string, facts?: Rejection["facts"]): Rejection {
  return facts === undefined ? { code, detail } : { code, detail, facts };
}
