/**
 * The outcome of an operation, whoever asked: a value with its status, or a problem with its
 * stable code and status. HTTP renders it as a response (src/http/respond.ts); the service
 * binding returns it as it is (`LedgerResult`).
 */
import type { ExecuteResult, ReadResult } from "../contract";
import { type FieldError, PROBLEM_STATUS, type ProblemCode } from "./problems";

export type Facts = Record<string, string | number | boolean | null>;

export type Outcome<T = unknown> =
  | { ok: true; status: number; replayed: boolean; value: T }
  | { ok: false; status: number; code: ProblemCode; detail: string; facts?: Facts; errors?: FieldError[] };

export function rejectedOutcome(
  code: ProblemCode,
  detail: string,
  extra: { facts?: Facts | undefined; errors?: FieldError[] } = {},
): Outcome<never> {
  return {
    ok: false,
    status: PROBLEM_STATUS[code],
    code,
    detail,
    ...(extra.facts === undefined ? {} : { facts: extra.facts }),
    ...(extra.errors === undefined ? {} : { errors: extra.errors }),
  };
}

/** The outcome of a command: its status on success, the replay status on a replay. */
export function outcomeOf<T = unknown>(result: ExecuteResult, status: { success: number; replay: number }): Outcome<T> {
  if (!result.ok) return rejectedOutcome(result.rejection.code, result.rejection.detail, result.rejection);
  return {
    ok: true,
    status: result.replayed ? status.replay : status.success,
    replayed: result.replayed,
    value: result.body as T,
  };
}

/** The outcome of a read. */
export function readOutcome<T>(result: ReadResult<T>): Outcome<T> {
  if (!result.ok) return rejectedOutcome(result.rejection.code, result.rejection.detail, result.rejection);
  return { ok: true, status: 200, replayed: false, value: result.body };
}

export const invalidOutcome = (errors: FieldError[]): Outcome<never> =>
  rejectedOutcome("invalid_request", "The request is invalid; see `errors`.", { errors });
