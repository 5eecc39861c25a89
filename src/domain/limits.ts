/**
 * Every limit the ledger enforces, in one place. Units are the last word of each name
 * (TigerBeetle style). The HTTP schemas and the decider both read these constants, so a
 * limit can never be enforced in one layer and forgotten in another.
 */

/** Smallest amount of a credit, reservation, charge or refund, in minor units. */
export const AMOUNT_MINOR_MIN = 1;
/** Largest single amount, in minor units (10^15: a quadrillion cents is far beyond any real bill). */
export const AMOUNT_MINOR_MAX = 1_000_000_000_000_000;
/** A capture may settle for nothing (the provider delivered nothing billable). */
export const CAPTURE_AMOUNT_MINOR_MIN = 0;
/**
 * Bound on |balance| and on reserved, in minor units: 2^51. Every value derived from them
 * (available = balance - reserved, available + credit_limit, a sum in a report of a few
 * accounts) must stay an exact safe integer (< 2^53), and a quarter of the safe range leaves
 * that margin. It is still 22 trillion dollars in cents.
 */
export const BALANCE_ABS_MINOR_MAX = 2 ** 51;
/** Largest allowed overdraft, in minor units. */
export const CREDIT_LIMIT_MINOR_MAX = AMOUNT_MINOR_MAX;
/**
 * Range of an account's low-balance threshold (issue 14), in minor units: the spendable balance
 * (balance - reserved + credit_limit) below it sends `account.low_balance`. 0 would never fire
 * (spendable is never negative), so the smallest useful threshold is 1.
 */
export const LOW_BALANCE_THRESHOLD_MINOR_MIN = 1;
export const LOW_BALANCE_THRESHOLD_MINOR_MAX = AMOUNT_MINOR_MAX;

export const TTL_SECONDS_MIN = 1;
/** One week. */
export const TTL_SECONDS_MAX = 604_800;
export const TTL_SECONDS_DEFAULT = 900;

/** Caller-supplied ids are permanent idempotency keys; they are short and URL-safe. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
export const ID_LENGTH_MAX = 128;
/** ISO 4217 style code, upper case. */
export const CURRENCY_PATTERN = /^[A-Z]{3}$/;

export const METADATA_KEYS_MAX = 32;
export const METADATA_KEY_LENGTH_MAX = 64;
/** Size of the metadata object serialised as JSON, in UTF-8 bytes. */
export const METADATA_BYTES_MAX = 4_096;
export const REASON_LENGTH_MAX = 500;
/** Length of each platform logging field in `context` (request_id, model, ...). */
export const CONTEXT_FIELD_LENGTH_MAX = 256;
/** Largest price per rule, in minor units per `per_units` units. */
export const PRICE_MINOR_MAX = 1_000_000_000_000;
/** Largest `per_units` divisor of a price rule, in units (tokens or requests). */
export const PER_UNITS_MAX = 1_000_000_000;
/** Token counts reported in a capture's usage. */
export const TOKENS_MAX = 1_000_000_000_000;
/** One day: a latency above it is a bug in the caller. */
export const LATENCY_MS_MAX = 86_400_000;

/** Request bodies above this are refused with 413 before they are parsed. */
export const REQUEST_BODY_BYTES_MAX = 65_536;

export const EVENTS_PAGE_LIMIT_DEFAULT = 100;
export const EVENTS_PAGE_LIMIT_MAX = 1_000;
/** Lots per page of `GET .../lots`. */
export const LOTS_PAGE_LIMIT_DEFAULT = 100;
export const LOTS_PAGE_LIMIT_MAX = 1_000;

/**
 * Open reservations one account may hold at once. Bounds the work of the expiry sweep and the
 * memory of an account object; a gateway that needs more holds is leaking them.
 */
export const OPEN_RESERVATIONS_MAX = 10_000;
/** Reservations expired in one transaction; the alarm re-arms at once for the rest. */
export const EXPIRY_BATCH_MAX = 100;

/** Commands one batch may hold (POST /v1/accounts/{id}/batch). */
export const BATCH_OPERATIONS_MAX = 1_000;

/**
 * Sealed segments (durable-objects/archive.ts, docs/archive.md): an account's log is sealed into
 * an R2 object every SEGMENT_EVENTS_MAX events or once its oldest unsealed event is
 * SEGMENT_AGE_MS_MAX old, whichever comes first, so that the object's SQLite keeps a bounded
 * tail. A segment also ends before its lines pass SEGMENT_BYTES_MAX (the object is built in
 * memory to be put and hashed). Each can be overridden per deployment (wrangler vars of the
 * same names) and per object in tests.
 */
export const SEGMENT_EVENTS_MAX = 10_000;
export const SEGMENT_AGE_MS_MAX = 7 * 86_400_000;
export const SEGMENT_BYTES_MAX = 8 * 1024 * 1024;

/** Expired holds are left to their own alarm for this long before the sweep steps in. */
export const SWEEP_GRACE_MS = 60_000;
