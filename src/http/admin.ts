/** Operator routes for the read side: rebuild, projection status, reconciliation, dead letters. */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { accountClient } from "../app/account-client";
import { AccountParams } from "../app/schemas/accounts";
import {
  DeadLetterPage,
  DeadLettersQuery,
  ProjectionStatusSchema,
  RECONCILE_ACCOUNTS_MAX,
  ReconcileBody,
  ReconcileResult,
  ReplayBody,
  ReplayResultSchema,
} from "../app/schemas/projection";
import { listDeadLetters, replayDeadLetters } from "../projection/consumer/dead-letters";
import { reconcile } from "../projection/consumer/reconcile";
import { BadCursor, decodeCursor, encodeCursor } from "../read-side/cursor";
import type { AppEnv } from "./context";
import { defineAccountRoute, defineRoute, tenantWideAdmin } from "./route";

/** Operator routes act for every tenant: refused to any key restricted to one account. */
const READ_SIDE_ADMIN = tenantWideAdmin("Read side");

export function registerAdminRoutes(app: OpenAPIHono<AppEnv>): void {
  defineAccountRoute(app, {
    method: "post",
    path: "/v1/admin/accounts/{account_id}/reproject",
    operationId: "reprojectAccount",
    ...READ_SIDE_ADMIN,
    summary: "Rebuild the account's D1 rows from its event log",
    description: "Idempotent: deletes the account's rows and projects the whole log again, up to the head.",
    params: AccountParams,
    success: { schema: ProjectionStatusSchema, description: "The projection after the rebuild." },
    call: async (account) => {
      const rebuilt = await account.reproject();
      // A failed D1 write is a server error (500), logged by the error handler without data.
      if ("failed" in rebuilt) throw new Error(`reprojection failed: ${rebuilt.failed}`);
      return rebuilt;
    },
  });

  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/admin/accounts/{account_id}/projection",
      operationId: "getProjection",
      ...READ_SIDE_ADMIN,
      summary: "The account's projection cursor and lag",
      params: AccountParams,
      success: { status: 200, schema: ProjectionStatusSchema, description: "Cursor, lag, failures." },
      errors: [],
    },
    async (c, { params }) => c.json(await accountClient(c.env, params.account_id).projectionStatus()),
  );

  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/admin/reconcile",
      operationId: "reconcile",
      ...READ_SIDE_ADMIN,
      summary: "Compare D1 snapshots with the ledger; report or repair drift",
      description: `Checks the given account_ids, or the next page of D1 accounts (at most ${RECONCILE_ACCOUNTS_MAX}): of one shard, or of every shard in turn. An account found in a shard that is not its home is \`misplaced\`; repair reprojects it into its home shard.`,
      body: ReconcileBody,
      bodyOptional: true,
      success: { status: 200, schema: ReconcileResult, description: "One verdict per account." },
      errors: [],
    },
    async (c, { body }) =>
      c.json(
        await reconcile(c.env, {
          ...(body.account_ids === undefined ? {} : { account_ids: body.account_ids }),
          ...(body.cursor === undefined ? {} : { cursor: body.cursor }),
          ...(body.shard === undefined ? {} : { shard: body.shard }),
          repair: body.repair ?? false,
          limit: body.limit ?? RECONCILE_ACCOUNTS_MAX,
        }),
      ),
  );

  registerDeadLetterRoutes(app);
}

function registerDeadLetterRoutes(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/admin/projection/dead-letters",
      operationId: "listDeadLetters",
      ...READ_SIDE_ADMIN,
      summary: "Projection messages the queue gave up on",
      description: "Each with its account and range of seqs; the bodies (ledger data) are not listed.",
      query: DeadLettersQuery,
      success: { status: 200, schema: DeadLetterPage, description: "A page of dead letters and their total." },
      errors: [],
    },
    async (c, { query }) => {
      const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, 1)?.[0];
      if (query.cursor !== undefined && typeof after !== "string") throw new BadCursor("cursor");
      const page = await listDeadLetters(c.env, query.limit, after as string | undefined);
      return c.json({ ...page, next_cursor: page.next_cursor === null ? null : encodeCursor([page.next_cursor]) });
    },
  );

  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/admin/projection/dead-letters/replay",
      operationId: "replayDeadLetters",
      ...READ_SIDE_ADMIN,
      summary: "Apply dead letters again",
      description:
        "Applies the given dead letters (or the oldest ones), in order of account and position, and removes those now applied, duplicated or superseded. Those still after a gap stay: reproject their account.",
      body: ReplayBody,
      bodyOptional: true,
      success: { status: 200, schema: ReplayResultSchema, description: "Outcomes and what remains." },
      errors: [],
    },
    async (c, { body }) => c.json(await replayDeadLetters(c.env, body.ids)),
  );
}
