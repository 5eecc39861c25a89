/**
 * The account routes. Money movements are driven by the application's operation table
 * (src/app/operations.ts): each route here only says where it lives, who may call it and which
 * errors it documents; the contract says what it takes, returns and answers. No business rule
 * lives here.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { runBatch } from "../app/batch";
import { callerKeyOf, OPERATIONS, type OperationName, runOperation, statusOf, type Target } from "../app/operations";
import { type ProblemCode, problem } from "../app/problems";
import { AccountParams, AccountResponse, LotsPage, LotsQuery, ReservationParams } from "../app/schemas/accounts";
import { EventsPage, EventsQuery } from "../app/schemas/audit";
import { BatchBody, BatchResultSchema } from "../app/schemas/batch";
import { ReservationResponse } from "../app/schemas/money";
import { BadCursor } from "../read-side/cursor";
import type { Scope } from "../security/api-keys";
import { requireItemScopes } from "./auth";
import type { AppEnv } from "./context";
import { problemResponse } from "./problem";
import { problemOf, respond } from "./respond";
import { defineAccountRoute, defineRoute, type Tag } from "./route";

interface OperationRoute {
  operation: OperationName;
  method: "post" | "patch";
  path: string;
  operationId: string;
  tag: Tag;
  scope: Scope;
  summary: string;
  description?: string;
  errors: ProblemCode[];
  bodyOptional?: boolean;
}

const MONEY_ERRORS: ProblemCode[] = ["account_not_found", "idempotency_conflict", "balance_limit_exceeded"];
/** A grant's own refusals: an expiry not in the future (400 naming grant.expires_at), too many lots. */
const GRANT_ERRORS: ProblemCode[] = [...MONEY_ERRORS, "lot_expiry_passed", "too_many_lots"];
const SETTLE_ERRORS: ProblemCode[] = [
  "account_not_found",
  "idempotency_conflict",
  "reservation_not_found",
  "reservation_not_open",
];
const ACCOUNT = "/v1/accounts/{account_id}";
const RESERVATION = `${ACCOUNT}/reservations/{reservation_id}`;

const OPERATION_ROUTES: OperationRoute[] = [
  {
    operation: "open",
    method: "post",
    path: "/v1/accounts",
    operationId: "openAccount",
    tag: "Accounts",
    scope: "admin",
    summary: "Open an account",
    description: "Idempotent by account_id: the same body again answers 200 with the original account.",
    errors: ["idempotency_conflict"],
  },
  {
    operation: "update",
    method: "patch",
    path: ACCOUNT,
    operationId: "updateAccount",
    tag: "Accounts",
    scope: "admin",
    summary: "Change the credit limit or freeze / unfreeze",
    errors: ["account_not_found"],
  },
  {
    operation: "credit",
    method: "post",
    path: `${ACCOUNT}/credits`,
    operationId: "creditAccount",
    tag: "Money",
    scope: "ledger:fund",
    summary: "Credit funds (top-up)",
    errors: GRANT_ERRORS,
  },
  {
    operation: "reserve",
    method: "post",
    path: `${ACCOUNT}/reservations`,
    operationId: "reserveFunds",
    tag: "Money",
    scope: "ledger:write",
    summary: "Reserve (hold) an amount, or a price and an estimate that the ledger prices",
    errors: [
      ...MONEY_ERRORS,
      "account_frozen",
      "insufficient_funds",
      "too_many_open_reservations",
      "price_not_found",
      "unpriceable",
      "limit_exceeded",
    ],
  },
  {
    operation: "capture",
    method: "post",
    path: `${RESERVATION}/capture`,
    operationId: "captureReservation",
    tag: "Money",
    scope: "ledger:write",
    summary: "Capture a reservation: an amount, or usage priced at the pinned price; the rest is released",
    errors: [
      ...SETTLE_ERRORS,
      "balance_limit_exceeded",
      "capture_exceeds_reservation",
      "price_not_pinned",
      "unpriceable",
    ],
  },
  {
    operation: "release",
    method: "post",
    path: `${RESERVATION}/release`,
    operationId: "releaseReservation",
    tag: "Money",
    scope: "ledger:write",
    summary: "Release a reservation without charge",
    errors: SETTLE_ERRORS,
    bodyOptional: true,
  },
  {
    operation: "extend",
    method: "post",
    path: `${RESERVATION}/extend`,
    operationId: "extendReservation",
    tag: "Money",
    scope: "ledger:write",
    summary: "Move a reservation's expiry (and optionally its on_expiry rule)",
    description:
      "The new expiry is now + ttl_seconds. With extension_id the call is idempotent by that id; without it every call extends again.",
    errors: SETTLE_ERRORS,
  },
  {
    operation: "charge",
    method: "post",
    path: `${ACCOUNT}/charges`,
    operationId: "chargeAccount",
    tag: "Money",
    scope: "ledger:write",
    summary: "Charge directly (no reservation)",
    errors: [...MONEY_ERRORS, "account_frozen", "insufficient_funds", "limit_exceeded"],
  },
  {
    operation: "refund",
    method: "post",
    path: `${ACCOUNT}/refunds`,
    operationId: "refundCharge",
    tag: "Money",
    scope: "ledger:refund",
    summary: "Refund (part of) a charge or a captured reservation",
    errors: [...MONEY_ERRORS, "charge_not_found", "refund_exceeds_charge", "too_many_lots"],
  },
  {
    operation: "adjust",
    method: "post",
    path: `${ACCOUNT}/adjustments`,
    operationId: "adjustBalance",
    tag: "Money",
    scope: "admin",
    summary: "Adjust the balance (signed admin correction with a reason; a positive one grants a lot)",
    errors: GRANT_ERRORS,
  },
];

/** The scope of each operation's single call, which a batch item of that operation needs too. */
const OPERATION_SCOPE = Object.fromEntries(OPERATION_ROUTES.map((r) => [r.operation, r.scope])) as Record<
  OperationName,
  Scope
>;

const SUCCESS_DESCRIPTION: Record<OperationName, string> = {
  open: "The new account.",
  update: "The account after the update.",
  credit: "The credit and the balances after it.",
  reserve: "The open reservation and the balances.",
  capture: "The captured reservation, its charge, the balances.",
  release: "The released reservation and the balances.",
  extend: "The reservation with its new expiry.",
  charge: "The charge and the balances.",
  refund: "The refund and the balances.",
  adjust: "The adjustment and the balances.",
};

/** One route of the table: the contract's schemas and statuses, the operation's one execution path. */
function registerOperationRoute(app: OpenAPIHono<AppEnv>, route: OperationRoute): void {
  const contract = OPERATIONS[route.operation];
  const status = statusOf(route.operation);
  const opens = route.path === "/v1/accounts";
  defineRoute(
    app,
    {
      ...route,
      ...(opens ? { accounts: (input) => [(input.body as { account_id: string }).account_id] } : {}),
      params: opens ? undefined : contract.reservation ? ReservationParams : AccountParams,
      body: contract.input,
      success: {
        status: status.success,
        replayStatus: status.replay,
        schema: contract.output,
        description: SUCCESS_DESCRIPTION[route.operation],
      },
    },
    async (c, { params, body }) => {
      const addressed = (params as Target | undefined) ?? { account_id: (body as { account_id: string }).account_id };
      const caller = callerKeyOf(c.get("principal"));
      const target = caller === undefined ? addressed : { ...addressed, caller };
      const waitUntil = (work: Promise<unknown>) => c.executionCtx.waitUntil(work);
      return respond(c, await runOperation(c.env, route.operation, target, body, c.get("log"), waitUntil));
    },
  );
}

export function registerAccountRoutes(app: OpenAPIHono<AppEnv>): void {
  for (const route of OPERATION_ROUTES) registerOperationRoute(app, route);
  registerAccountReads(app);
  registerBatchRoute(app);
}

function registerAccountReads(app: OpenAPIHono<AppEnv>): void {
  defineAccountRoute(app, {
    path: ACCOUNT,
    operationId: "getAccount",
    tag: "Accounts",
    scope: "ledger:read",
    summary: "Read an account's balances",
    params: AccountParams,
    success: { schema: AccountResponse, description: "The account." },
    call: (account) => account.getAccount(),
  });
  defineAccountRoute(app, {
    path: RESERVATION,
    operationId: "getReservation",
    tag: "Money",
    scope: "ledger:read",
    summary: "Read a reservation",
    params: ReservationParams,
    success: { schema: ReservationResponse, description: "The reservation." },
    errors: ["reservation_not_found"],
    call: (account, { params }) => account.getReservation(params.reservation_id),
  });
  defineAccountRoute(app, {
    path: `${ACCOUNT}/lots`,
    operationId: "listLots",
    tag: "Accounts",
    scope: "ledger:read",
    summary: "List the account's lots of credit, oldest first",
    description:
      "status: active (credit left, not expired), expired (its expires_at has passed), depleted (spent). Page with cursor = next_cursor until it is null.",
    params: AccountParams,
    query: LotsQuery,
    success: { schema: LotsPage, description: "A page of lots." },
    call: async (account, { query }) => {
      const page = await account.listLots(query);
      if ("badCursor" in page) throw new BadCursor("cursor");
      return page;
    },
  });
  defineAccountRoute(app, {
    path: `${ACCOUNT}/events`,
    operationId: "listEvents",
    tag: "Audit",
    scope: "audit:read",
    summary: "Read the account's event log in seq order",
    description: "Page with after_seq = next_after_seq until next_after_seq is null.",
    params: AccountParams,
    query: EventsQuery,
    success: { schema: EventsPage, description: "A page of events." },
    call: (account, { query }) => account.listEvents(query.after_seq, query.limit),
  });
}

function registerBatchRoute(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "post",
      path: `${ACCOUNT}/batch`,
      operationId: "runBatch",
      tag: "Money",
      scope: "ledger:write",
      summary: "Up to 1,000 operations for one account, decided in order and committed in one transaction",
      description:
        "Needs ledger:write, and each item its single call's scope (ledger:fund for a credit, ledger:refund for a refund), all checked before anything runs. Each result has the status and body of the single call. A rejected item does not stop the others unless `atomic` is true, in which case any rejection commits nothing (the other items answer batch_aborted).",
      params: AccountParams,
      body: BatchBody,
      success: { status: 200, schema: BatchResultSchema, description: "One result per operation, in order." },
      errors: ["account_not_found"],
    },
    async (c, { params, body }) => {
      // The route needs ledger:write; each item also needs its single call's scope, before any runs.
      const items = body.operations.map((o, i) => ({
        scope: OPERATION_SCOPE[o.op],
        item: `operations[${i}]: ${o.op}`,
      }));
      const refused = requireItemScopes(c, items);
      if (refused !== null) return refused;
      const outcome = await runBatch(c.env, params.account_id, body, callerKeyOf(c.get("principal")));
      const results = outcome.results.map((r) =>
        r.ok
          ? { status: r.status, ...(r.replayed ? { replayed: true } : {}), body: r.value }
          : { status: r.status, body: problemOf(r) },
      );
      return c.json({ committed: outcome.committed, results });
    },
  );
}

export function notFound(c: Context<AppEnv>): Response {
  return problemResponse(c, problem("not_found", "No such route.", { instance: c.req.path }));
}
