/** The contracts of price publication and lookup. */
import { z } from "@hono/zod-openapi";
import { PER_UNITS_MAX, PRICE_MINOR_MAX } from "../../domain/limits";
import { PRICE_UNITS } from "../../domain/pricing";
import { Minor, Rfc3339, Short, Time } from "./common";

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
