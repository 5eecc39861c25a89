/**
 * Admin routes for webhooks (issue 14): endpoints (the signing secret is shown once; the URL is
 * checked by the outbound guard before anything is stored), their delivery records, and
 * redelivery. Everyone's webhooks: refused to a key restricted to one account.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { problem } from "../app/problems";
import {
  WebhookDeliveriesQuery,
  WebhookDeliveryList,
  WebhookDeliveryParams,
  WebhookDeliverySchema,
  WebhookEndpointCreateBody,
  WebhookEndpointCreated,
  WebhookEndpointDeleted,
  WebhookEndpointList,
  WebhookEndpointParams,
} from "../app/schemas/webhooks";
import { clock } from "../clock";
import { BadCursor, decodeCursor, encodeCursor } from "../read-side/cursor";
import { controlDb } from "../read-side/shards";
import { loadConfigKeys } from "../security/secrets";
import { checkOutboundUrl } from "../security/url-guard";
import { sendAndRecord } from "../webhooks/send";
import { newWebhookSecret } from "../webhooks/signature";
import {
  createEndpoint,
  deleteEndpoint,
  deliveryRecord,
  getDelivery,
  listDeliveries,
  listEndpoints,
  resetForRedelivery,
  WEBHOOK_ENDPOINTS_MAX,
} from "../webhooks/store";
import type { AppEnv } from "./context";
import { problemResponse } from "./problem";
import { defineRoute, tenantWideAdmin } from "./route";

const WEBHOOK_ADMIN = tenantWideAdmin("Webhooks");

export function registerWebhookRoutes(app: OpenAPIHono<AppEnv>): void {
  registerCreateEndpoint(app);
  registerEndpointReads(app);
  registerDeliveryRoutes(app);
}

function registerCreateEndpoint(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/admin/webhook-endpoints",
      operationId: "createWebhookEndpoint",
      ...WEBHOOK_ADMIN,
      summary: "Create a webhook endpoint (its signing secret is returned exactly once)",
      description: `The URL must pass the outbound guard (422 url_refused names the field; nothing is stored). At most ${WEBHOOK_ENDPOINTS_MAX} endpoints.`,
      body: WebhookEndpointCreateBody,
      success: { status: 201, schema: WebhookEndpointCreated, description: "The endpoint and its secret." },
      errors: ["url_refused", "webhook_endpoints_limit"],
    },
    async (c, { body }) => {
      const check = checkOutboundUrl(body.url);
      if (!check.ok) {
        return problemResponse(
          c,
          problem("url_refused", "The URL is not one the ledger may call.", {
            errors: [{ field: "url", message: `${check.reason}: ${check.detail}` }],
            instance: c.req.path,
          }),
        );
      }
      const secret = newWebhookSecret();
      const keys = await loadConfigKeys(c.env);
      const input = { url: check.url.href, secret, events: body.events, account_id: body.account_id ?? null };
      const created = await createEndpoint(controlDb(c.env), keys, input, new Date(clock.now()));
      if (created === "limit") {
        const detail = `At most ${WEBHOOK_ENDPOINTS_MAX} webhook endpoints; delete one first.`;
        return problemResponse(c, problem("webhook_endpoints_limit", detail, { instance: c.req.path }));
      }
      return c.json({ ...created, secret }, 201);
    },
  );
}

function registerEndpointReads(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/admin/webhook-endpoints",
      operationId: "listWebhookEndpoints",
      ...WEBHOOK_ADMIN,
      summary: "List webhook endpoints (never their secrets)",
      success: { status: 200, schema: WebhookEndpointList, description: "Every endpoint." },
      errors: [],
    },
    async (c) => c.json({ data: await listEndpoints(controlDb(c.env), await loadConfigKeys(c.env)) }),
  );

  defineRoute(
    app,
    {
      method: "delete",
      path: "/v1/admin/webhook-endpoints/{endpoint_id}",
      operationId: "deleteWebhookEndpoint",
      ...WEBHOOK_ADMIN,
      summary: "Delete a webhook endpoint",
      description: "Its pending deliveries fail at their next attempt with `endpoint_deleted` (listed, never dropped).",
      params: WebhookEndpointParams,
      success: { status: 200, schema: WebhookEndpointDeleted, description: "The endpoint is gone." },
      errors: ["webhook_endpoint_not_found"],
    },
    async (c, { params }) => {
      if (!(await deleteEndpoint(controlDb(c.env), params.endpoint_id))) {
        return notFound(c, "webhook_endpoint_not_found", "There is no webhook endpoint with this id.");
      }
      return c.json({ id: params.endpoint_id, deleted: true as const });
    },
  );
}

function registerDeliveryRoutes(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/admin/webhook-deliveries",
      operationId: "listWebhookDeliveries",
      ...WEBHOOK_ADMIN,
      summary: "Webhook delivery records, newest first",
      description: "Endpoint, event, attempts, last status and next attempt of each delivery.",
      query: WebhookDeliveriesQuery,
      success: { status: 200, schema: WebhookDeliveryList, description: "A page of deliveries." },
      errors: [],
    },
    async (c, { query }) => {
      const before = query.cursor === undefined ? undefined : decodeCursor(query.cursor, 1)?.[0];
      if (query.cursor !== undefined && typeof before !== "string") throw new BadCursor("cursor");
      const filter = {
        ...(query.endpoint_id === undefined ? {} : { endpoint_id: query.endpoint_id }),
        ...(query.state === undefined ? {} : { state: query.state }),
        ...(typeof before === "string" ? { before } : {}),
      };
      const rows = await listDeliveries(controlDb(c.env), filter, query.limit + 1);
      const data = rows.slice(0, query.limit).map(deliveryRecord);
      const last = data.at(-1);
      return c.json({ data, next_cursor: rows.length > query.limit && last ? encodeCursor([last.id]) : null });
    },
  );

  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/admin/webhook-deliveries/{delivery_id}/redeliver",
      operationId: "redeliverWebhook",
      ...WEBHOOK_ADMIN,
      summary: "Send a delivery again now, with a fresh budget of attempts",
      description:
        "Attempts it at once and answers the record after that attempt; if it fails, retries follow the backoff schedule.",
      params: WebhookDeliveryParams,
      success: { status: 200, schema: WebhookDeliverySchema, description: "The delivery after the attempt." },
      errors: ["webhook_delivery_not_found"],
    },
    async (c, { params }) => {
      const row = await getDelivery(controlDb(c.env), params.delivery_id);
      if (row === null) return notFound(c, "webhook_delivery_not_found", "There is no webhook delivery with this id.");
      await resetForRedelivery(controlDb(c.env), row.id, clock.now());
      await sendAndRecord(controlDb(c.env), await loadConfigKeys(c.env), { ...row, attempts: 0 });
      // An account's delivery that failed again is retried by that account's alarm; alerts' by the cron.
      if (row.account_id !== null) await c.env.ACCOUNTS.getByName(row.account_id).wakeWebhooks();
      const after = await getDelivery(controlDb(c.env), row.id);
      return c.json(deliveryRecord(after ?? row));
    },
  );
}

function notFound(
  c: Context<AppEnv>,
  code: "webhook_endpoint_not_found" | "webhook_delivery_not_found",
  detail: string,
): Response {
  return problemResponse(c, problem(code, detail, { instance: c.req.path }));
}
