/**
 * Renders an operation's outcome: the value with its status (a replay keeps the original's
 * status and is marked by a header), or a problem+json with the code's status.
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Outcome } from "../app/outcome";
import { problem } from "../app/problems";
import type { AppEnv } from "./context";
import { problemResponse } from "./problem";

export function respond(c: Context<AppEnv>, outcome: Outcome): Response {
  if (!outcome.ok) return problemResponse(c, problemOf(outcome, c.req.path));
  if (outcome.replayed) c.header("idempotent-replayed", "true");
  return c.json(outcome.value as object, outcome.status as ContentfulStatusCode);
}

/** The problem body of a rejected outcome. */
export function problemOf(outcome: Extract<Outcome, { ok: false }>, instance?: string) {
  return problem(outcome.code, outcome.detail, {
    facts: outcome.facts,
    ...(outcome.errors === undefined ? {} : { errors: outcome.errors }),
    ...(instance === undefined ? {} : { instance }),
  });
}
