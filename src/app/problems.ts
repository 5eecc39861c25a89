/**
 * Problems (RFC 9457): the one place where a rejection code becomes a status. Every error of
 * the API, over HTTP (problem+json) or through the service binding (a typed result with the
 * same `code` and `status`), is built from here, with a stable machine-readable `code`.
 */
import type { RejectionCode } from "../domain/rejections";

/** Errors raised before a command reaches an account (validation, authentication, lookups). */
export type EdgeErrorCode =
  | "invalid_request"
  | "unauthorized"
  | "forbidden"
  | "rate_limited"
  | "not_found"
  | "key_not_found"
  | "webhook_endpoint_not_found"
  | "webhook_delivery_not_found"
  | "url_refused"
  | "webhook_endpoints_limit"
  | "price_not_found"
  | "batch_aborted"
  | "method_not_allowed"
  | "payload_too_large"
  | "unsupported_media_type"
  | "audit_key_unavailable"
  | "service_misconfigured"
  | "internal_error";

export type ProblemCode = RejectionCode | EdgeErrorCode;

export const PROBLEM_STATUS: Record<ProblemCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  rate_limited: 429,
  insufficient_funds: 402,
  account_not_found: 404,
  reservation_not_found: 404,
  charge_not_found: 404,
  not_found: 404,
  key_not_found: 404,
  webhook_endpoint_not_found: 404,
  webhook_delivery_not_found: 404,
  url_refused: 422,
  webhook_endpoints_limit: 422,
  method_not_allowed: 405,
  idempotency_conflict: 409,
  reservation_not_open: 409,
  batch_aborted: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  capture_exceeds_reservation: 422,
  refund_exceeds_charge: 422,
  balance_limit_exceeded: 422,
  too_many_open_reservations: 422,
  price_not_pinned: 422,
  unpriceable: 422,
  price_not_found: 422,
  account_frozen: 423,
  internal_error: 500,
  audit_key_unavailable: 503,
  service_misconfigured: 503,
};

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
  price_not_found: "No price in effect",
  account_frozen: "Account frozen",
  internal_error: "Internal error",
  audit_key_unavailable: "Audit signing key unavailable",
  service_misconfigured: "Service misconfigured",
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
