/**
 * The service-binding API: a WorkerEntrypoint that other Workers bind to and call by RPC. It is
 * an adapter over the application's operations (src/app/operations.ts), as HTTP is, so both
 * have the same rules, defaults, statuses and idempotency. Business rejections are returned as
 * typed results with the same `code`s and statuses as HTTP problems, never thrown. A binding is
 * trusted like the admin key: only Workers that the deployment binds to this one can call it
 * (docs/pricing.md, "Integrating a gateway").
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import { z } from "@hono/zod-openapi";
import { accountClient } from "./app/account-client";
import { OPERATIONS, type OperationName, type OperationRawInput, runOperation, type Target } from "./app/operations";
import { invalidOutcome, type Outcome, readOutcome } from "./app/outcome";
import type { FieldError } from "./app/problems";
import { Id, Short } from "./app/schemas/common";
import type { CaptureResult, ChargeResult, CreditResult, RefundResult, ReservationResult } from "./app/schemas/money";
import { validate } from "./app/validate";
import { clock } from "./clock";
import { LATENCY_MS_MAX } from "./domain/limits";
import type { AccountView, ReservationView } from "./domain/views";
import type { Env } from "./env";
import { newUlid } from "./ids";
import { flushMetricsIfDue } from "./observability/flush";
import { PROVIDER_STATUSES, recordProvider } from "./observability/metrics";
import type { LogFields } from "./observability/request-log";
import { writeRequestLog } from "./observability/request-log";

/** The outcome of every method: a value, or a rejection with the HTTP API's code and status. */
export type LedgerResult<T> = Outcome<T>;

export type ReserveInput = OperationRawInput<"reserve">;
export type CaptureInput = OperationRawInput<"capture">;
export type ReleaseInput = OperationRawInput<"release">;
export type ExtendInput = OperationRawInput<"extend">;
export type ChargeInput = OperationRawInput<"charge">;
export type RefundInput = OperationRawInput<"refund">;
export type CreditInput = OperationRawInput<"credit">;

/** One provider call as a gateway reports it (reportProviderResult). */
const ProviderReport = z.strictObject({
  provider: Short,
  model: Short,
  status: z.enum(PROVIDER_STATUSES),
  latency_ms: z.number().int().min(0).max(LATENCY_MS_MAX),
});
export type ProviderReportInput = z.input<typeof ProviderReport>;

const noInput = () => undefined;

/** Who the gateway calls for (issue 28): its caller's key id and project, as it authenticated them. */
export interface ServiceCaller {
  api_key_id?: string;
  project_id?: string;
}

const callerTarget = (caller: ServiceCaller | undefined) =>
  caller === undefined
    ? {}
    : {
        caller: {
          ...(caller.api_key_id === undefined ? {} : { api_key_id: caller.api_key_id }),
          project_id: caller.project_id ?? null,
        },
      };

type Result<S extends z.ZodType> = Promise<LedgerResult<z.infer<S>>>;

export class LedgerService extends WorkerEntrypoint<Env> {
  /** `caller`: the gateway's own caller (issue 28), counted against the spend limits that match it. */
  reserve(accountId: string, input: ReserveInput, caller?: ServiceCaller): Result<typeof ReservationResult> {
    return this.operation("reserve", { account_id: accountId, ...callerTarget(caller) }, input);
  }

  capture(accountId: string, reservationId: string, input: CaptureInput): Result<typeof CaptureResult> {
    return this.operation("capture", { account_id: accountId, reservation_id: reservationId }, input);
  }

  release(accountId: string, reservationId: string, input: ReleaseInput = {}): Result<typeof ReservationResult> {
    return this.operation("release", { account_id: accountId, reservation_id: reservationId }, input);
  }

  extend(accountId: string, reservationId: string, input: ExtendInput): Result<typeof ReservationResult> {
    return this.operation("extend", { account_id: accountId, reservation_id: reservationId }, input);
  }

  charge(accountId: string, input: ChargeInput, caller?: ServiceCaller): Result<typeof ChargeResult> {
    return this.operation("charge", { account_id: accountId, ...callerTarget(caller) }, input);
  }

  refund(accountId: string, input: RefundInput): Result<typeof RefundResult> {
    return this.operation("refund", { account_id: accountId }, input);
  }

  credit(accountId: string, input: CreditInput): Result<typeof CreditResult> {
    return this.operation("credit", { account_id: accountId }, input);
  }

  getAccount(accountId: string): Promise<LedgerResult<AccountView>> {
    return this.call("getAccount", { account_id: accountId }, noInput, async (target) =>
      readOutcome(await accountClient(this.env, target.account_id).getAccount()),
    );
  }

  getReservation(accountId: string, reservationId: string): Promise<LedgerResult<ReservationView>> {
    return this.call("getReservation", { account_id: accountId, reservation_id: reservationId }, noInput, async (t) =>
      readOutcome(await accountClient(this.env, t.account_id).getReservation(reservationId)),
    );
  }

  /**
   * A gateway's report of one provider call (issue 14): provider, model, status and latency,
   * counted in the monitor's metrics (provider failure rates; the model is validated but not a
   * dimension, which keeps the windows bounded). Never touches an account; the flush to the
   * monitor runs after the call.
   */
  async reportProviderResult(report: ProviderReportInput): Promise<LedgerResult<{ recorded: true }>> {
    const errors: FieldError[] = [];
    const valid = validate(ProviderReport, report, "report", errors);
    const outcome: Outcome<{ recorded: true }> =
      errors.length > 0 || valid === undefined
        ? invalidOutcome(errors)
        : { ok: true, status: 200, value: { recorded: true }, replayed: false };
    if (outcome.ok && valid !== undefined) {
      recordProvider(clock.now(), { provider: valid.provider, status: valid.status, latencyMs: valid.latency_ms });
      flushMetricsIfDue(this.env, (work) => this.ctx.waitUntil(work));
    }
    return outcome;
  }

  /** An operation of the table: its input is validated by its contract, as over HTTP. */
  private operation<T>(name: OperationName, target: Target, input: unknown): Promise<LedgerResult<T>> {
    let body: unknown;
    const validateInput = (errors: FieldError[]) => {
      body = validate(OPERATIONS[name].input, input, "input", errors);
    };
    const waitUntil = (work: Promise<unknown>) => this.ctx.waitUntil(work);
    return this.call(name, target, validateInput, (t, log) =>
      runOperation(this.env, name, t, body, log, waitUntil),
    ) as Promise<LedgerResult<T>>;
  }

  /** Validates the ids, runs, and writes the same one allowlisted log line per call as HTTP does. */
  private async call<T>(
    method: string,
    target: Target,
    validateInput: (errors: FieldError[]) => void,
    run: (target: Target, log: LogFields) => Promise<Outcome<T>>,
  ): Promise<LedgerResult<T>> {
    const started = clock.now();
    const log: LogFields = { route: `rpc ${method}`, key_prefix: "service-binding" };
    // Ids first, then the input, as the binding answered before the application layer existed.
    const errors: FieldError[] = [];
    validate(Id, target.account_id, "account_id", errors);
    if (target.reservation_id !== undefined) validate(Id, target.reservation_id, "reservation_id", errors);
    if (target.caller?.api_key_id !== undefined) validate(Id, target.caller.api_key_id, "caller.api_key_id", errors);
    if (target.caller?.project_id != null) validate(Id, target.caller.project_id, "caller.project_id", errors);
    validateInput(errors);
    let outcome: Outcome<T>;
    if (errors.length > 0) {
      outcome = invalidOutcome(errors);
    } else {
      log.account_id = target.account_id;
      outcome = await run(target, log);
    }
    if (!outcome.ok) log.error_code = outcome.code;
    writeRequestLog(this.env, log, { requestId: newUlid(), status: outcome.status, latencyMs: clock.now() - started });
    return outcome;
  }
}
