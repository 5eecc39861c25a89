/**
 * The response-conformance checker (test/http/conformance.ts) must be able to fail: each kind
 * of drift between a body and /openapi.json is reported, with a pointer into the body and the
 * schema keyword that failed; a real route passes.
 */
import { describe, expect, it } from "vitest";
import { account, api, openAccount } from "../helpers";
import {
  CONFORMANCE_STRICT,
  ConformanceError,
  checkResponse,
  conformance,
  findOperation,
  type OpenApiDocument,
  openApiDocument,
  Validator,
} from "./conformance";

const ACCOUNT = "#/components/schemas/Account";

async function accountBody(): Promise<Record<string, unknown>> {
  return { ...(await account(await openAccount(500))) };
}

async function check(status: number, contentType: string, body: unknown, path = "/v1/accounts/acct_x") {
  return conformance(await openApiDocument(), "GET", path, status, contentType, body).mismatches;
}

describe("response conformance", () => {
  it("passes a real route's responses", async () => {
    const id = await openAccount(500);
    const read = await api("GET", `/v1/accounts/${id}`);
    expect(read.status).toBe(200);
    expect(await check(200, "application/json", read.body, `/v1/accounts/${id}`)).toEqual([]);
    expect(await checkResponse("GET", `/v1/accounts/${id}`, 200, "application/json; charset=UTF-8", read.body)).toEqual(
      [],
    );
    const missing = await api("GET", "/v1/accounts/nobody-here");
    expect(missing.status).toBe(404);
    expect(await check(404, "application/problem+json", missing.body)).toEqual([]);
  });

  it("fails a body with a property the schema does not declare", async () => {
    const body = { ...(await accountBody()), secret_sauce: "leaked" };
    expect(await check(200, "application/json", body)).toEqual([
      expect.objectContaining({ pointer: "/secret_sauce", schemaPath: ACCOUNT }),
    ]);
  });

  it("fails a body that lacks a required property", async () => {
    const { balance: _, ...body } = await accountBody();
    expect(await check(200, "application/json", body)).toEqual([
      { pointer: "", schemaPath: `${ACCOUNT}/required`, message: 'required property "balance" is missing' },
    ]);
  });

  it("fails a property of the wrong type, pointing into the body", async () => {
    const body = { ...(await accountBody()), balance: "500", status: "closed", metadata: { tier: { nested: 1 } } };
    const mismatches = await check(200, "application/json", body);
    expect(mismatches.map((m) => [m.pointer, m.schemaPath])).toEqual([
      ["/balance", `${ACCOUNT}/properties/balance/type`],
      ["/status", `${ACCOUNT}/properties/status/enum`],
      ["/metadata/tier", "#/components/schemas/Metadata/additionalProperties/anyOf"],
    ]);
    expect(mismatches[0]?.message).toBe('expected integer, got string "500"');
  });

  it("fails a status that the operation does not declare", async () => {
    const problem = { type: "/problems/insufficient_funds", title: "x", status: 402, code: "insufficient_funds" };
    const mismatches = await check(402, "application/problem+json", { ...problem, detail: "d" });
    expect(mismatches).toHaveLength(1);
    expect(mismatches[0]?.message).toMatch(/^status 402 is not declared/);
    expect(mismatches[0]?.schemaPath).toBe("#/paths/~1v1~1accounts~1{account_id}/get/responses");
  });

  it("fails an undeclared media type, a problem code not mapped to its status, and an undocumented route", async () => {
    expect((await check(200, "text/plain", "hello"))[0]?.message).toMatch(/media type "text\/plain" is not declared/);
    const wrongCode = { type: "/problems/x", title: "x", status: 404, code: "charge_not_found", detail: "d" };
    expect((await check(404, "application/problem+json", wrongCode))[0]).toMatchObject({
      pointer: "/code",
      message: expect.stringMatching(/not one declared for 404 \(account_not_found\)/),
    });
    expect((await check(404, "application/problem+json", { ...wrongCode, status: 400 }))[0]?.pointer).toBe("/status");
    expect((await check(200, "application/json", { ok: true }, "/healthz"))[0]?.message).toMatch(
      /no operation GET \/healthz is documented/,
    );
  });

  it.runIf(CONFORMANCE_STRICT)("throws from checkResponse, listing every mismatch", async () => {
    const { currency: _, ...rest } = await accountBody();
    const body = { ...rest, extra: 1 };
    const error = await checkResponse("GET", "/v1/accounts/a", 200, "application/json", body).catch((e) => e);
    expect(error).toBeInstanceOf(ConformanceError);
    expect((error as ConformanceError).mismatches.map((m) => m.pointer)).toEqual(["", "/extra"]);
    expect((error as Error).message).toContain("GET /v1/accounts/{account_id} -> 200 application/json");
  });
});

describe("operation lookup", () => {
  const doc: OpenApiDocument = {
    paths: {
      "/a/{id}/events": { get: { operationId: "list" } },
      "/a/{id}/{kind}": { get: { operationId: "kind" } },
      "/a/{id}/events/export": { get: { operationId: "export" } },
      "/a/{id}": { post: { operationId: "post" } },
    },
  };
  it("prefers literal segments over templates and matches the method", () => {
    expect(findOperation(doc, "GET", "/a/1/events")?.template).toBe("/a/{id}/events");
    expect(findOperation(doc, "GET", "/a/1/other")?.template).toBe("/a/{id}/{kind}");
    expect(findOperation(doc, "GET", "/a/1/events/export")?.template).toBe("/a/{id}/events/export");
    expect(findOperation(doc, "GET", "/a/1")).toBeUndefined();
    expect(findOperation(doc, "POST", "/a/")).toBeUndefined();
  });
});

describe("validator", () => {
  const doc = {
    components: {
      schemas: {
        Base: { type: "object", properties: { id: { type: "string" } }, required: ["id"] },
        Open: { type: "object", properties: { id: { type: "string" } }, additionalProperties: {} },
      },
    },
  };
  const v = new Validator(doc);
  const pointers = (schema: unknown, value: unknown) => v.validate(schema, value).map((m) => m.pointer);

  it("keeps objects closed across allOf, and open where additionalProperties says so", () => {
    const extended = {
      allOf: [{ $ref: "#/components/schemas/Base" }, { type: "object", properties: { n: { type: "integer" } } }],
    };
    expect(pointers(extended, { id: "a", n: 1 })).toEqual([]);
    expect(pointers(extended, { id: "a", n: 1, z: 2 })).toEqual(["/z"]);
    expect(pointers({ $ref: "#/components/schemas/Open" }, { id: "a", z: { deep: [1] } })).toEqual([]);
    expect(pointers({ type: "object", additionalProperties: { type: "integer" } }, { a: 1, b: "x" })).toEqual(["/b"]);
    expect(pointers({ type: "object", properties: { any: {} } }, { any: { whatever: 1 } })).toEqual([]);
  });

  it("handles type arrays, null, const, bounds, patterns and array items", () => {
    expect(pointers({ type: ["string", "null"] }, null)).toEqual([]);
    expect(pointers({ type: ["string", "null"] }, 1)).toEqual([""]);
    expect(pointers({ type: "integer" }, 1.5)).toEqual([""]);
    expect(pointers({ const: "x" }, "y")).toEqual([""]);
    expect(pointers({ type: "integer", minimum: 0, maximum: 9 }, 10)).toEqual([""]);
    expect(pointers({ type: "string", minLength: 2, pattern: "^[a-z]+$" }, "A")).toEqual(["", ""]);
    const list = { type: "array", maxItems: 3, items: { $ref: "#/components/schemas/Base" } };
    expect(pointers(list, [{ id: "a" }, { id: 1 }, { id: "c", x: 0 }])).toEqual(["/1/id", "/2/x"]);
  });

  it("picks the fitting anyOf/oneOf branch of closed objects, and fails when none or several match", () => {
    const a = { type: "object", properties: { kind: { const: "a" }, n: { type: "integer" } }, required: ["kind"] };
    const b = { type: "object", properties: { kind: { const: "b" }, s: { type: "string" } }, required: ["kind"] };
    expect(pointers({ oneOf: [a, b] }, { kind: "a", n: 1 })).toEqual([]);
    expect(pointers({ anyOf: [a, b] }, { kind: "b", s: "x" })).toEqual([]);
    expect(pointers({ anyOf: [a, b] }, { kind: "c" })).toEqual([""]);
    expect(pointers({ anyOf: [a, b] }, { kind: "a", s: "x" })).toEqual(["/s"]);
    expect(pointers({ oneOf: [{ type: "integer" }, { type: "number" }] }, 1)).toEqual([""]);
  });

  it("reports a keyword it does not support instead of ignoring it", () => {
    expect(v.validate({ type: "string", contentEncoding: "base64" }, "x")[0]?.message).toBe(
      'unsupported schema keyword "contentEncoding"',
    );
  });
});
