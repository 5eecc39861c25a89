/** Admin routes for API keys: create (the secret is shown once), list (never secrets), revoke. */

import type { OpenAPIHono } from "@hono/zod-openapi";
import { problem } from "../app/problems";
import {
  ApiKeyCreateBody,
  ApiKeyCreated,
  ApiKeyList,
  ApiKeyListQuery,
  ApiKeyParams,
  ApiKeyRecordSchema,
} from "../app/schemas/keys";
import { clock } from "../clock";
import { BadCursor, decodeCursor, encodeCursor } from "../read-side/cursor";
import { controlDb } from "../read-side/shards";
import { createApiKey, listApiKeys, revokeApiKey } from "../security/api-keys";
import type { AppEnv } from "./context";
import { problemResponse } from "./problem";
import { defineRoute, tenantWideAdmin } from "./route";

/** Keys are everyone's: their routes are refused to a key restricted to one account. */
const KEY_ADMIN = tenantWideAdmin("Keys");

export function registerKeyRoutes(app: OpenAPIHono<AppEnv>): void {
  registerCreateApiKey(app);
  registerListApiKeys(app);
  registerRevokeApiKey(app);
}

function registerCreateApiKey(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "post",
      path: "/v1/admin/api-keys",
      operationId: "createApiKey",
      ...KEY_ADMIN,
      summary: "Create an API key (its secret is returned exactly once)",
      body: ApiKeyCreateBody,
      success: { status: 201, schema: ApiKeyCreated, description: "The key's record and its secret." },
      errors: [],
    },
    async (c, { body }) => {
      const created = await createApiKey(
        controlDb(c.env),
        {
          name: body.name,
          scopes: body.scopes,
          account_id: body.account_id ?? null,
          project_id: body.project_id ?? null,
        },
        new Date(clock.now()),
      );
      return c.json({ key: created.record, secret: created.secret }, 201);
    },
  );
}

function registerListApiKeys(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/admin/api-keys",
      operationId: "listApiKeys",
      ...KEY_ADMIN,
      summary: "List API keys (never their secrets)",
      query: ApiKeyListQuery,
      success: { status: 200, schema: ApiKeyList, description: "A page of keys." },
      errors: [],
    },
    async (c, { query }) => {
      const after = query.cursor === undefined ? "" : decodeCursor(query.cursor, 1)?.[0];
      if (typeof after !== "string") throw new BadCursor("cursor");
      const rows = await listApiKeys(controlDb(c.env), after, query.limit + 1);
      const data = rows.slice(0, query.limit);
      const last = data.at(-1);
      return c.json({ data, next_cursor: rows.length > query.limit && last ? encodeCursor([last.id]) : null });
    },
  );
}

function registerRevokeApiKey(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "delete",
      path: "/v1/admin/api-keys/{key_id}",
      operationId: "revokeApiKey",
      ...KEY_ADMIN,
      summary: "Revoke an API key (effective within seconds everywhere)",
      params: ApiKeyParams,
      success: { status: 200, schema: ApiKeyRecordSchema, description: "The revoked key." },
      errors: ["key_not_found"],
    },
    async (c, { params }) => {
      const record = await revokeApiKey(controlDb(c.env), params.key_id, new Date(clock.now()));
      if (record === null) {
        return problemResponse(
          c,
          problem("key_not_found", "There is no API key with this id.", { instance: c.req.path }),
        );
      }
      return c.json(record);
    },
  );
}
