/**
 * The reporting routes: read the D1 read side (eventually consistent with the ledger; every
 * answer says how fresh it is in `as_of`), every shard of it or one account's shard.
 */

import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { problem } from "../app/problems";
import { AccountParams } from "../app/schemas/accounts";
import {
  BalancesReportQuery,
  CreditsReport,
  CreditsReportQuery,
  RefundsReportQuery,
  ReportPage,
  ReservationsReportQuery,
  StatementQuery,
  StatementSchema,
  TransactionsReportQuery,
  TrialBalance,
  TrialBalanceQuery,
  UsageReportPage,
  UsageReportQuery,
} from "../app/schemas/reports";
import { clock } from "../clock";
import { configOf } from "../config";
import { shardsOf } from "../read-side/shards";
import { hourlyKeptFrom } from "../reports/periods";
import { balancesReport, refundsReport, reservationsReport, transactionsReport } from "../reports/queries";
import { creditsReport, trialBalanceReport, usageReport } from "../reports/rollups";
import { statementReport } from "../reports/statement";
import type { AppEnv } from "./context";
import { problemResponse } from "./problem";
import { defineRoute } from "./route";

/** The first hour whose hourly rollups are certainly kept (reports over rollups need it). */
function keptFrom(c: Context<AppEnv>, nowMs: number): string {
  return hourlyKeptFrom(nowMs, configOf(c.env).retention.hourlyRetentionDays);
}

const page = { status: 200, schema: ReportPage, description: "A page of rows, the next cursor and `as_of`." };

export function registerReportRoutes(app: OpenAPIHono<AppEnv>): void {
  registerReportBalances(app);
  registerReportTransactions(app);
  registerReportUsage(app);
  registerReportReservations(app);
  registerReportRefunds(app);
  registerReportTrialBalance(app);
  registerReportCredits(app);
  registerStatement(app);
}

function registerReportBalances(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/reports/balances",
      operationId: "reportBalances",
      tag: "Reports",
      scope: "ledger:read",
      summary: "Accounts with their balances",
      query: BalancesReportQuery,
      success: page,
      errors: [],
    },
    async (c, { query }) => c.json(await balancesReport(shardsOf(c.env), query)),
  );
}

function registerReportTransactions(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/reports/transactions",
      operationId: "reportTransactions",
      tag: "Reports",
      scope: "ledger:read",
      accounts: (input) => (input.query.account_id === undefined ? null : [input.query.account_id]),
      summary: "Events across accounts (time order) or of one account (seq order)",
      query: TransactionsReportQuery,
      success: page,
      errors: [],
    },
    async (c, { query }) => {
      const { type, ...rest } = query;
      return c.json(
        await transactionsReport(shardsOf(c.env), { ...rest, ...(type === undefined ? {} : { types: type }) }),
      );
    },
  );
}

function registerReportUsage(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/reports/usage",
      operationId: "reportUsage",
      tag: "Reports",
      scope: "ledger:read",
      accounts: (input) => (input.query.account_id === undefined ? null : [input.query.account_id]),
      summary: "Cost and token totals grouped by day, account, service_id, provider, model, alias",
      query: UsageReportQuery,
      success: { status: 200, schema: UsageReportPage, description: "A page of groups (sums as decimal strings)." },
      errors: [],
    },
    async (c, { query }) => c.json(await usageReport(shardsOf(c.env), query, keptFrom(c, clock.now()))),
  );
}

function registerReportReservations(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/reports/reservations",
      operationId: "reportReservations",
      tag: "Reports",
      scope: "ledger:read",
      accounts: (input) => (input.query.account_id === undefined ? null : [input.query.account_id]),
      summary: "Reservations by status; open ones past expired_before are stale holds",
      query: ReservationsReportQuery,
      success: page,
      errors: [],
    },
    async (c, { query }) => c.json(await reservationsReport(shardsOf(c.env), query)),
  );
}

function registerReportRefunds(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/reports/refunds",
      operationId: "reportRefunds",
      tag: "Reports",
      scope: "ledger:read",
      accounts: (input) => (input.query.account_id === undefined ? null : [input.query.account_id]),
      summary: "Refunds with their charges",
      query: RefundsReportQuery,
      success: page,
      errors: [],
    },
    async (c, { query }) => c.json(await refundsReport(shardsOf(c.env), query)),
  );
}

function registerReportTrialBalance(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/reports/trial-balance",
      operationId: "reportTrialBalance",
      tag: "Reports",
      scope: "ledger:read",
      summary: "Debit and credit totals per ledger account from the journal; they must be equal",
      query: TrialBalanceQuery,
      success: { status: 200, schema: TrialBalance, description: "The trial balance at `at` (default now)." },
      errors: [],
    },
    async (c, { query }) => {
      const now = clock.now();
      return c.json(await trialBalanceReport(shardsOf(c.env), query.at ?? null, now, keptFrom(c, now)));
    },
  );
}

function registerReportCredits(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/reports/credits",
      operationId: "reportCredits",
      tag: "Reports",
      scope: "ledger:read",
      accounts: (input) => (input.query.account_id === undefined ? null : [input.query.account_id]),
      summary: "Credit by kind of lot: granted, consumed, refunded back and expired in a period, and what remains",
      query: CreditsReportQuery,
      success: { status: 200, schema: CreditsReport, description: "One line per kind of lot." },
      errors: [],
    },
    async (c, { query }) => c.json(await creditsReport(shardsOf(c.env), query, keptFrom(c, clock.now()))),
  );
}

function registerStatement(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/accounts/{account_id}/statement",
      operationId: "getStatement",
      tag: "Reports",
      scope: "ledger:read",
      summary: "An account's statement for a period: opening balance, movements by kind, closing balance",
      params: AccountParams,
      query: StatementQuery,
      success: { status: 200, schema: StatementSchema, description: "The statement for [from, to), from the rollups." },
      errors: ["account_not_found"],
    },
    async (c, { params, query }) => {
      // A period the rollups cannot answer throws ReportRangeError: the error handler answers it.
      const kept = keptFrom(c, clock.now());
      const statement = await statementReport(shardsOf(c.env), params.account_id, query.from, query.to, kept);
      if (statement !== null) return c.json(statement);
      return problemResponse(
        c,
        problem("account_not_found", "The read side has no such account (or has not projected it yet).", {
          instance: c.req.path,
        }),
      );
    },
  );
}
