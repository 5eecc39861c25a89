/** The contracts of spend limits (issue 28). */
import { z } from "@hono/zod-openapi";
import { AMOUNT_MINOR_MAX } from "../../domain/limits";
import {
  LIMIT_DIMENSIONS,
  LIMIT_THRESHOLD_PERCENT_DEFAULT,
  LIMIT_THRESHOLD_PERCENT_MAX,
  LIMIT_THRESHOLD_PERCENT_MIN,
  LIMIT_WINDOWS,
  LIMITS_PER_ACCOUNT_MAX,
} from "../../domain/spend-limits";
import { AccountParams } from "./accounts";
import { Id, Minor, Short, Time } from "./common";

export const LimitParams = AccountParams.extend({
  limit_id: Id.openapi({ param: { name: "limit_id", in: "path" } }),
});

const Scope = z
  .strictObject({
    api_key_id: Id.optional().openapi({ description: "The id of an API key, as POST /v1/admin/api-keys answers it." }),
    project_id: Id.optional(),
    service_id: Short.optional(),
    model: Short.optional(),
  })
  .refine((scope) => LIMIT_DIMENSIONS.some((d) => scope[d] !== undefined), "name at least one dimension")
  .openapi("LimitScope", {
    description: "What the limit applies to: a command matches when every dimension named equals its own.",
  });

export const LimitBody = z
  .strictObject({
    applies_to: Scope,
    window: z.enum(LIMIT_WINDOWS).openapi({
      description: "A calendar window in UTC: day, week (from Monday), month, or total (one window for ever).",
    }),
    amount: z.number().int().min(0).max(AMOUNT_MINOR_MAX).openapi({ description: "Minor units per window." }),
    threshold_percent: z
      .number()
      .int()
      .min(LIMIT_THRESHOLD_PERCENT_MIN)
      .max(LIMIT_THRESHOLD_PERCENT_MAX)
      .optional()
      .openapi({
        description: `limit.threshold_reached fires once per window at this share of the amount (default ${LIMIT_THRESHOLD_PERCENT_DEFAULT}).`,
      }),
  })
  .openapi("LimitRequest", { description: `At most ${LIMITS_PER_ACCOUNT_MAX} limits per account.` });

export const LimitSchema = z
  .object({
    limit_id: z.string(),
    applies_to: z.object({
      api_key_id: z.string().optional(),
      project_id: z.string().optional(),
      service_id: z.string().optional(),
      model: z.string().optional(),
    }),
    window: z.enum(LIMIT_WINDOWS),
    amount: Minor,
    threshold_percent: z.number().int(),
    window_start: Time,
    spent: Minor.openapi({ description: "Charged and captured in this window, less refunds of it." }),
    held: Minor.openapi({ description: "Held by open reservations made in this window." }),
    remaining: Minor.openapi({ description: "amount - spent - held; negative after a capture past its hold." }),
    resets_at: Time.nullable().openapi({ description: "When the next window starts; null for total." }),
  })
  .openapi("Limit");

export const LimitsList = z.object({ data: z.array(LimitSchema) }).openapi("LimitList");
