/**
 * Cross-cutting middleware: the request context (id, the one log line per request, security
 * headers) and console CORS.
 */
import type { Context, MiddlewareHandler } from "hono";
import { problem } from "../app/problems";
import { clock } from "../clock";
import { configOf } from "../config";
import { newUlid } from "../ids";
import { flushMetricsIfDue, writeRequestDataPoint } from "../observability/flush";
import { writeLog } from "../observability/log";
import { recordRequest } from "../observability/metrics";
import { writeRequestLog } from "../observability/request-log";
import { bootstrapKeyProblem } from "../security/api-keys";
import { ConfigKeyError, loadConfigKeys } from "../security/secrets";
import type { AppEnv } from "./context";
import { problemResponse } from "./problem";

/** Headers on every response: no sniffing, no caching, no framing, no referrer, HTTPS only. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "x-content-type-options": "nosniff",
  "cache-control": "no-store",
  "x-frame-options": "DENY",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "strict-transport-security": "max-age=63072000; includeSubDomains",
  "cross-origin-resource-policy": "same-origin",
};

/** The console's origin when CONSOLE_ORIGIN is not set for the environment. */
/** How long a browser may cache a CORS preflight answer. */
export const CORS_MAX_AGE_SECONDS = 600;
const CORS_METHODS = "GET, HEAD";
const CORS_HEADERS = "authorization, content-type";

/**
 * Sets the request id, and after the response: the security headers and exactly one
 * structured log line built from the allowed fields only (docs/security.md, log policy).
 */
export function requestContext(): MiddlewareHandler<AppEnv> {
  return async function requestContextMiddleware(c, next) {
    const started = clock.now();
    const requestId = newUlid();
    c.set("requestId", requestId);
    c.set("log", {});
    try {
      await next();
    } finally {
      c.header("request-id", requestId);
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) c.header(name, value);
      const latencyMs = clock.now() - started;
      const log = c.get("log");
      writeRequestLog(c.env, log, { requestId, status: c.res.status, latencyMs });
      countRequest(c, { route: log.route ?? "unmatched", status: c.res.status, latencyMs, errorCode: log.error_code });
    }
  };
}

/** Money routes: their 5xx answers (and invariant violations, which answer 500) are billing failures. */
const MONEY_ROUTE = /^POST \/v1\/accounts\/\{account_id\}\/(credits|reservations|charges|refunds|adjustments|batch)/;

/** The request in this isolate's metrics and the dashboards' data point; a metrics flush if due, after the response. */
function countRequest(
  c: Context<AppEnv>,
  request: { route: string; status: number; latencyMs: number; errorCode: string | undefined },
): void {
  const { errorCode, ...point } = request;
  recordRequest(clock.now(), {
    ...point,
    ...(errorCode === undefined ? {} : { errorCode }),
    money: MONEY_ROUTE.test(point.route),
    authenticated: c.get("principal") !== undefined,
  });
  writeRequestDataPoint(c.env, point);
  let waitUntil: ((work: Promise<unknown>) => void) | null = null;
  try {
    const ctx = c.executionCtx;
    waitUntil = (work) => ctx.waitUntil(work);
  } catch {
    // No execution context (a unit call of the app): the next request with one flushes.
  }
  if (waitUntil !== null) flushMetricsIfDue(c.env, waitUntil);
}

/**
 * Browser access only from the console's origin, for read routes: no wildcard, no reflection
 * of other origins. Preflights are answered here, before authentication (browsers send no
 * Authorization on a preflight). Any other origin simply gets no CORS headers.
 */
export function consoleCors(): MiddlewareHandler<AppEnv> {
  return async function consoleCorsMiddleware(c, next) {
    const origin = c.req.header("origin");
    const allowed = configOf(c.env).consoleOrigin;
    const fromConsole = origin !== undefined && origin === allowed;
    if (c.req.method === "OPTIONS") {
      c.get("log").route = "OPTIONS (preflight)";
      const wanted = (c.req.header("access-control-request-method") ?? "").toUpperCase();
      if (!fromConsole || !CORS_METHODS.split(", ").includes(wanted)) return c.body(null, 403, { vary: "Origin" });
      return c.body(null, 204, {
        "access-control-allow-origin": allowed,
        "access-control-allow-methods": CORS_METHODS,
        "access-control-allow-headers": CORS_HEADERS,
        "access-control-max-age": String(CORS_MAX_AGE_SECONDS),
        vary: "Origin",
      });
    }
    await next();
    c.header("vary", "Origin");
    if (fromConsole && (c.req.method === "GET" || c.req.method === "HEAD")) {
      c.header("access-control-allow-origin", allowed);
      c.header("access-control-expose-headers", "request-id, idempotent-replayed");
    }
  };
}

/** The Rate Limiting bindings authentication needs (wrangler.toml [[ratelimits]]). */
const LIMITER_BINDINGS = ["RATE_LIMITER", "BOOTSTRAP_RATE_LIMITER", "AUTH_FAILURE_LIMITER"] as const;

/**
 * Refuses to serve with a missing or weak CONFIG_ENCRYPTION_KEY (or previous key), a weak
 * bootstrap ADMIN_API_KEY (bootstrapKeyProblem, src/security/api-keys.ts) or a missing rate
 * limiter binding: the checks run on every request (their verdicts are cached per isolate), so a
 * bad key stops the service at start instead of at the first secret it would have to protect or
 * the first guess at the admin key. The message names the variable, never its value.
 */
export function requireConfigKeys(): MiddlewareHandler<AppEnv> {
  return async function requireConfigKeysMiddleware(c, next) {
    let refused: string | null = bootstrapKeyProblem(c.env.ADMIN_API_KEY);
    // Authentication cannot limit without its limiters: a clear 503 rather than a 500 per request.
    const limiter = LIMITER_BINDINGS.find((name) => typeof c.env[name]?.limit !== "function");
    if (refused === null && limiter !== undefined) refused = `${limiter} (a [[ratelimits]] binding) is not configured`;
    if (refused === null) {
      try {
        await loadConfigKeys(c.env);
      } catch (error) {
        if (!(error instanceof ConfigKeyError)) throw error;
        refused = error.message;
      }
    }
    if (refused !== null) {
      writeLog(c.env, "error", { msg: "configuration_refused", error: refused });
      return problemResponse(
        c,
        problem("service_misconfigured", "The service is not configured correctly; see its logs.", {
          instance: c.req.path,
        }),
      );
    }
    await next();
  };
}
