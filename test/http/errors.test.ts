/**
 * The error model (src/errors.ts): every deliberate error carries its problem code, and the one
 * error handler answers it by that code alone; anything else is a generic 500. D1 failures are
 * typed where D1 is called (src/read-side/d1.ts) and counted for the monitor.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { GroupCallLost } from "../../src/app/command-groups";
import { AuditKeyUnavailable } from "../../src/audit/signing";
import type { Env } from "../../src/env";
import { AssertionError, ConfigError, D1Failure, LedgerError, PROBLEM_STATUS } from "../../src/errors";
import { createApp } from "../../src/http/app";
import worker from "../../src/index";
import { captureLogs } from "../../src/observability/log";
import { takeMetricsIfDue } from "../../src/observability/metrics";
import { PriceBackdated } from "../../src/pricing/store";
import { BadCursor } from "../../src/read-side/cursor";
import { guardD1 } from "../../src/read-side/d1";
import { ReportRangeError } from "../../src/reports/rollups";
import { AUTH } from "../helpers";
import { downD1 } from "../webhooks/support";

const THROWN: Record<string, () => Error> = {
  "group-call-lost": () => new GroupCallLost("the group's call never answered"),
  "d1-failure": () => new D1Failure(new Error("D1_ERROR: injected")),
  "bad-cursor": () => new BadCursor("not ours"),
  "report-range": () => new ReportRangeError("from", "the hourly rows of this period are pruned"),
  "price-backdated": () => new PriceBackdated("before now"),
  "audit-key": () => new AuditKeyUnavailable("AUDIT_SIGNING_KEY is not set"),
  config: () => new ConfigError('RAW_EVENTS_WINDOW_DAYS must be a positive number, not "0"'),
  assertion: () => new AssertionError("invariant violated: test"),
  plain: () => new Error("a programmer's mistake with a secret-looking value sk_live_123"),
};

const app = createApp((a) => {
  a.get("/test/throw/:kind", (c) => {
    throw (THROWN[c.req.param("kind")] as () => Error)();
  });
});

async function thrown(kind: string) {
  const ctx = createExecutionContext();
  const response = await app.fetch(new Request(`http://ledger.test/test/throw/${kind}`), env, ctx);
  await waitOnExecutionContext(ctx);
  return { response, body: (await response.json()) as Record<string, unknown> };
}

describe("the error model", () => {
  it("answers each LedgerError by its own code and status, with its public detail", async () => {
    const expected: [string, string, number][] = [
      ["group-call-lost", "service_unavailable", 503],
      ["d1-failure", "internal_error", 500],
      ["bad-cursor", "invalid_request", 400],
      ["report-range", "invalid_request", 400],
      ["price-backdated", "invalid_request", 400],
      ["audit-key", "audit_key_unavailable", 503],
      ["config", "service_misconfigured", 503],
      ["assertion", "internal_error", 500],
    ];
    for (const [kind, code, status] of expected) {
      const error = (THROWN[kind] as () => Error)();
      expect(error, kind).toBeInstanceOf(LedgerError);
      expect(PROBLEM_STATUS[(error as LedgerError).code]).toBe(status);
      const { response, body } = await thrown(kind);
      expect(response.status, kind).toBe(status);
      expect(response.headers.get("content-type")).toBe("application/problem+json");
      expect(body, kind).toMatchObject({ code, status, detail: (error as LedgerError).publicDetail });
      // The internal message never reaches the client (a client's field error is its own words).
      if ((error as LedgerError).fieldErrors === undefined) expect(JSON.stringify(body)).not.toContain(error.message);
    }
  });

  it("tells a caller whose grouped call was lost to retry (503 with Retry-After)", async () => {
    const { response, body } = await thrown("group-call-lost");
    expect(response.status).toBe(503);
    expect(response.headers.get("retry-after")).toBe("1");
    expect(body.code).toBe("service_unavailable");
  });

  it("names the failing field of a client's error", async () => {
    expect((await thrown("bad-cursor")).body.errors).toEqual([{ field: "cursor", message: "invalid cursor" }]);
    expect((await thrown("report-range")).body.errors).toEqual([
      { field: "query.from", message: "the hourly rows of this period are pruned" },
    ]);
  });

  it("answers anything else as a generic 500 and logs its message, never the request", async () => {
    const logs = captureLogs();
    try {
      const { response, body } = await thrown("plain");
      expect(response.status).toBe(500);
      expect(body).toMatchObject({ code: "internal_error", detail: "The ledger failed to process the request." });
      expect(logs.lines.map((l) => JSON.parse(l.text).msg)).toContain("unhandled_error");
      const assertion = await thrown("assertion");
      expect(assertion.response.status).toBe(500);
      expect(logs.lines.map((l) => JSON.parse(l.text).msg)).toContain("invariant_violation");
    } finally {
      logs.stop();
    }
  });
});

describe("D1 failures, typed where D1 is called", () => {
  it("wraps every rejected statement and batch of a guarded database as a D1Failure", async () => {
    const down = guardD1(downD1());
    const statement = down.prepare("SELECT 1").bind(1);
    for (const call of [() => statement.first(), () => statement.run(), () => statement.all(), () => statement.raw()]) {
      await expect(call()).rejects.toBeInstanceOf(D1Failure);
    }
    await expect(down.batch([statement])).rejects.toBeInstanceOf(D1Failure);
    // The real database still answers through its guard, batches included.
    const db = guardD1(env.DB);
    expect(await db.prepare("SELECT ?1 AS n").bind(7).first<{ n: number }>()).toEqual({ n: 7 });
    const [one] = await db.batch<{ n: number }>([db.prepare("SELECT 2 AS n")]);
    expect(one?.results).toEqual([{ n: 2 }]);
  });

  it("answers a route whose D1 is down with a 500 and counts the failure for the monitor", async () => {
    takeMetricsIfDue(Date.now(), true);
    const ctx = createExecutionContext();
    const target = { ...env, DB: downD1() } as Env;
    const request = new Request("http://ledger.test/v1/admin/api-keys", { headers: AUTH });
    const response = await worker.fetch(request, target, ctx);
    await waitOnExecutionContext(ctx);
    expect(response.status).toBe(500);
    expect(((await response.json()) as { code: string }).code).toBe("internal_error");
    const counted = takeMetricsIfDue(Date.now(), true)?.minutes.map(([, m]) => m.d1_failures.request ?? 0) ?? [];
    expect(counted.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1);
  });
});
