/** The contracts of money movements: credits, reservations and their settlement, charges, refunds, adjustments. */
import { z } from "@hono/zod-openapi";
import { TTL_SECONDS_DEFAULT } from "../../domain/limits";
import { LOT_KINDS, LOT_PRIORITY_MAX, LOT_PRIORITY_MIN } from "../../domain/lots";
import { PRICE_UNITS } from "../../domain/pricing";
import { Balances } from "./accounts";
import {
  Amount,
  CaptureAmount,
  Id,
  Metadata,
  Minor,
  OnExpiry,
  Reason,
  Short,
  SignedAmount,
  Time,
  Tokens,
  Ttl,
  Usage,
  UsageContext,
} from "./common";
import { PinnedRuleSchema } from "./prices";

/*
 * Each request has its fields as an unnamed object (which a batch item extends with `op`) and a
 * named component for the single call. Extending the named component would make the batch item
 * an `allOf` of two closed objects in /openapi.json, which no valid item could satisfy.
 */
export const GrantRequest = z
  .strictObject({
    kind: z.enum(LOT_KINDS),
    expires_at: z.iso
      .datetime({ offset: true })
      .optional()
      .openapi({ description: "When the lot's unspent credit expires; omit for never. Must be in the future." }),
    priority: z
      .number()
      .int()
      .min(LOT_PRIORITY_MIN)
      .max(LOT_PRIORITY_MAX)
      .optional()
      .openapi({ description: "Lower burns first. Default: promotional 10, paid 50." }),
  })
  .openapi("GrantRequest", { description: 'The lot a credit creates (docs/api.md, "Credit in lots").' });

export const CreditFields = z.strictObject({
  credit_id: Id,
  amount: Amount,
  grant: GrantRequest.optional().openapi({ description: "Omit for a paid lot that never expires." }),
  reason: Reason.optional(),
  metadata: Metadata.optional(),
});
export const CreditBody = CreditFields.openapi("CreditRequest");

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

/** A request's context: the usage context, and the project of a key bound to none (issue 28). */
export const RequestContext = UsageContext.extend({
  project_id: Id.optional().openapi({
    description:
      "The project the call is for, counted against its spend limits. A key bound to a project may only name its own.",
  }),
}).openapi("RequestContext");

export const ReserveFields = z.strictObject({
  reservation_id: Id,
  amount: Amount.optional().openapi({
    description: "The hold; or give price and estimate, or amount_min and amount_max.",
  }),
  amount_min: Amount.optional().openapi({
    description:
      "With amount_max: hold the most up to amount_max that the balance and the spend limits allow; refused only below this.",
  }),
  amount_max: Amount.optional().openapi({ description: "The most a hold sized to what is affordable holds." }),
  price: PriceRefSchema.optional(),
  estimate: EstimateSchema.optional(),
  ttl_seconds: Ttl.optional().openapi({ description: `Default ${TTL_SECONDS_DEFAULT}.` }),
  on_expiry: OnExpiry.optional().openapi({ description: "Default release." }),
  context: RequestContext.optional(),
  metadata: Metadata.optional(),
});
type ReserveShape = { amount?: number; amount_min?: number; amount_max?: number; price?: unknown; estimate?: unknown };
export function reserveRules<T extends z.ZodType<ReserveShape>>(schema: T) {
  return schema.superRefine((b, ctx) => {
    const priced = b.price !== undefined || b.estimate !== undefined;
    if ((b.price === undefined) !== (b.estimate === undefined)) {
      ctx.addIssue({ code: "custom", path: [], message: "price and estimate go together" });
    }
    if (b.amount !== undefined && (b.amount_min !== undefined || b.amount_max !== undefined)) {
      const path = [b.amount_min !== undefined ? "amount_min" : "amount_max"];
      ctx.addIssue({ code: "custom", path, message: "give amount, or amount_min and amount_max, not both" });
    }
    // A priced hold takes its most from the estimate: amount_min may size it, amount_max may not.
    if (priced && b.amount_max !== undefined) {
      ctx.addIssue({ code: "custom", path: ["amount_max"], message: "a priced hold's most is its estimate" });
    }
    if (!priced && (b.amount_min === undefined) !== (b.amount_max === undefined)) {
      const path = [b.amount_min === undefined ? "amount_min" : "amount_max"];
      ctx.addIssue({ code: "custom", path, message: "amount_min and amount_max go together" });
    }
    if (b.amount_min !== undefined && b.amount_max !== undefined && b.amount_min > b.amount_max) {
      ctx.addIssue({ code: "custom", path: ["amount_min"], message: "amount_min is more than amount_max" });
    }
    const given = b.amount !== undefined || b.amount_max !== undefined || priced;
    if (!given || (priced && b.amount !== undefined)) {
      ctx.addIssue({
        code: "custom",
        path: [],
        message: "give either amount, amount_min and amount_max, or price and estimate",
      });
    }
  });
}
export const ReserveBody = reserveRules(ReserveFields).openapi("ReserveRequest");

export const CaptureFields = z.strictObject({
  amount: CaptureAmount.optional().openapi({
    description: "The cost; omit it to compute the cost from usage at the reservation's pinned price.",
  }),
  allow_overage: z.boolean().optional(),
  usage: Usage.optional(),
  metadata: Metadata.optional(),
});
export function captureRules<T extends z.ZodType<{ amount?: number; usage?: unknown }>>(schema: T) {
  return schema.refine((b) => b.amount !== undefined || b.usage !== undefined, "give amount, or usage to price");
}
export const CaptureBody = captureRules(CaptureFields).openapi("CaptureRequest");

export const ReleaseFields = z.strictObject({ reason: Reason.optional() });
export const ReleaseBody = ReleaseFields.openapi("ReleaseRequest");

export const ExtendFields = z.strictObject({
  ttl_seconds: Ttl,
  extension_id: Id.optional(),
  on_expiry: OnExpiry.optional(),
});
export const ExtendBody = ExtendFields.openapi("ExtendRequest");

export const ChargeFields = z.strictObject({
  charge_id: Id,
  amount: Amount,
  context: RequestContext.optional(),
  metadata: Metadata.optional(),
});
export const ChargeBody = ChargeFields.openapi("ChargeRequest");

export const RefundFields = z.strictObject({ refund_id: Id, charge_id: Id, amount: Amount, reason: Reason.optional() });
export const RefundBody = RefundFields.openapi("RefundRequest");

export const AdjustmentBody = z
  .strictObject({
    adjustment_id: Id,
    amount: SignedAmount,
    reason: Reason,
    grant: GrantRequest.optional().openapi({
      description: "A positive adjustment's lot; default paid, never expiring.",
    }),
  })
  .refine((b) => b.grant === undefined || b.amount > 0, {
    path: ["grant"],
    message: "only a positive adjustment grants a lot",
  })
  .openapi("AdjustmentRequest");

export const FundingSchema = z
  .object({
    lot_id: z.string().nullable().openapi({ description: "null: beyond every lot, on the credit limit (debt)." }),
    amount: Minor,
  })
  .openapi("Funding");

export const LotGrantSchema = z
  .object({ kind: z.enum(LOT_KINDS), priority: z.number().int(), expires_at: Time.nullable() })
  .openapi("LotGrant");

export const ReturnedSchema = z
  .object({
    source: z.string().nullable().openapi({ description: "The lot that paid (null: the debt)." }),
    to_lot_id: z.string().nullable().openapi({ description: "The lot credited (null: the debt paid back)." }),
    amount: Minor,
  })
  .openapi("Returned");

const FundedBy = z.array(FundingSchema).optional().openapi({
  description: "What paid, in the order it was drawn (absent on movements from before lots).",
});

export const PinnedPricingSchema = z
  .object({
    price: PriceRefSchema,
    rules: z.array(PinnedRuleSchema),
    estimate: z.partialRecord(z.enum(PRICE_UNITS), z.number().int()),
  })
  .openapi("PinnedPricing", { description: "The price named, the rules in effect when reserving, the estimate." });

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
    // A union, not `.nullable()`: that would make the shared Usage component (also a request
    // field) accept null in /openapi.json.
    usage: z.union([Usage, z.null()]),
    pricing: z
      .union([PinnedPricingSchema, z.null()])
      .openapi({ description: "The price a priced reservation pinned, or null for a plain amount." }),
    metadata: Metadata,
    funded_by: FundedBy.openapi({ description: "The lots the hold earmarks; lot_id null: what no lot covers." }),
  })
  .openapi("Reservation");

/**
 * The result of a movement recorded as one entity (a credit, a charge, a refund, an
 * adjustment): the entity, with the seq and time of the event that recorded it, and the
 * account's balances right after it.
 */
function recordedResult<K extends string, S extends z.ZodRawShape>(name: string, entity: K, fields: S) {
  const recorded = z.object({ ...fields, seq: z.number().int(), created_at: Time });
  const shape = { [entity]: recorded, account: Balances } as { [P in K]: typeof recorded } & {
    account: typeof Balances;
  };
  return z.object(shape).openapi(name);
}

/** A grant's fields in its answer (absent on a credit from before lots). */
const GrantResult = {
  lot_id: z.string().optional(),
  grant: LotGrantSchema.optional(),
  applied_to_debt: Minor.optional().openapi({ description: "What of the amount paid the debt before the lot." }),
};

export const CreditResult = recordedResult("CreditResult", "credit", {
  credit_id: z.string(),
  amount: Minor,
  reason: z.string().nullable(),
  metadata: Metadata,
  ...GrantResult,
});

export const ReservationResult = z
  .object({
    reservation: ReservationResponse,
    requested: z
      .object({
        amount_min: Minor,
        amount_max: Minor,
        output_tokens_covered: z.number().int().optional().openapi({
          description:
            "With a token price: the output tokens of the estimate the held amount pays for (set max_tokens to it).",
        }),
      })
      .optional()
      .openapi({
        description: "A hold sized to what is affordable: what it asked; reservation.amount is what it holds.",
      }),
    account: Balances,
  })
  .openapi("ReservationResult");

export const CaptureResult = z
  .object({
    reservation: ReservationResponse,
    charge: z.object({ charge_id: z.string(), amount: Minor, overage: Minor, funded_by: FundedBy }),
    account: Balances,
  })
  .openapi("CaptureResult");

export const ChargeResult = recordedResult("ChargeResult", "charge", {
  charge_id: z.string(),
  amount: Minor,
  context: UsageContext,
  metadata: Metadata,
  funded_by: FundedBy,
});

export const RefundResult = recordedResult("RefundResult", "refund", {
  refund_id: z.string(),
  charge_id: z.string(),
  amount: Minor,
  reason: z.string().nullable(),
  charge_amount: Minor,
  charge_refunded_total: Minor,
  returned_to: z.array(ReturnedSchema).optional(),
});

export const AdjustmentResult = recordedResult("AdjustmentResult", "adjustment", {
  adjustment_id: z.string(),
  amount: Minor,
  reason: z.string(),
  ...GrantResult,
  funded_by: FundedBy,
});
