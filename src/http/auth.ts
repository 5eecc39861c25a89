/**
 * Authentication and authorization.
 *
 * Authentication (middleware on /v1/*): `Authorization: Bearer <key>` is either the bootstrap
 * ADMIN_API_KEY secret (compared in constant time, through SHA-256 digests so that lengths do
 * not leak either) or an issued key (looked up by hash, src/security/api-keys.ts). Failures
 * answer 401 and are counted per minute; the presented key is never logged or stored. Issued
 * keys are then rate limited per key (429 with Retry-After; hits counted).
 *
 * Authorization (per route, in src/http/route.ts): the route's scope (403 `forbidden`), then,
 * for a key restricted to one account, that the request touches only that account.
 */
import type { Context, MiddlewareHandler } from "hono";
import { problem } from "../app/problems";
import { clock } from "../clock";
import { countSecurityEvent, hasScope, lookupApiKey, type Principal, SCOPES, type Scope } from "../security/api-keys";
import type { AppEnv } from "./context";
import { problemResponse } from "./problem";

/** Retry-After for a rate-limited key: the limiter's period (wrangler.toml [[ratelimits]]). */
export const RATE_LIMIT_PERIOD_SECONDS = 60;

const encoder = new TextEncoder();

const digest = (text: string) => crypto.subtle.digest("SHA-256", encoder.encode(text));

/** The bootstrap key's digest, computed once per isolate (the secret is fixed for its lifetime). */
const expectedDigests = new Map<string, Promise<ArrayBuffer>>();

/** Compares `presented` with `expected` in constant time, through SHA-256 digests (lengths do not leak). */
export async function constantTimeEqual(presented: string, expected: string): Promise<boolean> {
  let known = expectedDigests.get(expected);
  if (known === undefined) {
    known = digest(expected);
    expectedDigests.clear(); // a rotated secret replaces the old one
    expectedDigests.set(expected, known);
  }
  const [a, b] = await Promise.all([digest(presented), known]);
  return crypto.subtle.timingSafeEqual(a, b);
}

const BOOTSTRAP: Principal = { key_id: "bootstrap", prefix: "bootstrap", scopes: new Set(SCOPES), account_id: null };

export function authenticate(): MiddlewareHandler<AppEnv> {
  return async function authenticateMiddleware(c, next) {
    const now = clock.now();
    const match = /^Bearer ([^\s]+)$/i.exec(c.req.header("authorization") ?? "");
    const token = match?.[1];
    let principal: Principal | null = null;
    if (token !== undefined) {
      const bootstrap = c.env.ADMIN_API_KEY;
      // An unset bootstrap secret must lock that door, never open it.
      if (bootstrap !== undefined && bootstrap.length > 0 && (await constantTimeEqual(token, bootstrap))) {
        principal = BOOTSTRAP;
      } else {
        principal = await lookupApiKey(c.env.DB, token, now, (write) => c.executionCtx.waitUntil(write));
      }
    }
    if (principal === null) {
      c.executionCtx.waitUntil(
        countSecurityEvent(c.env.DB, "auth_failed", token === undefined ? "missing" : "invalid", now),
      );
      return problemResponse(
        c,
        problem("unauthorized", "Send Authorization: Bearer <api key>.", { instance: c.req.path }),
        { "www-authenticate": 'Bearer realm="openedge-ledger"' },
      );
    }
    c.set("principal", principal);
    c.get("log").key_prefix = principal.prefix;
    // The bootstrap key is the operator's break-glass key and is not rate limited; issued keys are.
    if (principal !== BOOTSTRAP) {
      const { success } = await c.env.RATE_LIMITER.limit({ key: principal.key_id });
      if (!success) {
        c.executionCtx.waitUntil(countSecurityEvent(c.env.DB, "rate_limited", principal.prefix, now));
        return problemResponse(
          c,
          problem("rate_limited", "Too many requests for this API key; retry later.", { instance: c.req.path }),
          { "retry-after": String(RATE_LIMIT_PERIOD_SECONDS) },
        );
      }
    }
    await next();
  };
}

/** 403 for a principal without `scope`, else null. */
export function requireScope(c: Context<AppEnv>, scope: Scope): Response | null {
  const principal = c.get("principal");
  if (principal !== undefined && hasScope(principal, scope)) return null;
  return forbidden(c, `This API key lacks the ${scope} scope.`);
}

/**
 * 403 when a key restricted to one account reaches for anything else. `accounts` are the
 * accounts the request touches, or null when it is not about named accounts (a report over
 * all of them, a listing), which a restricted key may not do.
 */
export function requireAccounts(c: Context<AppEnv>, accounts: string[] | null): Response | null {
  const principal = c.get("principal");
  if (principal === undefined || principal.account_id === null) return null;
  if (accounts !== null && accounts.length > 0 && accounts.every((a) => a === principal.account_id)) return null;
  return forbidden(c, "This API key is restricted to one account.");
}

function forbidden(c: Context<AppEnv>, detail: string): Response {
  return problemResponse(c, problem("forbidden", detail, { instance: c.req.path }));
}
