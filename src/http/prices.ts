/** Price routes: publish effective-dated rules (admin, append-only) and read what was in effect. */

import type { OpenAPIHono } from "@hono/zod-openapi";
import { problem } from "../app/problems";
import { PricesInEffect, PricesQuery, PublishedPrice, PublishPriceBody } from "../app/schemas/prices";
import { clock } from "../clock";
import { PriceBackdated, pricesInEffect, publishPrice } from "../pricing/store";
import type { AppEnv } from "./context";
import { problemResponse } from "./problem";
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
      try {
        const rules = await publishPrice(c.env.DB, body, new Date(clock.now()));
        return c.json({ service_id: body.service_id, provider: body.provider, model: body.model, rules }, 201);
      } catch (error) {
        if (!(error instanceof PriceBackdated)) throw error;
        return problemResponse(
          c,
          problem("invalid_request", "effective_from may not be in the past: it would rewrite what was in effect.", {
            errors: [{ field: "body.effective_from", message: "must not be in the past" }],
            instance: c.req.path,
          }),
        );
      }
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
      return c.json({ at, data: await pricesInEffect(c.env.DB, filter, at) });
    },
  );
}
