/**
 * Problems (RFC 9457): the one place where a rejection code becomes a status. Every error of
 * the API, over HTTP (problem+json) or through the service binding (a typed result with the
 * same `code` and `status`), is built from here, with a stable machine-readable `code`.
 */
import { type EdgeErrorCode, PROBLEM_STATUS, type ProblemCode } from "../errors";

export { type EdgeErrorCode, PROBLEM_STATUS, type ProblemCode };

const TITLES: Record<ProblemCode, string> = {
  invalid_request: "Invalid request",
  unauthorized: "Unauthorized",
  forbidden: "Forbidden",
  rate_limited: "Rate limited",
  insufficient_funds: "Insufficient funds",
  account_not_found: "Account not found",
  reservation_not_found: "Reservation not found",
  charge_not_found: "Charge not found",
  not_found: "Not found",
  key_not_found: "API key not found",
  webhook_endpoint_not_found: "Webhook endpoint not found",
  webhook_delivery_not_found: "Webhook delivery not found",
  url_refused: "URL refused",
  webhook_endpoints_limit: "Too many webhook endpoints",
  method_not_allowed: "Method not allowed",
  idempotency_conflict: "Idempotency conflict",
  reservation_not_open: "Reservation not open",
  batch_aborted: "Batch rolled back",
  payload_too_large: "Payload too large",
  unsupported_media_type: "Unsupported media type",
  capture_exceeds_reservation: "Capture exceeds reservation",
  refund_exceeds_charge: "Refund exceeds charge",
  balance_limit_exceeded: "Balance limit exceeded",
  too_many_open_reservations: "Too many open reservations",
  price_not_pinned: "No price pinned",
  unpriceable: "Unpriceable",
  lot_expiry_passed: "Lot expiry passed",
  too_many_lots: "Too many lots",
  limit_exceeded: "Spend limit exceeded",
  too_many_limits: "Too many spend limits",
  limit_not_found: "Spend limit not found",
  price_not_found: "No price in effect",
  account_frozen: "Account frozen",
  internal_error: "Internal error",
  audit_key_unavailable: "Audit signing key unavailable",
  service_misconfigured: "Service misconfigured",
  service_unavailable: "Service unavailable",
};

export interface FieldError {
  /** Dotted path of the failing field ("" for the body itself). */
  field: string;
  message: string;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ProblemCode;
  detail: string;
  instance?: string;
  errors?: FieldError[];
  [fact: string]: unknown;
}

export function problem(
  code: ProblemCode,
  detail: string,
  extra?: { errors?: FieldError[]; facts?: Record<string, unknown> | undefined; instance?: string },
): Problem {
  const body: Problem = {
    // Facts first, so they can never overwrite the standard members.
    ...(extra?.facts ?? {}),
    type: `/problems/${code}`,
    title: TITLES[code],
    status: PROBLEM_STATUS[code],
    code,
    detail,
  };
  if (extra?.instance !== undefined) body.instance = extra.instance;
  if (extra?.errors !== undefined) body.errors = extra.errors;
  return body;
}
