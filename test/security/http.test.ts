/**
 * The HTTP edge's security: the log policy (one allowlisted line per request, no secret ever),
 * console CORS, and security headers on every kind of response.
 */
import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { captureLogs as captureWrittenLogs } from "../../src/observability/log";
import { api, expectEveryAccountConsistent, openAccount } from "../helpers";

afterEach(expectEveryAccountConsistent);

const ALLOWED_LOG_FIELDS = new Set([
  "msg",
  "request_id",
  "user_id",
  "service_id",
  "alias",
  "provider",
  "model",
  "input_tokens",
  "output_tokens",
  "cached_tokens",
  "status",
  "latency_ms",
  "final_cost",
  "error_code",
  "account_id",
  "key_prefix",
  "route",
]);

/**
 * Captures everything the Worker would log while `run` runs: the lines written through the log
 * module (silent under test unless captured) and anything written to the console directly.
 */
async function captureLogs(run: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const spies = (["log", "info", "warn", "error", "debug"] as const).map((level) =>
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      lines.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
    }),
  );
  const written = captureWrittenLogs();
  try {
    await run();
  } finally {
    written.stop();
    for (const spy of spies) spy.mockRestore();
  }
  return [...written.lines.map((l) => l.text), ...lines];
}

describe("log policy", () => {
  it("writes one allowlisted line per request and never a secret, a header, metadata or a prompt", async () => {
    const id = await openAccount(10_000);
    const created = await api("POST", "/v1/admin/api-keys", { name: "gw", scopes: ["ledger:write"] });
    const issued = created.body.secret as string;
    const secrets = [
      issued,
      env.ADMIN_API_KEY,
      env.AUDIT_SIGNING_KEY as string,
      env.CONFIG_ENCRYPTION_KEY as string,
      "SECRET-METADATA-VALUE",
      "https://hooks.example.com/SECRET-WEBHOOK-PATH",
      "SECRET-PROMPT-TEXT",
      "SECRET-REASON-TEXT",
    ];
    const context = {
      request_id: "req-1",
      user_id: "u-1",
      service_id: "chat",
      alias: "fast",
      provider: "acme",
      model: "m-1",
    };
    let requests = 0;
    const lines = await captureLogs(async () => {
      const calls: [string, string, unknown, Record<string, string>?][] = [
        [
          "POST",
          `/v1/accounts/${id}/reservations`,
          {
            reservation_id: "r1",
            amount: 500,
            context,
            metadata: { card: "SECRET-METADATA-VALUE", webhook: "https://hooks.example.com/SECRET-WEBHOOK-PATH" },
          },
          { authorization: `Bearer ${issued}` },
        ],
        [
          "POST",
          `/v1/accounts/${id}/reservations/r1/capture`,
          { amount: 321, usage: { input_tokens: 1000, output_tokens: 200, cached_tokens: 50, latency_ms: 900 } },
          { authorization: `Bearer ${issued}` },
        ],
        ["POST", `/v1/accounts/${id}/charges`, { charge_id: "c1", amount: 5, prompt: "SECRET-PROMPT-TEXT" }],
        [
          "POST",
          `/v1/accounts/${id}/refunds`,
          { refund_id: "f", charge_id: "r1", amount: 1, reason: "SECRET-REASON-TEXT" },
        ],
        ["GET", `/v1/accounts/${id}`, undefined, { authorization: `Bearer ${issued}x` }],
        ["GET", "/v1/nothing", undefined],
      ];
      for (const [method, path, body, headers] of calls) {
        await api(method, path, body, headers);
        requests += 1;
      }
    });
    const requestLines = lines.filter((l) => l.includes('"msg":"request"')).map((l) => JSON.parse(l));
    expect(requestLines).toHaveLength(requests);
    for (const line of requestLines) {
      for (const field of Object.keys(line)) expect(ALLOWED_LOG_FIELDS.has(field), field).toBe(true);
    }
    const [reserve, capture, charge, refund, unauthorized, unmatched] = requestLines;
    // Every platform field of the reservation's context is logged as it was sent.
    expect(reserve).toMatchObject({
      ...context,
      status: 201,
      account_id: id,
      route: "POST /v1/accounts/{account_id}/reservations",
      key_prefix: issued.slice(0, 12),
    });
    expect(capture).toMatchObject({
      model: "m-1",
      input_tokens: 1000,
      output_tokens: 200,
      cached_tokens: 50,
      final_cost: 321,
    });
    expect(charge).toMatchObject({ status: 400, error_code: "invalid_request", key_prefix: "bootstrap" });
    expect(refund).toMatchObject({ status: 201 });
    expect(unauthorized).toMatchObject({ status: 401, error_code: "unauthorized" });
    expect(unauthorized.key_prefix).toBeUndefined();
    expect(unmatched).toMatchObject({ status: 404, route: "unmatched" });
    for (const line of requestLines) expect(typeof line.latency_ms).toBe("number");
    const everything = lines.join("\n");
    for (const secret of secrets) expect(everything).not.toContain(secret);
    expect(everything.toLowerCase()).not.toContain("authorization");
  });
});

describe("log policy for strangers", () => {
  it("logs a refused stranger (401, then 429 past its address's failure budget) without its token or address", async () => {
    const address = "192.0.2.201";
    const token = "oel_0123abcd_SECRET-STRANGER-TOKENxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    const statuses: number[] = [];
    const lines = await captureLogs(async () => {
      for (let i = 0; i < 40 && !statuses.includes(429); i++) {
        const response = await exports.default.fetch("http://ledger.test/v1/reports/balances", {
          headers: { authorization: `Bearer ${token}`, "cf-connecting-ip": address },
        });
        await response.arrayBuffer();
        statuses.push(response.status);
      }
    });
    expect(statuses[0]).toBe(401);
    expect(statuses.at(-1)).toBe(429);
    const requestLines = lines.filter((l) => l.includes('"msg":"request"')).map((l) => JSON.parse(l));
    expect(requestLines.map((l) => l.status)).toEqual(statuses);
    for (const line of requestLines) {
      for (const field of Object.keys(line)) expect(ALLOWED_LOG_FIELDS.has(field), field).toBe(true);
      expect(line.key_prefix).toBeUndefined();
    }
    expect(requestLines.at(-1)).toMatchObject({ status: 429, error_code: "rate_limited" });
    const everything = lines.join("\n");
    expect(everything).not.toContain("SECRET-STRANGER-TOKEN");
    expect(everything).not.toContain(address);
  });
});

describe("console CORS", () => {
  const console_ = "https://console.open4x.com";
  const call = (method: string, path: string, headers: Record<string, string>) =>
    exports.default.fetch(`http://ledger.test${path}`, { method, headers });

  it("lets the console read, and no other origin", async () => {
    const id = await openAccount(1);
    const auth = { authorization: `Bearer ${env.ADMIN_API_KEY}` };
    const ok = await call("GET", `/v1/accounts/${id}`, { ...auth, origin: console_ });
    expect(ok.headers.get("access-control-allow-origin")).toBe(console_);
    expect(ok.headers.get("vary")).toContain("Origin");
    const evil = await call("GET", `/v1/accounts/${id}`, { ...auth, origin: "https://evil.example" });
    expect(evil.headers.get("access-control-allow-origin")).toBeNull();
    const write = await exports.default.fetch(`http://ledger.test/v1/accounts/${id}/credits`, {
      method: "POST",
      headers: { ...auth, origin: console_, "content-type": "application/json" },
      body: JSON.stringify({ credit_id: "cors", amount: 1 }),
    });
    expect(write.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("answers preflights for reads from the console only", async () => {
    const good = await call("OPTIONS", "/v1/reports/balances", {
      origin: console_,
      "access-control-request-method": "GET",
      "access-control-request-headers": "authorization",
    });
    expect(good.status).toBe(204);
    expect(good.headers.get("access-control-allow-origin")).toBe(console_);
    expect(good.headers.get("access-control-allow-methods")).toBe("GET, HEAD");
    expect(good.headers.get("access-control-allow-headers")).toContain("authorization");
    for (const [origin, method] of [
      ["https://evil.example", "GET"],
      [console_, "POST"],
      ["null", "GET"],
    ] as const) {
      const refused = await call("OPTIONS", "/v1/reports/balances", {
        origin,
        "access-control-request-method": method,
      });
      expect(refused.status).toBe(403);
      expect(refused.headers.get("access-control-allow-origin")).toBeNull();
    }
  });
});

describe("security headers", () => {
  it("are on every response: success, problem, not found, stream, preflight", async () => {
    const id = await openAccount(1);
    const auth = { authorization: `Bearer ${env.ADMIN_API_KEY}` };
    const responses = await Promise.all([
      exports.default.fetch(`http://ledger.test/v1/accounts/${id}`, { headers: auth }),
      exports.default.fetch("http://ledger.test/v1/accounts/x"),
      exports.default.fetch("http://ledger.test/nowhere", { headers: auth }),
      exports.default.fetch(`http://ledger.test/v1/accounts/${id}/events/export`, { headers: auth }),
      exports.default.fetch("http://ledger.test/healthz"),
      exports.default.fetch("http://ledger.test/v1/reports/balances", {
        method: "OPTIONS",
        headers: { origin: "https://console.open4x.com", "access-control-request-method": "GET" },
      }),
    ]);
    expect(responses.map((r) => r.status)).toEqual([200, 401, 404, 200, 200, 204]);
    for (const response of responses) {
      expect(response.headers.get("x-content-type-options")).toBe("nosniff");
      expect(response.headers.get("cache-control")).toBe("no-store");
      expect(response.headers.get("x-frame-options")).toBe("DENY");
      expect(response.headers.get("content-security-policy")).toContain("default-src 'none'");
      expect(response.headers.get("strict-transport-security")).toContain("max-age=");
      expect(response.headers.get("referrer-policy")).toBe("no-referrer");
      expect(response.headers.get("request-id")).toMatch(/^[0-9A-Z]{26}$/);
      await response.arrayBuffer();
    }
  });
});
