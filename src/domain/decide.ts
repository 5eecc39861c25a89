/**
 * `decide(command, state, now)`: the ledger's rules. Pure: no I/O, no clock, no randomness.
 * It returns the events to append, an idempotent replay of an earlier operation, or a named
 * rejection. Checks run in a fixed precedence order, documented per command below and in the
 * README; tests walk that order as tables (test/domain/decide.test.ts).
 *
 * Precedence for every money command:
 *   1. account_not_found
 *   2. idempotency: the same id again -> replay (same fields) or idempotency_conflict
 *   3. the referenced reservation / charge exists and is in the right state
 *   4. account_frozen (reserve and charge only)
 *   5. capacity and amount rules (too_many_open_reservations, capture_exceeds_reservation,
 *      refund_exceeds_charge, insufficient_funds)
 *   6. balance_limit_exceeded
 * Replays come before state checks on purpose: a retry of an operation that succeeded must
 * succeed again even if the account has since been frozen or spent.
 */

import { canonicalJson } from "./canonical";
import { chainHash, GENESIS_HASH, stampedFrom } from "./chain";
import type {
  AdjustBalance,
  CaptureReservation,
  ChargeAccount,
  Command,
  CreditFunds,
  ExpireReservations,
  ExtendReservation,
  OpenAccount,
  RefundCharge,
  ReleaseReservation,
  ReserveFunds,
  UpdateAccount,
} from "./commands";
import { type EventBody, eventEffect, type LedgerEvent, unreachable } from "./events";
import {
  AMOUNT_MINOR_MAX,
  AMOUNT_MINOR_MIN,
  BALANCE_ABS_MINOR_MAX,
  CAPTURE_AMOUNT_MINOR_MIN,
  CREDIT_LIMIT_MINOR_MAX,
  OPEN_RESERVATIONS_MAX,
  TTL_SECONDS_MAX,
  TTL_SECONDS_MIN,
} from "./limits";
import { assert, assertMinor, type Minor } from "./money";
import { type PriceComputation, priceOf, usageQuantities } from "./pricing";
import { type Rejection, reject } from "./rejections";
import { type AccountState, available, type LedgerState } from "./state";

export type Decision =
  | { outcome: "accepted"; events: EventBody[] }
  | { outcome: "replayed"; event: LedgerEvent }
  | { outcome: "rejected"; rejection: Rejection };

const accepted = (...events: EventBody[]): Decision => ({ outcome: "accepted", events });
const rejected = (rejection: Rejection): Decision => ({ outcome: "rejected", rejection });

/** The permanent idempotency key a command would consume (mirrors `operationKeyOfEvent`). */
export function operationKeyOfCommand(command: Command): string | null {
  switch (command.type) {
    case "OpenAccount":
      return "open";
    case "CreditFunds":
      return `credit:${command.credit_id}`;
    case "ReserveFunds":
      return `reserve:${command.reservation_id}`;
    case "CaptureReservation":
      return `capture:${command.reservation_id}`;
    case "ReleaseReservation":
      return `release:${command.reservation_id}`;
    case "ExtendReservation":
      return command.extension_id === null ? null : `extend:${command.reservation_id}:${command.extension_id}`;
    case "ChargeAccount":
      return `charge:${command.charge_id}`;
    case "RefundCharge":
      return `refund:${command.refund_id}`;
    case "AdjustBalance":
      return `adjustment:${command.adjustment_id}`;
    case "UpdateAccount":
    case "ExpireReservations":
      return null;
    default:
      return unreachable(command);
  }
}

/**
 * What the shell must load into the state slice before deciding: the reservations and charges
 * a command reads (including the id-collision checks between the two namespaces) and its key.
 */
export function lookupsOf(command: Command): {
  reservation_ids: string[];
  charge_ids: string[];
  operation_key: string | null;
} {
  const operation_key = operationKeyOfCommand(command);
  switch (command.type) {
    case "ReserveFunds":
      // A capture becomes the charge `reservation_id`, so a reservation may not reuse a charge id.
      return { reservation_ids: [command.reservation_id], charge_ids: [command.reservation_id], operation_key };
    case "CaptureReservation":
    case "ReleaseReservation":
    case "ExtendReservation":
      return { reservation_ids: [command.reservation_id], charge_ids: [], operation_key };
    case "ChargeAccount":
      return { reservation_ids: [command.charge_id], charge_ids: [command.charge_id], operation_key };
    case "RefundCharge":
      return { reservation_ids: [], charge_ids: [command.charge_id], operation_key };
    case "ExpireReservations":
      return { reservation_ids: [...command.reservation_ids], charge_ids: [], operation_key };
    case "OpenAccount":
    case "UpdateAccount":
    case "CreditFunds":
    case "AdjustBalance":
      return { reservation_ids: [], charge_ids: [], operation_key };
    default:
      return unreachable(command);
  }
}

export function decide(command: Command, state: LedgerState, now: number): Decision {
  assert(Number.isSafeInteger(now) && now > 0, "now must be epoch milliseconds");
  if (command.type === "OpenAccount") return decideOpenAccount(command, state);
  const account = state.account;
  if (account === null) {
    return rejected(reject("account_not_found", "The account does not exist."));
  }
  const replay = decideReplay(command, state);
  if (replay !== null) return replay;

  switch (command.type) {
    case "UpdateAccount":
      return decideUpdateAccount(command, account);
    case "CreditFunds":
      return decideCreditFunds(command, account);
    case "ReserveFunds":
      return decideReserveFunds(command, account, state, now);
    case "CaptureReservation":
      return decideCaptureReservation(command, account, state);
    case "ReleaseReservation":
      return decideReleaseReservation(command, state);
    case "ExtendReservation":
      return decideExtendReservation(command, state, now);
    case "ChargeAccount":
      return decideChargeAccount(command, account, state);
    case "RefundCharge":
      return decideRefundCharge(command, account, state);
    case "AdjustBalance":
      return decideAdjustBalance(command, account);
    case "ExpireReservations":
      return decideExpireReservations(command, state, now);
    default:
      return unreachable(command);
  }
}

function decideOpenAccount(command: OpenAccount, state: LedgerState): Decision {
  assertCreditLimit(command.credit_limit);
  if (state.account !== null) {
    const prior = state.operations.get("open");
    assert(prior?.type === "AccountOpened", "an open account has its AccountOpened event loaded");
    return replayOrConflict(prior, [
      ["account_id", command.account_id, prior.account_id],
      ["currency", command.currency, prior.currency],
      ["credit_limit", command.credit_limit, prior.credit_limit],
      ["metadata", command.metadata, prior.metadata],
    ]);
  }
  return accepted({
    type: "AccountOpened",
    account_id: command.account_id,
    currency: command.currency,
    credit_limit: command.credit_limit,
    metadata: command.metadata,
  });
}

function decideUpdateAccount(command: UpdateAccount, account: AccountState): Decision {
  const credit_limit = command.credit_limit ?? account.credit_limit;
  const status = command.status ?? account.status;
  assertCreditLimit(credit_limit);
  const changed: ("credit_limit" | "status")[] = [];
  if (credit_limit !== account.credit_limit) changed.push("credit_limit");
  if (status !== account.status) changed.push("status");
  // Setting the values an account already has is a no-op, not an event.
  if (changed.length === 0) return accepted();
  return accepted({ type: "AccountUpdated", credit_limit, status, changed });
}

function decideCreditFunds(command: CreditFunds, account: AccountState): Decision {
  assertAmount(command.amount);
  const limit = checkBalanceLimit(account, command.amount, 0);
  if (limit !== null) return rejected(limit);
  return accepted({
    type: "FundsCredited",
    credit_id: command.credit_id,
    amount: command.amount,
    reason: command.reason,
    metadata: command.metadata,
  });
}

function decideReserveFunds(command: ReserveFunds, account: AccountState, state: LedgerState, now: number): Decision {
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
  const funds = checkFunds(account, command.amount);
  if (funds !== null) return rejected(funds);
  const limit = checkBalanceLimit(account, 0, command.amount);
  if (limit !== null) return rejected(limit);
  return accepted({
    type: "FundsReserved",
    reservation_id: command.reservation_id,
    amount: command.amount,
    ttl_seconds: command.ttl_seconds,
    expires_at: new Date(now + command.ttl_seconds * 1000).toISOString(),
    on_expiry: command.on_expiry,
    context: command.context,
    metadata: command.metadata,
    ...(command.pricing === undefined || computation === null ? {} : { pricing: { ...command.pricing, computation } }),
  });
}

function decideCaptureReservation(command: CaptureReservation, account: AccountState, state: LedgerState): Decision {
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
  const limit = checkBalanceLimit(account, -amount, -r.amount);
  if (limit !== null) return rejected(limit);
  return accepted({
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
  });
}

function decideReleaseReservation(command: ReleaseReservation, state: LedgerState): Decision {
  const found = findOpenReservation(state, command.reservation_id);
  if ("rejection" in found) return rejected(found.rejection);
  return accepted({
    type: "ReservationReleased",
    reservation_id: command.reservation_id,
    reserved_amount: found.reservation.amount,
    reason: command.reason,
  });
}

function decideExtendReservation(command: ExtendReservation, state: LedgerState, now: number): Decision {
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

function decideChargeAccount(command: ChargeAccount, account: AccountState, state: LedgerState): Decision {
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
  const limit = checkBalanceLimit(account, -command.amount, 0);
  if (limit !== null) return rejected(limit);
  return accepted({
    type: "AccountCharged",
    charge_id: command.charge_id,
    amount: command.amount,
    context: command.context,
    metadata: command.metadata,
  });
}

function decideRefundCharge(command: RefundCharge, account: AccountState, state: LedgerState): Decision {
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
  const limit = checkBalanceLimit(account, command.amount, 0);
  if (limit !== null) return rejected(limit);
  return accepted({
    type: "ChargeRefunded",
    refund_id: command.refund_id,
    charge_id: charge.charge_id,
    amount: command.amount,
    reason: command.reason,
    charge_amount: charge.amount,
    charge_refunded_total: charge.refunded + command.amount,
  });
}

function decideAdjustBalance(command: AdjustBalance, account: AccountState): Decision {
  assertMinor(command.amount, "adjustment amount");
  assert(command.amount !== 0 && Math.abs(command.amount) <= AMOUNT_MINOR_MAX, "adjustment amount range");
  assert(command.reason.length > 0, "adjustment reason");
  const limit = checkBalanceLimit(account, command.amount, 0);
  if (limit !== null) return rejected(limit);
  return accepted({
    type: "BalanceAdjusted",
    adjustment_id: command.adjustment_id,
    amount: command.amount,
    reason: command.reason,
  });
}

/**
 * Settlement by time never fails: the shell only names reservations that are open and due, and
 * an expiry is not refused for funds or limits (the estimate was already held).
 */
function decideExpireReservations(command: ExpireReservations, state: LedgerState, now: number): Decision {
  const events: EventBody[] = [];
  for (const id of command.reservation_ids) {
    const r = state.reservations.get(id);
    assert(r !== undefined && r.status === "open", `expiry of ${id}, which is not open`);
    assert(Date.parse(r.expires_at) <= now, `expiry of ${id} before it is due`);
    const captured = r.on_expiry === "capture" ? r.amount : 0;
    events.push({
      type: "ReservationExpired",
      reservation_id: id,
      reserved_amount: r.amount,
      on_expiry: r.on_expiry,
      captured_amount: captured,
      released_amount: r.amount - captured,
      context: r.context,
    });
  }
  return accepted(...events);
}

/** Step 2 of the precedence: an id seen before is a replay or a conflict. */
function decideReplay(command: Command, state: LedgerState): Decision | null {
  const key = operationKeyOfCommand(command);
  if (key === null) return null;
  const prior = state.operations.get(key);
  if (prior === undefined) return null;
  switch (command.type) {
    case "CreditFunds":
      assert(prior.type === "FundsCredited", key);
      return replayOrConflict(prior, [
        ["amount", command.amount, prior.amount],
        ["reason", command.reason, prior.reason],
        ["metadata", command.metadata, prior.metadata],
      ]);
    case "ReserveFunds":
      assert(prior.type === "FundsReserved", key);
      // A priced reservation is compared by what was asked (price and estimate), not by the rules
      // resolved at the time: a retry after a price change still replays the original.
      return replayOrConflict(prior, [
        ["price", command.pricing?.price ?? null, prior.pricing?.price ?? null],
        ["estimate", command.pricing?.estimate ?? null, prior.pricing?.estimate ?? null],
        [
          "amount",
          command.pricing === undefined ? command.amount : null,
          prior.pricing === undefined ? prior.amount : null,
        ],
        ["ttl_seconds", command.ttl_seconds, prior.ttl_seconds],
        ["on_expiry", command.on_expiry, prior.on_expiry],
        ["context", command.context, prior.context],
        ["metadata", command.metadata, prior.metadata],
      ]);
    case "CaptureReservation":
      assert(prior.type === "ReservationCaptured", key);
      return replayOrConflict(prior, [
        ["amount", command.amount, prior.pricing === undefined ? prior.amount : null],
        ["allow_overage", command.allow_overage, prior.allow_overage],
        ["usage", command.usage, prior.usage],
        ["metadata", command.metadata, prior.metadata],
      ]);
    case "ReleaseReservation":
      assert(prior.type === "ReservationReleased", key);
      return replayOrConflict(prior, [["reason", command.reason, prior.reason]]);
    case "ExtendReservation":
      assert(prior.type === "ReservationExtended", key);
      return replayOrConflict(prior, [
        ["ttl_seconds", command.ttl_seconds, prior.ttl_seconds],
        // Omitting on_expiry means "keep it", so only an explicit value can differ.
        ["on_expiry", command.on_expiry ?? prior.on_expiry, prior.on_expiry],
      ]);
    case "ChargeAccount":
      assert(prior.type === "AccountCharged", key);
      return replayOrConflict(prior, [
        ["amount", command.amount, prior.amount],
        ["context", command.context, prior.context],
        ["metadata", command.metadata, prior.metadata],
      ]);
    case "RefundCharge":
      assert(prior.type === "ChargeRefunded", key);
      return replayOrConflict(prior, [
        ["charge_id", command.charge_id, prior.charge_id],
        ["amount", command.amount, prior.amount],
        ["reason", command.reason, prior.reason],
      ]);
    case "AdjustBalance":
      assert(prior.type === "BalanceAdjusted", key);
      return replayOrConflict(prior, [
        ["amount", command.amount, prior.amount],
        ["reason", command.reason, prior.reason],
      ]);
    case "OpenAccount":
    case "UpdateAccount":
    case "ExpireReservations":
      return null;
    default:
      return unreachable(command);
  }
}

function replayOrConflict(prior: LedgerEvent, fields: [string, unknown, unknown][]): Decision {
  for (const [field, requested, original] of fields) {
    if (canonicalJson(requested) !== canonicalJson(original)) {
      return rejected(reject("idempotency_conflict", `This id was already used with a different ${field}.`, { field }));
    }
  }
  return { outcome: "replayed", event: prior };
}

function findOpenReservation(
  state: LedgerState,
  reservationId: string,
): { reservation: NonNullable<ReturnType<LedgerState["reservations"]["get"]>> } | { rejection: Rejection } {
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

/**
 * Stamps decided event bodies with their seq, time, id, the balances after each and the hash
 * chain, in order. `nextEventId` is the shell's id source (ULIDs in production, a counter in
 * tests). Event time never goes backwards, even if the clock does.
 */
export function stamp(
  bodies: readonly EventBody[],
  account: AccountState | null,
  now: number,
  nextEventId: () => string,
): LedgerEvent[] {
  let seq = account?.last_seq ?? 0;
  let balance = account?.balance ?? 0;
  let reserved = account?.reserved ?? 0;
  let prevHash = account?.head_hash ?? GENESIS_HASH;
  const at = new Date(account === null ? now : Math.max(now, Date.parse(account.updated_at))).toISOString();
  return bodies.map((body) => {
    const effect = eventEffect(body);
    seq += 1;
    balance += effect.balance;
    reserved += effect.reserved;
    assert(Number.isSafeInteger(balance) && Number.isSafeInteger(reserved), "balances stay exact");
    const unhashed = { ...body, seq, event_id: nextEventId(), at, balance_after: balance, reserved_after: reserved };
    const from = prevHash;
    prevHash = chainHash(prevHash, unhashed);
    const event = { ...unhashed, hash: prevHash } as LedgerEvent;
    stampedFrom.set(event, from);
    return event;
  });
}
