/**
 * The API's request and response shapes as zod schemas. The same objects validate requests at
 * the edge and generate /openapi.json, so the document cannot drift from the code. Request
 * objects are strict: unknown fields are rejected.
 */
import { z } from "@hono/zod-openapi";
import { LEDGER_EVENT_TYPES, type LedgerEventType } from "../domain/events";
import {
  AMOUNT_MINOR_MAX,
  AMOUNT_MINOR_MIN,
  BATCH_OPERATIONS_MAX,
  CAPTURE_AMOUNT_MINOR_MIN,
  CONTEXT_FIELD_LENGTH_MAX,
  CREDIT_LIMIT_MINOR_MAX,
  CURRENCY_PATTERN,
  EVENTS_PAGE_LIMIT_DEFAULT,
  EVENTS_PAGE_LIMIT_MAX,
  ID_LENGTH_MAX,
  ID_PATTERN,
  LATENCY_MS_MAX,
  METADATA_BYTES_MAX,
  METADATA_KEY_LENGTH_MAX,
  METADATA_KEYS_MAX,
  REASON_LENGTH_MAX,
  TOKENS_MAX,
  TTL_SECONDS_DEFAULT,
  TTL_SECONDS_MAX,
  TTL_SECONDS_MIN,
} from "../domain/limits";
import { PER_UNITS_MAX, PRICE_MINOR_MAX, PRICE_UNITS } from "../domain/pricing";
import { KEY_NAME_LENGTH_MAX, SCOPES } from "../security/api-keys";
import { PROBLEM_STATUS } from "./problem";

const utf8 = new TextEncoder();

export const Id = z
  .string()
  .max(ID_LENGTH_MAX)
  .regex(ID_PATTERN, "must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
  .openapi({ example: "res_01J9Z3" });
const Amount = z
  .number()
  .int()
  .min(AMOUNT_MINOR_MIN)
  .max(AMOUNT_MINOR_MAX)
  .openapi({ description: "Integer minor units (e.g. cents).", example: 1250 });
const CaptureAmount = z.number().int().min(CAPTURE_AMOUNT_MINOR_MIN).max(AMOUNT_MINOR_MAX);
const SignedAmount = z
  .number()
  .int()
  .min(-AMOUNT_MINOR_MAX)
  .max(AMOUNT_MINOR_MAX)
  .refine((n) => n !== 0, "must not be zero");
const CreditLimit = z.number().int().min(0).max(CREDIT_LIMIT_MINOR_MAX);
const Reason = z.string().min(1).max(REASON_LENGTH_MAX);
const Ttl = z.number().int().min(TTL_SECONDS_MIN).max(TTL_SECONDS_MAX);
const OnExpiry = z.enum(["release", "capture"]);
const Short = z.string().min(1).max(CONTEXT_FIELD_LENGTH_MAX);

export const Metadata = z
  .record(z.string().min(1).max(METADATA_KEY_LENGTH_MAX), z.union([z.string(), z.number(), z.boolean()]))
  .refine((m) => Object.keys(m).length <= METADATA_KEYS_MAX, `at most ${METADATA_KEYS_MAX} keys`)
  .refine((m) => Object.values(m).every((v) => typeof v !== "number" || Number.isFinite(v)), "numbers must be finite")
  .refine((m) => utf8.encode(JSON.stringify(m)).length <= METADATA_BYTES_MAX, `at most ${METADATA_BYTES_MAX} bytes`)
  .openapi("Metadata", { description: "Flat object of at most 32 string, number or boolean values, 4 KB as JSON." });

export const UsageContext = z
  .strictObject({
    request_id: Short.optional(),
    user_id: Short.optional(),
    service_id: Short.optional(),
    alias: Short.optional(),
    provider: Short.optional(),
    model: Short.optional(),
  })
  .openapi("UsageContext");

const Tokens = z.number().int().min(0).max(TOKENS_MAX);
export const Usage = z
  .strictObject({
    input_tokens: Tokens.optional(),
    output_tokens: Tokens.optional(),
    cached_tokens: Tokens.optional(),
    latency_ms: z.number().int().min(0).max(LATENCY_MS_MAX).optional(),
    status: z.string().min(1).max(64).optional(),
    error_code: z.string().min(1).max(128).optional(),
  })
  .openapi("Usage");

// ------------------------------------------------------------------ requests

export const OpenAccountBody = z
  .strictObject({
    account_id: Id,
    currency: z.string().regex(CURRENCY_PATTERN, "must be three upper-case letters").openapi({ example: "USD" }),
    credit_limit: CreditLimit.optional(),
    metadata: Metadata.optional(),
  })
  .openapi("OpenAccountRequest");

export const UpdateAccountBody = z
  .strictObject({ credit_limit: CreditLimit.optional(), status: z.enum(["active", "frozen"]).optional() })
  .refine((b) => b.credit_limit !== undefined || b.status !== undefined, "give credit_limit or status")
  .openapi("UpdateAccountRequest");

export const CreditBody = z
  .strictObject({ credit_id: Id, amount: Amount, reason: Reason.optional(), metadata: Metadata.optional() })
  .openapi("CreditRequest");

export const PriceRefSchema = z
  .strictObject({ service_id: Short, provider: Short, model: Short })
  .openapi("PriceRef", { description: "Which price: the rules in effect now for this service, provider and model." });

export const EstimateSchema = z
  .strictObject({
    max_input_tokens: Tokens,
    max_output_tokens: Tokens,
    max_cached_tokens: Tokens.optional(),
  })
  .openapi("Estimate", { description: "The most the call may use; priced to make the hold." });

const ReserveFields = z.strictObject({
  reservation_id: Id,
  amount: Amount.optional().openapi({ description: "The hold; or give price and estimate instead." }),
  price: PriceRefSchema.optional(),
  estimate: EstimateSchema.optional(),
  ttl_seconds: Ttl.optional().openapi({ description: `Default ${TTL_SECONDS_DEFAULT}.` }),
  on_expiry: OnExpiry.optional().openapi({ description: "Default release." }),
  context: UsageContext.optional(),
  metadata: Metadata.optional(),
});
function reserveRules<T extends z.ZodType<{ amount?: number; price?: unknown; estimate?: unknown }>>(schema: T) {
  return schema
    .refine(
      (b) => (b.amount !== undefined) !== (b.price !== undefined && b.estimate !== undefined),
      "give either amount, or price and estimate",
    )
    .refine((b) => (b.price === undefined) === (b.estimate === undefined), "price and estimate go together");
}
export const ReserveBody = reserveRules(ReserveFields).openapi("ReserveRequest");

const CaptureFields = z.strictObject({
  amount: CaptureAmount.optional().openapi({
    description: "The cost; omit it to compute the cost from usage at the reservation's pinned price.",
  }),
  allow_overage: z.boolean().optional(),
  usage: Usage.optional(),
  metadata: Metadata.optional(),
});
function captureRules<T extends z.ZodType<{ amount?: number; usage?: unknown }>>(schema: T) {
  return schema.refine((b) => b.amount !== undefined || b.usage !== undefined, "give amount, or usage to price");
}
export const CaptureBody = captureRules(CaptureFields).openapi("CaptureRequest");

export const ReleaseBody = z.strictObject({ reason: Reason.optional() }).openapi("ReleaseRequest");

export const ExtendBody = z
  .strictObject({ ttl_seconds: Ttl, extension_id: Id.optional(), on_expiry: OnExpiry.optional() })
  .openapi("ExtendRequest");

export const ChargeBody = z
  .strictObject({ charge_id: Id, amount: Amount, context: UsageContext.optional(), metadata: Metadata.optional() })
  .openapi("ChargeRequest");

export const RefundBody = z
  .strictObject({ refund_id: Id, charge_id: Id, amount: Amount, reason: Reason.optional() })
  .openapi("RefundRequest");

export const AdjustmentBody = z
  .strictObject({ adjustment_id: Id, amount: SignedAmount, reason: Reason })
  .openapi("AdjustmentRequest");

export const AccountParams = z.object({ account_id: Id.openapi({ param: { name: "account_id", in: "path" } }) });
export const ReservationParams = AccountParams.extend({
  reservation_id: Id.openapi({ param: { name: "reservation_id", in: "path" } }),
});
export const EventsQuery = z.strictObject({
  after_seq: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
  limit: z.coerce.number().int().min(1).max(EVENTS_PAGE_LIMIT_MAX).default(EVENTS_PAGE_LIMIT_DEFAULT),
});

// ------------------------------------------------------------------ responses

const Minor = z.number().int();
const Time = z.string().openapi({ format: "date-time", example: "2026-11-28T12:00:00.000Z" });

export const AccountResponse = z
  .object({
    account_id: z.string(),
    currency: z.string(),
    balance: Minor,
    reserved: Minor,
    available: Minor,
    credit_limit: Minor,
    status: z.enum(["active", "frozen"]),
    open_reservations: z.number().int(),
    last_seq: z.number().int(),
    head_hash: z.string().openapi({ description: "Hash of the newest event (the head of the hash chain)." }),
    created_at: Time,
    updated_at: Time,
    metadata: Metadata,
  })
  .openapi("Account");

export const Balances = z
  .object({
    account_id: z.string(),
    currency: z.string(),
    balance: Minor,
    reserved: Minor,
    available: Minor,
    last_seq: z.number().int(),
    updated_at: Time,
  })
  .openapi("Balances", { description: "The account's balances right after the operation." });

export const ReservationResponse = z
  .object({
    reservation_id: z.string(),
    status: z.enum(["open", "captured", "released", "expired"]),
    amount: Minor,
    captured_amount: Minor.nullable(),
    released_amount: Minor.nullable(),
    overage: Minor,
    on_expiry: OnExpiry,
    ttl_seconds: z.number().int(),
    expires_at: Time,
    created_at: Time,
    settled_at: Time.nullable(),
    context: UsageContext,
    usage: Usage.nullable(),
    metadata: Metadata,
  })
  .openapi("Reservation");

export const CreditResult = z
  .object({
    credit: z.object({
      credit_id: z.string(),
      amount: Minor,
      reason: z.string().nullable(),
      metadata: Metadata,
      seq: z.number().int(),
      created_at: Time,
    }),
    account: Balances,
  })
  .openapi("CreditResult");

export const ReservationResult = z
  .object({ reservation: ReservationResponse, account: Balances })
  .openapi("ReservationResult");

export const CaptureResult = z
  .object({
    reservation: ReservationResponse,
    charge: z.object({ charge_id: z.string(), amount: Minor, overage: Minor }),
    account: Balances,
  })
  .openapi("CaptureResult");

export const ChargeResult = z
  .object({
    charge: z.object({
      charge_id: z.string(),
      amount: Minor,
      context: UsageContext,
      metadata: Metadata,
      seq: z.number().int(),
      created_at: Time,
    }),
    account: Balances,
  })
  .openapi("ChargeResult");

export const RefundResult = z
  .object({
    refund: z.object({
      refund_id: z.string(),
      charge_id: z.string(),
      amount: Minor,
      reason: z.string().nullable(),
      charge_amount: Minor,
      charge_refunded_total: Minor,
      seq: z.number().int(),
      created_at: Time,
    }),
    account: Balances,
  })
  .openapi("RefundResult");

export const AdjustmentResult = z
  .object({
    adjustment: z.object({
      adjustment_id: z.string(),
      amount: Minor,
      reason: z.string(),
      seq: z.number().int(),
      created_at: Time,
    }),
    account: Balances,
  })
  .openapi("AdjustmentResult");

export const Event = z
  .object({
    seq: z.number().int(),
    event_id: z.string(),
    type: z.string(),
    at: Time,
    balance_after: Minor,
    reserved_after: Minor,
    hash: z.string(),
  })
  .catchall(z.unknown())
  .openapi("Event", { description: "One ledger event; the fields after `type` depend on it (see README)." });

export const EventsPage = z
  .object({ events: z.array(Event), next_after_seq: z.number().int().nullable() })
  .openapi("EventsPage");

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    code: z.enum(Object.keys(PROBLEM_STATUS) as [string, ...string[]]),
    detail: z.string(),
    instance: z.string().optional(),
    errors: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
  })
  .catchall(z.unknown())
  .openapi("Problem", { description: "RFC 9457 problem details with a stable `code`." });

// ------------------------------------------------------------------ reports and admin

export const REPORT_PAGE_LIMIT_MAX = 1_000;
export const REPORT_PAGE_LIMIT_DEFAULT = 100;
/** A cursor is a few keys; anything longer is not one of ours. */
const CURSOR_LENGTH_MAX = 1_024;

/** True for a real RFC 3339 date-time: the calendar fields must exist (no 30 February, no hour 24). */
export function isRfc3339(value: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-](\d{2}):(\d{2}))$/i.exec(value);
  if (m === null) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  const offsetOk = m[8]?.toUpperCase() === "Z" || (Number(m[9]) <= 23 && Number(m[10]) <= 59);
  return (
    offsetOk &&
    date.getUTCFullYear() === year &&
    date.getUTCMonth() === month - 1 &&
    date.getUTCDate() === day &&
    date.getUTCHours() === hour &&
    date.getUTCMinutes() === minute &&
    date.getUTCSeconds() === second
  );
}

const Rfc3339 = z
  .string()
  .max(40)
  .refine(isRfc3339, "must be an RFC 3339 date-time")
  // Stored times are UTC ISO strings with milliseconds; compare in the same form.
  .transform((s) => new Date(s).toISOString())
  .openapi({ format: "date-time", example: "2026-11-28T00:00:00Z" });
const QueryMinor = z.coerce.number().int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER);
const PageParams = {
  limit: z.coerce.number().int().min(1).max(REPORT_PAGE_LIMIT_MAX).default(REPORT_PAGE_LIMIT_DEFAULT),
  cursor: z.string().min(1).max(CURSOR_LENGTH_MAX).optional(),
};

export const BalancesReportQuery = z.strictObject({
  status: z.enum(["active", "frozen"]).optional(),
  min_available: QueryMinor.optional(),
  max_available: QueryMinor.optional(),
  sort: z.enum(["available", "updated_at"]).default("available"),
  order: z.enum(["asc", "desc"]).default("asc"),
  ...PageParams,
});

export const TransactionsReportQuery = z.strictObject({
  account_id: Id.optional(),
  type: z
    .string()
    .max(400)
    .transform((s) => s.split(","))
    .pipe(z.array(z.enum(LEDGER_EVENT_TYPES as [LedgerEventType, ...LedgerEventType[]])).max(LEDGER_EVENT_TYPES.length))
    .optional()
    .openapi({ description: "Comma-separated event types.", example: "FundsCredited,AccountCharged" }),
  from: Rfc3339.optional(),
  to: Rfc3339.optional(),
  ...PageParams,
});

export const UsageReportQuery = z.strictObject({
  group_by: z
    .string()
    .max(200)
    .transform((s) => (s === "" ? [] : s.split(",")))
    .pipe(z.array(z.enum(["day", "account", "service_id", "provider", "model", "alias"])).max(6))
    .default([])
    .openapi({
      description: "Comma-separated: day, account, service_id, provider, model, alias.",
      example: "day,model",
    }),
  account_id: Id.optional(),
  from: Rfc3339.optional(),
  to: Rfc3339.optional(),
  ...PageParams,
});

export const ReservationsReportQuery = z.strictObject({
  status: z.enum(["open", "captured", "released", "expired"]).optional(),
  expired_before: Rfc3339.optional(),
  account_id: Id.optional(),
  ...PageParams,
});

export const RefundsReportQuery = z.strictObject({
  account_id: Id.optional(),
  from: Rfc3339.optional(),
  to: Rfc3339.optional(),
  ...PageParams,
});

export const TrialBalanceQuery = z.strictObject({ at: Rfc3339.optional() });

export const AsOfSchema = z
  .object({
    accounts: z.number().int(),
    newest_event_at: Time.nullable(),
    last_projected_at: Time.nullable(),
    worst_projection_lag_ms: z.number().int().nullable(),
    last_seq: z.number().int().nullable().optional(),
  })
  .openapi("AsOf", { description: "The projection position the report reflects." });

export const ReportPage = z
  .object({ data: z.array(z.record(z.string(), z.unknown())), next_cursor: z.string().nullable(), as_of: AsOfSchema })
  .openapi("ReportPage");

export const TrialBalance = z
  .object({
    at: Time,
    data: z.array(z.object({ ledger_account: z.string(), debit: Minor, credit: Minor, net_debit: Minor })),
    total_debit: Minor,
    total_credit: Minor,
    balanced: z.boolean(),
    as_of: AsOfSchema,
  })
  .openapi("TrialBalance");

export const ProjectionStatusSchema = z
  .object({
    last_seq: z.number().int(),
    projected_seq: z.number().int(),
    lag_ms: z.number().int(),
    failures: z.number().int(),
    retry_at: Time.nullable(),
  })
  .openapi("ProjectionStatus");

/** Accounts one reconciliation call checks at most. */
export const RECONCILE_ACCOUNTS_MAX = 100;

export const ReconcileBody = z
  .strictObject({
    account_ids: z.array(Id).min(1).max(RECONCILE_ACCOUNTS_MAX).optional(),
    repair: z.boolean().optional(),
    limit: z.number().int().min(1).max(RECONCILE_ACCOUNTS_MAX).optional(),
    cursor: z.string().min(1).max(CURSOR_LENGTH_MAX).optional(),
  })
  .openapi("ReconcileRequest");

export const ReconcileResult = z
  .object({
    checked: z.number().int(),
    results: z.array(
      z.object({
        account_id: z.string(),
        state: z.enum(["ok", "lagging", "drift", "missing_in_d1", "unknown_account"]),
        detail: z.string(),
        repaired: z.boolean(),
      }),
    ),
    next_cursor: z.string().nullable(),
  })
  .openapi("ReconcileResult");

// ------------------------------------------------------------------ audit

export const BalanceAsOfQuery = z
  .strictObject({
    at: Rfc3339.optional(),
    seq: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  })
  .refine((q) => (q.at === undefined) !== (q.seq === undefined), "give exactly one of at or seq");

export const BalanceAsOf = z
  .object({
    account_id: z.string(),
    seq: z
      .number()
      .int()
      .openapi({ description: "The last event at or before the point; 0 before the account existed." }),
    at: Time.nullable(),
    balance: Minor,
    reserved: Minor,
    available: Minor,
  })
  .openapi("BalanceAsOf");

export const SignedCheckpointSchema = z
  .object({
    checkpoint: z.object({
      account_id: z.string(),
      seq: z.number().int(),
      head_hash: z.string(),
      balance: Minor,
      reserved: Minor,
      at: Time,
    }),
    algorithm: z.literal("Ed25519"),
    key_id: z.string(),
    signature: z.string().openapi({ description: "base64url Ed25519 signature of the checkpoint's canonical JSON." }),
  })
  .openapi("SignedCheckpoint");

export const PublicKeySchema = z
  .object({
    algorithm: z.literal("Ed25519"),
    key_id: z.string(),
    public_key: z.string().openapi({ description: "32 raw bytes, base64url." }),
  })
  .openapi("AuditPublicKey");

export const VerifyReportSchema = z
  .object({
    ok: z.boolean(),
    events: z.number().int(),
    head_seq: z.number().int(),
    head_hash: z.string().nullable(),
    balance: Minor,
    reserved: Minor,
    first_bad_seq: z.number().int().nullable(),
    problems: z.array(z.string()),
  })
  .openapi("VerifyReport");

// ------------------------------------------------------------------ API keys

export const ApiKeyCreateBody = z
  .strictObject({
    name: z.string().min(1).max(KEY_NAME_LENGTH_MAX),
    scopes: z.array(z.enum(SCOPES)).min(1).max(SCOPES.length),
    account_id: Id.optional().openapi({ description: "Restrict the key to this one account." }),
  })
  .openapi("ApiKeyCreateRequest");

export const ApiKeyRecordSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    prefix: z.string().openapi({ description: "Non-secret start of the key, shown in lists and logs." }),
    scopes: z.array(z.enum(SCOPES)),
    account_id: z.string().nullable(),
    created_at: Time,
    last_used_at: Time.nullable(),
    revoked_at: Time.nullable(),
  })
  .openapi("ApiKey");

export const ApiKeyCreated = z
  .object({
    key: ApiKeyRecordSchema,
    secret: z.string().openapi({ description: "The key itself. Returned exactly once; only its hash is stored." }),
  })
  .openapi("ApiKeyCreated");

export const ApiKeyList = z
  .object({ data: z.array(ApiKeyRecordSchema), next_cursor: z.string().nullable() })
  .openapi("ApiKeyList");

export const ApiKeyListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(REPORT_PAGE_LIMIT_MAX).default(REPORT_PAGE_LIMIT_DEFAULT),
  cursor: z.string().min(1).max(CURSOR_LENGTH_MAX).optional(),
});

export const ApiKeyParams = z.object({
  key_id: z
    .string()
    .regex(/^key_[0-9A-HJKMNP-TV-Z]{26}$/, "must be a key id")
    .openapi({ param: { name: "key_id", in: "path" } }),
});

// ------------------------------------------------------------------ prices

const PriceRule = z.strictObject({
  unit: z.enum(PRICE_UNITS),
  price_minor: z.number().int().min(0).max(PRICE_MINOR_MAX),
  per_units: z.number().int().min(1).max(PER_UNITS_MAX),
});

export const PublishPriceBody = z
  .strictObject({
    service_id: Short,
    provider: Short,
    model: Short,
    effective_from: Rfc3339.optional().openapi({ description: "Default now; never in the past." }),
    rules: z
      .array(PriceRule)
      .min(1)
      .max(PRICE_UNITS.length)
      .refine((rules) => new Set(rules.map((r) => r.unit)).size === rules.length, "one rule per unit"),
  })
  .openapi("PublishPriceRequest");

export const PinnedRuleSchema = z
  .object({
    rule_id: z.string(),
    unit: z.enum(PRICE_UNITS),
    price_minor: Minor,
    per_units: z.number().int(),
    effective_from: Time,
  })
  .openapi("PriceRule");

export const PublishedPrice = z
  .object({ service_id: z.string(), provider: z.string(), model: z.string(), rules: z.array(PinnedRuleSchema) })
  .openapi("Price");

export const PricesQuery = z.strictObject({
  at: Rfc3339.optional(),
  service_id: Short.optional(),
  provider: Short.optional(),
  model: Short.optional(),
});

export const PricesInEffect = z.object({ at: Time, data: z.array(PublishedPrice) }).openapi("PricesInEffect");

// ------------------------------------------------------------------ batch

/** A batch body may be this large (1,000 operations do not fit the single-call limit). */
export const BATCH_BODY_BYTES_MAX = 1_048_576;

const ReservationRef = { reservation_id: Id };
export const BatchOperation = z
  .union([
    CreditBody.extend({ op: z.literal("credit") }),
    reserveRules(ReserveFields.extend({ op: z.literal("reserve") })),
    captureRules(CaptureFields.extend({ op: z.literal("capture"), ...ReservationRef })),
    ReleaseBody.extend({ op: z.literal("release"), ...ReservationRef }),
    ExtendBody.extend({ op: z.literal("extend"), ...ReservationRef }),
    ChargeBody.extend({ op: z.literal("charge") }),
    RefundBody.extend({ op: z.literal("refund") }),
  ])
  .openapi("BatchOperation", {
    description: "One operation: `op` and the body of the single call (plus reservation_id).",
  });

export const BatchBody = z
  .strictObject({
    operations: z.array(BatchOperation).min(1).max(BATCH_OPERATIONS_MAX),
    atomic: z.boolean().optional().openapi({ description: "Any rejection commits nothing. Default false." }),
  })
  .openapi("BatchRequest");

export const BatchResultSchema = z
  .object({
    committed: z.boolean(),
    results: z.array(z.object({ status: z.number().int(), replayed: z.boolean().optional(), body: z.unknown() })),
  })
  .openapi("BatchResult");
