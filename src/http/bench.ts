/**
 * Routes that exist only for `npm run bench` (env BENCH_ROUTES = "1"; 404 otherwise): the two
 * ceilings the ledger is measured against, through the same middleware and auth as every ledger
 * route, and the runtime's own row counters of an account object.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { accountClient } from "../app/account-client";
import { notFound } from "./accounts";
import type { AppEnv } from "./context";

function enabled(c: Context<AppEnv>): boolean {
  return c.env.BENCH_ROUTES === "1";
}

export function registerBenchRoutes(app: OpenAPIHono<AppEnv>): void {
  app.get("/v1/bench/plain", (c) => {
    c.get("log").route = "GET /v1/bench/plain";
    return enabled(c) ? c.json({ ok: true }) : notFound(c);
  });
  app.get("/v1/bench/noop/:account_id", async (c) => {
    c.get("log").route = "GET /v1/bench/noop/{account_id}";
    if (!enabled(c)) return notFound(c);
    return c.json({ seq: await accountClient(c.env, c.req.param("account_id")).ping() });
  });
  app.get("/v1/bench/stats/:account_id", async (c) => {
    c.get("log").route = "GET /v1/bench/stats/{account_id}";
    if (!enabled(c)) return notFound(c);
    const stub = accountClient(c.env, c.req.param("account_id"));
    const [stats, projection] = await Promise.all([stub.stats(), stub.projectionStatus()]);
    return c.json({ ...stats, projection });
  });
}
