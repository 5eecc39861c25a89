/**
 * The HTTP application: middleware in order (request context with its log line and security
 * headers, console CORS, authentication and rate limiting, body limit),
 * the routers, the OpenAPI document, and one error handler that turns anything unexpected
 * into a problem+json 500 without echoing the request.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { problem } from "../app/problems";
import { BATCH_BODY_BYTES_MAX } from "../app/schemas/batch";
import { clock } from "../clock";
import { REQUEST_BODY_BYTES_MAX } from "../domain/limits";
import { LedgerError } from "../errors";
import { writeLog } from "../observability/log";
import { recordD1Failure } from "../observability/metrics";
import { notFound, registerAccountRoutes } from "./accounts";
import { registerAdminRoutes } from "./admin";
import { registerAuditRoutes } from "./audit";
import { authenticate } from "./auth";
import type { AppEnv } from "./context";
import { registerKeyRoutes } from "./keys";
import { registerLimitRoutes } from "./limits";
import { consoleCors, requestContext, requireConfigKeys } from "./middleware";
import { registerMonitoringRoutes } from "./monitoring";
import { registerPriceRoutes } from "./prices";
import { problemResponse } from "./problem";
import { registerReportRoutes } from "./reports";
import { registerWebhookRoutes } from "./webhooks";

/** The ledger's app; `extraRoutes` lets the bench's own entry add its routes (bench/worker.ts). */
export function createApp(extraRoutes?: (app: OpenAPIHono<AppEnv>) => void): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();

  app.use("*", requestContext());
  app.use("*", consoleCors());
  app.use("*", requireConfigKeys());

  app.get("/healthz", (c) => {
    c.get("log").route = "GET /healthz";
    return c.json({ ok: true });
  });

  app.use("/v1/*", authenticate());
  app.use("/v1/*", bodyLimits());

  registerAccountRoutes(app);
  registerLimitRoutes(app);
  registerReportRoutes(app);
  registerAdminRoutes(app);
  registerAuditRoutes(app);
  registerKeyRoutes(app);
  registerPriceRoutes(app);
  registerWebhookRoutes(app);
  registerMonitoringRoutes(app);
  extraRoutes?.(app);

  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", { type: "http", scheme: "bearer" });
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "OpenEdge Ledger API",
      version: "1.0.0",
      description:
        "Event-sourced billing ledger. Money is integer minor units. Errors are RFC 9457 problem+json with a stable `code`.",
    },
    security: [{ bearer: [] }],
  });

  app.notFound(notFound);
  app.onError(onError);
  return app;
}

/**
 * The one error handler: a LedgerError answers its own code's problem (src/errors.ts), anything
 * else is a programmer error answered as a generic 500. Logged errors carry their message only,
 * never the request, its headers or its body.
 */
function onError(error: Error, c: Context<AppEnv>): Response {
  const known = error instanceof LedgerError ? error : null;
  const log = known === null ? "unhandled_error" : known.log;
  // A D1 failure that reached the handler (a report, a key or price write) counts for the monitor.
  if (log === "d1_failure") recordD1Failure(clock.now(), "request");
  if (log !== null) writeLog(c.env, "error", { msg: log, request_id: c.get("requestId"), error: error.message });
  const body = problem(
    known?.code ?? "internal_error",
    known?.publicDetail ?? "The ledger failed to process the request.",
    {
      ...(known?.fieldErrors === undefined ? {} : { errors: known.fieldErrors }),
      instance: c.req.path,
    },
  );
  const retry = known?.retryAfterSeconds;
  return problemResponse(c, body, retry === undefined ? undefined : { "retry-after": String(retry) });
}

/** Bodies are bounded before they are read: 64 KB for single calls, 1 MB for a batch. */
function bodyLimits(): MiddlewareHandler<AppEnv> {
  const limit = (maxSize: number) =>
    bodyLimit({
      maxSize,
      onError: (c) =>
        problemResponse(
          c,
          problem("payload_too_large", `Request bodies are limited to ${maxSize} bytes.`, { instance: c.req.path }),
        ),
    });
  const singleCallLimit = limit(REQUEST_BODY_BYTES_MAX);
  const batchLimit = limit(BATCH_BODY_BYTES_MAX);
  return async function bodyLimitsMiddleware(c, next) {
    return /^\/v1\/accounts\/[^/]+\/batch$/.test(c.req.path) ? batchLimit(c, next) : singleCallLimit(c, next);
  };
}
