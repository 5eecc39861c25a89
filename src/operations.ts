/**
 * The ledger's operations, shared by the HTTP API (src/http/accounts.ts) and the service-binding
 * API (src/service.ts): validated input in, a command to the account's Durable Object, a result
 * out. One path per operation, so both APIs have the same rules, defaults and idempotency.
 */

import type { z } from "@hono/zod-openapi";
import type { BatchResult, ExecuteResult, ReadResult } from "../durable-objects/account";
import type { OpenAccountBody, UpdateAccountBody } from "./app/schemas/accounts";
import type { BatchBody } from "./app/schemas/batch";
import type {
  AdjustmentBody,
  CaptureBody,
  ChargeBody,
  CreditBody,
  ExtendBody,
  RefundBody,
  ReleaseBody,
  ReserveBody,
} from "./app/schemas/money";
import { clock } from "./clock";
import type { Command, UsageContext } from "./domain/commands";
import { TTL_SECONDS_DEFAULT } from "./domain/limits";
import { type PinnedRule, type PriceRef, priceOf, type Quantities } from "./domain/pricing";
import type { Rejection } from "./domain/rejections";
import type { Env } from "./env";
import type { LogFields } from "./http/context";
import { resolvePrice } from "./pricing/store";

/** A result, or a rejection raised before the account was asked (a price that does not exist). */
export type OperationResult = ExecuteResult | ReadResult<unknown> | { ok: false; rejection: EdgeRejection };
export interface EdgeRejection {
  code: "price_not_found" | "batch_aborted";
  detail: string;
  facts?: Rejection["facts"];
}

export function accountStub(env: Env, accountId: string) {
  return env.ACCOUNTS.getByName(accountId);
}

async function execute(env: Env, accountId: string, command: Command): Promise<ExecuteResult> {
  return (await accountStub(env, accountId).execute(command)) as ExecuteResult;
}

/** Each operation: its command (for logging) and the object's answer. */
export interface Executed {
  command: Command | null;
  result: OperationResult;
}

export async function openAccount(env: Env, body: z.infer<typeof OpenAccountBody>): Promise<Executed> {
  const command: Command = {
    type: "OpenAccount",
    account_id: body.account_id,
    currency: body.currency,
    credit_limit: body.credit_limit ?? 0,
    metadata: body.metadata ?? {},
  };
  return { command, result: await execute(env, body.account_id, command) };
}

export async function updateAccount(
  env: Env,
  accountId: string,
  body: z.infer<typeof UpdateAccountBody>,
): Promise<Executed> {
  const command: Command = { type: "UpdateAccount" };
  if (body.credit_limit !== undefined) command.credit_limit = body.credit_limit;
  if (body.status !== undefined) command.status = body.status;
  return { command, result: await execute(env, accountId, command) };
}

function creditCommand(body: z.infer<typeof CreditBody>): Command {
  return {
    type: "CreditFunds",
    credit_id: body.credit_id,
    amount: body.amount,
    reason: body.reason ?? null,
    metadata: body.metadata ?? {},
  };
}

export async function credit(env: Env, accountId: string, body: z.infer<typeof CreditBody>): Promise<Executed> {
  return run(env, accountId, creditCommand(body));
}

async function run(env: Env, accountId: string, command: Command): Promise<Executed> {
  return { command, result: await execute(env, accountId, command) };
}

/**
 * A reservation with a price and an estimate is priced here, before the object is called: the
 * rules in effect now are read from D1 (no D1 await inside the command), the estimate is priced
 * with the domain's priceOf, and the object re-checks that amount and pins the rules.
 */
export async function reserve(env: Env, accountId: string, body: z.infer<typeof ReserveBody>): Promise<Executed> {
  const built = await reserveCommand(body, new PriceCache(env));
  if ("rejection" in built) return { command: null, result: { ok: false, rejection: built.rejection } };
  return { command: built.command, result: await execute(env, accountId, built.command) };
}

/** Prices resolved once per (service, provider, model) within one request. */
class PriceCache {
  private readonly resolved = new Map<string, Promise<PinnedRule[]>>();
  private readonly at = new Date(clock.now()).toISOString();
  constructor(private readonly env: Env) {}
  rules(price: PriceRef): Promise<PinnedRule[]> {
    const key = JSON.stringify([price.service_id, price.provider, price.model]);
    let rules = this.resolved.get(key);
    if (rules === undefined) {
      rules = resolvePrice(this.env.DB, price, this.at);
      this.resolved.set(key, rules);
    }
    return rules;
  }
}

/**
 * A reservation with a price and an estimate is priced here, before the object is called: the
 * rules in effect now are read from D1 (no D1 await inside the command), the estimate is priced
 * with the domain's priceOf, and the object re-checks that amount and pins the rules.
 */
async function reserveCommand(
  body: z.infer<typeof ReserveBody>,
  prices: PriceCache,
): Promise<{ command: Command } | { rejection: EdgeRejection }> {
  const base = {
    type: "ReserveFunds" as const,
    reservation_id: body.reservation_id,
    ttl_seconds: body.ttl_seconds ?? TTL_SECONDS_DEFAULT,
    on_expiry: body.on_expiry ?? ("release" as const),
    context: body.context ?? {},
    metadata: body.metadata ?? {},
  };
  if (body.price === undefined || body.estimate === undefined) {
    return { command: { ...base, amount: body.amount as number } };
  }
  const rules = await prices.rules(body.price);
  if (rules.length === 0) {
    return {
      rejection: { code: "price_not_found", detail: "No price is in effect for this service, provider and model." },
    };
  }
  const estimate: Quantities = {
    input_token: body.estimate.max_input_tokens,
    output_token: body.estimate.max_output_tokens,
    cached_token: body.estimate.max_cached_tokens ?? 0,
    request: 1,
  };
  // An unpriceable estimate is sent as 0: the object refuses it with `unpriceable`.
  const amount = priceOf(rules, estimate)?.amount ?? 0;
  return { command: { ...base, amount, pricing: { price: body.price, rules, estimate } } };
}

function captureCommand(reservationId: string, body: z.infer<typeof CaptureBody>): Command {
  return {
    type: "CaptureReservation",
    reservation_id: reservationId,
    amount: body.amount ?? null,
    allow_overage: body.allow_overage ?? false,
    usage: body.usage ?? {},
    metadata: body.metadata ?? {},
  };
}

export async function capture(
  env: Env,
  accountId: string,
  reservationId: string,
  body: z.infer<typeof CaptureBody>,
): Promise<Executed> {
  return run(env, accountId, captureCommand(reservationId, body));
}

function releaseCommand(reservationId: string, body: z.infer<typeof ReleaseBody>): Command {
  return { type: "ReleaseReservation", reservation_id: reservationId, reason: body.reason ?? null };
}

export async function release(
  env: Env,
  accountId: string,
  reservationId: string,
  body: z.infer<typeof ReleaseBody>,
): Promise<Executed> {
  return run(env, accountId, releaseCommand(reservationId, body));
}

function extendCommand(reservationId: string, body: z.infer<typeof ExtendBody>): Command {
  return {
    type: "ExtendReservation",
    reservation_id: reservationId,
    extension_id: body.extension_id ?? null,
    ttl_seconds: body.ttl_seconds,
    on_expiry: body.on_expiry ?? null,
  };
}

export async function extend(
  env: Env,
  accountId: string,
  reservationId: string,
  body: z.infer<typeof ExtendBody>,
): Promise<Executed> {
  return run(env, accountId, extendCommand(reservationId, body));
}

function chargeCommand(body: z.infer<typeof ChargeBody>): Command {
  return {
    type: "ChargeAccount",
    charge_id: body.charge_id,
    amount: body.amount,
    context: body.context ?? {},
    metadata: body.metadata ?? {},
  };
}

export async function charge(env: Env, accountId: string, body: z.infer<typeof ChargeBody>): Promise<Executed> {
  return run(env, accountId, chargeCommand(body));
}

function refundCommand(body: z.infer<typeof RefundBody>): Command {
  return {
    type: "RefundCharge",
    refund_id: body.refund_id,
    charge_id: body.charge_id,
    amount: body.amount,
    reason: body.reason ?? null,
  };
}

export async function refund(env: Env, accountId: string, body: z.infer<typeof RefundBody>): Promise<Executed> {
  return run(env, accountId, refundCommand(body));
}

export async function adjust(env: Env, accountId: string, body: z.infer<typeof AdjustmentBody>): Promise<Executed> {
  const command: Command = {
    type: "AdjustBalance",
    adjustment_id: body.adjustment_id,
    amount: body.amount,
    reason: body.reason,
  };
  return { command, result: await execute(env, accountId, command) };
}

export async function getAccount(env: Env, accountId: string): Promise<Executed> {
  return { command: null, result: (await accountStub(env, accountId).getAccount()) as ReadResult<unknown> };
}

export async function getReservation(env: Env, accountId: string, reservationId: string): Promise<Executed> {
  return {
    command: null,
    result: (await accountStub(env, accountId).getReservation(reservationId)) as ReadResult<unknown>,
  };
}

/**
 * Copies the allowed logging fields of a money command into the request's log line: the
 * platform context (from the command, or from the reservation a capture settles), token usage,
 * and the final cost of a charge or capture. Metadata, reasons and ids stay out.
 */
export function logFieldsOf(command: Command, result: OperationResult): LogFields {
  const log: LogFields = {};
  const settled =
    result.ok && "body" in result
      ? (result.body as { reservation?: { context?: UsageContext }; charge?: { amount?: number } })
      : {};
  const context: UsageContext | undefined =
    "context" in command
      ? command.context
      : command.type === "CaptureReservation"
        ? settled.reservation?.context
        : undefined;
  if (context !== undefined) {
    for (const field of ["request_id", "user_id", "service_id", "alias", "provider", "model"] as const) {
      const value = context[field];
      if (value !== undefined) log[field] = value;
    }
  }
  if (command.type === "CaptureReservation") {
    if (command.usage.input_tokens !== undefined) log.input_tokens = command.usage.input_tokens;
    if (command.usage.output_tokens !== undefined) log.output_tokens = command.usage.output_tokens;
    if (command.usage.cached_tokens !== undefined) log.cached_tokens = command.usage.cached_tokens;
  }
  if (
    (command.type === "CaptureReservation" || command.type === "ChargeAccount") &&
    settled.charge?.amount !== undefined
  ) {
    log.final_cost = settled.charge.amount;
  }
  return log;
}

/** The status of a successful operation of each kind (as the single calls answer). */
const SUCCESS_STATUS = { credit: 201, reserve: 201, charge: 201, refund: 201, capture: 200, release: 200, extend: 200 };

export type BatchItem =
  | { ok: true; status: number; replayed: boolean; body: unknown }
  | { ok: false; rejection: Rejection | EdgeRejection };

const ABORTED: BatchItem = {
  ok: false,
  rejection: { code: "batch_aborted", detail: "Not applied: the atomic batch was rolled back." },
};

/**
 * A batch for one account: commands are built (prices resolved) first, then decided and
 * committed by the object in one transaction. An item that cannot be built (no price) is
 * rejected in place; with `atomic` that rejects the whole batch before the object is asked.
 */
export async function batch(
  env: Env,
  accountId: string,
  body: z.infer<typeof BatchBody>,
): Promise<{ committed: boolean; results: BatchItem[] }> {
  const prices = new PriceCache(env);
  const built: ({ command: Command } | { rejection: EdgeRejection })[] = [];
  for (const item of body.operations) {
    switch (item.op) {
      case "credit":
        built.push({ command: creditCommand(item) });
        break;
      case "reserve":
        built.push(await reserveCommand(item, prices));
        break;
      case "capture":
        built.push({ command: captureCommand(item.reservation_id, item) });
        break;
      case "release":
        built.push({ command: releaseCommand(item.reservation_id, item) });
        break;
      case "extend":
        built.push({ command: extendCommand(item.reservation_id, item) });
        break;
      case "charge":
        built.push({ command: chargeCommand(item) });
        break;
      case "refund":
        built.push({ command: refundCommand(item) });
        break;
    }
  }
  const atomic = body.atomic ?? false;
  const commands = built.flatMap((b) => ("command" in b ? [b.command] : []));
  const failedEarly = commands.length < built.length;
  if (atomic && failedEarly) {
    return {
      committed: false,
      results: built.map((b) => ("rejection" in b ? { ok: false, rejection: b.rejection } : ABORTED)),
    };
  }
  const outcome: BatchResult =
    commands.length === 0
      ? { committed: true, results: [] }
      : ((await accountStub(env, accountId).executeBatch(commands, atomic)) as BatchResult);
  let next = 0;
  const results = built.map((b, i): BatchItem => {
    if ("rejection" in b) return { ok: false, rejection: b.rejection };
    const r = outcome.results[next++];
    if (r === undefined || (!outcome.committed && r.ok)) return ABORTED;
    if (!r.ok) return r;
    const op = body.operations[i]?.op ?? "credit";
    return { ok: true, status: SUCCESS_STATUS[op], replayed: r.replayed, body: r.body };
  });
  return { committed: outcome.committed, results };
}
