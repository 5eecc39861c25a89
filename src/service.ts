/**
 * The service-binding API: a WorkerEntrypoint that other Workers bind to and call by RPC, with
 * the same operations, rules and idempotency as HTTP (both go through src/operations.ts and the
 * same zod schemas). Business rejections are returned as typed results with the same `code`s
 * and statuses as HTTP problems, never thrown. A binding is trusted like the admin key: only
 * Workers that the deployment binds to this one can call it (README "Integrating a gateway").
 */

import { WorkerEntrypoint } from "cloudflare:workers";
import type { z } from "@hono/zod-openapi";
import { type FieldError, PROBLEM_STATUS, type ProblemCode } from "./app/problems";
import { Id } from "./app/schemas/common";
import {
  CaptureBody,
  type CaptureResult,
  ChargeBody,
  type ChargeResult,
  CreditBody,
  type CreditResult,
  ExtendBody,
  RefundBody,
  type RefundResult,
  ReleaseBody,
  type ReservationResult,
  ReserveBody,
} from "./app/schemas/money";
import { clock } from "./clock";
import type { AccountView, ReservationView } from "./domain/views";
import type { Env } from "./env";
import type { LogFields } from "./http/context";
import { writeLog } from "./observability/log";
import * as ops from "./operations";

/** The outcome of every method: a value, or a rejection with the HTTP API's code and status. */
export type LedgerResult<T> =
  | { ok: true; status: number; replayed: boolean; value: T }
  | {
      ok: false;
      status: number;
      code: ProblemCode;
      detail: string;
      facts?: Record<string, string | number | boolean | null>;
      errors?: FieldError[];
    };

export type ReserveInput = z.input<typeof ReserveBody>;
export type CaptureInput = z.input<typeof CaptureBody>;
export type ReleaseInput = z.input<typeof ReleaseBody>;
export type ExtendInput = z.input<typeof ExtendBody>;
export type ChargeInput = z.input<typeof ChargeBody>;
export type RefundInput = z.input<typeof RefundBody>;
export type CreditInput = z.input<typeof CreditBody>;

function invalid(errors: FieldError[]): LedgerResult<never> {
  return { ok: false, status: 400, code: "invalid_request", detail: "The input is invalid; see `errors`.", errors };
}

function issues(where: string, error: z.ZodError): FieldError[] {
  return error.issues.map((issue) => {
    const path = issue.path.map(String).join(".");
    return { field: path === "" ? where : `${where}.${path}`, message: issue.message };
  });
}

export class LedgerService extends WorkerEntrypoint<Env> {
  reserve(accountId: string, input: ReserveInput) {
    return this.run<z.infer<typeof ReservationResult>, typeof ReserveBody>(
      "reserve",
      accountId,
      null,
      ReserveBody,
      input,
      201,
      (a, _r, b) => ops.reserve(this.env, a, b),
    );
  }

  capture(accountId: string, reservationId: string, input: CaptureInput) {
    return this.run<z.infer<typeof CaptureResult>, typeof CaptureBody>(
      "capture",
      accountId,
      reservationId,
      CaptureBody,
      input,
      200,
      (a, r, b) => ops.capture(this.env, a, r as string, b),
    );
  }

  release(accountId: string, reservationId: string, input: ReleaseInput = {}) {
    return this.run<z.infer<typeof ReservationResult>, typeof ReleaseBody>(
      "release",
      accountId,
      reservationId,
      ReleaseBody,
      input,
      200,
      (a, r, b) => ops.release(this.env, a, r as string, b),
    );
  }

  extend(accountId: string, reservationId: string, input: ExtendInput) {
    return this.run<z.infer<typeof ReservationResult>, typeof ExtendBody>(
      "extend",
      accountId,
      reservationId,
      ExtendBody,
      input,
      200,
      (a, r, b) => ops.extend(this.env, a, r as string, b),
    );
  }

  charge(accountId: string, input: ChargeInput) {
    return this.run<z.infer<typeof ChargeResult>, typeof ChargeBody>(
      "charge",
      accountId,
      null,
      ChargeBody,
      input,
      201,
      (a, _r, b) => ops.charge(this.env, a, b),
    );
  }

  refund(accountId: string, input: RefundInput) {
    return this.run<z.infer<typeof RefundResult>, typeof RefundBody>(
      "refund",
      accountId,
      null,
      RefundBody,
      input,
      201,
      (a, _r, b) => ops.refund(this.env, a, b),
    );
  }

  credit(accountId: string, input: CreditInput) {
    return this.run<z.infer<typeof CreditResult>, typeof CreditBody>(
      "credit",
      accountId,
      null,
      CreditBody,
      input,
      201,
      (a, _r, b) => ops.credit(this.env, a, b),
    );
  }

  getAccount(accountId: string): Promise<LedgerResult<AccountView>> {
    return this.run<AccountView, null>("getAccount", accountId, null, null, undefined, 200, (a) =>
      ops.getAccount(this.env, a),
    );
  }

  getReservation(accountId: string, reservationId: string): Promise<LedgerResult<ReservationView>> {
    return this.run<ReservationView, null>("getReservation", accountId, reservationId, null, undefined, 200, (a, r) =>
      ops.getReservation(this.env, a, r as string),
    );
  }

  /**
   * Validates ids and input with the HTTP API's schemas, runs the operation, maps the result,
   * and writes the same one allowlisted log line per call as HTTP requests do.
   */
  private async run<T, S extends z.ZodType | null>(
    method: string,
    accountId: string,
    reservationId: string | null,
    schema: S,
    input: unknown,
    status: number,
    operation: (
      accountId: string,
      reservationId: string | null,
      body: S extends z.ZodType ? z.infer<S> : undefined,
    ) => Promise<ops.Executed>,
  ): Promise<LedgerResult<T>> {
    const started = clock.now();
    const log: LogFields = { route: `rpc ${method}`, key_prefix: "service-binding" };
    let result: LedgerResult<T>;
    const errors: FieldError[] = [];
    if (!Id.safeParse(accountId).success) errors.push({ field: "account_id", message: "must be an id" });
    if (reservationId !== null && !Id.safeParse(reservationId).success) {
      errors.push({ field: "reservation_id", message: "must be an id" });
    }
    let body: unknown;
    if (schema !== null) {
      const parsed = schema.safeParse(input);
      if (parsed.success) body = parsed.data;
      else errors.push(...issues("input", parsed.error));
    }
    if (errors.length > 0) {
      result = invalid(errors);
    } else {
      log.account_id = accountId;
      const executed = await operation(accountId, reservationId, body as S extends z.ZodType ? z.infer<S> : undefined);
      if (executed.command !== null) Object.assign(log, ops.logFieldsOf(executed.command, executed.result));
      const r = executed.result;
      if (r.ok) {
        result = { ok: true, status, replayed: "replayed" in r && r.replayed, value: r.body as T };
      } else {
        const { code, detail, facts } = r.rejection;
        result = { ok: false, status: PROBLEM_STATUS[code], code, detail, ...(facts === undefined ? {} : { facts }) };
      }
    }
    if (!result.ok) log.error_code = result.code;
    writeLog(this.env, "log", {
      msg: "request",
      ...log,
      request_id: log.request_id ?? crypto.randomUUID(),
      status: result.status,
      latency_ms: clock.now() - started,
    });
    return result;
  }
}
