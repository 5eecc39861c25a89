/** Price routes: publish effective-dated rules (admin, append-only) and read what was in effect. */

import type { OpenAPIHono } from "@hono/zod-openapi";
import { PricesInEffect, PricesQuery, PublishedPrice, PublishPriceBody } from "../app/schemas/prices";
import { clock } from "../clock";
import { pricesInEffect, publishPrice } from "../pricing/store";
import { controlDb } from "../read-side/shards";
import type { AppEnv } from "./context";
import { defineRoute, tenantWideAdmin } from "./route";

export function registerPriceRoutes(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/admin/prices",
      operationId: "publishPrice",
      // Prices apply to every tenant: refused to any key restricted to one account.
      ...tenantWideAdmin("Prices"),
      summary: "Publish a price (rules per unit) effective from now or a later time",
      description:
        "Append-only: a rule supersedes the previous one for the same service, provider, model and unit from its effective_from. Never backdated.",
      body: PublishPriceBody,
      success: { status: 201, schema: PublishedPrice, description: "The published rules." },
      errors: [],
    },
    async (c, { body }) => {
      // A backdated publish throws PriceBackdated: the error handler answers its invalid_request.
      const rules = await publishPrice(controlDb(c.env), body, new Date(clock.now()));
      return c.json({ service_id: body.service_id, provider: body.provider, model: body.model, rules }, 201);
    },
  );

  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/prices",
      operationId: "listPrices",
      tag: "Prices",
      scope: "ledger:read",
      accounts: () => "any",
      summary: "The prices in effect at a time (default now)",
      query: PricesQuery,
      success: { status: 200, schema: PricesInEffect, description: "Per service, provider and model, its rules." },
      errors: [],
    },
    async (c, { query }) => {
      const at = query.at ?? new Date(clock.now()).toISOString();
      const { at: _at, ...filter } = query;
      return c.json({ at, data: await pricesInEffect(controlDb(c.env), filter, at) });
    },
  );
}
