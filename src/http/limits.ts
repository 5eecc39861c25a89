/**
 * Spend limits (issue 28): set, list and remove an account's limits. Each change is a command of
 * the account object (an event in its chain); the rules that enforce a limit are the domain's.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { accountClient } from "../app/account-client";
import { outcomeOf } from "../app/outcome";
import { AccountParams } from "../app/schemas/accounts";
import { LimitBody, LimitParams, LimitsList } from "../app/schemas/limits";
import type { Command } from "../domain/commands";
import { LIMIT_THRESHOLD_PERCENT_DEFAULT } from "../domain/spend-limits";
import type { AppEnv } from "./context";
import { respond } from "./respond";
import { defineAccountRoute, defineRoute } from "./route";

const LIMITS = "/v1/accounts/{account_id}/limits";
const OK = { success: 200, replay: 200 };

export function registerLimitRoutes(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "put",
      path: `${LIMITS}/{limit_id}`,
      operationId: "setLimit",
      tag: "Accounts",
      scope: "admin",
      summary: "Set a spend limit",
      description:
        "Creates the limit or sets new terms for it. The same applies_to and window keep the window's usage; others start a new limit. The same terms again change nothing. Answers every limit of the account.",
      params: LimitParams,
      body: LimitBody,
      success: { status: 200, schema: LimitsList, description: "Every limit, with its current window." },
      errors: ["account_not_found", "too_many_limits"],
    },
    async (c, { params, body }) => {
      const command: Command = {
        type: "SetLimit",
        limit_id: params.limit_id,
        terms: {
          applies_to: body.applies_to,
          window: body.window,
          amount: body.amount,
          threshold_percent: body.threshold_percent ?? LIMIT_THRESHOLD_PERCENT_DEFAULT,
        },
      };
      return respond(c, outcomeOf(await accountClient(c.env, params.account_id).execute(command), OK));
    },
  );
  defineRoute(
    app,
    {
      method: "delete",
      path: `${LIMITS}/{limit_id}`,
      operationId: "removeLimit",
      tag: "Accounts",
      scope: "admin",
      summary: "Remove a spend limit",
      params: LimitParams,
      success: { status: 200, schema: LimitsList, description: "The limits left." },
      errors: ["account_not_found", "limit_not_found"],
    },
    async (c, { params }) => {
      const command: Command = { type: "RemoveLimit", limit_id: params.limit_id };
      return respond(c, outcomeOf(await accountClient(c.env, params.account_id).execute(command), OK));
    },
  );
  defineAccountRoute(app, {
    path: LIMITS,
    operationId: "listLimits",
    tag: "Accounts",
    scope: "ledger:read",
    summary: "List the account's spend limits with their current window's spent, held and remaining",
    params: AccountParams,
    success: { schema: LimitsList, description: "Every limit, by id." },
    call: (account) => account.listLimits(),
  });
}
