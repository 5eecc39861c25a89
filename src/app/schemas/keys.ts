/** The contracts of API key management. */
import { z } from "@hono/zod-openapi";
import { KEY_NAME_LENGTH_MAX, SCOPES } from "../../security/api-keys";
import { CURSOR_LENGTH_MAX, Id, REPORT_PAGE_LIMIT_DEFAULT, REPORT_PAGE_LIMIT_MAX, Time } from "./common";

export const ApiKeyCreateBody = z
  .strictObject({
    name: z.string().min(1).max(KEY_NAME_LENGTH_MAX),
    scopes: z.array(z.enum(SCOPES)).min(1).max(SCOPES.length),
    account_id: Id.optional().openapi({
      description: "Restrict the key to this one account. Never with the `admin` scope.",
    }),
    project_id: Id.optional().openapi({
      description:
        "Bind the key to a project: its reserves and charges count against that project's spend limits, and a body may not name another.",
    }),
  })
  // An admin key acts for every tenant: restricting it to one account would be a contradiction
  // that used to let a tenant's key publish prices and raise its own limits.
  .superRefine((body, ctx) => {
    if (body.account_id !== undefined && body.scopes.includes("admin")) {
      ctx.addIssue({
        code: "custom",
        path: ["account_id"],
        message: "an admin key cannot be restricted to one account",
      });
    }
  })
  .openapi("ApiKeyCreateRequest");

export const ApiKeyRecordSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    prefix: z.string().openapi({ description: "Non-secret start of the key, shown in lists and logs." }),
    scopes: z.array(z.enum(SCOPES)),
    account_id: z.string().nullable(),
    project_id: z.string().nullable(),
    created_at: Time,
    last_used_at: Time.nullable(),
    revoked_at: Time.nullable(),
  })
  .openapi("ApiKey");

export const ApiKeyCreated = z
  .object({
    key: ApiKeyRecordSchema,
    secret: z.string().openapi({ description: "The key itself. Returned exactly once; only its hash is stored." }),
  })
  .openapi("ApiKeyCreated");

export const ApiKeyList = z
  .object({ data: z.array(ApiKeyRecordSchema), next_cursor: z.string().nullable() })
  .openapi("ApiKeyList");

export const ApiKeyListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(REPORT_PAGE_LIMIT_MAX).default(REPORT_PAGE_LIMIT_DEFAULT),
  cursor: z.string().min(1).max(CURSOR_LENGTH_MAX).optional(),
});

export const ApiKeyParams = z.object({
  key_id: z
    .string()
    .regex(/^key_[0-9A-HJKMNP-TV-Z]{26}$/, "must be a key id")
    .openapi({ param: { name: "key_id", in: "path" } }),
});
