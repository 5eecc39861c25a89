/** The contracts of the reports and of the read side's operator routes (projection, reconciliation). */
import { z } from "@hono/zod-openapi";
import { LEDGER_EVENT_TYPES, type LedgerEventType } from "../../domain/events";
import { LOT_KINDS } from "../../domain/lots";
import { isWholeHour } from "../../reports/periods";
import { Id, PageParams, QueryMinor, Rfc3339, Time } from "./common";

/**
 * A bound of a report over the rollups (usage, trial balance, statement): rollups are per UTC
 * hour and day, so a bound is a whole UTC hour; before the hourly retention, a whole day.
 */
const WholeHour = Rfc3339.refine(
  isWholeHour,
  "must be a whole UTC hour (rollups are hourly), e.g. 2026-11-28T13:00:00Z",
);

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
    .pipe(
      z
        .array(z.enum(["day", "account", "service_id", "provider", "model", "alias", "api_key_id", "project_id"]))
        .max(8),
    )
    .default([])
    .openapi({
      description:
        "Comma-separated: day, account, service_id, provider, model, alias, api_key_id (the caller's key), project_id.",
      example: "day,model",
    }),
  account_id: Id.optional(),
  from: WholeHour.optional(),
  to: WholeHour.optional(),
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

export const TrialBalanceQuery = z.strictObject({
  at: WholeHour.optional().openapi({
    description: "The journal of the events before this whole UTC hour (default: every event).",
  }),
});

export const StatementQuery = z
  .strictObject({
    from: WholeHour.openapi({ description: "Start of the period (included), a whole UTC hour." }),
    to: WholeHour.openapi({ description: "End of the period (excluded), a whole UTC hour after `from`." }),
  })
  .refine((q) => q.from < q.to, { message: "must be after from", path: ["to"] });

export const AsOfSchema = z
  .object({
    accounts: z.number().int(),
    newest_event_at: Time.nullable(),
    last_projected_at: Time.nullable(),
    worst_projection_lag_ms: z.number().int().nullable(),
    last_seq: z.number().int().nullable().optional(),
    window: z.object({ from: Time.nullable(), to: Time.nullable() }).optional().openapi({
      description:
        "Reports over raw events: the range D1 holds completely (from null: since the first event). Older history: the account's own log (GET /v1/accounts/{id}/events, the audit export).",
    }),
  })
  .openapi("AsOf", { description: "The projection position the report reflects." });

export const ReportPage = z
  .object({ data: z.array(z.record(z.string(), z.unknown())), next_cursor: z.string().nullable(), as_of: AsOfSchema })
  .openapi("ReportPage");

/**
 * Totals across accounts (issue 11): sums over every account and every event, unbounded, so they
 * pass 2^53 (beyond which a JSON number is not exact) and are answered as decimal strings.
 * Per-account amounts (a balance, an event's amount) stay JSON integers. See docs/api.md#reports.
 */
const DECIMAL_PATTERN = /^-?\d+$/;
export const DecimalMinor = z.string().regex(DECIMAL_PATTERN).openapi("DecimalMinor", {
  description: "Integer minor units as a decimal string, exact beyond 2^53.",
  example: "18446744073709551616",
});
export const DecimalCount = z.string().regex(DECIMAL_PATTERN).openapi("DecimalCount", {
  description: "A non-negative integer count (tokens) as a decimal string, exact beyond 2^53.",
  example: "9300000000000",
});

const usageKey = z.string().nullable().openapi({ description: "The group's key; null when the charges have none." });
export const UsageReportRow = z
  .object({
    day: usageKey.optional().openapi({ description: "YYYY-MM-DD (UTC), with group_by=day." }),
    account: usageKey.optional(),
    service_id: usageKey.optional(),
    provider: usageKey.optional(),
    model: usageKey.optional(),
    alias: usageKey.optional(),
    api_key_id: usageKey.optional().openapi({ description: "The API key the charges were made with (issue 28)." }),
    project_id: usageKey.optional(),
    charges: z.number().int().openapi({ description: "Number of charges in the group." }),
    cost: DecimalMinor,
    input_tokens: DecimalCount,
    output_tokens: DecimalCount,
    cached_tokens: DecimalCount,
  })
  .openapi("UsageReportRow", {
    description: "One group: its keys (those of group_by) and its totals; the sums are decimal strings.",
  });

export const UsageReportPage = z
  .object({ data: z.array(UsageReportRow), next_cursor: z.string().nullable(), as_of: AsOfSchema })
  .openapi("UsageReportPage");

export const TrialBalance = z
  .object({
    at: Time,
    data: z.array(
      z.object({ ledger_account: z.string(), debit: DecimalMinor, credit: DecimalMinor, net_debit: DecimalMinor }),
    ),
    total_debit: DecimalMinor,
    total_credit: DecimalMinor,
    balanced: z.boolean().openapi({ description: "total_debit = total_credit, compared exactly." }),
    as_of: AsOfSchema,
  })
  .openapi("TrialBalance", {
    description: "Debits and credits per ledger account. Every amount is a total across accounts: a decimal string.",
  });

const StatementMovement = z.object({
  count: z.number().int(),
  amount: z.number().int().openapi({ description: "Integer minor units." }),
});

const StatementLots = z.object({
  granted: z.number().int(),
  consumed: z.number().int(),
  refunded: z.number().int(),
  expired: z.number().int(),
});

export const StatementSchema = z
  .object({
    account_id: z.string(),
    currency: z.string(),
    from: Time,
    to: Time,
    opening_balance: z.number().int().openapi({ description: "The balance at `from` (after every event before it)." }),
    closing_balance: z.number().int().openapi({ description: "The balance at `to`." }),
    movements: z.object({
      credits: StatementMovement,
      charges: StatementMovement.extend({
        direct: StatementMovement,
        capture: StatementMovement,
        expiry: StatementMovement.openapi({ description: "Holds captured by their expiry (on_expiry=capture)." }),
      }),
      refunds: StatementMovement,
      adjustments: StatementMovement.extend({
        increase_amount: z.number().int(),
        decrease_amount: z.number().int(),
      }).openapi({ description: "`amount` is signed: increase_amount minus decrease_amount." }),
      expired: z.object({ amount: z.number().int() }).openapi({ description: "Credit that expired unused." }),
    }),
    lots: z
      .object({ paid: StatementLots, promotional: StatementLots })
      .openapi({ description: "Lot movements by kind of credit in the period." }),
    as_of: AsOfSchema,
  })
  .openapi("Statement", {
    description:
      "An account's statement for [from, to): closing_balance = opening_balance + credits - charges + refunds + adjustments - expired. Built from the rollups: any period, whatever the raw-event window holds.",
  });

export const CreditsReportQuery = z
  .strictObject({
    from: WholeHour.openapi({ description: "Start of the period (included), a whole UTC hour." }),
    to: WholeHour.openapi({ description: "End of the period (excluded), a whole UTC hour after `from`." }),
    account_id: Id.optional(),
  })
  .refine((q) => q.from < q.to, { message: "must be after from", path: ["to"] });

export const CreditsReport = z
  .object({
    from: Time,
    to: Time,
    account_id: z.string().nullable(),
    data: z.array(
      z.object({
        kind: z.enum(LOT_KINDS),
        granted: DecimalMinor,
        consumed: DecimalMinor.openapi({ description: "What paid for usage, the debt a grant paid included." }),
        refunded: DecimalMinor.openapi({ description: "Refunded back into lots of this kind." }),
        expired: DecimalMinor.openapi({ description: "Expired unused (breakage)." }),
        remaining: DecimalMinor.openapi({ description: "Left at `to` (for paid credit: deferred revenue)." }),
      }),
    ),
    as_of: AsOfSchema,
  })
  .openapi("CreditsReport", {
    description: "Credit by kind of lot over [from, to), and what remains at `to`; exact decimal strings.",
  });
