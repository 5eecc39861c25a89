/**
 * The account's state and `evolve`, the only function that changes it. State is the fold of
 * the events: `state = events.reduce(evolve, initialState())`.
 *
 * The full state (every reservation, charge and operation ever) is what the fold of a whole
 * log yields and what the reference checks use. The Durable Object never holds all of it: it
 * materialises only the slice a command touches (the account, one reservation, one charge,
 * one prior operation) and evolves that slice with this same function.
 */

import { canonicalJson } from "./canonical";
import { expectedHash, GENESIS_HASH, stampedFrom } from "./chain";
import type { AccountStatus, Caller, Metadata, OnExpiry, Usage, UsageContext } from "./commands";
import { endsReservation, eventEffect, type LedgerEvent, type ReservationEnd, unreachable } from "./events";
import { eventKeyString } from "./keys";
import { evolveLimits } from "./limit-events";
import { evolveBook, refundMove } from "./lot-events";
import type { Funding, LotBook, Returned } from "./lots";
import { assert, type Minor } from "./money";
import type { PinnedPricing } from "./pricing";
import { type Counted, emptyLimits, type LimitBook } from "./spend-limits";

export interface AccountState {
  account_id: string;
  currency: string;
  credit_limit: Minor;
  status: AccountStatus;
  /** Posted balance. */
  balance: Minor;
  /** Sum of the amounts of open reservations. */
  reserved: Minor;
  open_reservations: number;
  last_seq: number;
  /** Hash of the newest event: the head of the chain. */
  head_hash: string;
  created_at: string;
  updated_at: string;
  metadata: Metadata;
  /** Spendable balance below which `account.low_balance` is sent (issue 14); null: off. */
  low_balance_threshold: Minor | null;
}

export type ReservationStatus = "open" | "captured" | "released" | "expired";

export interface ReservationState {
  reservation_id: string;
  amount: Minor;
  status: ReservationStatus;
  on_expiry: OnExpiry;
  ttl_seconds: number;
  expires_at: string;
  created_at: string;
  settled_at: string | null;
  /** Charged when the reservation ended (capture, or expiry by the capture rule). */
  captured_amount: Minor | null;
  released_amount: Minor | null;
  overage: Minor;
  context: UsageContext;
  metadata: Metadata;
  usage: Usage | null;
  /** The price pinned when reserving, or null for a plain amount. */
  pricing: PinnedPricing | null;
  /** Seq of the FundsReserved event and of the event that ended it. */
  reserve_seq: number;
  end_seq: number | null;
  /** The lots the hold earmarks (null: made before the account kept lots, and not opened since). */
  funded_by: Funding[] | null;
  /** The spend limits it counts against (issue 28); absent where none matched. */
  limits?: Counted[];
  /** Who it is for (issue 28): the key and project, as authentication gave them. */
  caller?: Caller;
}

export type ChargeKind = "direct" | "capture";

export interface ChargeState {
  charge_id: string;
  kind: ChargeKind;
  amount: Minor;
  refunded: Minor;
  seq: number;
  /** What paid for it (null: charged before the account kept lots: its legacy lot paid). */
  funded_by: Funding[] | null;
  /** Where its refunds went since the account keeps lots. */
  returned: Returned[];
  /** The spend limits' windows it counted in (issue 28): its refunds give back there. */
  limits?: Counted[];
}

export interface LedgerState {
  account: AccountState | null;
  reservations: Map<string, ReservationState>;
  charges: Map<string, ChargeState>;
  /** Encoded idempotency key (keys.ts `encodeKey`) -> the event that applied it. */
  operations: Map<string, LedgerEvent>;
  /**
   * The account's lots and debt (issue 27), or null while it keeps none. The object's slice holds
   * every lot with credit in it and those the command names; the others are unchanged.
   */
  book: LotBook | null;
  /** The account's spend limits and their current windows' usage (issue 28), all of them. */
  limits: LimitBook;
}

export function initialState(): LedgerState {
  return {
    account: null,
    reservations: new Map(),
    charges: new Map(),
    operations: new Map(),
    book: null,
    limits: emptyLimits(),
  };
}

export function available(account: Pick<AccountState, "balance" | "reserved">): Minor {
  return account.balance - account.reserved;
}

/**
 * Applies one event. It mutates and returns the maps of `state` (the fold owns its state, and
 * copying maps per event would make a replay quadratic); the account record is replaced.
 * Asserts that the event is applicable: a log that breaks a rule is corrupt, not a request.
 */
export function evolve(state: LedgerState, event: LedgerEvent): LedgerState {
  const previous = state.account;
  assertFollows(previous, event);
  let account: AccountState =
    previous === null
      ? openedAccount(event)
      : {
          ...previous,
          balance: event.balance_after,
          reserved: event.reserved_after,
          last_seq: event.seq,
          head_hash: event.hash,
          updated_at: event.at,
        };
  switch (event.type) {
    case "AccountOpened":
    case "FundsCredited":
    case "BalanceAdjusted":
    case "LotExpired":
    case "LimitSet":
    case "LimitRemoved":
      break;
    case "LotsOpened":
      // Every open hold, once, with what funds all of it (its lot earmarks and the rest unfunded).
      assert(event.earmarks.length === account.open_reservations, `seq ${event.seq}: LotsOpened names every open hold`);
      for (const hold of event.earmarks) {
        const r = openReservation(state, hold.reservation_id);
        assert(r.funded_by === null, `seq ${event.seq}: hold ${r.reservation_id} is named once`);
        const funded = hold.funded_by.reduce((sum, part) => sum + part.amount, 0);
        assert(funded === r.amount, `seq ${event.seq}: hold ${r.reservation_id} is funded in full`);
        state.reservations.set(r.reservation_id, { ...r, funded_by: hold.funded_by });
      }
      break;
    case "AccountUpdated":
      account = {
        ...account,
        credit_limit: event.credit_limit,
        status: event.status,
        low_balance_threshold:
          event.low_balance_threshold === undefined ? account.low_balance_threshold : event.low_balance_threshold,
      };
      break;
    case "FundsReserved":
      assert(!state.reservations.has(event.reservation_id), `reservation ${event.reservation_id} reused`);
      state.reservations.set(event.reservation_id, reservationOpened(event));
      account = { ...account, open_reservations: account.open_reservations + 1 };
      break;
    case "ReservationExtended":
      evolveExtension(state, event);
      break;
    case "ReservationCaptured":
    case "ReservationReleased":
    case "ReservationExpired":
      evolveReservationEnd(state, event);
      account = { ...account, open_reservations: account.open_reservations - 1 };
      break;
    case "AccountCharged":
      evolveDirectCharge(state, event);
      break;
    case "ChargeRefunded":
      evolveRefund(state, event);
      break;
    default:
      unreachable(event);
  }
  assert(account.open_reservations >= 0, "open_reservations < 0");
  const key = eventKeyString(event);
  if (key !== null) {
    assert(!state.operations.has(key), `operation ${key} applied twice`);
    state.operations.set(key, event);
  }
  state.book = evolveBook(state.book, event);
  state.limits = evolveLimits(state.limits, event);
  state.account = account;
  return state;
}

/**
 * The event is the next link of this account's log: its seq follows, its after-balances are
 * the previous ones plus its effect, reserved stays non-negative, and its hash chains.
 */
function assertFollows(previous: AccountState | null, event: LedgerEvent): void {
  if (event.type === "AccountOpened") {
    assert(previous === null, "AccountOpened on an open account");
    assert(event.seq === 1, "AccountOpened must be seq 1");
  } else {
    assert(previous !== null, `${event.type} before AccountOpened`);
    assert(event.seq === previous.last_seq + 1, `seq ${event.seq} follows ${previous.last_seq}`);
  }
  const effect = eventEffect(event);
  const balance = (previous?.balance ?? 0) + effect.balance;
  const reserved = (previous?.reserved ?? 0) + effect.reserved;
  assert(balance === event.balance_after, `seq ${event.seq}: balance_after ${event.balance_after} != ${balance}`);
  assert(reserved === event.reserved_after, `seq ${event.seq}: reserved_after ${event.reserved_after} != ${reserved}`);
  assert(reserved >= 0, `seq ${event.seq}: reserved < 0`);
  const head = previous?.head_hash ?? GENESIS_HASH;
  const stampedOn = stampedFrom.get(event);
  assert(
    stampedOn === undefined ? event.hash === expectedHash(head, event) : stampedOn === head,
    `seq ${event.seq}: hash does not chain from the previous event`,
  );
}

function evolveExtension(state: LedgerState, event: Extract<LedgerEvent, { type: "ReservationExtended" }>): void {
  const r = openReservation(state, event.reservation_id);
  state.reservations.set(r.reservation_id, {
    ...r,
    expires_at: event.expires_at,
    ttl_seconds: event.ttl_seconds,
    on_expiry: event.on_expiry,
  });
}

/** A reservation ends once; a capture (by call or by expiry) also opens its charge. */
function evolveReservationEnd(state: LedgerState, event: ReservationEnd): void {
  const r = openReservation(state, event.reservation_id);
  assert(r.amount === event.reserved_amount, `seq ${event.seq}: reserved_amount differs from the hold`);
  assert(sameCounted(r.limits, event.limits), `seq ${event.seq}: the end names the limits its hold counted in`);
  const caller = event.type === "ReservationReleased" ? undefined : event.caller;
  assert(
    event.type === "ReservationReleased" || canonicalJson(r.caller ?? null) === canonicalJson(caller ?? null),
    `seq ${event.seq}: a charging end names its hold's caller`,
  );
  const ended = reservationEnded(r, event);
  state.reservations.set(r.reservation_id, ended);
  if (ended.captured_amount !== null) {
    const funded_by = event.type === "ReservationReleased" ? undefined : event.funded_by;
    openCharge(state, r.reservation_id, "capture", ended.captured_amount, event.seq, funded_by, r.limits);
  }
}

function evolveDirectCharge(state: LedgerState, event: Extract<LedgerEvent, { type: "AccountCharged" }>): void {
  openCharge(state, event.charge_id, "direct", event.amount, event.seq, event.funded_by, event.limits);
}

const sameCounted = (a: readonly Counted[] | undefined, b: readonly Counted[] | undefined): boolean =>
  canonicalJson(a ?? []) === canonicalJson(b ?? []);

/** A charge id is used once, by a direct charge or by a capture (charge_id = reservation_id). */
function openCharge(
  state: LedgerState,
  chargeId: string,
  kind: ChargeKind,
  amount: Minor,
  seq: number,
  funded_by: Funding[] | undefined,
  limits: Counted[] | undefined,
): void {
  assert(!state.charges.has(chargeId), `charge ${chargeId} reused`);
  state.charges.set(chargeId, {
    charge_id: chargeId,
    kind,
    amount,
    refunded: 0,
    seq,
    funded_by: funded_by ?? null,
    returned: [],
    ...(limits === undefined ? {} : { limits }),
  });
}

function evolveRefund(state: LedgerState, event: Extract<LedgerEvent, { type: "ChargeRefunded" }>): void {
  const charge = state.charges.get(event.charge_id);
  assert(charge !== undefined, `refund of unknown charge ${event.charge_id}`);
  assert(
    sameCounted(charge.limits, event.limits),
    `seq ${event.seq}: the refund names the limits its charge counted in`,
  );
  if (state.book !== null) {
    // Where the refund went is what the charge's sources give, in the reverse of their order.
    const at = Date.parse(event.at);
    const back = refundMove(state.book, charge, event.amount, at, event.seq, event.refund_id);
    const recorded = { returned_to: event.returned_to, created_lots: event.created_lots };
    assert(canonicalJson(recorded) === canonicalJson(back.fields), `seq ${event.seq}: the refund's returned_to`);
  }
  const refunded = charge.refunded + event.amount;
  assert(refunded <= charge.amount, `refunds of ${charge.charge_id} exceed the charge`);
  assert(refunded === event.charge_refunded_total, `seq ${event.seq}: charge_refunded_total differs`);
  const returned = event.returned_to === undefined ? charge.returned : [...charge.returned, ...event.returned_to];
  state.charges.set(charge.charge_id, { ...charge, refunded, returned });
}

export function openedAccount(event: LedgerEvent): AccountState {
  assert(event.type === "AccountOpened", "first event must be AccountOpened");
  return {
    account_id: event.account_id,
    currency: event.currency,
    credit_limit: event.credit_limit,
    status: "active",
    balance: 0,
    reserved: 0,
    open_reservations: 0,
    last_seq: event.seq,
    head_hash: event.hash,
    created_at: event.at,
    updated_at: event.at,
    metadata: event.metadata,
    low_balance_threshold: null,
  };
}

function openReservation(state: LedgerState, reservationId: string): ReservationState {
  const r = state.reservations.get(reservationId);
  assert(r !== undefined, `unknown reservation ${reservationId}`);
  assert(r.status === "open", `reservation ${reservationId} ended twice`);
  return r;
}

export function reservationOpened(event: Extract<LedgerEvent, { type: "FundsReserved" }>): ReservationState {
  return {
    reservation_id: event.reservation_id,
    amount: event.amount,
    status: "open",
    on_expiry: event.on_expiry,
    ttl_seconds: event.ttl_seconds,
    expires_at: event.expires_at,
    created_at: event.at,
    settled_at: null,
    captured_amount: null,
    released_amount: null,
    overage: 0,
    context: event.context,
    metadata: event.metadata,
    usage: null,
    pricing:
      event.pricing === undefined
        ? null
        : { price: event.pricing.price, rules: event.pricing.rules, estimate: event.pricing.estimate },
    reserve_seq: event.seq,
    end_seq: null,
    funded_by: event.funded_by ?? null,
    ...(event.limits === undefined ? {} : { limits: event.limits }),
    ...(event.caller === undefined ? {} : { caller: event.caller }),
  };
}

export function reservationEnded(r: ReservationState, event: ReservationEnd): ReservationState {
  // The end copies the earmarks it settled: a hold made before lots has them from LotsOpened.
  const base = { ...r, settled_at: event.at, end_seq: event.seq, funded_by: event.earmarks ?? r.funded_by };
  switch (event.type) {
    case "ReservationCaptured":
      return {
        ...base,
        status: "captured",
        captured_amount: event.amount,
        released_amount: event.released_amount,
        overage: event.overage,
        usage: event.usage,
      };
    case "ReservationReleased":
      return { ...base, status: "released", captured_amount: null, released_amount: event.reserved_amount };
    case "ReservationExpired":
      return {
        ...base,
        status: "expired",
        captured_amount: event.on_expiry === "capture" ? event.captured_amount : null,
        released_amount: event.released_amount,
      };
    default:
      return unreachable(event);
  }
}

/**
 * What the account object keeps of a reservation once it has ended (its row's columns, no
 * state): its key record (reserve_seq, end_seq) and what its two events do not say, the terms
 * an extension may have changed. `endedReservation` rebuilds the whole state from it and the two
 * events; the fold and the rebuild must agree (asserted on every rebuild, tested on every kind
 * of end).
 */
export interface EndedReservation {
  reservation_id: string;
  status: Exclude<ReservationStatus, "open">;
  amount: Minor;
  expires_at_ms: number;
  ttl_seconds: number;
  on_expiry: OnExpiry;
  reserve_seq: number;
  end_seq: number;
}

/** A reservation's record (the columns its row keeps), open or ended. */
export function reservationRecord(r: ReservationState) {
  return {
    reservation_id: r.reservation_id,
    status: r.status,
    amount: r.amount,
    expires_at_ms: Date.parse(r.expires_at),
    ttl_seconds: r.ttl_seconds,
    on_expiry: r.on_expiry,
    reserve_seq: r.reserve_seq,
    end_seq: r.end_seq,
  };
}

export function endedRecord(r: ReservationState): EndedReservation {
  const record = reservationRecord(r);
  assert(record.status !== "open" && record.end_seq !== null, `reservation ${r.reservation_id} has ended`);
  return { ...record, status: record.status, end_seq: record.end_seq };
}

/**
 * The state of an ended reservation from its record, its FundsReserved event and the event that
 * ended it: exactly what the fold gives (`expires_at` is always an ISO string of whole ms,
 * rules.ts). Asserts the events are this reservation's, so a wrong row cannot pass for one.
 */
export function endedReservation(record: EndedReservation, reserved: LedgerEvent, end: LedgerEvent): ReservationState {
  const id = record.reservation_id;
  assert(
    reserved.type === "FundsReserved" && reserved.reservation_id === id && reserved.seq === record.reserve_seq,
    `event ${record.reserve_seq} reserved ${id}`,
  );
  assert(reserved.amount === record.amount, `reservation ${id}: the row's amount is the reserved amount`);
  assert(
    endsReservation(end) && end.reservation_id === id && end.seq === record.end_seq,
    `event ${record.end_seq} ended ${id}`,
  );
  const opened: ReservationState = {
    ...reservationOpened(reserved),
    on_expiry: record.on_expiry,
    ttl_seconds: record.ttl_seconds,
    expires_at: new Date(record.expires_at_ms).toISOString(),
  };
  const ended = reservationEnded(opened, end);
  assert(ended.status === record.status, `reservation ${id}: the row's status is the end event's`);
  return ended;
}

/** Folds a whole log from the initial state. */
export function fold(events: Iterable<LedgerEvent>): LedgerState {
  let state = initialState();
  for (const event of events) state = evolve(state, event);
  return state;
}
