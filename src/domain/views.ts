/**
 * What callers see. Every response body is rendered from events and state by these pure
 * functions, so the response of an idempotent replay is the same function of the same event
 * as the original response.
 */
import { type GrantFields, type LedgerEvent, unreachable } from "./events";
import type { Funding, Lot, LotBook } from "./lots";
import { assert } from "./money";
import { type AccountState, available, openedAccount, type ReservationState, reservationOpened } from "./state";

export function accountView(account: AccountState, book: LotBook | null = null) {
  return {
    account_id: account.account_id,
    currency: account.currency,
    balance: account.balance,
    reserved: account.reserved,
    available: available(account),
    credit_limit: account.credit_limit,
    status: account.status,
    open_reservations: account.open_reservations,
    last_seq: account.last_seq,
    head_hash: account.head_hash,
    created_at: account.created_at,
    updated_at: account.updated_at,
    metadata: account.metadata,
    low_balance_threshold: account.low_balance_threshold,
    ...lotBalances(book),
  };
}

/** The balance by kind of lot, and the debt: balance = paid + promotional - debt. */
export function lotBalances(book: LotBook | null) {
  const balance_by_kind = { paid: book?.totals.paid ?? 0, promotional: book?.totals.promotional ?? 0 };
  return { balance_by_kind, debt: book?.debt ?? 0 };
}

export type LotStatus = "active" | "expired" | "depleted";
export const LOT_STATUSES: readonly LotStatus[] = ["active", "expired", "depleted"];

/** A lot's status at `nowMs`: expired once its time has come, else depleted once spent. */
export function lotStatus(lot: Lot, nowMs: number): LotStatus {
  if (lot.expires_at_ms !== null && lot.expires_at_ms <= nowMs) return "expired";
  return lot.remaining > 0 ? "active" : "depleted";
}

export function lotView(lot: Lot, createdAt: string, nowMs: number) {
  return {
    lot_id: lot.lot_id,
    kind: lot.kind,
    priority: lot.priority,
    amount: lot.amount,
    remaining: lot.remaining,
    held: lot.held,
    expired_amount: lot.expired,
    expires_at: lot.expires_at_ms === null ? null : new Date(lot.expires_at_ms).toISOString(),
    created_at: createdAt,
    status: lotStatus(lot, nowMs),
  };
}
export type LotView = ReturnType<typeof lotView>;
export type AccountView = ReturnType<typeof accountView>;

/** The account's balances right after `event`. */
export function balancesAfter(event: LedgerEvent, account: Pick<AccountState, "account_id" | "currency">) {
  const after = { balance: event.balance_after, reserved: event.reserved_after };
  return {
    account_id: account.account_id,
    currency: account.currency,
    ...after,
    available: available(after),
    last_seq: event.seq,
    updated_at: event.at,
  };
}
export type BalancesView = ReturnType<typeof balancesAfter>;

export function reservationView(r: ReservationState) {
  return {
    reservation_id: r.reservation_id,
    status: r.status,
    amount: r.amount,
    captured_amount: r.captured_amount,
    released_amount: r.released_amount,
    overage: r.overage,
    on_expiry: r.on_expiry,
    ttl_seconds: r.ttl_seconds,
    expires_at: r.expires_at,
    created_at: r.created_at,
    settled_at: r.settled_at,
    context: r.context,
    usage: r.usage,
    pricing: r.pricing,
    metadata: r.metadata,
    ...(r.funded_by === null ? {} : { funded_by: r.funded_by }),
  };
}
export type ReservationView = ReturnType<typeof reservationView>;

/**
 * The response body of the operation that wrote `event`. `reservation` is the reservation's
 * state after the event where the event concerns one: for a capture or release that state is
 * final (a reservation ends once), and for an extension the fields that the extension did not
 * set never change, so a replay renders the same bytes as the original.
 */
export function operationResult(
  event: LedgerEvent,
  account: Pick<AccountState, "account_id" | "currency">,
  reservation: ReservationState | undefined,
) {
  const balances = balancesAfter(event, account);
  switch (event.type) {
    case "AccountOpened":
      return accountView(openedAccount(event));
    case "FundsCredited": {
      const { credit_id, amount, reason, metadata } = event;
      return {
        credit: { credit_id, amount, reason, metadata, ...grantView(event), seq: event.seq, created_at: event.at },
        account: balances,
      };
    }
    case "FundsReserved": {
      // A hold sized to what is affordable says what it asked for (and, priced, the tokens it covers).
      const requested = event.requested === undefined ? {} : { requested: event.requested };
      return { reservation: reservationView(reservationOpened(event)), ...requested, account: balances };
    }
    case "ReservationExtended":
      assert(reservation !== undefined, "extension result needs its reservation");
      return { reservation: reservationView(atExtension(reservation, event)), account: balances };
    case "ReservationCaptured":
      assert(reservation !== undefined && reservation.end_seq === event.seq, "capture result needs its reservation");
      return {
        reservation: reservationView(reservation),
        charge: {
          charge_id: event.reservation_id,
          amount: event.amount,
          overage: event.overage,
          ...fundedView(event.funded_by),
        },
        account: balances,
      };
    case "ReservationReleased":
    case "ReservationExpired":
      assert(reservation !== undefined && reservation.end_seq === event.seq, "release result needs its reservation");
      return { reservation: reservationView(reservation), account: balances };
    case "AccountCharged": {
      const { charge_id, amount, context, metadata } = event;
      const charge = {
        charge_id,
        amount,
        context,
        metadata,
        ...fundedView(event.funded_by),
        seq: event.seq,
        created_at: event.at,
      };
      return { charge, account: balances };
    }
    case "ChargeRefunded": {
      const { refund_id, charge_id, amount, reason, charge_amount, charge_refunded_total } = event;
      const returned = event.returned_to === undefined ? {} : { returned_to: event.returned_to };
      const refund = { refund_id, charge_id, amount, reason, charge_amount, charge_refunded_total, ...returned };
      return { refund: { ...refund, seq: event.seq, created_at: event.at }, account: balances };
    }
    case "BalanceAdjusted": {
      const { adjustment_id, amount, reason } = event;
      const lots = amount > 0 ? grantView(event) : fundedView(event.funded_by);
      const adjustment = { adjustment_id, amount, reason, ...lots, seq: event.seq, created_at: event.at };
      return { adjustment, account: balances };
    }
    case "AccountUpdated":
    case "LotExpired":
    case "LotsOpened":
    case "LimitSet":
    case "LimitRemoved":
      return { account: balances };
    default:
      return unreachable(event);
  }
}

/** A grant's lot, as its answer shows it (nothing for a credit from before lots). */
function grantView(event: GrantFields) {
  if (event.lot_id === undefined || event.grant === undefined) return {};
  return { lot_id: event.lot_id, grant: event.grant, applied_to_debt: event.applied_to_debt ?? 0 };
}

/** What paid for a spend (nothing for one from before lots). */
const fundedView = (funded_by: Funding[] | undefined) => (funded_by === undefined ? {} : { funded_by });

/**
 * The reservation as the extension left it. The fields an extension does not set never change
 * once the hold is open, so a replay renders the same bytes as the original even after the
 * reservation has ended.
 */
function atExtension(
  reservation: ReservationState,
  event: Extract<LedgerEvent, { type: "ReservationExtended" }>,
): ReservationState {
  return {
    ...reservation,
    status: "open",
    settled_at: null,
    captured_amount: null,
    released_amount: null,
    overage: 0,
    usage: null,
    end_seq: null,
    ttl_seconds: event.ttl_seconds,
    expires_at: event.expires_at,
    on_expiry: event.on_expiry,
  };
}
