/**
 * The building blocks of every contract: ids, amounts, metadata, the platform's usage fields,
 * times, page parameters and the problem body. One zod object validates the input (HTTP and the
 * service binding alike) and describes it in /openapi.json.
 */
import { z } from "@hono/zod-openapi";
import {
  AMOUNT_MINOR_MAX,
  AMOUNT_MINOR_MIN,
  CAPTURE_AMOUNT_MINOR_MIN,
  CONTEXT_FIELD_LENGTH_MAX,
  CREDIT_LIMIT_MINOR_MAX,
  ID_LENGTH_MAX,
  ID_PATTERN,
  LATENCY_MS_MAX,
  METADATA_BYTES_MAX,
  METADATA_KEY_LENGTH_MAX,
  METADATA_KEYS_MAX,
  REASON_LENGTH_MAX,
  TOKENS_MAX,
  TTL_SECONDS_MAX,
  TTL_SECONDS_MIN,
} from "../../domain/limits";
import { PROBLEM_STATUS } from "../problems";

const utf8 = new TextEncoder();

export const Id = z
  .string()
  .max(ID_LENGTH_MAX)
  .regex(ID_PATTERN, "must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
  .openapi({ example: "res_01J9Z3" });
export const Amount = z
  .number()
  .int()
  .min(AMOUNT_MINOR_MIN)
  .max(AMOUNT_MINOR_MAX)
  .openapi({ description: "Integer minor units (e.g. cents).", example: 1250 });
export const CaptureAmount = z.number().int().min(CAPTURE_AMOUNT_MINOR_MIN).max(AMOUNT_MINOR_MAX);
export const SignedAmount = z
  .number()
  .int()
  .min(-AMOUNT_MINOR_MAX)
  .max(AMOUNT_MINOR_MAX)
  .refine((n) => n !== 0, "must not be zero");
export const CreditLimit = z.number().int().min(0).max(CREDIT_LIMIT_MINOR_MAX);
export const Reason = z.string().min(1).max(REASON_LENGTH_MAX);
export const Ttl = z.number().int().min(TTL_SECONDS_MIN).max(TTL_SECONDS_MAX);
export const OnExpiry = z.enum(["release", "capture"]);
export const Short = z.string().min(1).max(CONTEXT_FIELD_LENGTH_MAX);

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

export const Tokens = z.number().int().min(0).max(TOKENS_MAX);
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

export const Minor = z.number().int();
export const Time = z.string().openapi({ format: "date-time", example: "2026-11-28T12:00:00.000Z" });

export const REPORT_PAGE_LIMIT_MAX = 1_000;
export const REPORT_PAGE_LIMIT_DEFAULT = 100;
/** A cursor is a few keys; anything longer is not one of ours. */
export const CURSOR_LENGTH_MAX = 1_024;

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

export const Rfc3339 = z
  .string()
  .max(40)
  .refine(isRfc3339, "must be an RFC 3339 date-time")
  // Stored times are UTC ISO strings with milliseconds; compare in the same form.
  .transform((s) => new Date(s).toISOString())
  .openapi({ format: "date-time", example: "2026-11-28T00:00:00Z" });
export const QueryMinor = z.coerce.number().int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER);
export const PageParams = {
  limit: z.coerce.number().int().min(1).max(REPORT_PAGE_LIMIT_MAX).default(REPORT_PAGE_LIMIT_DEFAULT),
  cursor: z.string().min(1).max(CURSOR_LENGTH_MAX).optional(),
};

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
