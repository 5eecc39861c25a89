/**
 * One declaration per route: the same spec registers the OpenAPI path (docs) and the Hono
 * handler (behaviour), and the same zod schemas validate the request. Validation failures
 * become `invalid_request` problems naming every failing field; nothing reaches an account.
 */
import type { OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { type AccountClient, accountClient } from "../app/account-client";
import { readOutcome } from "../app/outcome";
import { type FieldError, PROBLEM_STATUS, type ProblemCode, problem } from "../app/problems";
import { ProblemSchema } from "../app/schemas/common";
import { validate } from "../app/validate";
import type { ReadResult } from "../contract";
import type { Scope } from "../security/api-keys";
import { requireAccounts, requireScope } from "./auth";
import type { AppEnv } from "./context";
import { problemResponse } from "./problem";
import { respond } from "./respond";

/** The OpenAPI tags, one per route family, so generated clients group their methods. */
export type Tag =
  | "Accounts"
  | "Money"
  | "Audit"
  | "Reports"
  | "Read side"
  | "Keys"
  | "Prices"
  | "Service"
  | "Monitoring"
  | "Webhooks";

export interface RouteSpec<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  method: "get" | "post" | "put" | "patch" | "delete";
  /** OpenAPI style: /v1/accounts/{account_id} */
  path: string;
  /** Unique per operation: the method name of a generated client. */
  operationId: string;
  tag: Tag;
  summary: string;
  description?: string;
  params?: P;
  query?: Q;
  body?: B;
  /** An empty body counts as `{}` (e.g. release, whose fields are all optional). */
  bodyOptional?: boolean;
  success: { status: number; schema: z.ZodType; description: string; replayStatus?: number; mediaType?: string };
  errors: ProblemCode[];
  /** The scope a key needs (an admin key has them all). */
  scope: Scope;
  /**
   * The accounts the request touches, for keys restricted to one account: by default the
   * path's account_id, else null ("all accounts", refused to a restricted key); "any" for
   * routes that concern no account (the public key).
   */
  accounts?: (input: RouteInput<z.infer<P>, z.infer<Q>, z.infer<B>>) => string[] | null | "any";
}

/**
 * The tag, scope and accounts of an operator route that acts for every tenant (keys, prices,
 * read-side repairs): it needs admin, and its accounts are "all", so a key restricted to one
 * account is refused twice over: by its scope (such a key never holds admin) and by its accounts.
 */
export function tenantWideAdmin(tag: Tag) {
  return { tag, scope: "admin", accounts: () => null } as const;
}

export interface RouteInput<P, Q, B> {
  params: P;
  query: Q;
  body: B;
}

type Handler<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> = (
  c: Context<AppEnv>,
  input: RouteInput<z.infer<P>, z.infer<Q>, z.infer<B>>,
) => Promise<Response>;

export function defineRoute<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(
  app: OpenAPIHono<AppEnv>,
  spec: RouteSpec<P, Q, B>,
  handler: Handler<P, Q, B>,
): void {
  app.openAPIRegistry.registerPath({
    method: spec.method,
    path: spec.path,
    operationId: spec.operationId,
    tags: [spec.tag],
    summary: spec.summary,
    ...(spec.description === undefined ? {} : { description: spec.description }),
    "x-required-scope": spec.scope,
    request: {
      ...(spec.params === undefined ? {} : { params: spec.params as never }),
      ...(spec.query === undefined ? {} : { query: spec.query as never }),
      ...(spec.body === undefined
        ? {}
        : { body: { required: spec.bodyOptional !== true, content: { "application/json": { schema: spec.body } } } }),
    },
    responses: documentedResponses(spec),
  });
  const honoPath = spec.path.replace(/\{([a-z_]+)\}/g, ":$1");
  const route = `${spec.method.toUpperCase()} ${spec.path}`;
  app.on(spec.method.toUpperCase(), honoPath, (c) => handle(c, spec, route, handler));
}

/** A route answered by the account object: a GET unless it says otherwise, answering 200. */
export interface AccountRouteSpec<P extends z.ZodType<{ account_id: string }>, Q extends z.ZodType>
  extends Omit<RouteSpec<P, Q, z.ZodType>, "method" | "body" | "success" | "errors"> {
  method?: "get" | "post";
  params: P;
  success: { schema: z.ZodType; description: string };
  /** The errors besides account_not_found, which every call of the account object may answer. */
  errors?: ProblemCode[];
  /** The one call of the account object the path names. */
  call(account: AccountClient, input: RouteInput<z.infer<P>, z.infer<Q>, undefined>): Promise<ReadResult<unknown>>;
}

/**
 * Declares a route answered by one call of the account object its path names: the call's value
 * with 200, or the problem the object refused it with (no such account or reservation).
 */
export function defineAccountRoute<P extends z.ZodType<{ account_id: string }>, Q extends z.ZodType>(
  app: OpenAPIHono<AppEnv>,
  { call, method, success, errors, ...spec }: AccountRouteSpec<P, Q>,
): void {
  defineRoute<P, Q, z.ZodType>(
    app,
    {
      ...spec,
      method: method ?? "get",
      success: { status: 200, ...success },
      errors: ["account_not_found", ...(errors ?? [])],
    },
    async (c, input) => {
      const account = accountClient(c.env, (input.params as { account_id: string }).account_id);
      return respond(c, readOutcome(await call(account, input as RouteInput<z.infer<P>, z.infer<Q>, undefined>)));
    },
  );
}

type Responses = Record<string, { description: string; content: Record<string, { schema: z.ZodType }> }>;

/** The success (and replay) response, and one problem response per error status. */
function documentedResponses<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(
  spec: RouteSpec<P, Q, B>,
): Responses {
  const edgeErrors: ProblemCode[] = ["unauthorized", "forbidden", "rate_limited"];
  if (spec.body !== undefined) edgeErrors.push("invalid_request", "payload_too_large", "unsupported_media_type");
  else if (spec.params !== undefined || spec.query !== undefined) edgeErrors.push("invalid_request");
  // A keyed command may share its account's call (group commit): if that call is lost, a 503
  // with Retry-After tells the caller to send it again with its key.
  if (spec.success.replayStatus !== undefined) edgeErrors.push("service_unavailable");
  const errorStatuses = new Map<number, ProblemCode[]>();
  for (const code of [...edgeErrors, ...spec.errors, "internal_error" as const]) {
    const status = PROBLEM_STATUS[code];
    errorStatuses.set(status, [...(errorStatuses.get(status) ?? []), code]);
  }
  const responses: Responses = {
    [spec.success.status]: {
      description: spec.success.description,
      content: { [spec.success.mediaType ?? "application/json"]: { schema: spec.success.schema } },
    },
  };
  if (spec.success.replayStatus !== undefined && spec.success.replayStatus !== spec.success.status) {
    responses[spec.success.replayStatus] = {
      description: "Idempotent replay of an earlier identical request (header Idempotent-Replayed: true).",
      content: { "application/json": { schema: spec.success.schema } },
    };
  }
  for (const [status, codes] of errorStatuses) {
    responses[status] = {
      description: `Problem: ${[...new Set(codes)].join(", ")}`,
      content: { "application/problem+json": { schema: ProblemSchema } },
    };
  }
  return responses;
}

/** Scope first (a key that may not use the route learns nothing from validating it), then input, then accounts. */
async function handle<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(
  c: Context<AppEnv>,
  spec: RouteSpec<P, Q, B>,
  route: string,
  handler: Handler<P, Q, B>,
): Promise<Response> {
  const log = c.get("log");
  log.route = route;
  const noScope = requireScope(c, spec.scope);
  if (noScope !== null) return noScope;
  const errors: FieldError[] = [];
  const params = spec.params === undefined ? undefined : validate(spec.params, c.req.param(), "path", errors);
  const query = spec.query === undefined ? undefined : validate(spec.query, c.req.query(), "query", errors);
  let body: unknown;
  if (spec.body !== undefined) {
    const raw = await readJson(c);
    if (raw instanceof Response) return raw;
    body = validate(spec.body, raw === undefined && spec.bodyOptional === true ? {} : raw, "body", errors);
  }
  if (errors.length > 0) {
    const invalid = problem("invalid_request", "The request is invalid; see `errors`.", {
      errors,
      instance: c.req.path,
    });
    return problemResponse(c, invalid);
  }
  const input = { params, query, body } as RouteInput<z.infer<P>, z.infer<Q>, z.infer<B>>;
  const accounts = spec.accounts === undefined ? defaultAccounts(params) : spec.accounts(input);
  if (accounts !== "any") {
    const elsewhere = requireAccounts(c, accounts);
    if (elsewhere !== null) return elsewhere;
    if (accounts !== null && accounts.length === 1) log.account_id = accounts[0];
  }
  return handler(c, input);
}

const utf8 = new TextDecoder();

function defaultAccounts(params: unknown): string[] | null {
  const id = (params as { account_id?: unknown } | undefined)?.account_id;
  return typeof id === "string" ? [id] : null;
}

/**
 * Reads a JSON body. Size is already bounded by the body-limit middleware; here: a non-empty
 * body must be declared application/json (415), must parse (400), and must be an object.
 * Returns undefined for an empty body.
 */
async function readJson(c: Context<AppEnv>): Promise<unknown> {
  // Bytes, then UTF-8: `text()` on a body declared as a form makes the runtime warn, and the
  // body of any type must be read before it can be refused.
  const text = utf8.decode(await c.req.arrayBuffer());
  if (text.length === 0) return undefined;
  const type = c.req.header("content-type") ?? "";
  if (!/^application\/(?:[\w.-]+\+)?json\s*(?:;|$)/i.test(type)) {
    return problemResponse(
      c,
      problem("unsupported_media_type", "Send the body as application/json.", { instance: c.req.path }),
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return problemResponse(
      c,
      problem("invalid_request", "The body is not valid JSON.", {
        errors: [{ field: "body", message: "malformed JSON" }],
        instance: c.req.path,
      }),
    );
  }
}
