/**
 * The HTTP contract end to end through the Worker: every route, every error code, and a table
 * of malformed requests that must each be refused with a problem and change nothing.
 */
import { exports } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { PROBLEM_STATUS } from "../../src/app/problems";
import { REQUEST_BODY_BYTES_MAX } from "../../src/domain/limits";
import { account, api, expectEveryAccountConsistent, openAccount } from "../helpers";

afterEach(expectEveryAccountConsistent);

function expectProblem(response: { status: number; headers: Headers; body: { code: string } }, code: string) {
  expect(response.body.code).toBe(code);
  expect(response.status).toBe(PROBLEM_STATUS[code as keyof typeof PROBLEM_STATUS]);
  expect(response.headers.get("content-type")).toBe("application/problem+json");
  expect(response.body).toMatchObject({ type: `/problems/${code}`, status: response.status });
}

describe("authentication", () => {
  it.each([
    ["no header", {}],
    ["wrong key", { authorization: "Bearer nope" }],
    ["wrong scheme", { authorization: "Basic dGVzdC1hZG1pbi1rZXk=" }],
    ["empty bearer", { authorization: "Bearer " }],
  ])("refuses %s with 401", async (_name, headers) => {
    const response = await exports.default.fetch("http://ledger.test/v1/accounts/x", { headers });
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toContain("Bearer");
    const body = (await response.json()) as { code: string };
    expect(body.code).toBe("unauthorized");
  });
});

describe("accounts", () => {
  it("opens (201), replays (200 + Idempotent-Replayed) and refuses a conflicting open (409)", async () => {
    const body = { account_id: "acct_open", currency: "EUR", credit_limit: 500, metadata: { plan: "pro" } };
    const first = await api("POST", "/v1/accounts", body);
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({
      account_id: "acct_open",
      currency: "EUR",
      balance: 0,
      reserved: 0,
      available: 0,
      credit_limit: 500,
      status: "active",
      open_reservations: 0,
      last_seq: 1,
      metadata: { plan: "pro" },
    });
    const replay = await api("POST", "/v1/accounts", body);
    expect(replay.status).toBe(200);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(replay.body).toEqual(first.body);
    const conflict = await api("POST", "/v1/accounts", { ...body, currency: "USD" });
    expectProblem(conflict, "idempotency_conflict");
    expect(conflict.body.field).toBe("currency");
  });

  it("reads an account with every documented field; unknown is 404 account_not_found", async () => {
    const id = await openAccount(250, 100);
    expect(Object.keys(await account(id)).sort()).toEqual(
      [
        "account_id",
        "available",
        "balance",
        "balance_by_kind",
        "created_at",
        "credit_limit",
        "currency",
        "debt",
        "head_hash",
        "last_seq",
        "low_balance_threshold",
        "metadata",
        "open_reservations",
        "reserved",
        "status",
        "updated_at",
      ].sort(),
    );
    expectProblem(await api("GET", "/v1/accounts/nobody"), "account_not_found");
  });

  it("updates the credit limit and freezes; a frozen account refuses reserve and charge (423)", async () => {
    const id = await openAccount(100);
    const patched = await api("PATCH", `/v1/accounts/${id}`, { credit_limit: 50, status: "frozen" });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ credit_limit: 50, status: "frozen", last_seq: 3 });
    expectProblem(
      await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r", amount: 1 }),
      "account_frozen",
    );
    expectProblem(await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c", amount: 1 }), "account_frozen");
    expect((await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "c2", amount: 1 })).status).toBe(201);
    expect((await api("PATCH", `/v1/accounts/${id}`, { status: "active" })).body.status).toBe("active");
    expectProblem(await api("PATCH", "/v1/accounts/nobody", { status: "active" }), "account_not_found");
  });
});

describe("money movements", () => {
  it("credits, with an exact replay answering the original body", async () => {
    const id = await openAccount();
    const body = { credit_id: "top-1", amount: 1_000, reason: "card top-up", metadata: { invoice: "inv_1" } };
    const first = await api("POST", `/v1/accounts/${id}/credits`, body);
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({
      credit: { credit_id: "top-1", amount: 1_000, reason: "card top-up", seq: 2 },
      account: { balance: 1_000, reserved: 0, available: 1_000, last_seq: 2, currency: "USD" },
    });
    const replay = await api("POST", `/v1/accounts/${id}/credits`, body);
    expect(replay.status).toBe(201);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(replay.body).toEqual(first.body);
    const conflict = await api("POST", `/v1/accounts/${id}/credits`, { ...body, amount: 1_001 });
    expectProblem(conflict, "idempotency_conflict");
    expect(conflict.body).toMatchObject({ field: "amount" });
    expect((await account(id)).balance).toBe(1_000);
  });

  it("reserves, reads, extends and captures with usage; the rest of the hold is released", async () => {
    const id = await openAccount(1_000);
    const reserved = await api("POST", `/v1/accounts/${id}/reservations`, {
      reservation_id: "req_1",
      amount: 300,
      ttl_seconds: 60,
      context: { request_id: "req_1", model: "gpt-x", provider: "acme", service_id: "chat", user_id: "u1", alias: "a" },
    });
    expect(reserved.status).toBe(201);
    expect(reserved.body).toMatchObject({
      reservation: { reservation_id: "req_1", status: "open", amount: 300, on_expiry: "release", ttl_seconds: 60 },
      account: { balance: 1_000, reserved: 300, available: 700 },
    });
    const read = await api("GET", `/v1/accounts/${id}/reservations/req_1`);
    expect(read.body).toMatchObject({ status: "open", context: { model: "gpt-x" } });
    const extended = await api("POST", `/v1/accounts/${id}/reservations/req_1/extend`, {
      ttl_seconds: 600,
      on_expiry: "capture",
      extension_id: "ext-1",
    });
    expect(extended.status).toBe(200);
    expect(extended.body.reservation).toMatchObject({ ttl_seconds: 600, on_expiry: "capture", status: "open" });
    const replayedExtension = await api("POST", `/v1/accounts/${id}/reservations/req_1/extend`, {
      ttl_seconds: 600,
      on_expiry: "capture",
      extension_id: "ext-1",
    });
    expect(replayedExtension.headers.get("idempotent-replayed")).toBe("true");
    expect(replayedExtension.body).toEqual(extended.body);
    const captured = await api("POST", `/v1/accounts/${id}/reservations/req_1/capture`, {
      amount: 120,
      usage: { input_tokens: 1_000, output_tokens: 250, latency_ms: 900, status: "ok" },
    });
    expect(captured.status).toBe(200);
    expect(captured.body).toMatchObject({
      reservation: { status: "captured", captured_amount: 120, released_amount: 180 },
      charge: { charge_id: "req_1", amount: 120, overage: 0 },
      account: { balance: 880, reserved: 0, available: 880 },
    });
    expectProblem(await api("POST", `/v1/accounts/${id}/reservations/req_1/release`), "reservation_not_open");
    expectProblem(
      await api("POST", `/v1/accounts/${id}/reservations/req_1/extend`, { ttl_seconds: 5 }),
      "reservation_not_open",
    );
    expectProblem(
      await api("POST", `/v1/accounts/${id}/reservations/req_1/capture`, { amount: 121 }),
      "idempotency_conflict",
    );
    expectProblem(await api("GET", `/v1/accounts/${id}/reservations/nope`), "reservation_not_found");
    expectProblem(
      await api("POST", `/v1/accounts/${id}/reservations/nope/capture`, { amount: 1 }),
      "reservation_not_found",
    );
  });

  it("releases with an empty body", async () => {
    const id = await openAccount(100);
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r", amount: 100 });
    const released = await api("POST", `/v1/accounts/${id}/reservations/r/release`);
    expect(released.status).toBe(200);
    expect(released.body).toMatchObject({ reservation: { status: "released", released_amount: 100 } });
    expect((await api("POST", `/v1/accounts/${id}/reservations/r/release`)).headers.get("idempotent-replayed")).toBe(
      "true",
    );
  });

  it("refuses a capture over the hold (422) unless allow_overage, which then blocks spending (402)", async () => {
    const id = await openAccount(100);
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r", amount: 100 });
    expectProblem(
      await api("POST", `/v1/accounts/${id}/reservations/r/capture`, { amount: 150 }),
      "capture_exceeds_reservation",
    );
    const over = await api("POST", `/v1/accounts/${id}/reservations/r/capture`, { amount: 150, allow_overage: true });
    expect(over.body).toMatchObject({ charge: { amount: 150, overage: 50 }, account: { balance: -50 } });
    const refused = await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "c", amount: 1 });
    expectProblem(refused, "insufficient_funds");
    expect(refused.body).toMatchObject({ available: -50, credit_limit: 0, requested: 1 });
  });

  it("charges, refunds within the charge and adjusts with a reason", async () => {
    const id = await openAccount(500);
    const charged = await api("POST", `/v1/accounts/${id}/charges`, {
      charge_id: "ch_1",
      amount: 200,
      context: { request_id: "q" },
    });
    expect(charged.status).toBe(201);
    expect(charged.body).toMatchObject({ charge: { charge_id: "ch_1", amount: 200 }, account: { balance: 300 } });
    const refunded = await api("POST", `/v1/accounts/${id}/refunds`, {
      refund_id: "rf_1",
      charge_id: "ch_1",
      amount: 150,
      reason: "bad output",
    });
    expect(refunded.status).toBe(201);
    expect(refunded.body).toMatchObject({
      refund: { refund_id: "rf_1", charge_id: "ch_1", amount: 150, charge_refunded_total: 150 },
      account: { balance: 450 },
    });
    expectProblem(
      await api("POST", `/v1/accounts/${id}/refunds`, { refund_id: "rf_2", charge_id: "ch_1", amount: 51 }),
      "refund_exceeds_charge",
    );
    expectProblem(
      await api("POST", `/v1/accounts/${id}/refunds`, { refund_id: "rf_3", charge_id: "nope", amount: 1 }),
      "charge_not_found",
    );
    expectProblem(
      await api("POST", `/v1/accounts/${id}/charges`, { charge_id: "ch_2", amount: 451 }),
      "insufficient_funds",
    );
    const adjusted = await api("POST", `/v1/accounts/${id}/adjustments`, {
      adjustment_id: "adj_1",
      amount: -25,
      reason: "chargeback fee",
    });
    expect(adjusted.status).toBe(201);
    expect(adjusted.body).toMatchObject({ adjustment: { amount: -25 }, account: { balance: 425 } });
  });

  it("refuses a balance beyond the supported range (422)", async () => {
    const id = await openAccount();
    for (let i = 0; i < 2; i++) {
      const big = await api("POST", `/v1/accounts/${id}/credits`, {
        credit_id: `big${i}`,
        amount: 1_000_000_000_000_000,
      });
      expect(big.status).toBe(201);
    }
    expectProblem(
      await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "big2", amount: 1_000_000_000_000_000 }),
      "balance_limit_exceeded",
    );
  });

  it("pages through the event log in seq order", async () => {
    const id = await openAccount();
    for (let i = 0; i < 5; i++) await api("POST", `/v1/accounts/${id}/credits`, { credit_id: `c${i}`, amount: 10 });
    const first = await api("GET", `/v1/accounts/${id}/events?limit=4`);
    expect(first.body.events.map((e: { seq: number }) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(first.body.next_after_seq).toBe(4);
    const second = await api("GET", `/v1/accounts/${id}/events?after_seq=4&limit=4`);
    expect(second.body.events.map((e: { seq: number }) => e.seq)).toEqual([5, 6]);
    expect(second.body.next_after_seq).toBeNull();
    expect(second.body.events[1]).toMatchObject({ type: "FundsCredited", balance_after: 50, reserved_after: 0 });
    expectProblem(await api("GET", `/v1/accounts/${id}/events?limit=1001`), "invalid_request");
    expectProblem(await api("GET", "/v1/accounts/nobody/events"), "account_not_found");
  });
});

describe("hostile and malformed input", () => {
  const META_33 = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, i]));
  const cases: [string, string, unknown][] = [
    ["credits", "amount as string", { credit_id: "x", amount: "10" }],
    ["credits", "fractional amount", { credit_id: "x", amount: 10.5 }],
    ["credits", "zero amount", { credit_id: "x", amount: 0 }],
    ["credits", "negative amount", { credit_id: "x", amount: -1 }],
    ["credits", "amount above 10^15", { credit_id: "x", amount: 1_000_000_000_000_001 }],
    ["credits", "missing id", { amount: 10 }],
    ["credits", "id with a slash", { credit_id: "a/b", amount: 10 }],
    ["credits", "id starting with a dash", { credit_id: "-a", amount: 10 }],
    ["credits", "id of 129 characters", { credit_id: "a".repeat(129), amount: 10 }],
    ["credits", "unknown field", { credit_id: "x", amount: 10, extra: true }],
    ["credits", "nested metadata", { credit_id: "x", amount: 10, metadata: { a: { b: 1 } } }],
    ["credits", "33 metadata keys", { credit_id: "x", amount: 10, metadata: META_33 }],
    ["credits", "metadata over 4 KB", { credit_id: "x", amount: 10, metadata: { a: "x".repeat(4_100) } }],
    ["credits", "array body", [{ credit_id: "x", amount: 10 }]],
    ["credits", "null body", null],
    ["credits", "JSON string body", '"hello"'],
    ["credits", "malformed JSON", '{"credit_id": '],
    ["reservations", "ttl of 0", { reservation_id: "x", amount: 1, ttl_seconds: 0 }],
    ["reservations", "ttl above a week", { reservation_id: "x", amount: 1, ttl_seconds: 604_801 }],
    ["reservations", "unknown on_expiry", { reservation_id: "x", amount: 1, on_expiry: "never" }],
    ["reservations", "unknown context field", { reservation_id: "x", amount: 1, context: { prompt: "secret" } }],
    ["reservations/r/capture", "negative capture", { amount: -1 }],
    ["reservations/r/capture", "usage tokens as float", { amount: 1, usage: { input_tokens: 1.5 } }],
    ["reservations/r/capture", "allow_overage as string", { amount: 1, allow_overage: "yes" }],
    ["reservations/r/extend", "missing ttl", {}],
    ["charges", "amount as boolean", { charge_id: "x", amount: true }],
    ["refunds", "missing charge_id", { refund_id: "x", amount: 1 }],
    ["adjustments", "zero adjustment", { adjustment_id: "x", amount: 0, reason: "r" }],
    ["adjustments", "missing reason", { adjustment_id: "x", amount: 5 }],
    ["adjustments", "empty reason", { adjustment_id: "x", amount: 5, reason: "" }],
  ];

  it.each(cases)("POST .../%s with %s -> 400 invalid_request, nothing changes", async (route, _name, body) => {
    const id = await openAccount(100);
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r", amount: 10 });
    const before = await account(id);
    const response = await api(
      "POST",
      `/v1/accounts/${id}/${route}`,
      typeof body === "string" ? body : (body ?? "null"),
    );
    expectProblem(response, "invalid_request");
    expect(Array.isArray(response.body.errors)).toBe(true);
    expect(response.body.errors.length).toBeGreaterThan(0);
    expect(await account(id)).toEqual(before);
  });

  it("names every failing field", async () => {
    const id = await openAccount();
    const response = await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "-", amount: 1.5, bogus: 1 });
    const fields = response.body.errors.map((e: { field: string }) => e.field);
    expect(fields).toEqual(expect.arrayContaining(["body.credit_id", "body.amount"]));
    expect(response.body.errors.some((e: { message: string }) => /bogus|unrecognized/i.test(e.message))).toBe(true);
  });

  it("refuses an invalid account id in the path", async () => {
    expectProblem(await api("GET", "/v1/accounts/bad%20id"), "invalid_request");
  });

  it("refuses a body that is not JSON with 415", async () => {
    const id = await openAccount();
    const response = await api("POST", `/v1/accounts/${id}/credits`, "credit_id=x&amount=1", {
      "content-type": "application/x-www-form-urlencoded",
    });
    expectProblem(response, "unsupported_media_type");
    expect((await account(id)).last_seq).toBe(1);
  });

  it("refuses a body over 64 KB with 413", async () => {
    const id = await openAccount();
    const big = JSON.stringify({ credit_id: "x", amount: 1, reason: "x".repeat(REQUEST_BODY_BYTES_MAX) });
    expectProblem(await api("POST", `/v1/accounts/${id}/credits`, big), "payload_too_large");
    expect((await account(id)).last_seq).toBe(1);
  });

  it("answers unknown routes with a 404 problem", async () => {
    expectProblem(await api("GET", "/v1/nothing-here"), "not_found");
  });
});

describe("openapi", () => {
  it("documents every route, its body, its success and its errors", async () => {
    const response = await exports.default.fetch("http://ledger.test/openapi.json");
    expect(response.status).toBe(200);
    const doc = (await response.json()) as {
      openapi: string;
      paths: Record<string, Record<string, { requestBody?: unknown; responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, unknown> };
    };
    expect(doc.openapi).toBe("3.1.0");
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(operations.sort()).toEqual(
      [
        "POST /v1/accounts",
        "GET /v1/accounts/{account_id}",
        "PATCH /v1/accounts/{account_id}",
        "POST /v1/accounts/{account_id}/credits",
        "POST /v1/accounts/{account_id}/reservations",
        "GET /v1/accounts/{account_id}/reservations/{reservation_id}",
        "POST /v1/accounts/{account_id}/reservations/{reservation_id}/capture",
        "POST /v1/accounts/{account_id}/reservations/{reservation_id}/release",
        "POST /v1/accounts/{account_id}/reservations/{reservation_id}/extend",
        "POST /v1/accounts/{account_id}/charges",
        "POST /v1/accounts/{account_id}/refunds",
        "POST /v1/accounts/{account_id}/adjustments",
        "GET /v1/accounts/{account_id}/events",
        "GET /v1/accounts/{account_id}/lots",
        "GET /v1/reports/balances",
        "GET /v1/reports/transactions",
        "GET /v1/reports/usage",
        "GET /v1/reports/reservations",
        "GET /v1/reports/refunds",
        "GET /v1/reports/trial-balance",
        "GET /v1/reports/credits",
        "POST /v1/admin/accounts/{account_id}/reproject",
        "GET /v1/admin/accounts/{account_id}/projection",
        "POST /v1/admin/reconcile",
        "GET /v1/admin/projection/dead-letters",
        "POST /v1/admin/projection/dead-letters/replay",
        "GET /v1/accounts/{account_id}/events/export",
        "GET /v1/accounts/{account_id}/balance",
        "GET /v1/accounts/{account_id}/statement",
        "GET /v1/accounts/{account_id}/verify",
        "GET /v1/accounts/{account_id}/checkpoint",
        "GET /v1/audit/public-key",
        "POST /v1/admin/api-keys",
        "GET /v1/admin/api-keys",
        "PUT /v1/accounts/{account_id}/limits/{limit_id}",
        "GET /v1/accounts/{account_id}/limits",
        "DELETE /v1/accounts/{account_id}/limits/{limit_id}",
        "DELETE /v1/admin/api-keys/{key_id}",
        "POST /v1/admin/prices",
        "GET /v1/prices",
        "POST /v1/accounts/{account_id}/batch",
        "POST /v1/admin/webhook-endpoints",
        "GET /v1/admin/webhook-endpoints",
        "DELETE /v1/admin/webhook-endpoints/{endpoint_id}",
        "GET /v1/admin/webhook-deliveries",
        "POST /v1/admin/webhook-deliveries/{delivery_id}/redeliver",
        "GET /v1/admin/monitoring",
        "GET /v1/admin/alerts",
      ].sort(),
    );
    const reserve = doc.paths["/v1/accounts/{account_id}/reservations"]?.post;
    expect(reserve?.requestBody).toBeDefined();
    expect(Object.keys(reserve?.responses ?? {}).sort()).toEqual(
      ["201", "400", "401", "402", "403", "404", "409", "413", "415", "422", "423", "429", "500", "503"].sort(),
    );
    for (const name of ["ReserveRequest", "Reservation", "Problem", "Account", "CaptureResult"]) {
      expect(doc.components.schemas[name]).toBeDefined();
    }
  });
});
