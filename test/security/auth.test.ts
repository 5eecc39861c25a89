/**
 * Strangers cost nothing (issue 11): failed authentications are counted in memory and written
 * in one aggregated statement at most once a minute per isolate; unknown tokens are remembered
 * briefly in a bounded cache; failures are budgeted per client address before any key lookup;
 * the bootstrap key is strong and rate limited; old counter rows are pruned by the cron, a
 * bounded number per run. Requests go through the app's fetch with this file's bindings (some
 * wrapped or replaced), so every D1 statement they prepare can be seen.
 */
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { clock } from "../../src/clock";
import type { Env } from "../../src/env";
import { createApp } from "../../src/http/app";
import { clientAddressKey, RATE_LIMIT_PERIOD_SECONDS, UNKNOWN_ADDRESS_KEY } from "../../src/http/auth";
import worker from "../../src/index";
import { captureLogs } from "../../src/observability/log";
import {
  ADMIN_API_KEY_LENGTH_MIN,
  bootstrapKeyProblem,
  keyCacheSizes,
  probeApiKey,
  resolveApiKey,
  UNKNOWN_KEY_CACHE_ENTRIES_MAX,
  UNKNOWN_KEY_CACHE_TTL_MS,
} from "../../src/security/api-keys";
import {
  flushSecurityCounters,
  pendingSecurityCounts,
  SECURITY_COUNTERS_FLUSH_INTERVAL_MS,
  SECURITY_COUNTERS_PRUNE_ROWS_MAX,
  SECURITY_COUNTERS_RETENTION_MS,
} from "../../src/security/counters";
// @ts-expect-error Vite's `?raw` import (the file's text) has no type declaration in this project.
import wranglerTomlText from "../../wrangler.toml?raw";
import { expectEveryAccountConsistent, useManualClock } from "../helpers";

afterEach(expectEveryAccountConsistent);

const wranglerToml = wranglerTomlText as string;

const app = createApp();

/** env.DB, recording the SQL of every statement prepared through it. */
function recordingDb(): { db: D1Database; sql: string[] } {
  const sql: string[] = [];
  const db = new Proxy(env.DB, {
    get(target, property) {
      if (property === "prepare") {
        return (query: string) => {
          sql.push(query);
          return target.prepare(query);
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { db, sql };
}

const writes = (sql: string[]) => sql.filter((s) => /^\s*(INSERT|UPDATE|DELETE|REPLACE)\b/i.test(s));
const keyReads = (sql: string[]) => sql.filter((s) => /FROM api_keys WHERE secret_hash/.test(s));

interface Call {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: problem bodies are inspected field by field
  body: any;
}

/** One request through the app with `overrides` on this file's bindings; waits for its waitUntil work. */
/** A rate limiter that records the key of every request it is asked about and answers `success`. */
function recordingLimiter(keys: string[], success: boolean): RateLimit {
  return {
    limit: async (options) => {
      keys.push(options.key);
      return { success };
    },
  };
}

async function call(
  path: string,
  headers: Record<string, string>,
  overrides: Partial<Env> = {},
  init: RequestInit = {},
): Promise<Call> {
  const ctx = createExecutionContext();
  const response = await app.fetch(
    new Request(`http://ledger.test${path}`, { ...init, headers }),
    { ...env, ...overrides },
    ctx,
  );
  await waitOnExecutionContext(ctx);
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text === "" ? null : JSON.parse(text) };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const admin = bearer(env.ADMIN_API_KEY);
/** A token shaped like a real key, naming none. */
const madeUpToken = () =>
  `oel_${Math.floor(Math.random() * 2 ** 32)
    .toString(16)
    .padStart(8, "0")}_${"A".repeat(11)}${crypto.randomUUID().replaceAll("-", "")}`;

let addresses = 0;
/** A client address of its own per use (TEST-NET-2), so tests never share a failure budget. */
const freshAddress = () => `198.51.100.${++addresses}`;

const pendingCount = (counter: string, subject?: string) =>
  pendingSecurityCounts()
    .filter((c) => c.counter === counter && (subject === undefined || c.subject === subject))
    .reduce((n, c) => n + c.count, 0);

async function createKey(body: Record<string, unknown>): Promise<string> {
  const created = await call(
    "/v1/admin/api-keys",
    { ...admin, "content-type": "application/json" },
    {},
    {
      method: "POST",
      body: JSON.stringify(body),
    },
  );
  expect(created.status).toBe(201);
  return created.body.secret as string;
}

/** Fails authentication from `address` until it is refused (429), within a few windows of the limiter. */
async function exhaustFailureBudget(address: string, overrides: Partial<Env> = {}): Promise<Call> {
  for (let i = 0; i < 40; i++) {
    const response = await call("/v1/reports/balances", { ...bearer("wrong"), "cf-connecting-ip": address }, overrides);
    if (response.status === 429) return response;
    expect(response.status).toBe(401);
  }
  throw new Error("the failure budget was never reached");
}

describe("failed authentications", () => {
  it("cause no D1 write on the request path: counted in memory, flushed once per interval in one statement", async () => {
    const manual = useManualClock();
    await flushSecurityCounters(env, clock.now()); // a clean slate: nothing pending, a new interval
    const { db, sql } = recordingDb();
    const address = freshAddress();
    const strangers: Record<string, string>[] = [
      {},
      bearer("wrong"),
      { authorization: "Basic abc" },
      bearer(madeUpToken()),
      bearer(madeUpToken()),
    ];
    for (let round = 0; round < 4; round++) {
      for (const headers of strangers) {
        const response = await call("/v1/reports/balances", { ...headers, "cf-connecting-ip": address }, { DB: db });
        expect([401, 429]).toContain(response.status);
      }
    }
    // Twenty strangers: no write at all, one key read per distinct made-up token.
    expect(writes(sql)).toEqual([]);
    expect(keyReads(sql)).toHaveLength(2);
    expect(pendingCount("auth_failed")).toBe(20);
    // "missing": no bearer token at all (no header, or another scheme).
    expect(pendingCount("auth_failed", "missing")).toBe(8);
    const stored = await env.DB.prepare("SELECT COALESCE(SUM(count), 0) AS n FROM security_counters").first<{
      n: number;
    }>();

    manual.advance(SECURITY_COUNTERS_FLUSH_INTERVAL_MS);
    const next = await call("/v1/reports/balances", { "cf-connecting-ip": freshAddress() }, { DB: db });
    expect(next.status).toBe(401);
    // The interval passed: one statement writes every pending count (off the request path).
    const flushed = writes(sql);
    expect(flushed).toHaveLength(1);
    expect(flushed[0]).toMatch(/^INSERT INTO security_counters .* ON CONFLICT/);
    expect(pendingSecurityCounts()).toEqual([]);
    const after = await env.DB.prepare(
      "SELECT COALESCE(SUM(count), 0) AS n FROM security_counters WHERE counter = 'auth_failed'",
    ).first<{ n: number }>();
    expect((after?.n ?? 0) - (stored?.n ?? 0)).toBeGreaterThanOrEqual(20);
    // Never a presented key in the table.
    const rows = await env.DB.prepare("SELECT * FROM security_counters").all();
    expect(JSON.stringify(rows.results)).not.toContain("wrong");
    expect(JSON.stringify(rows.results)).not.toContain("oel_");
  });

  it("remember an unknown token for UNKNOWN_KEY_CACHE_TTL_MS: repeats cost no D1 read", async () => {
    const manual = useManualClock();
    const { db, sql } = recordingDb();
    const token = madeUpToken();
    const address = freshAddress();
    for (let i = 0; i < 5; i++) {
      const response = await call(
        "/v1/reports/balances",
        { ...bearer(token), "cf-connecting-ip": address },
        { DB: db },
      );
      expect(response.status).toBe(401);
    }
    expect(keyReads(sql)).toHaveLength(1);
    manual.advance(UNKNOWN_KEY_CACHE_TTL_MS);
    await call("/v1/reports/balances", { ...bearer(token), "cf-connecting-ip": address }, { DB: db });
    expect(keyReads(sql)).toHaveLength(2);
  });

  it("keep the unknown-token cache bounded: a flood of random tokens evicts the oldest", async () => {
    const now = clock.now();
    const nobody = {
      prepare: () => ({ bind: () => ({ first: async () => null }) }),
    } as unknown as D1Database;
    for (let i = 0; i < UNKNOWN_KEY_CACHE_ENTRIES_MAX + 200; i++) {
      const probe = await probeApiKey(madeUpToken(), now);
      expect(await resolveApiKey(nobody, probe, now, () => {})).toBeNull();
    }
    expect(keyCacheSizes().unknown).toBe(UNKNOWN_KEY_CACHE_ENTRIES_MAX);
  });
});

describe("the failure budget per client address", () => {
  it("answers 429 past the budget, then refuses that address before any key lookup; others are unaffected", async () => {
    useManualClock();
    const valid = await createKey({ name: "gateway", scopes: ["ledger:read"] });
    const blocked = freshAddress();
    // The valid key is seen (and cached) from the address before it goes over its budget.
    expect((await call("/v1/reports/balances", { ...bearer(valid), "cf-connecting-ip": blocked })).status).toBe(200);
    const before = pendingCount("auth_failed");
    const refused = await exhaustFailureBudget(blocked);
    expect(refused.body.code).toBe("rate_limited");
    expect(refused.headers.get("retry-after")).toBe(String(RATE_LIMIT_PERIOD_SECONDS));

    // Past its budget, the address's made-up tokens are refused before any lookup.
    const { db, sql } = recordingDb();
    for (const headers of [bearer(madeUpToken()), {}, bearer("wrong")]) {
      const response = await call("/v1/reports/balances", { ...headers, "cf-connecting-ip": blocked }, { DB: db });
      expect(response.status).toBe(429);
      expect(response.body.code).toBe("rate_limited");
    }
    expect(sql).toEqual([]);
    // Refused failures still count as failed authentications.
    expect(pendingCount("auth_failed") - before).toBeGreaterThanOrEqual(4 + 3);
    expect(pendingCount("rate_limited", "address")).toBeGreaterThanOrEqual(4);

    // A caller whose key this isolate holds as valid is still served from that address...
    expect((await call("/v1/reports/balances", { ...bearer(valid), "cf-connecting-ip": blocked })).status).toBe(200);
    // ...and every other address is untouched, with a valid key or without.
    const elsewhere = freshAddress();
    expect((await call("/v1/reports/balances", { ...bearer(valid), "cf-connecting-ip": elsewhere })).status).toBe(200);
    expect((await call("/v1/reports/balances", { ...bearer("wrong"), "cf-connecting-ip": elsewhere })).status).toBe(
      401,
    );
    expect((await call("/v1/reports/balances", { ...admin, "cf-connecting-ip": elsewhere })).status).toBe(200);
  });

  it("never charges a valid key, not even the first time an isolate sees it", async () => {
    useManualClock();
    const charged: string[] = [];
    const counting = recordingLimiter(charged, true);
    const address = freshAddress();
    for (let i = 0; i < 3; i++) {
      const secret = await createKey({ name: `tenant-${i}`, scopes: ["ledger:read"] });
      const response = await call(
        "/v1/reports/balances",
        { ...bearer(secret), "cf-connecting-ip": address },
        { AUTH_FAILURE_LIMITER: counting },
      );
      expect(response.status).toBe(200);
    }
    expect(charged).toEqual([]);
    await call("/v1/reports/balances", { "cf-connecting-ip": address }, { AUTH_FAILURE_LIMITER: counting });
    expect(charged).toEqual([address]);
  });

  it("is keyed on CF-Connecting-IP, IPv6 by its /64, and one shared key without the header", async () => {
    expect(clientAddressKey("203.0.113.7")).toBe("203.0.113.7");
    expect(clientAddressKey(" 2001:DB8:0:1:aaaa::1 ")).toBe("2001:db8:0:1::/64");
    expect(clientAddressKey("2001:0db8:0000:0001:ffff:ffff:ffff:ffff")).toBe("2001:db8:0:1::/64");
    expect(clientAddressKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(clientAddressKey("::ffff:192.0.2.1")).toBe("0:0:0:0::/64");
    expect(clientAddressKey(undefined)).toBe(UNKNOWN_ADDRESS_KEY);
    expect(clientAddressKey("")).toBe(UNKNOWN_ADDRESS_KEY);
    expect(clientAddressKey("not-an-address:::x")).toBe("not-an-address:::x");

    useManualClock();
    // Two hosts of one /64 share a budget; the next /64 does not.
    await exhaustFailureBudget("2001:db8:42:7::1");
    expect((await call("/v1/reports/balances", { "cf-connecting-ip": "2001:db8:42:7:ffff::9" })).status).toBe(429);
    expect((await call("/v1/reports/balances", { "cf-connecting-ip": "2001:db8:42:8::1" })).status).toBe(401);
  });

  it("puts requests without CF-Connecting-IP under one shared key", async () => {
    useManualClock();
    const keys: string[] = [];
    const recording = recordingLimiter(keys, true);
    await call("/v1/reports/balances", {}, { AUTH_FAILURE_LIMITER: recording });
    await call("/v1/reports/balances", bearer("wrong"), { AUTH_FAILURE_LIMITER: recording });
    expect(keys).toEqual([UNKNOWN_ADDRESS_KEY, UNKNOWN_ADDRESS_KEY]);
  });
});

describe("the bootstrap key", () => {
  it("is rate limited under its own binding, with a higher limit than issued keys", async () => {
    useManualClock();
    const keys: string[] = [];
    const refusing = recordingLimiter(keys, false);
    const refused = await call("/v1/reports/balances", admin, { BOOTSTRAP_RATE_LIMITER: refusing });
    expect(refused.status).toBe(429);
    expect(refused.body.code).toBe("rate_limited");
    expect(refused.headers.get("retry-after")).toBe(String(RATE_LIMIT_PERIOD_SECONDS));
    expect(keys).toEqual(["bootstrap"]);
    expect(pendingCount("rate_limited", "bootstrap")).toBeGreaterThanOrEqual(1);

    // wrangler.toml: a binding of its own, above the per-key limit.
    const limitOf = (name: string) => {
      const block = wranglerToml.split("[[ratelimits]]").find((b) => b.includes(`name = "${name}"`));
      return Number(/limit = (\d+)/.exec(block ?? "")?.[1]);
    };
    expect(limitOf("BOOTSTRAP_RATE_LIMITER")).toBeGreaterThan(limitOf("RATE_LIMITER"));
    expect(limitOf("AUTH_FAILURE_LIMITER")).toBeGreaterThan(0);
  });

  it("must be strong: a short, repeated or low-entropy ADMIN_API_KEY makes every request answer 503", async () => {
    const weak = [
      "test-admin-key",
      "x",
      "",
      "a".repeat(64),
      "abcd".repeat(16),
      "0123456789".repeat(5),
      `${"ab".repeat(30)}c`,
      "correct horse battery staple correct horse",
      // 32 random bytes with the newline a careless paste adds: it could never be presented.
      `oel_admin_${btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))}\n`,
    ];
    for (const key of weak) {
      const logs = captureLogs();
      let responses: Call[];
      try {
        responses = [
          await call("/healthz", {}, { ADMIN_API_KEY: key }),
          await call("/v1/reports/balances", bearer(key), { ADMIN_API_KEY: key }),
        ];
      } finally {
        logs.stop();
      }
      for (const response of responses) {
        expect(response.status, JSON.stringify(key)).toBe(503);
        expect(response.body.code).toBe("service_misconfigured");
        if (key.length > 0) expect(JSON.stringify(response.body)).not.toContain(key);
      }
      const refused = logs.lines.map((l) => l.text).find((t) => t.includes("configuration_refused"));
      expect(refused).toContain("ADMIN_API_KEY");
      if (key.length > 0) expect(refused).not.toContain(key);
    }
    expect(bootstrapKeyProblem("x".repeat(ADMIN_API_KEY_LENGTH_MIN - 1))).toContain(`${ADMIN_API_KEY_LENGTH_MIN}`);
  });

  it("answers 503 naming a missing limiter binding, rather than failing every request with a 500", async () => {
    for (const name of ["RATE_LIMITER", "BOOTSTRAP_RATE_LIMITER", "AUTH_FAILURE_LIMITER"] as const) {
      const logs = captureLogs();
      let response: Call;
      try {
        response = await call("/v1/reports/balances", admin, { [name]: undefined });
      } finally {
        logs.stop();
      }
      expect(response.status).toBe(503);
      expect(response.body.code).toBe("service_misconfigured");
      expect(logs.lines.map((l) => l.text).join("\n")).toContain(name);
    }
  });

  it("accepts 32 random bytes in the usual spellings, and an unset key locks the bootstrap door", async () => {
    const bytes = () => crypto.getRandomValues(new Uint8Array(32));
    const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    const base64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));
    const base64url = (b: Uint8Array) => base64(b).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
    for (let i = 0; i < 200; i++) {
      for (const key of [hex(bytes()), base64(bytes()), base64url(bytes()), `oel_admin_${base64url(bytes())}`]) {
        expect(bootstrapKeyProblem(key), key).toBeNull();
      }
    }
    const strong = `oel_admin_${base64url(bytes())}`;
    expect((await call("/v1/reports/balances", bearer(strong), { ADMIN_API_KEY: strong })).status).toBe(200);
    const unset = { ADMIN_API_KEY: undefined as unknown as string };
    expect((await call("/healthz", {}, unset)).status).toBe(200);
    expect((await call("/v1/reports/balances", admin, unset)).status).toBe(401);
  });
});

describe("the counters' prune", () => {
  it("runs from the cron and deletes at most SECURITY_COUNTERS_PRUNE_ROWS_MAX old rows per run", async () => {
    const manual = useManualClock();
    const old = SECURITY_COUNTERS_PRUNE_ROWS_MAX + 150;
    await env.DB.prepare(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) " +
        "INSERT INTO security_counters (minute, counter, subject, count) " +
        "SELECT '2000-01-01T00:00', 'auth_failed', 'old_' || i, 1 FROM n",
    )
      .bind(old)
      .run();
    const recent = new Date(clock.now() - SECURITY_COUNTERS_RETENTION_MS + 60_000).toISOString().slice(0, 16);
    await env.DB.prepare(
      "INSERT INTO security_counters (minute, counter, subject, count) VALUES (?, 'auth_failed', 'recent', 1)",
    )
      .bind(recent)
      .run();
    const count = async (where: string) =>
      (await env.DB.prepare(`SELECT COUNT(*) AS n FROM security_counters WHERE ${where}`).first<{ n: number }>())?.n;
    const cron = async () => {
      const ctx = createExecutionContext();
      await worker.scheduled(createScheduledController({ scheduledTime: clock.now(), cron: "* * * * *" }), env, ctx);
      await waitOnExecutionContext(ctx);
    };
    await cron();
    expect(await count("subject LIKE 'old_%'")).toBe(old - SECURITY_COUNTERS_PRUNE_ROWS_MAX);
    manual.advance(60_000);
    await cron();
    expect(await count("subject LIKE 'old_%'")).toBe(0);
    expect(await count("subject = 'recent'")).toBe(1);
  });
});
