/**
 * The account routes: parse, turn the request into a command, send it to the account's
 * Durable Object, render its result. No business rule lives here.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { problem } from "../app/problems";
import {
  AccountParams,
  AccountResponse,
  OpenAccountBody,
  ReservationParams,
  UpdateAccountBody,
} from "../app/schemas/accounts";
import { EventsPage, EventsQuery } from "../app/schemas/audit";
import { BatchBody, BatchResultSchema } from "../app/schemas/batch";
import {
  AdjustmentBody,
  AdjustmentResult,
  CaptureBody,
  CaptureResult,
  ChargeBody,
  ChargeResult,
  CreditBody,
  CreditResult,
  ExtendBody,
  RefundBody,
  RefundResult,
  ReleaseBody,
  ReservationResponse,
  ReservationResult,
  ReserveBody,
} from "../app/schemas/money";
import * as ops from "../operations";
import type { AppEnv } from "./context";
import { problemResponse } from "./problem";
import { defineRoute } from "./route";

export { accountStub } from "../operations";

/** Renders an operation: the original status on replays too, marked by a header; rejections as problems. */
export function reply(c: Context<AppEnv>, result: ops.OperationResult, status: number, replayStatus = status) {
  if (!result.ok) {
    const { code, detail, facts } = result.rejection;
    return problemResponse(c, problem(code, detail, { facts, instance: c.req.path }));
  }
  const replayed = "replayed" in result && result.replayed;
  if (replayed) c.header("idempotent-replayed", "true");
  return c.json(result.body as object, (replayed ? replayStatus : status) as ContentfulStatusCode);
}

/** Logs what an operation may log (logCommand), then renders it. */
function respond(c: Context<AppEnv>, executed: ops.Executed, status: number, replayStatus = status) {
  if (executed.command !== null) Object.assign(c.get("log"), ops.logFieldsOf(executed.command, executed.result));
  return reply(c, executed.result, status, replayStatus);
}

const MONEY_ERRORS = ["account_not_found", "idempotency_conflict", "balance_limit_exceeded"] as const;

export function registerAccountRoutes(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/accounts",
      scope: "admin",
      accounts: (input) => [input.body.account_id],
      summary: "Open an account",
      description: "Idempotent by account_id: the same body again answers 200 with the original account.",
      body: OpenAccountBody,
      success: { status: 201, replayStatus: 200, schema: AccountResponse, description: "The new account." },
      errors: ["idempotency_conflict"],
    },
    async (c, { body }) => respond(c, await ops.openAccount(c.env, body), 201, 200),
  );

  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/accounts/{account_id}",
      scope: "ledger:read",
      summary: "Read an account's balances",
      params: AccountParams,
      success: { status: 200, schema: AccountResponse, description: "The account." },
      errors: ["account_not_found"],
    },
    async (c, { params }) => respond(c, await ops.getAccount(c.env, params.account_id), 200),
  );

  defineRoute(
    app,
    {
      method: "patch",
      path: "/v1/accounts/{account_id}",
      scope: "admin",
      summary: "Change the credit limit or freeze / unfreeze",
      params: AccountParams,
      body: UpdateAccountBody,
      success: { status: 200, schema: AccountResponse, description: "The account after the update." },
      errors: ["account_not_found"],
    },
    async (c, { params, body }) => respond(c, await ops.updateAccount(c.env, params.account_id, body), 200),
  );

  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/accounts/{account_id}/credits",
      scope: "ledger:write",
      summary: "Credit funds (top-up)",
      params: AccountParams,
      body: CreditBody,
      success: { status: 201, schema: CreditResult, description: "The credit and the balances after it." },
      errors: [...MONEY_ERRORS],
    },
    async (c, { params, body }) => respond(c, await ops.credit(c.env, params.account_id, body), 201),
  );

  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/accounts/{account_id}/reservations",
      scope: "ledger:write",
      summary: "Reserve (hold) an amount, or a price and an estimate that the ledger prices",
      params: AccountParams,
      body: ReserveBody,
      success: { status: 201, schema: ReservationResult, description: "The open reservation and the balances." },
      errors: [
        ...MONEY_ERRORS,
        "account_frozen",
        "insufficient_funds",
        "too_many_open_reservations",
        "price_not_found",
        "unpriceable",
      ],
    },
    async (c, { params, body }) => respond(c, await ops.reserve(c.env, params.account_id, body), 201),
  );

  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/accounts/{account_id}/reservations/{reservation_id}",
      scope: "ledger:read",
      summary: "Read a reservation",
      params: ReservationParams,
      success: { status: 200, schema: ReservationResponse, description: "The reservation." },
      errors: ["account_not_found", "reservation_not_found"],
    },
    async (c, { params }) => respond(c, await ops.getReservation(c.env, params.account_id, params.reservation_id), 200),
  );

  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/accounts/{account_id}/reservations/{reservation_id}/capture",
      scope: "ledger:write",
      summary: "Capture a reservation: an amount, or usage priced at the pinned price; the rest is released",
      params: ReservationParams,
      body: CaptureBody,
      success: {
        status: 200,
        schema: CaptureResult,
        description: "The captured reservation, its charge, the balances.",
      },
      errors: [
        ...MONEY_ERRORS,
        "reservation_not_found",
        "reservation_not_open",
        "capture_exceeds_reservation",
        "price_not_pinned",
        "unpriceable",
      ],
    },
    async (c, { params, body }) =>
      respond(c, await ops.capture(c.env, params.account_id, params.reservation_id, body), 200),
  );

  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/accounts/{account_id}/reservations/{reservation_id}/release",
      scope: "ledger:write",
      summary: "Release a reservation without charge",
      params: ReservationParams,
      body: ReleaseBody,
      bodyOptional: true,
      success: { status: 200, schema: ReservationResult, description: "The released reservation and the balances." },
      errors: ["account_not_found", "idempotency_conflict", "reservation_not_found", "reservation_not_open"],
    },
    async (c, { params, body }) =>
      respond(c, await ops.release(c.env, params.account_id, params.reservation_id, body), 200),
  );

  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/accounts/{account_id}/reservations/{reservation_id}/extend",
      scope: "ledger:write",
      summary: "Move a reservation's expiry (and optionally its on_expiry rule)",
      description:
        "The new expiry is now + ttl_seconds. With extension_id the call is idempotent by that id; without it every call extends again.",
      params: ReservationParams,
      body: ExtendBody,
      success: { status: 200, schema: ReservationResult, description: "The reservation with its new expiry." },
      errors: ["account_not_found", "idempotency_conflict", "reservation_not_found", "reservation_not_open"],
    },
    async (c, { params, body }) =>
      respond(c, await ops.extend(c.env, params.account_id, params.reservation_id, body), 200),
  );

  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/accounts/{account_id}/charges",
      scope: "ledger:write",
      summary: "Charge directly (no reservation)",
      params: AccountParams,
      body: ChargeBody,
      success: { status: 201, schema: ChargeResult, description: "The charge and the balances." },
      errors: [...MONEY_ERRORS, "account_frozen", "insufficient_funds"],
    },
    async (c, { params, body }) => respond(c, await ops.charge(c.env, params.account_id, body), 201),
  );

  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/accounts/{account_id}/refunds",
      scope: "ledger:write",
      summary: "Refund (part of) a charge or a captured reservation",
      params: AccountParams,
      body: RefundBody,
      success: { status: 201, schema: RefundResult, description: "The refund and the balances." },
      errors: [...MONEY_ERRORS, "charge_not_found", "refund_exceeds_charge"],
    },
    async (c, { params, body }) => respond(c, await ops.refund(c.env, params.account_id, body), 201),
  );

  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/accounts/{account_id}/adjustments",
      scope: "admin",
      summary: "Adjust the balance (signed admin correction with a reason)",
      params: AccountParams,
      body: AdjustmentBody,
      success: { status: 201, schema: AdjustmentResult, description: "The adjustment and the balances." },
      errors: [...MONEY_ERRORS],
    },
    async (c, { params, body }) => respond(c, await ops.adjust(c.env, params.account_id, body), 201),
  );

  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/accounts/{account_id}/events",
      scope: "audit:read",
      summary: "Read the account's event log in seq order",
      description: "Page with after_seq = next_after_seq until next_after_seq is null.",
      params: AccountParams,
      query: EventsQuery,
      success: { status: 200, schema: EventsPage, description: "A page of events." },
      errors: ["account_not_found"],
    },
    async (c, { params, query }) =>
      reply(
        c,
        (await ops
          .accountStub(c.env, params.account_id)
          .listEvents(query.after_seq, query.limit)) as ops.OperationResult,
        200,
      ),
  );
}

export function registerBatchRoute(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/accounts/{account_id}/batch",
      scope: "ledger:write",
      summary: "Up to 1,000 operations for one account, decided in order and committed in one transaction",
      description:
        "Each result has the status and body of the single call. A rejected item does not stop the others unless `atomic` is true, in which case any rejection commits nothing (the other items answer batch_aborted).",
      params: AccountParams,
      body: BatchBody,
      success: { status: 200, schema: BatchResultSchema, description: "One result per operation, in order." },
      errors: ["account_not_found"],
    },
    async (c, { params, body }) => {
      const outcome = await ops.batch(c.env, params.account_id, body);
      const results = outcome.results.map((r) =>
        r.ok
          ? { status: r.status, ...(r.replayed ? { replayed: true } : {}), body: r.body }
          : (() => {
              const p = problem(r.rejection.code, r.rejection.detail, { facts: r.rejection.facts });
              return { status: p.status, body: p };
            })(),
      );
      return c.json({ committed: outcome.committed, results });
    },
  );
}

export function notFound(c: Context<AppEnv>): Response {
  return problemResponse(c, problem("not_found", "No such route.", { instance: c.req.path }));
}
