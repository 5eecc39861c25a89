/**
 * Routes that exist only in the bench's own Worker (bench/worker.ts), never in the deployed
 * bundle: the two ceilings the ledger is measured against, through the same middleware and auth
 * as every ledger route, and the runtime's own row counters of an account object.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { accountClient } from "../src/app/account-client";
import type { AppEnv } from "../src/http/context";

export function registerBenchRoutes(app: OpenAPIHono<AppEnv>): void {
  app.get("/v1/bench/plain", (c) => {
    c.get("log").route = "GET /v1/bench/plain";
    return c.json({ ok: true });
  });
  app.get("/v1/bench/noop/:account_id", async (c) => {
    c.get("log").route = "GET /v1/bench/noop/{account_id}";
    return c.json({ seq: await accountClient(c.env, c.req.param("account_id")).ping() });
  });
  app.get("/v1/bench/stats/:account_id", async (c) => {
    c.get("log").route = "GET /v1/bench/stats/{account_id}";
    const stub = accountClient(c.env, c.req.param("account_id"));
    const [stats, projection] = await Promise.all([stub.stats(), stub.projectionStatus()]);
    return c.json({ ...stats, projection });
  });
}
