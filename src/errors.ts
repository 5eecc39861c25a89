/**
 * The error model, in the manner of Stripe's: every error the ledger raises on purpose is a
 * `LedgerError` that carries its stable `ProblemCode`, so the HTTP layer answers any of them by
 * one table lookup (PROBLEM_STATUS) and never inspects a message. Expected rejections of a
 * command are not errors at all: the decider returns them as values (src/domain/rejections.ts).
 * An error that is not a LedgerError is a programmer error and answers a generic 500.
 */
import type { RejectionCode } from "./domain/rejections";

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
  | "service_unavailable"
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
  lot_expiry_passed: 400,
  too_many_lots: 422,
  limit_exceeded: 402,
  too_many_limits: 422,
  limit_not_found: 404,
  price_not_found: 422,
  account_frozen: 423,
  internal_error: 500,
  audit_key_unavailable: 503,
  service_misconfigured: 503,
  service_unavailable: 503,
};

/** What the HTTP layer does with an error besides answering it. */
export type ErrorLog =
  /** Nothing: a client's mistake. */
  | null
  /** An error line with this `msg` (the error's message only, never the request). */
  | "invariant_violation"
  | "unhandled_error"
  | "audit_key_unavailable"
  | "d1_failure"
  | "group_call_lost"
  | "config_error";

/** The base of every deliberate error: its code decides the answer's status. */
export abstract class LedgerError extends Error {
  abstract readonly code: ProblemCode;
  /** The problem's `detail`: what a client may read (the message is for the log only). */
  abstract readonly publicDetail: string;
  /** The field errors of an invalid request. */
  readonly fieldErrors: { field: string; message: string }[] | undefined = undefined;
  /** Seconds after which a retry may succeed (a Retry-After header), for a 503. */
  readonly retryAfterSeconds: number | undefined = undefined;
  /** The log line it is answered with, if any. */
  readonly log: ErrorLog = null;
}

/** A broken invariant or a programmer error (src/domain/money.ts `assert`): never handled. */
export class AssertionError extends LedgerError {
  override name = "AssertionError";
  readonly code = "internal_error";
  readonly publicDetail = "The ledger failed to process the request.";
  override readonly log = "invariant_violation";
}

/** A D1 call failed (wrapped where D1 is called: src/read-side/d1.ts); counted for the monitor. */
export class D1Failure extends LedgerError {
  override name = "D1Failure";
  readonly code = "internal_error";
  readonly publicDetail = "The ledger failed to process the request.";
  override readonly log = "d1_failure";
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
  }
}

/** A variable of the environment is not of its form (src/config.ts). */
export class ConfigError extends LedgerError {
  override name = "ConfigError";
  readonly code = "service_misconfigured";
  readonly publicDetail = "The ledger is misconfigured.";
  override readonly log = "config_error";
}
