/**
 * The rules of each command, in the precedence order docs/api.md documents (see decide.ts for
 * the order every command shares). Each function sees the account (never null, except for
 * OpenAccount), the state slice the shell loaded for it, and `now`. Pure: no I/O, no clock.
 * The command table (table.ts) says which function decides which command.
 */
import { type Caller, type Command, type CommandOf, DEFAULT_GRANT } from "./commands";
import {
  type AccountUpdatedField,
  type EventBody,
  eventEffect,
  type FundsReservedRequest,
  type LedgerEvent,
  type LotGrant,
} from "./events";
import { dimensionsOf, limitsField } from "./limit-events";
import {
  AMOUNT_MINOR_MAX,
  AMOUNT_MINOR_MIN,
  BALANCE_ABS_MINOR_MAX,
  CAPTURE_AMOUNT_MINOR_MIN,
  CREDIT_LIMIT_MINOR_MAX,
  LOW_BALANCE_THRESHOLD_MINOR_MAX,
  LOW_BALANCE_THRESHOLD_MINOR_MIN,
  OPEN_RESERVATIONS_MAX,
  TTL_SECONDS_MAX,
  TTL_SECONDS_MIN,
} from "./limits";
import {
  activeLots,
  adjustmentLotId,
  grantMove,
  holdMove,
  lapseMove,
  refundMove,
  settleMove,
  spendMove,
} from "./lot-events";
import { LOT_KINDS, LOT_PRIORITY_MAX, LOT_PRIORITY_MIN, LOTS_ACTIVE_MAX, type LotBook } from "./lots";
import { assert, assertMinor, type Minor } from "./money";
import { type PinnedRule, type PriceComputation, priceOf, type Quantities, usageQuantities } from "./pricing";
import { type Rejection, reject } from "./rejections";
import {
  allowance,
  count,
  exceeded,
  LIMIT_DIMENSIONS,
  LIMIT_THRESHOLD_PERCENT_MAX,
  LIMIT_THRESHOLD_PERCENT_MIN,
  LIMIT_WINDOWS,
  LIMITS_PER_ACCOUNT_MAX,
  type LimitBook,
  type LimitScope,
  sameTerms,
} from "./spend-limits";
import { type AccountState, available, type LedgerState, type ReservationState } from "./state";

export type Decision =
  | { outcome: "accepted"; events: EventBody[] }
  | { outcome: "replayed"; event: LedgerEvent }
  | { outcome: "rejected"; rejection: Rejection };

/** What a command's rules see. OpenAccount is the one command decided without an account. */
export interface DecideInput<C extends Command = Command> {
  account: C extends CommandOf<"OpenAccount"> ? null : AccountState;
  state: LedgerState;
  now: number;
}

export const accepted = (...events: EventBody[]): Decision => ({ outcome: "accepted", events });
export const rejected = (rejection: Rejection): Decision => ({ outcome: "rejected", rejection });

export function decideOpenAccount(
  command: CommandOf<"OpenAccount">,
  input: DecideInput<CommandOf<"OpenAccount">>,
): Decision {
  assertCreditLimit(command.credit_limit);
  // An open account has its "open" key loaded, so an existing account is a replay (decide.ts).
  assert(input.account === null, "an open account replays its AccountOpened event");
  return accepted({
    type: "AccountOpened",
    account_id: command.account_id,
    currency: command.currency,
    credit_limit: command.credit_limit,
    metadata: command.metadata,
    lots: true,
  });
}

export function decideUpdateAccount(
  command: CommandOf<"UpdateAccount">,
  { account }: DecideInput<CommandOf<"UpdateAccount">>,
): Decision {
  const credit_limit = command.credit_limit ?? account.credit_limit;
  const status = command.status ?? account.status;
  const low_balance_threshold =
    command.low_balance_threshold === undefined ? account.low_balance_threshold : command.low_balance_threshold;
  assertCreditLimit(credit_limit);
  if (low_balance_threshold !== null) assertLowBalanceThreshold(low_balance_threshold);
  const changed: AccountUpdatedField[] = [];
  if (credit_limit !== account.credit_limit) changed.push("credit_limit");
  if (status !== account.status) changed.push("status");
  if (low_balance_threshold !== account.low_balance_threshold) changed.push("low_balance_threshold");
  // Setting the values an account already has is a no-op, not an event.
  if (changed.length === 0) return accepted();
  return accepted({ type: "AccountUpdated", credit_limit, status, low_balance_threshold, changed });
}

export function decideCreditFunds(
  command: CommandOf<"CreditFunds">,
  { account, state, now }: DecideInput<CommandOf<"CreditFunds">>,
): Decision {
  assertAmount(command.amount);
  const terms = command.grant ?? DEFAULT_GRANT;
  const refused = checkGrant(state.book, terms, command.amount, now);
  if (refused !== null) return rejected(refused);
  const lot = grantMove(state.book, command.credit_id, terms, command.amount, account.last_seq + 1, now);
  return acceptedWithinBounds(account, {
    type: "FundsCredited",
    credit_id: command.credit_id,
    amount: command.amount,
    reason: command.reason,
    metadata: command.metadata,
    ...lot.fields,
  });
}

/**
 * A grant's terms: an expiry still ahead (400 naming the field), and room for one more lot with
 * credit in it, unless the whole grant pays the debt and makes no lot.
 */
function checkGrant(book: LotBook | null, grant: LotGrant, amount: Minor, now: number): Rejection | null {
  assert(LOT_KINDS.includes(grant.kind), "a lot's kind");
  assert(
    Number.isSafeInteger(grant.priority) && grant.priority >= LOT_PRIORITY_MIN && grant.priority <= LOT_PRIORITY_MAX,
    "a lot's priority",
  );
  if (grant.expires_at !== null && !(Date.parse(grant.expires_at) > now)) {
    return reject("lot_expiry_passed", "The grant's expires_at is not in the future.", { field: "grant.expires_at" });
  }
  if (book !== null && amount > book.debt && activeLots(book) >= LOTS_ACTIVE_MAX) return tooManyLots();
  return null;
}

function tooManyLots(): Rejection {
  return reject("too_many_lots", `The account already holds ${LOTS_ACTIVE_MAX} lots with credit in them.`, {
    lots_active_max: LOTS_ACTIVE_MAX,
  });
}

export function decideReserveFunds(
  command: CommandOf<"ReserveFunds">,
  { account, state, now }: DecideInput<CommandOf<"ReserveFunds">>,
): Decision {
  assertTtl(command.ttl_seconds);
  let computation: PriceComputation | null = null;
  if (command.pricing !== undefined) {
    computation = priceOf(command.pricing.rules, command.pricing.estimate);
    if (computation === null || computation.amount < AMOUNT_MINOR_MIN) {
      return rejected(
        reject("unpriceable", "The estimate at this price costs nothing or more than the amount limit.", {
          amount_max: AMOUNT_MINOR_MAX,
        }),
      );
    }
    assert(computation.amount === command.amount, "the Worker sends the priced estimate as the amount");
  }
  assertAmount(command.amount);
  if (command.amount_min !== undefined) {
    assertAmount(command.amount_min);
    assert(command.amount_min <= command.amount, "amount_min <= amount_max");
  }
  // The key check in decideReplay covers an earlier reservation with this id.
  assert(!state.reservations.has(command.reservation_id), "a known reservation id is a replay");
  if (state.charges.has(command.reservation_id)) {
    return rejected(
      reject("idempotency_conflict", "The reservation_id is already used by a charge.", { field: "reservation_id" }),
    );
  }
  if (account.status === "frozen") return rejected(frozen());
  if (account.open_reservations >= OPEN_RESERVATIONS_MAX) {
    return rejected(
      reject("too_many_open_reservations", `The account already holds ${OPEN_RESERVATIONS_MAX} open reservations.`, {
        open_reservations_max: OPEN_RESERVATIONS_MAX,
      }),
    );
  }
  const dims = dimensionsOf(command);
  const sized = sizedHold(account, state.limits, dims, command, now);
  if ("rejection" in sized) return rejected(sized.rejection);
  const amount = sized.amount;
  const counted = count(state.limits, dims, amount, now, "held").counted;
  return acceptedSpend(account, amount, {
    ...holdMove(state.book, amount, now).fields,
    type: "FundsReserved",
    reservation_id: command.reservation_id,
    amount,
    ttl_seconds: command.ttl_seconds,
    expires_at: new Date(now + command.ttl_seconds * 1000).toISOString(),
    on_expiry: command.on_expiry,
    context: command.context,
    metadata: command.metadata,
    ...(command.pricing === undefined || computation === null ? {} : { pricing: { ...command.pricing, computation } }),
    ...callerField(command.caller),
    ...(sized.requested === undefined ? {} : { requested: sized.requested }),
    ...limitsField(counted),
  });
}

const callerField = (caller: Caller | undefined) =>
  caller === undefined || (caller.api_key_id === undefined && caller.project_id === undefined) ? {} : { caller };

/**
 * What a hold holds (issue 28): `amount`, refused past any matching limit; with `amount_min`, the
 * most up to `amount` that the funds and every matching limit allow, refused only below
 * `amount_min` (for funds first, then the limit that binds). A priced hold also says how many
 * output tokens of its estimate the held amount covers.
 */
function sizedHold(
  account: AccountState,
  limits: LimitBook,
  dims: LimitScope,
  command: CommandOf<"ReserveFunds">,
  now: number,
): { amount: Minor; requested?: FundsReservedRequest } | { rejection: Rejection } {
  if (command.amount_min === undefined) {
    // Funds before limits, as for a charge (docs/api.md, precedence).
    const refused = checkFunds(account, command.amount) ?? limitRefusal(limits, dims, command.amount, now);
    return refused === null ? { amount: command.amount } : { rejection: refused };
  }
  const funds = Math.max(available(account) + account.credit_limit, 0);
  const amount = Math.min(command.amount, funds, allowance(limits, dims, now));
  if (amount < command.amount_min) {
    const short = checkFunds(account, command.amount_min) ?? limitRefusal(limits, dims, command.amount_min, now);
    assert(short !== null, "a hold below amount_min is short of funds or of a limit");
    return { rejection: short };
  }
  const requested: FundsReservedRequest = { amount_min: command.amount_min, amount_max: command.amount };
  const covered =
    command.pricing === undefined ? null : coveredOutputTokens(command.pricing.rules, command.pricing.estimate, amount);
  return { amount, requested: covered === null ? requested : { ...requested, output_tokens_covered: covered } };
}

/**
 * The most output tokens of `estimate` that `amount` pays for, the other quantities as estimated
 * (null when the price has no output-token rule). Exact: the largest count whose price is within it.
 */
export function coveredOutputTokens(rules: readonly PinnedRule[], estimate: Quantities, amount: Minor): number | null {
  if (!rules.some((rule) => rule.unit === "output_token")) return null;
  const fits = (tokens: number) =>
    (priceOf(rules, { ...estimate, output_token: tokens })?.amount ?? Infinity) <= amount;
  let lo = 0;
  let hi = estimate.output_token ?? 0;
  if (!fits(lo)) return 0;
  while (lo < hi) {
    const mid = lo + Math.ceil((hi - lo) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function limitRefusal(limits: LimitBook, dims: LimitScope, amount: Minor, now: number): Rejection | null {
  const over = exceeded(limits, dims, amount, now);
  if (over === null) return null;
  const { limit } = over.entry;
  return reject(
    "limit_exceeded",
    `The spend limit ${limit.limit_id} allows ${Math.max(over.remaining, 0)} more in its ${limit.window} window.`,
    {
      limit_id: limit.limit_id,
      window: limit.window,
      amount: limit.amount,
      remaining: over.remaining,
      requested: amount,
    },
  );
}

export function decideCaptureReservation(
  command: CommandOf<"CaptureReservation">,
  { account, state, now }: DecideInput<CommandOf<"CaptureReservation">>,
): Decision {
  const found = findOpenReservation(state, command.reservation_id);
  if ("rejection" in found) return rejected(found.rejection);
  const r = found.reservation;
  let amount = command.amount;
  let pricing: PriceComputation | null = null;
  if (amount === null) {
    // No amount: the cost of the reported usage at the price the reservation pinned.
    if (r.pricing === null) {
      return rejected(
        reject("price_not_pinned", "Send an amount: this reservation pinned no price to compute it from."),
      );
    }
    pricing = priceOf(r.pricing.rules, usageQuantities(command.usage));
    if (pricing === null) {
      return rejected(reject("unpriceable", "The usage at the pinned price costs more than the amount limit."));
    }
    amount = pricing.amount;
  }
  assertMinor(amount, "capture amount");
  assert(amount >= CAPTURE_AMOUNT_MINOR_MIN && amount <= AMOUNT_MINOR_MAX, "capture amount range");
  if (amount > r.amount && !command.allow_overage) {
    return rejected(
      reject(
        "capture_exceeds_reservation",
        "The capture amount exceeds the reservation; send allow_overage: true to charge it anyway.",
        {
          reserved: r.amount,
          requested: amount,
        },
      ),
    );
  }
  const settled = settleMove(state.book, r.funded_by, amount, now);
  const decision = acceptedWithinBounds(account, {
    type: "ReservationCaptured",
    reservation_id: r.reservation_id,
    reserved_amount: r.amount,
    amount,
    released_amount: Math.max(r.amount - amount, 0),
    overage: Math.max(amount - r.amount, 0),
    allow_overage: command.allow_overage,
    context: r.context,
    usage: command.usage,
    metadata: command.metadata,
    ...(pricing === null ? {} : { pricing }),
    ...settled.fields,
    ...limitsField(r.limits ?? []),
    ...callerField(r.caller),
  });
  return withLapses(decision, settled.book, now);
}

/**
 * After a hold's end: what it released to a lot that has expired expires at once, as the
 * LotExpired events that follow it in the same decision.
 */
function withLapses(decision: Decision, book: LotBook | null, now: number): Decision {
  if (decision.outcome !== "accepted") return decision;
  return accepted(...decision.events, ...lapseMove(book, now).bodies);
}

export function decideReleaseReservation(
  command: CommandOf<"ReleaseReservation">,
  { state, now }: DecideInput<CommandOf<"ReleaseReservation">>,
): Decision {
  const found = findOpenReservation(state, command.reservation_id);
  if ("rejection" in found) return rejected(found.rejection);
  const settled = settleMove(state.book, found.reservation.funded_by, 0, now);
  const earmarks = "earmarks" in settled.fields ? { earmarks: settled.fields.earmarks } : {};
  const released = accepted({
    type: "ReservationReleased",
    reservation_id: command.reservation_id,
    reserved_amount: found.reservation.amount,
    reason: command.reason,
    ...earmarks,
    ...limitsField(found.reservation.limits ?? []),
  });
  return withLapses(released, settled.book, now);
}

export function decideExtendReservation(
  command: CommandOf<"ExtendReservation">,
  { state, now }: DecideInput<CommandOf<"ExtendReservation">>,
): Decision {
  assertTtl(command.ttl_seconds);
  const found = findOpenReservation(state, command.reservation_id);
  if ("rejection" in found) return rejected(found.rejection);
  const r = found.reservation;
  return accepted({
    type: "ReservationExtended",
    reservation_id: r.reservation_id,
    extension_id: command.extension_id,
    ttl_seconds: command.ttl_seconds,
    previous_expires_at: r.expires_at,
    expires_at: new Date(now + command.ttl_seconds * 1000).toISOString(),
    on_expiry: command.on_expiry ?? r.on_expiry,
  });
}

export function decideChargeAccount(
  command: CommandOf<"ChargeAccount">,
  { account, state, now }: DecideInput<CommandOf<"ChargeAccount">>,
): Decision {
  assertAmount(command.amount);
  // A captured reservation is also a charge, so check the reservation namespace first.
  if (state.reservations.has(command.charge_id)) {
    return rejected(
      reject("idempotency_conflict", "The charge_id is already used by a reservation.", { field: "charge_id" }),
    );
  }
  assert(!state.charges.has(command.charge_id), "a known charge id is a replay");
  if (account.status === "frozen") return rejected(frozen());
  const funds = checkFunds(account, command.amount);
  if (funds !== null) return rejected(funds);
  const dims = dimensionsOf(command);
  const over = limitRefusal(state.limits, dims, command.amount, now);
  if (over !== null) return rejected(over);
  return acceptedWithinBounds(account, {
    ...spendMove(state.book, command.amount, now).fields,
    type: "AccountCharged",
    charge_id: command.charge_id,
    amount: command.amount,
    context: command.context,
    metadata: command.metadata,
    ...callerField(command.caller),
    ...limitsField(count(state.limits, dims, command.amount, now, "spent").counted),
  });
}

export function decideRefundCharge(
  command: CommandOf<"RefundCharge">,
  { account, state, now }: DecideInput<CommandOf<"RefundCharge">>,
): Decision {
  assertAmount(command.amount);
  const charge = state.charges.get(command.charge_id);
  if (charge === undefined) {
    return rejected(reject("charge_not_found", "No charge or captured reservation has this charge_id."));
  }
  const refundable = charge.amount - charge.refunded;
  if (command.amount > refundable) {
    return rejected(
      reject("refund_exceeds_charge", "The refunds of this charge would exceed its amount.", {
        charge_amount: charge.amount,
        refunded: charge.refunded,
        refundable,
      }),
    );
  }
  const back = refundMove(state.book, charge, command.amount, now, account.last_seq + 1, command.refund_id);
  // A refund may make lots active again (new ones, or spent ones credited back): within the bound.
  if (back.book !== null && state.book !== null) {
    const active = activeLots(back.book);
    if (active > LOTS_ACTIVE_MAX && active > activeLots(state.book)) return rejected(tooManyLots());
  }
  return acceptedWithinBounds(account, {
    type: "ChargeRefunded",
    refund_id: command.refund_id,
    charge_id: charge.charge_id,
    amount: command.amount,
    reason: command.reason,
    charge_amount: charge.amount,
    charge_refunded_total: charge.refunded + command.amount,
    ...back.fields,
    ...limitsField(charge.limits ?? []),
  });
}

export function decideAdjustBalance(
  command: CommandOf<"AdjustBalance">,
  { account, state, now }: DecideInput<CommandOf<"AdjustBalance">>,
): Decision {
  assertMinor(command.amount, "adjustment amount");
  assert(command.amount !== 0 && Math.abs(command.amount) <= AMOUNT_MINOR_MAX, "adjustment amount range");
  assert(command.reason.length > 0, "adjustment reason");
  assert(command.grant === undefined || command.amount > 0, "only a positive adjustment grants a lot");
  let fields = {};
  if (command.amount > 0) {
    const terms = command.grant ?? DEFAULT_GRANT;
    const refused = checkGrant(state.book, terms, command.amount, now);
    if (refused !== null) return rejected(refused);
    const lotId = adjustmentLotId(command.adjustment_id);
    fields = grantMove(state.book, lotId, terms, command.amount, account.last_seq + 1, now).fields;
  } else {
    fields = spendMove(state.book, -command.amount, now).fields;
  }
  return acceptedWithinBounds(account, {
    type: "BalanceAdjusted",
    adjustment_id: command.adjustment_id,
    amount: command.amount,
    reason: command.reason,
    ...fields,
  });
}

/**
 * Settlement by time never fails: the shell only names reservations that are open and due, and
 * an expiry is not refused for funds or limits (the estimate was already held).
 */
export function decideExpireReservations(
  command: CommandOf<"ExpireReservations">,
  { state, now }: DecideInput<CommandOf<"ExpireReservations">>,
): Decision {
  // Lots due first (their holds' parts stay), then each hold, each followed by what it lapsed.
  const due = lapseMove(state.book, now);
  const events: EventBody[] = [...due.bodies];
  let book = due.book;
  for (const id of command.reservation_ids) {
    const r = state.reservations.get(id);
    assert(r !== undefined && r.status === "open", `expiry of ${id}, which is not open`);
    assert(Date.parse(r.expires_at) <= now, `expiry of ${id} before it is due`);
    const captured = r.on_expiry === "capture" ? r.amount : 0;
    const settled = settleMove(book, r.funded_by, captured, now);
    events.push({
      type: "ReservationExpired",
      reservation_id: id,
      reserved_amount: r.amount,
      on_expiry: r.on_expiry,
      captured_amount: captured,
      released_amount: r.amount - captured,
      context: r.context,
      ...settled.fields,
      ...limitsField(r.limits ?? []),
      ...callerField(r.caller),
    });
    const lapsed = lapseMove(settled.book, now);
    events.push(...lapsed.bodies);
    book = lapsed.book;
  }
  return accepted(...events);
}

function findOpenReservation(
  state: LedgerState,
  reservationId: string,
): { reservation: ReservationState } | { rejection: Rejection } {
  const r = state.reservations.get(reservationId);
  if (r === undefined) {
    return { rejection: reject("reservation_not_found", "The account has no reservation with this id.") };
  }
  if (r.status !== "open") {
    return {
      rejection: reject("reservation_not_open", `The reservation is already ${r.status}.`, {
        reservation_status: r.status,
      }),
    };
  }
  return { reservation: r };
}

function checkFunds(account: AccountState, amount: Minor): Rejection | null {
  const spendable = available(account) + account.credit_limit;
  if (amount <= spendable) return null;
  return reject("insufficient_funds", "The amount exceeds the available balance plus the credit limit.", {
    available: available(account),
    credit_limit: account.credit_limit,
    requested: amount,
  });
}

/** A new spend (a hold or a direct charge) needs the funds first, then the bounds. */
function acceptedSpend(account: AccountState, amount: Minor, event: EventBody): Decision {
  const funds = checkFunds(account, amount);
  return funds === null ? acceptedWithinBounds(account, event) : rejected(funds);
}

/**
 * Accepts `event` unless the balance or the reserved total it leaves would pass the bound. The
 * deltas are the event's own effect, so this check cannot disagree with the fold.
 */
function acceptedWithinBounds(account: AccountState, event: EventBody): Decision {
  const effect = eventEffect(event);
  const limit = checkBalanceLimit(account, effect.balance, effect.reserved);
  return limit === null ? accepted(event) : rejected(limit);
}

function checkBalanceLimit(account: AccountState, balanceDelta: Minor, reservedDelta: Minor): Rejection | null {
  const balance = account.balance + balanceDelta;
  const reserved = account.reserved + reservedDelta;
  if (Math.abs(balance) <= BALANCE_ABS_MINOR_MAX && reserved <= BALANCE_ABS_MINOR_MAX) return null;
  return reject("balance_limit_exceeded", "The balance or the reserved total would leave the supported range.", {
    balance_abs_max: BALANCE_ABS_MINOR_MAX,
  });
}

function frozen(): Rejection {
  return reject("account_frozen", "The account is frozen: it accepts no new reservations or charges.");
}

function assertAmount(amount: Minor): void {
  assertMinor(amount, "amount");
  assert(amount >= AMOUNT_MINOR_MIN && amount <= AMOUNT_MINOR_MAX, `amount ${amount} out of range`);
}

function assertTtl(ttl: number): void {
  assert(Number.isSafeInteger(ttl) && ttl >= TTL_SECONDS_MIN && ttl <= TTL_SECONDS_MAX, `ttl ${ttl} out of range`);
}

function assertCreditLimit(limit: Minor): void {
  assertMinor(limit, "credit_limit");
  assert(limit >= 0 && limit <= CREDIT_LIMIT_MINOR_MAX, "credit_limit range");
}

function assertLowBalanceThreshold(threshold: Minor): void {
  assertMinor(threshold, "low_balance_threshold");
  assert(
    threshold >= LOW_BALANCE_THRESHOLD_MINOR_MIN && threshold <= LOW_BALANCE_THRESHOLD_MINOR_MAX,
    "low_balance_threshold range",
  );
}

// ---------------------------------------------------------------- spend limits (issue 28)

export function decideSetLimit(
  command: CommandOf<"SetLimit">,
  { state }: DecideInput<CommandOf<"SetLimit">>,
): Decision {
  const { terms } = command;
  assert((LIMIT_WINDOWS as readonly string[]).includes(terms.window), "a limit's window");
  assert(Number.isSafeInteger(terms.amount) && terms.amount >= 0 && terms.amount <= AMOUNT_MINOR_MAX, "limit amount");
  assert(
    Number.isSafeInteger(terms.threshold_percent) &&
      terms.threshold_percent >= LIMIT_THRESHOLD_PERCENT_MIN &&
      terms.threshold_percent <= LIMIT_THRESHOLD_PERCENT_MAX,
    "a limit's threshold",
  );
  const named = LIMIT_DIMENSIONS.filter((d) => terms.applies_to[d] !== undefined);
  assert(named.length > 0 && Object.keys(terms.applies_to).length === named.length, "applies_to names a dimension");
  const before = state.limits.get(command.limit_id);
  if (before === undefined && state.limits.size >= LIMITS_PER_ACCOUNT_MAX) {
    return rejected(
      reject("too_many_limits", `The account already has ${LIMITS_PER_ACCOUNT_MAX} spend limits.`, {
        limits_max: LIMITS_PER_ACCOUNT_MAX,
      }),
    );
  }
  // The same terms again are no change, and no event.
  if (
    before !== undefined &&
    sameTerms(before.limit, terms) &&
    before.limit.amount === terms.amount &&
    before.limit.threshold_percent === terms.threshold_percent
  ) {
    return accepted();
  }
  return accepted({ type: "LimitSet", limit_id: command.limit_id, terms });
}

export function decideRemoveLimit(
  command: CommandOf<"RemoveLimit">,
  { state }: DecideInput<CommandOf<"RemoveLimit">>,
): Decision {
  if (!state.limits.has(command.limit_id)) {
    return rejected(reject("limit_not_found", "The account has no spend limit with this id."));
  }
  return accepted({ type: "LimitRemoved", limit_id: command.limit_id });
}
