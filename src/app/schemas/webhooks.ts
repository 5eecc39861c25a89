/** The contracts of webhook endpoints and their deliveries (issue 14). */
import { z } from "@hono/zod-openapi";
import { OUTBOUND_URL_LENGTH_MAX } from "../../security/url-guard";
import { WEBHOOK_EVENT_TYPES } from "../../webhooks/events";
import { CURSOR_LENGTH_MAX, Id, REPORT_PAGE_LIMIT_DEFAULT, REPORT_PAGE_LIMIT_MAX, Time } from "./common";

const EventType = z.enum(WEBHOOK_EVENT_TYPES);

export const WebhookEndpointCreateBody = z
  .strictObject({
    url: z.string().min(1).max(OUTBOUND_URL_LENGTH_MAX).openapi({
      description: "https only; no localhost, loopback, private, link-local or metadata address in any encoding.",
      example: "https://hooks.example.com/ledger",
    }),
    events: z.array(EventType).min(1).max(WEBHOOK_EVENT_TYPES.length),
    account_id: Id.optional().openapi({ description: "Only this account's events. Alert events need no account_id." }),
  })
  .superRefine((body, ctx) => {
    if (body.account_id !== undefined && body.events.some((type) => type.startsWith("alert."))) {
      ctx.addIssue({ code: "custom", path: ["events"], message: "alert events concern no account: omit account_id" });
    }
    if (new Set(body.events).size !== body.events.length) {
      ctx.addIssue({ code: "custom", path: ["events"], message: "each event type once" });
    }
  })
  .openapi("WebhookEndpointCreateRequest");

export const WebhookEndpointSchema = z
  .object({
    id: z.string(),
    url: z.string().nullable().openapi({ description: "null when it does not decrypt (undecryptable)." }),
    undecryptable: z
      .literal(true)
      .optional()
      .openapi({ description: "Its URL or secret does not decrypt under the configured keys: restore the key." }),
    events: z.array(EventType),
    account_id: z.string().nullable(),
    created_at: Time,
  })
  .openapi("WebhookEndpoint");

export const WebhookEndpointCreated = WebhookEndpointSchema.extend({
  secret: z.string().openapi({ description: "The signing secret (`whsec_...`). Returned exactly once." }),
}).openapi("WebhookEndpointCreated");

export const WebhookEndpointList = z.object({ data: z.array(WebhookEndpointSchema) }).openapi("WebhookEndpointList");

const EndpointId = z.string().regex(/^we_[0-9A-HJKMNP-TV-Z]{26}$/, "must be a webhook endpoint id");

export const WebhookEndpointParams = z.object({
  endpoint_id: EndpointId.openapi({ param: { name: "endpoint_id", in: "path" } }),
});

export const WebhookEndpointDeleted = z
  .object({ id: z.string(), deleted: z.literal(true) })
  .openapi("WebhookEndpointDeleted");

export const WebhookDeliverySchema = z
  .object({
    id: z.string(),
    endpoint_id: z.string(),
    event_id: z.string(),
    event_type: EventType,
    account_id: z.string().nullable(),
    state: z.enum(["pending", "delivered", "failed"]),
    attempts: z.number().int(),
    last_status: z.number().int().nullable().openapi({ description: "The receiver's last HTTP status, if any." }),
    last_error: z
      .string()
      .nullable()
      .openapi({ description: "http_status, timeout, network, url_refused or endpoint_deleted; null once delivered." }),
    next_attempt_at: Time.nullable(),
    created_at: Time,
    updated_at: Time,
  })
  .openapi("WebhookDelivery");

export const WebhookDeliveryList = z
  .object({ data: z.array(WebhookDeliverySchema), next_cursor: z.string().nullable() })
  .openapi("WebhookDeliveryList");

export const WebhookDeliveriesQuery = z.strictObject({
  endpoint_id: EndpointId.optional(),
  state: z.enum(["pending", "delivered", "failed"]).optional(),
  limit: z.coerce.number().int().min(1).max(REPORT_PAGE_LIMIT_MAX).default(REPORT_PAGE_LIMIT_DEFAULT),
  cursor: z.string().min(1).max(CURSOR_LENGTH_MAX).optional(),
});

export const WebhookDeliveryParams = z.object({
  delivery_id: z
    .string()
    .regex(/^whd_[0-9A-HJKMNP-TV-Z]{26}$/, "must be a webhook delivery id")
    .openapi({ param: { name: "delivery_id", in: "path" } }),
});
