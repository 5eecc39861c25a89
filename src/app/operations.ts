/**
 * The ledger's operations, as contracts that know nothing of HTTP: each declares its input
 * schema, its output schema, the command it becomes (whose success status the domain's command
 * table holds), what it addresses (an account or a reservation) and the fields it may log.
 * The HTTP API (src/http/accounts.ts), the service binding (src/service.ts) and batches are all
 * adapters over `OPERATIONS` and `runOperation`, so they share rules, defaults, statuses and
 * idempotency, and a new operation is added here once.
 */
import type { z } from "@hono/zod-openapi";
import { configOf } from "../config";
import {
  type Caller,
  type Command,
  type CommandType,
  USAGE_CONTEXT_FIELDS,
  type UsageContext,
} from "../domain/commands";
import type { LotGrant } from "../domain/events";
import { TTL_SECONDS_DEFAULT } from "../domain/limits";
import { LOT_PRIORITY_DEFAULT } from "../domain/lots";
import { priceOf, type Quantities } from "../domain/pricing";
import { COMMANDS } from "../domain/table";
import type { Env } from "../env";
import type { LogFields } from "../observability/request-log";
import { PriceCache } from "../pricing/cache";
import { controlDb } from "../read-side/shards";
import { accountClient } from "./account-client";
import { commandGroups, groupable, type WaitUntil } from "./command-groups";
import { invalidOutcome, type Outcome, outcomeOf, rejectedOutcome } from "./outcome";
import { AccountResponse, OpenAccountBody, UpdateAccountBody } from "./schemas/accounts";
import {
  AdjustmentBody,
  AdjustmentResult,
  CaptureBody,
  CaptureResult,
  ChargeBody,
  ChargeResult,
  CreditBody,
  CreditResult,
  ExtendBody,
  type GrantRequest,
  RefundBody,
  RefundResult,
  ReleaseBody,
  type RequestContext,
  ReservationResult,
  ReserveBody,
} from "./schemas/money";

/** What an operation addresses: an account, and for settlements one of its reservations. */
export interface Target {
  account_id: string;
  reservation_id?: string;
  /**
   * Who calls (issue 28), from authentication: the key's id and the project it is bound to. A
   * reserve and a charge carry it into the command, and count against the limits that match it.
   */
  caller?: CallerKey;
}

/** The authenticated caller: an API key's id and the project it is bound to (null: none). */
export interface CallerKey {
  api_key_id?: string;
  project_id: string | null;
}

/** What a principal of the HTTP layer is as a caller. */
export const callerKeyOf = (
  principal: { key_id: string; project_id: string | null } | undefined,
): CallerKey | undefined =>
  principal === undefined ? undefined : { api_key_id: principal.key_id, project_id: principal.project_id };

/**
 * The caller a reserve or a charge is for: the key and its project; a key bound to no project
 * may name one in `context.project_id`, a bound key only its own (403 otherwise).
 */
function callerOf(target: Target, bodyProject: string | undefined): Caller | Outcome {
  const key = target.caller;
  const bound = key?.project_id ?? null;
  if (bound !== null && bodyProject !== undefined && bodyProject !== bound) {
    return rejectedOutcome("forbidden", "This key is bound to another project than context.project_id.", {
      facts: { field: "context.project_id" },
    });
  }
  const project_id = bound ?? bodyProject;
  return {
    ...(key?.api_key_id === undefined ? {} : { api_key_id: key.api_key_id }),
    ...(project_id === undefined ? {} : { project_id }),
  };
}

/** The request's context without `project_id`, which goes to the caller. */
function usageContextOf(context: z.infer<typeof RequestContext> | undefined): UsageContext {
  const { project_id: _project, ...usage } = context ?? {};
  return usage;
}

export interface OperationContract<I extends z.ZodType, T extends CommandType> {
  input: I;
  output: z.ZodType;
  command: T;
  /** True when the path names a reservation (capture, release, extend). */
  reservation: boolean;
  /** The command, or a rejection raised before the account is asked (no price in effect). */
  build(input: z.infer<I>, target: Target, prices: PriceCache): Command | Outcome | Promise<Command | Outcome>;
  /**
   * The allowlisted log fields (docs/security.md, log policy): those of the command always, a
   * rejected one included, and those of the result (`value`, null when rejected) on success.
   */
  log(command: Extract<Command, { type: T }>, value: unknown): LogFields;
}

function operation<I extends z.ZodType, T extends CommandType>(spec: OperationContract<I, T>) {
  return spec;
}

/** A command's fields besides its type, and besides the reservation a settlement's target names. */
type FieldsOf<T extends CommandType, Named extends string = never> = Omit<
  Extract<Command, { type: T }>,
  "type" | Named
>;

/** What a plain operation declares: its contract but the command, and the command's fields. */
type PlainSpec<I extends z.ZodType, T extends CommandType, Fields> = Omit<
  OperationContract<I, T>,
  "command" | "reservation" | "build"
> & { fields(input: z.infer<I>): Fields };

/**
 * An operation whose command is its input with defaults (no price to resolve), on the account
 * or on the reservation its target names, whose id the command then carries. The command's
 * type is stated once, first.
 */
function plainOperation<I extends z.ZodType, T extends CommandType>(
  command: T,
  reservation: boolean,
  spec: PlainSpec<I, T, object>,
): OperationContract<I, T> {
  const { fields, ...contract } = spec;
  const build = (input: z.infer<I>, target: Target) =>
    ({
      type: command,
      ...(reservation ? { reservation_id: target.reservation_id ?? "" } : {}),
      ...fields(input),
    }) as Command;
  return { ...contract, command, reservation, build };
}

const onAccount = <I extends z.ZodType, T extends CommandType>(command: T, spec: PlainSpec<I, T, FieldsOf<T>>) =>
  plainOperation(command, false, spec);
const onReservation = <I extends z.ZodType, T extends CommandType>(
  command: T,
  spec: PlainSpec<I, T, FieldsOf<T, "reservation_id">>,
) => plainOperation(command, true, spec);

/** The platform's logging fields of a usage context. */
function contextLog(context: UsageContext | undefined): LogFields {
  const log: LogFields = {};
  for (const field of USAGE_CONTEXT_FIELDS) {
    const value = context?.[field];
    if (value !== undefined) log[field] = value;
  }
  return log;
}

const noLog = (): LogFields => ({});

export const OPERATIONS = {
  open: onAccount("OpenAccount", {
    input: OpenAccountBody,
    output: AccountResponse,
    fields: (b) => ({
      account_id: b.account_id,
      currency: b.currency,
      credit_limit: b.credit_limit ?? 0,
      metadata: b.metadata ?? {},
    }),
    log: noLog,
  }),
  update: onAccount("UpdateAccount", {
    input: UpdateAccountBody,
    output: AccountResponse,
    fields: (b) => ({
      ...(b.credit_limit === undefined ? {} : { credit_limit: b.credit_limit }),
      ...(b.status === undefined ? {} : { status: b.status }),
      ...(b.low_balance_threshold === undefined ? {} : { low_balance_threshold: b.low_balance_threshold }),
    }),
    log: noLog,
  }),
  credit: onAccount("CreditFunds", {
    input: CreditBody,
    output: CreditResult,
    fields: (b) => ({
      credit_id: b.credit_id,
      amount: b.amount,
      ...grantOf(b.grant),
      reason: b.reason ?? null,
      metadata: b.metadata ?? {},
    }),
    log: noLog,
  }),
  reserve: operation({
    input: ReserveBody,
    output: ReservationResult,
    command: "ReserveFunds",
    reservation: false,
    build: (b, target, prices) => reserveCommand(b, target, prices),
    log: (c) => contextLog(c.context),
  }),
  capture: onReservation("CaptureReservation", {
    input: CaptureBody,
    output: CaptureResult,
    fields: (b) => ({
      amount: b.amount ?? null,
      allow_overage: b.allow_overage ?? false,
      usage: b.usage ?? {},
      metadata: b.metadata ?? {},
    }),
    log: (c, value) => {
      // A capture's context is the reservation's, and its final cost the charge's amount: both
      // known only from a success. The usage it reports is logged either way.
      const settled = value as z.infer<typeof CaptureResult> | null;
      const log = settled === null ? {} : contextLog(settled.reservation.context);
      if (c.usage.input_tokens !== undefined) log.input_tokens = c.usage.input_tokens;
      if (c.usage.output_tokens !== undefined) log.output_tokens = c.usage.output_tokens;
      if (c.usage.cached_tokens !== undefined) log.cached_tokens = c.usage.cached_tokens;
      if (settled !== null) log.final_cost = settled.charge.amount;
      return log;
    },
  }),
  release: onReservation("ReleaseReservation", {
    input: ReleaseBody,
    output: ReservationResult,
    fields: (b) => ({ reason: b.reason ?? null }),
    log: noLog,
  }),
  extend: onReservation("ExtendReservation", {
    input: ExtendBody,
    output: ReservationResult,
    fields: (b) => ({
      extension_id: b.extension_id ?? null,
      ttl_seconds: b.ttl_seconds,
      on_expiry: b.on_expiry ?? null,
    }),
    log: noLog,
  }),
  charge: operation({
    input: ChargeBody,
    output: ChargeResult,
    command: "ChargeAccount",
    reservation: false,
    build: (b, target) => {
      const caller = callerOf(target, b.context?.project_id);
      if ("ok" in caller) return caller;
      return {
        type: "ChargeAccount" as const,
        charge_id: b.charge_id,
        amount: b.amount,
        context: usageContextOf(b.context),
        metadata: b.metadata ?? {},
        ...(Object.keys(caller).length === 0 ? {} : { caller }),
      };
    },
    log: (c, value) => {
      const charged = value as z.infer<typeof ChargeResult> | null;
      return { ...contextLog(c.context), ...(charged === null ? {} : { final_cost: charged.charge.amount }) };
    },
  }),
  refund: onAccount("RefundCharge", {
    input: RefundBody,
    output: RefundResult,
    fields: (b) => ({
      refund_id: b.refund_id,
      charge_id: b.charge_id,
      amount: b.amount,
      reason: b.reason ?? null,
    }),
    log: noLog,
  }),
  adjust: onAccount("AdjustBalance", {
    input: AdjustmentBody,
    output: AdjustmentResult,
    fields: (b) => ({ adjustment_id: b.adjustment_id, amount: b.amount, reason: b.reason, ...grantOf(b.grant) }),
    log: noLog,
  }),
};

/**
 * A grant's terms with their defaults (priority by kind, never expiring), the expiry spelled as
 * the ledger records times, so that a retry compares equal however it spells the same instant.
 */
function grantOf(grant: z.infer<typeof GrantRequest> | undefined): { grant?: LotGrant } {
  if (grant === undefined) return {};
  return {
    grant: {
      kind: grant.kind,
      priority: grant.priority ?? LOT_PRIORITY_DEFAULT[grant.kind],
      expires_at: grant.expires_at === undefined ? null : new Date(grant.expires_at).toISOString(),
    },
  };
}

export type OperationName = keyof typeof OPERATIONS;
export type OperationInput<N extends OperationName> = z.infer<(typeof OPERATIONS)[N]["input"]>;
/** What callers may send (before defaults): the service binding's input types. */
export type OperationRawInput<N extends OperationName> = z.input<(typeof OPERATIONS)[N]["input"]>;

/** The success status of an operation: the domain's command table holds it. */
export function statusOf(name: OperationName): { success: number; replay: number } {
  return COMMANDS[OPERATIONS[name].command].status;
}

type AnyContract = OperationContract<z.ZodType, CommandType>;

/** Builds an operation's command (resolving a price if it names one). */
export async function buildCommand(
  name: OperationName,
  input: unknown,
  target: Target,
  prices: PriceCache,
): Promise<Command | Outcome> {
  return (OPERATIONS[name] as unknown as AnyContract).build(input, target, prices);
}

/**
 * Runs one validated operation against its account and fills `log` with what it may log.
 * The one execution path of HTTP and the service binding. A keyed command shares its call to
 * the object with the account's other commands in this isolate while one is in flight
 * (./command-groups.ts); `waitUntil` is the request's, under which a line's calls run.
 */
export async function runOperation(
  env: Env,
  name: OperationName,
  target: Target,
  input: unknown,
  log: LogFields,
  waitUntil: WaitUntil,
): Promise<Outcome> {
  const built = await buildCommand(name, input, target, new PriceCache(controlDb(env)));
  if (!("type" in built)) return built;
  const account = accountClient(env, target.account_id);
  // Group commit is a switch (GROUP_COMMIT; docs/decisions/0001-group-commit.md).
  const result =
    configOf(env).groupCommit && groupable(built)
      ? await commandGroups.execute(target.account_id, account, built, waitUntil)
      : await account.execute(built);
  const outcome = outcomeOf(result, statusOf(name));
  Object.assign(log, (OPERATIONS[name] as unknown as AnyContract).log(built, outcome.ok ? outcome.value : null));
  return outcome;
}

/**
 * A reservation with a price and an estimate is priced here, before the object is called: the
 * rules in effect now are read from D1 (no D1 await inside the command), the estimate is priced
 * with the domain's priceOf, and the object re-checks that amount and pins the rules.
 */
async function reserveCommand(
  b: z.infer<typeof ReserveBody>,
  target: Target,
  prices: PriceCache,
): Promise<Command | Outcome> {
  const caller = callerOf(target, b.context?.project_id);
  if ("ok" in caller) return caller;
  const base = {
    type: "ReserveFunds" as const,
    reservation_id: b.reservation_id,
    ttl_seconds: b.ttl_seconds ?? TTL_SECONDS_DEFAULT,
    on_expiry: b.on_expiry ?? ("release" as const),
    context: usageContextOf(b.context),
    metadata: b.metadata ?? {},
    ...(Object.keys(caller).length === 0 ? {} : { caller }),
    // A hold sized to what is affordable: amount_max is the most, amount_min the least.
    ...(b.amount_min === undefined ? {} : { amount_min: b.amount_min }),
  };
  if (b.price === undefined || b.estimate === undefined)
    return { ...base, amount: (b.amount ?? b.amount_max) as number };
  const rules = await prices.rules(b.price);
  if (rules.length === 0) {
    return rejectedOutcome("price_not_found", "No price is in effect for this service, provider and model.");
  }
  const estimate: Quantities = {
    input_token: b.estimate.max_input_tokens,
    output_token: b.estimate.max_output_tokens,
    cached_token: b.estimate.max_cached_tokens ?? 0,
    request: 1,
  };
  // An unpriceable estimate is sent as 0: the object refuses it with `unpriceable`.
  const amount = priceOf(rules, estimate)?.amount ?? 0;
  // An unpriceable estimate (0) is the object's to refuse (422 unpriceable), whatever amount_min is.
  if (b.amount_min !== undefined && amount > 0 && b.amount_min > amount) {
    return invalidOutcome([
      { field: "body.amount_min", message: `amount_min is more than the priced estimate, ${amount}` },
    ]);
  }
  return { ...base, amount, pricing: { price: b.price, rules, estimate } };
}
