/**
 * Hostile input at every route: random and malformed requests (paths, methods, headers and
 * bodies) must never produce a 500, never change state when rejected, and never echo a secret.
 * Routes come from the OpenAPI document, so a new route is fuzzed without editing this file.
 *
 * Budget (test/budget.ts): a fixed 400 requests, with a 120 s timeout (see the test);
 * FUZZ_RUNS=<n> sends n instead, for a deeper local hunt.
 */
import { env, exports } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { budget } from "../budget";
import { api, openAccount, textOf } from "../helpers";

interface Operation {
  method: string;
  path: string;
  bodyKeys: string[];
}

async function operations(): Promise<Operation[]> {
  const response = await exports.default.fetch("http://ledger.test/openapi.json");
  const doc = (await response.json()) as {
    paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: unknown }> } }>>;
    components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
  };
  const ops: Operation[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const schema = op.requestBody?.content["application/json"]?.schema as { $ref?: string } | undefined;
      const name = schema?.$ref?.split("/").at(-1);
      const keys = Object.keys((name === undefined ? undefined : doc.components.schemas[name])?.properties ?? {});
      ops.push({ method: method.toUpperCase(), path, bodyKeys: keys });
    }
  }
  return ops;
}

const weirdStrings = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom("", " ", "../../etc/passwd", "%00", "a".repeat(300), "'; DROP TABLE accounts; --", "\u0000", "é😀"),
);
const weirdValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -1, 1e300, Number.MAX_SAFE_INTEGER + 2, 2 ** 53, -(2 ** 60)),
  weirdStrings,
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
);

describe("hostile input", () => {
  // 400 requests (each followed by a state read) take about ten seconds alone; under the full
  // parallel suite on a 2-core machine the default 5 s timed out (issue 10). 120 s is generous
  // on purpose: the number of requests is fixed, so a slow machine runs the same cases, slower.
  const FUZZ = budget("FUZZ_RUNS", 400, 120_000);
  it("never answers 500, never changes state when it refuses, never echoes a secret", {
    timeout: FUZZ.timeout,
  }, async () => {
    const target = await openAccount(5_000);
    await api("POST", `/v1/accounts/${target}/reservations`, { reservation_id: "held", amount: 100 });
    await api("POST", `/v1/accounts/${target}/charges`, { charge_id: "paid", amount: 100 });
    const ops = await operations();
    expect(ops.length).toBeGreaterThan(25);
    const secrets = [env.ADMIN_API_KEY, env.AUDIT_SIGNING_KEY as string, env.CONFIG_ENCRYPTION_KEY as string];
    const state = async () => {
      const read = await api("GET", `/v1/accounts/${target}`);
      return { last_seq: read.body.last_seq, balance: read.body.balance, reserved: read.body.reserved };
    };
    let before = await state();
    let refused = 0;

    const request = fc.record({
      op: fc.constantFrom(...ops),
      method: fc.option(fc.constantFrom("GET", "POST", "PATCH", "PUT", "DELETE"), { freq: 5 }),
      account: fc.oneof(fc.constant(target), weirdStrings),
      other: fc.oneof(fc.constantFrom("held", "paid", "nope"), weirdStrings),
      body: fc.oneof(
        // Right keys, random values: the validators' real work.
        fc.constant("keys" as const),
        fc.jsonValue({ maxDepth: 3 }),
        fc.constantFrom("{", "[1,2", "null", '"x"', '{"amount": 1e999}', "\u0000", "x".repeat(70_000)),
      ),
      values: fc.array(weirdValue, { minLength: 12, maxLength: 12 }),
      contentType: fc.constantFrom("application/json", "text/plain", "application/x-www-form-urlencoded", ""),
      query: fc.dictionary(fc.constantFrom("limit", "cursor", "after_seq", "at", "seq", "type", "x"), weirdStrings, {
        maxKeys: 3,
      }),
      auth: fc.constantFrom("admin", "admin", "admin", "none", "garbage"),
    });

    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const path = r.op.path
          .replace("{account_id}", encodeURIComponent(r.account))
          .replace(/\{[a-z_]+\}/, encodeURIComponent(r.other));
        const query = new URLSearchParams(r.query).toString();
        let body: string | undefined;
        if (r.body === "keys") {
          body = JSON.stringify(Object.fromEntries(r.op.bodyKeys.map((k, i) => [k, r.values[i % r.values.length]])));
        } else {
          body = typeof r.body === "string" ? r.body : JSON.stringify(r.body);
        }
        const method = r.method ?? r.op.method;
        const headers: Record<string, string> = {};
        if (r.contentType !== "") headers["content-type"] = r.contentType;
        if (r.auth === "admin") headers.authorization = `Bearer ${env.ADMIN_API_KEY}`;
        if (r.auth === "garbage") headers.authorization = `Bearer oel_${encodeURIComponent(r.other)}`;
        const response = await exports.default.fetch(`http://ledger.test${path}${query ? `?${query}` : ""}`, {
          method,
          headers,
          ...(method === "GET" || method === "HEAD" ? {} : { body }),
        });
        const text = await textOf(response);
        expect(response.status, `${method} ${path} -> ${text.slice(0, 200)}`).toBeLessThan(500);
        for (const secret of secrets) expect(text).not.toContain(secret);
        const after = await state();
        if (response.status >= 400) {
          refused += 1;
          expect(after, `${method} ${path} was refused (${response.status}) but changed state`).toEqual(before);
        }
        before = after;
      }),
      { numRuns: FUZZ.numRuns },
    );
    // About half the requests are refused (a quarter is a conservative floor for any count).
    expect(refused).toBeGreaterThan(FUZZ.numRuns / 4);
  });
});
