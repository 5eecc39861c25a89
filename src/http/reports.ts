/**
 * The reporting routes: read the D1 read side (eventually consistent with the ledger; every
 * answer says how fresh it is in `as_of`).
 */

import type { OpenAPIHono } from "@hono/zod-openapi";
import {
  BalancesReportQuery,
  RefundsReportQuery,
  ReportPage,
  ReservationsReportQuery,
  TransactionsReportQuery,
  TrialBalance,
  TrialBalanceQuery,
  UsageReportPage,
  UsageReportQuery,
} from "../app/schemas/reports";
import { clock } from "../clock";
import {
  balancesReport,
  refundsReport,
  reservationsReport,
  transactionsReport,
  trialBalanceReport,
  usageReport,
} from "../reports/queries";
import type { AppEnv } from "./context";
import { defineRoute } from "./route";

const page = { status: 200, schema: ReportPage, description: "A page of rows, the next cursor and `as_of`." };

export function registerReportRoutes(app: OpenAPIHono<AppEnv>): void {
  registerReportBalances(app);
  registerReportTransactions(app);
  registerReportUsage(app);
  registerReportReservations(app);
  registerReportRefunds(app);
  registerReportTrialBalance(app);
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
    async (c, { query }) => c.json(await balancesReport(c.env.DB, query)),
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
      return c.json(await transactionsReport(c.env.DB, { ...rest, ...(type === undefined ? {} : { types: type }) }));
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
    async (c, { query }) => c.json(await usageReport(c.env.DB, query)),
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
    async (c, { query }) => c.json(await reservationsReport(c.env.DB, query)),
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
    async (c, { query }) => c.json(await refundsReport(c.env.DB, query)),
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
    async (c, { query }) => c.json(await trialBalanceReport(c.env.DB, query.at ?? new Date(clock.now()).toISOString())),
  );
}
