/**
 * Authentication and authorization.
 *
 * Authentication (middleware on /v1/*): `Authorization: Bearer <key>` is either the bootstrap
 * ADMIN_API_KEY secret (compared in constant time, through SHA-256 digests so that lengths do
 * not leak either) or an issued key (looked up by hash, src/security/api-keys.ts). The presented
 * key is never logged or stored. Failures answer 401 and are counted in memory
 * (src/security/counters.ts), never with a D1 write on the request path. Issued keys are then
 * rate limited per key (RATE_LIMITER), the bootstrap key under its own, higher limit
 * (BOOTSTRAP_RATE_LIMITER): 429 with Retry-After, counted.
 *
 * Failure budget per client address (AUTH_FAILURE_LIMITER), so that strangers cost nothing:
 * - The limiter is keyed on the client's address (`CF-Connecting-IP`, set by Cloudflare and not
 *   forgeable through it; IPv6 by its /64, which one host can rotate through; a missing header
 *   counts under one shared key). Another address's failures never touch a caller's budget.
 * - Only failures are charged to it: every failed authentication calls the limiter, and the
 *   failure that goes over the budget answers 429 instead of 401. A request with a valid key is
 *   never charged, not even the first time an isolate sees the key: a multi-tenant gateway
 *   presenting many restricted keys from one address, across many isolates, would otherwise
 *   spend a budget meant for strangers.
 * - The limiter's "no" is remembered in this isolate until its period ends (bounded memory):
 *   from then on the address gets 429 before any key lookup, so its made-up tokens cost no D1
 *   read. The bootstrap key and keys this isolate already holds as valid are still served
 *   (they are not strangers, and a guess is hopeless at 256 bits): a legitimate caller behind
 *   the same address as a failing one keeps working while its key is cached, and any caller on
 *   another address is unaffected.
 * - Refused failures still count as `auth_failed` (and as `rate_limited` by "address").
 *
 * Authorization (per route, in src/http/route.ts): the route's scope (403 `forbidden`), then,
 * for a key restricted to one account, that the request touches only that account.
 */
import type { Context, MiddlewareHandler } from "hono";
import { problem } from "../app/problems";
import { clock } from "../clock";
import { controlDb } from "../read-side/shards";
import { hasScope, type Principal, probeApiKey, resolveApiKey, SCOPES, type Scope } from "../security/api-keys";
import { countSecurityEvent, flushSecurityCountersIfDue } from "../security/counters";
import type { AppEnv } from "./context";
import { problemResponse } from "./problem";

/** Retry-After for a refused request: the limiters' period (wrangler.toml [[ratelimits]]). */
export const RATE_LIMIT_PERIOD_SECONDS = 60;
/** Addresses this isolate remembers as past their failure budget at most (oldest evicted first). */
export const BLOCKED_ADDRESSES_MAX = 1_000;
/** The limiter key of requests without CF-Connecting-IP: they share one budget. */
export const UNKNOWN_ADDRESS_KEY = "unknown";
/** The bootstrap key's key in BOOTSTRAP_RATE_LIMITER. */
const BOOTSTRAP_LIMITER_KEY = "bootstrap";

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

/**
 * The failure limiter's key for a client address: IPv4 as given, IPv6 by its /64 (a host
 * commonly holds a whole /64 and could rotate through it), anything else as given (bounded);
 * a missing address shares UNKNOWN_ADDRESS_KEY.
 */
export function clientAddressKey(header: string | undefined): string {
  const address = (header ?? "").trim().toLowerCase();
  if (address === "") return UNKNOWN_ADDRESS_KEY;
  if (address.includes(":")) {
    const prefix = ipv6Prefix64(address);
    if (prefix !== null) return `${prefix}::/64`;
  }
  return address.slice(0, 64);
}

/** The first four groups of an IPv6 address, without leading zeros; null when it does not parse. */
function ipv6Prefix64(address: string): string | null {
  const halves = address.split("::");
  if (halves.length > 2) return null;
  const groups = (part: string | undefined) => (part === undefined || part === "" ? [] : part.split(":"));
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  // An embedded IPv4 tail (::ffff:1.2.3.4) counts as two groups.
  const width = [...head, ...tail].reduce((n, g) => n + (g.includes(".") ? 2 : 1), 0);
  if (halves.length === 1 ? width !== 8 : width > 7) return null;
  const full = halves.length === 1 ? head : [...head, ...Array(8 - width).fill("0"), ...tail];
  const first = full.slice(0, 4);
  if (!first.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return null;
  return first.map((g) => g.replace(/^0+(?=.)/, "")).join(":");
}

/** Addresses past their failure budget, per isolate: until when they are refused. */
const blockedAddresses = new Map<string, number>();

function isBlocked(address: string, nowMs: number): boolean {
  const until = blockedAddresses.get(address);
  if (until === undefined) return false;
  if (until > nowMs && until - nowMs <= RATE_LIMIT_PERIOD_SECONDS * 1_000) return true;
  blockedAddresses.delete(address); // expired, or set under a clock that has since gone back
  return false;
}

function block(address: string, nowMs: number): void {
  blockedAddresses.delete(address);
  while (blockedAddresses.size >= BLOCKED_ADDRESSES_MAX) {
    const oldest = blockedAddresses.keys().next();
    if (oldest.done === true) break;
    blockedAddresses.delete(oldest.value);
  }
  blockedAddresses.set(address, nowMs + RATE_LIMIT_PERIOD_SECONDS * 1_000);
}

const BOOTSTRAP: Principal = {
  key_id: "bootstrap",
  prefix: "bootstrap",
  scopes: new Set(SCOPES),
  account_id: null,
  project_id: null,
};

export function authenticate(): MiddlewareHandler<AppEnv> {
  return async function authenticateMiddleware(c, next) {
    const now = clock.now();
    try {
      return await authenticateRequest(c, next, now);
    } finally {
      // After counting, so the event that makes the interval due is in the write.
      const flush = flushSecurityCountersIfDue(c.env, now);
      if (flush !== null) c.executionCtx.waitUntil(flush);
    }
  };
}

async function authenticateRequest(
  c: Context<AppEnv>,
  next: () => Promise<void>,
  now: number,
): Promise<Response | undefined> {
  const address = clientAddressKey(c.req.header("cf-connecting-ip"));
  const match = /^Bearer ([^\s]+)$/i.exec(c.req.header("authorization") ?? "");
  const token = match?.[1];
  let principal: Principal | null = null;
  if (token !== undefined) {
    const bootstrap = c.env.ADMIN_API_KEY;
    // An unset bootstrap secret must lock that door, never open it.
    if (bootstrap !== undefined && bootstrap.length > 0 && (await constantTimeEqual(token, bootstrap))) {
      principal = BOOTSTRAP;
    } else {
      const probe = await probeApiKey(token, now);
      // Before any lookup: an address past its failure budget gets nothing looked up for it.
      if (probe.status === "unseen" && isBlocked(address, now)) return refuseAddress(c, now, "invalid");
      principal = await resolveApiKey(controlDb(c.env), probe, now, (write) => c.executionCtx.waitUntil(write));
    }
  }
  if (principal === null) {
    const reason = token === undefined ? "missing" : "invalid";
    if (isBlocked(address, now)) return refuseAddress(c, now, reason);
    const { success } = await c.env.AUTH_FAILURE_LIMITER.limit({ key: address });
    if (!success) {
      block(address, now);
      return refuseAddress(c, now, reason);
    }
    countSecurityEvent("auth_failed", reason, now);
    return problemResponse(
      c,
      problem("unauthorized", "Send Authorization: Bearer <api key>.", { instance: c.req.path }),
      { "www-authenticate": 'Bearer realm="openedge-ledger"' },
    );
  }
  c.set("principal", principal);
  c.get("log").key_prefix = principal.prefix;
  const { success } =
    principal === BOOTSTRAP
      ? await c.env.BOOTSTRAP_RATE_LIMITER.limit({ key: BOOTSTRAP_LIMITER_KEY })
      : await c.env.RATE_LIMITER.limit({ key: principal.key_id });
  if (!success) {
    countSecurityEvent("rate_limited", principal.prefix, now);
    return rateLimited(c, "Too many requests for this API key; retry later.");
  }
  await next();
  return undefined;
}

/** 429 for an address past its failure budget; the failure still counts as one. */
function refuseAddress(c: Context<AppEnv>, now: number, reason: "missing" | "invalid"): Response {
  countSecurityEvent("auth_failed", reason, now);
  countSecurityEvent("rate_limited", "address", now);
  return rateLimited(c, "Too many failed authentications from this address; retry later.");
}

function rateLimited(c: Context<AppEnv>, detail: string): Response {
  return problemResponse(c, problem("rate_limited", detail, { instance: c.req.path }), {
    "retry-after": String(RATE_LIMIT_PERIOD_SECONDS),
  });
}

/** 403 for a principal without `scope`, else null. */
export function requireScope(c: Context<AppEnv>, scope: Scope): Response | null {
  const principal = c.get("principal");
  if (principal !== undefined && hasScope(principal, scope)) return null;
  if (principal !== undefined && principal.account_id !== null && scope === "admin") {
    return forbidden(c, "A key restricted to one account never has the admin scope.");
  }
  return forbidden(c, `This API key lacks the ${scope} scope.`);
}

/**
 * 403 when the principal lacks a scope one of the items needs (a batch item needs the scope of
 * its single call), naming each missing scope and the first item that needs it; else null.
 * Called before any item runs.
 */
export function requireItemScopes(
  c: Context<AppEnv>,
  items: readonly { scope: Scope; item: string }[],
): Response | null {
  const principal = c.get("principal");
  const missing = new Map<Scope, string>();
  for (const { scope, item } of items) {
    if (missing.has(scope) || (principal !== undefined && hasScope(principal, scope))) continue;
    missing.set(scope, item);
  }
  if (missing.size === 0) return null;
  const named = [...missing].map(([scope, item]) => `the ${scope} scope (${item})`).join(" and ");
  return forbidden(c, `This API key lacks ${named}.`);
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
