/**
 * Lots in the event log (issue 27): how each event moves an account's book of lots, and the lot
 * fields a decision puts on its events. Both sides call the same arithmetic (lots.ts): the rules
 * compute the fields, and `evolveBook` computes them again from the book before the event and
 * asserts that the event recorded exactly that. A refund is the one movement applied from what it
 * recorded (its sources are the charge's, which the book does not hold), checked part by part.
 *
 * An account keeps lots from its first event (`AccountOpened.lots`) or from its `LotsOpened`
 * event (accounts opened before lots existed, decision 0006); before that its book is null and
 * its events carry no lot fields.
 */
import { canonicalJson } from "./canonical";
import { DEFAULT_GRANT } from "./commands";
import type {
  EventBody,
  GrantFields,
  LedgerEvent,
  LotExpired,
  LotGrant,
  LotsOpened,
  OpenedLot,
  RefundedLot,
} from "./events";
import {
  applyRefund,
  assertBook,
  assertMoved,
  bookOf,
  earmark,
  emptyBook,
  expireDue,
  expireLot,
  type Funding,
  grant,
  LOTS_ACTIVE_MAX,
  type Lot,
  type LotBook,
  type RefundLot,
  type Returned,
  refund,
  settleHold,
  spend,
} from "./lots";
import { assert, type Minor } from "./money";

/** The lot that holds the balance of an account from before lots existed (decision 0006). */
export const LEGACY_LOT_ID = "legacy/balance";
/** A positive adjustment's lot: ids of other kinds may not contain "/", so none can collide. */
export const adjustmentLotId = (adjustmentId: string): string => `adjustment/${adjustmentId}`;
/** The `n`th lot a refund creates (n from 1). */
export const refundLotId = (refundId: string, n: number): string => `refund/${refundId}/${n}`;

export const expiresAtMs = (iso: string | null): number | null => (iso === null ? null : Date.parse(iso));
export const isoOrNull = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The parts of a funding that name a lot (not the debt, not a hold's unfunded part): a hold's earmarks, a charge's lot sources. */
export const lotParts = (funded_by: readonly Funding[]): Funding[] => funded_by.filter((f) => f.lot_id !== null);

/** What a hold records: the lots it earmarked, then what no lot covers (`lot_id` null). */
export function holdFunding(earmarked: readonly Funding[], unfunded: Minor): Funding[] {
  return unfunded > 0 ? [...earmarked, { lot_id: null, amount: unfunded }] : [...earmarked];
}

/** The lot a grant event creates, as the book keeps it before the grant's debt payment. */
export function grantedLot(lotId: string, terms: LotGrant, amount: Minor, seq: number) {
  return {
    lot_id: lotId,
    kind: terms.kind,
    priority: terms.priority,
    amount,
    expires_at_ms: expiresAtMs(terms.expires_at),
    created_seq: seq,
  };
}

export const refundedLot = (lot: RefundLot): RefundedLot => ({
  lot_id: lot.lot_id,
  kind: lot.kind,
  priority: lot.priority,
  expires_at: isoOrNull(lot.expires_at_ms),
});

/** The book after `event`; null while the account keeps no lots. Asserts the event's lot fields. */
export function evolveBook(book: LotBook | null, event: LedgerEvent): LotBook | null {
  if (event.type === "AccountOpened") return event.lots === true ? emptyBook() : null;
  if (event.type === "LotsOpened") {
    assert(book === null, "lots are opened once");
    const opened = openedBook(event.lots, event.debt, event.earmarks, event.seq);
    assertBook(opened, event.balance_after);
    return opened;
  }
  if (book === null) {
    assert(!hasLotFields(event), `seq ${event.seq}: lot fields before the account keeps lots`);
    return null;
  }
  const next = moved(book, event, Date.parse(event.at));
  assertMoved(book, next, event.balance_after);
  // No movement takes the lots with credit past the bound (one already past it may only shrink).
  const active = activeLots(next);
  assert(active <= LOTS_ACTIVE_MAX || active <= activeLots(book), `seq ${event.seq}: at most LOTS_ACTIVE_MAX lots`);
  return next;
}

function moved(book: LotBook, event: LedgerEvent, now: number): LotBook {
  const at = `seq ${event.seq}`;
  switch (event.type) {
    case "FundsCredited":
      return granted(book, event, event.amount, event.seq, now);
    case "BalanceAdjusted":
      if (event.amount > 0) return granted(book, event, event.amount, event.seq, now);
      return spent(book, -event.amount, event.funded_by, now, at);
    case "AccountCharged":
      return spent(book, event.amount, event.funded_by, now, at);
    case "FundsReserved": {
      const held = earmark(book, event.amount, now);
      assertSame(event.funded_by, holdFunding(held.funded_by, held.unfunded), `${at}: funded_by`);
      return held.book;
    }
    case "ReservationCaptured":
      return settled(book, event.earmarks, event.amount, event.funded_by, now, at);
    case "ReservationReleased":
      return settled(book, event.earmarks, 0, [], now, at);
    case "ReservationExpired":
      return settled(book, event.earmarks, event.captured_amount, event.funded_by, now, at);
    case "ChargeRefunded": {
      assert(event.returned_to !== undefined && event.created_lots !== undefined, `${at}: a refund says where it went`);
      const total = event.returned_to.reduce((sum, part) => sum + part.amount, 0);
      assert(total === event.amount, `${at}: the refund's parts sum to its amount`);
      const created = event.created_lots.map((lot) => ({ ...lot, expires_at_ms: expiresAtMs(lot.expires_at) }));
      return applyRefund(book, event.returned_to, created, now, event.seq);
    }
    case "LotExpired": {
      const lapsed = expireLot(book, event.lot_id, now);
      const lot = book.lots.get(event.lot_id) as Lot;
      assert(lapsed.amount === event.amount && lot.kind === event.kind, `${at}: the lot's spendable remainder expired`);
      assert(lot.expires_at_ms === Date.parse(event.expires_at), `${at}: the lot's expiry`);
      return lapsed.book;
    }
    case "AccountUpdated":
    case "ReservationExtended":
    case "LimitSet":
    case "LimitRemoved":
      return book;
    case "AccountOpened":
    case "LotsOpened":
      throw new Error(`${at}: ${event.type} inside a book`);
  }
}

function granted(book: LotBook, event: GrantFields, amount: Minor, seq: number, now: number): LotBook {
  assert(
    event.lot_id !== undefined && event.grant !== undefined && event.applied_to_debt !== undefined,
    `seq ${seq}: a grant names its lot`,
  );
  const result = grant(book, grantedLot(event.lot_id, event.grant, amount, seq), now);
  assert(result.applied_to_debt === event.applied_to_debt, `seq ${seq}: applied_to_debt`);
  return result.book;
}

function spent(book: LotBook, amount: Minor, recorded: Funding[] | undefined, now: number, at: string): LotBook {
  const result = spend(book, amount, now);
  assertSame(recorded, result.funded_by, `${at}: funded_by`);
  return result.book;
}

function settled(
  book: LotBook,
  earmarks: Funding[] | undefined,
  captured: Minor,
  recorded: Funding[] | undefined,
  now: number,
  at: string,
): LotBook {
  assert(earmarks !== undefined, `${at}: a hold's end names its earmarks`);
  const result = settleHold(book, earmarks, captured, now);
  assertSame(recorded, result.funded_by, `${at}: funded_by`);
  return result.book;
}

function assertSame(recorded: unknown, computed: unknown, what: string): void {
  assert(recorded !== undefined, `${what} is recorded`);
  assert(canonicalJson(recorded) === canonicalJson(computed), `${what} is what the book gives`);
}

function hasLotFields(event: LedgerEvent): boolean {
  return ["lot_id", "grant", "applied_to_debt", "funded_by", "earmarks", "returned_to", "created_lots"].some(
    (field) => field in event,
  );
}

/** The book `LotsOpened` states: its lots, the debt, and the earmarks of the holds then open. */
export function openedBook(
  lots: readonly OpenedLot[],
  debt: Minor,
  earmarks: readonly { reservation_id: string; funded_by: readonly Funding[] }[],
  seq: number,
): LotBook {
  const map = new Map<string, Lot>();
  for (const lot of lots) {
    map.set(lot.lot_id, {
      lot_id: lot.lot_id,
      kind: lot.kind,
      priority: lot.priority,
      amount: lot.amount,
      remaining: lot.remaining,
      held: 0,
      expired: 0,
      expires_at_ms: expiresAtMs(lot.expires_at),
      created_seq: seq,
    });
  }
  for (const hold of earmarks) {
    for (const part of lotParts(hold.funded_by)) {
      const lot = map.get(part.lot_id as string);
      assert(lot !== undefined, `an opened hold earmarks a lot that exists`);
      map.set(lot.lot_id, { ...lot, held: lot.held + part.amount });
    }
  }
  return bookOf([...map.values()], debt);
}

// ---------------------------------------------------------------- the decision's side

/**
 * The lot moves a decision makes, each returning the fields its event records and the book
 * after it; with no book (an account that keeps no lots) every move records nothing.
 */
export function grantMove(
  book: LotBook | null,
  lotId: string,
  terms: LotGrant,
  amount: Minor,
  seq: number,
  now: number,
): { fields: Required<GrantFields> | Record<string, never>; book: LotBook | null } {
  if (book === null) return { fields: {}, book };
  const result = grant(book, grantedLot(lotId, terms, amount, seq), now);
  return { fields: { lot_id: lotId, grant: terms, applied_to_debt: result.applied_to_debt }, book: result.book };
}

export function spendMove(book: LotBook | null, amount: Minor, now: number) {
  if (book === null) return { fields: {}, book };
  const result = spend(book, amount, now);
  return { fields: { funded_by: result.funded_by }, book: result.book };
}

export function holdMove(book: LotBook | null, amount: Minor, now: number) {
  if (book === null) return { fields: {}, book };
  const result = earmark(book, amount, now);
  return { fields: { funded_by: holdFunding(result.funded_by, result.unfunded) }, book: result.book };
}

/** A hold's end: `funded_by` of the hold (its earmarks and unfunded part) settles `captured`. */
export function settleMove(book: LotBook | null, holdFunded: Funding[] | null, captured: Minor, now: number) {
  if (book === null) return { fields: {}, book };
  // A hold made before the account kept lots, and ended before LotsOpened named it: none.
  const earmarks = lotParts(holdFunded ?? []);
  const result = settleHold(book, earmarks, captured, now);
  return { fields: { earmarks, funded_by: result.funded_by }, book: result.book };
}

/** Lot counts a decision checks against LOTS_ACTIVE_MAX: lots with credit in them. */
export const activeLots = (book: LotBook): number => book.live.size;

/** LotExpired events for every lot due at `now` with spendable credit, in burn order. */
export function lapseMove(
  book: LotBook | null,
  now: number,
): { bodies: EventBody<LotExpired>[]; book: LotBook | null } {
  if (book === null) return { bodies: [], book };
  const due = expireDue(book, now);
  const bodies = due.expired.map((part): EventBody<LotExpired> => {
    const lot = book.lots.get(part.lot_id as string) as Lot;
    return {
      type: "LotExpired",
      lot_id: lot.lot_id,
      kind: lot.kind,
      amount: part.amount,
      expires_at: new Date(lot.expires_at_ms as number).toISOString(),
    };
  });
  return { bodies, book: due.book };
}

/** What a charge says of its sources, as a refund reads it. */
export interface ChargeSources {
  amount: Minor;
  refunded: Minor;
  funded_by: Funding[] | null;
  returned: Returned[];
}

/**
 * A refund's lot fields: back to the charge's sources in the reverse of the order they paid.
 * A charge from before the account kept lots was paid by its legacy lot (decision 0006), and
 * its refunds from before then went back there.
 */
export function refundMove(
  book: LotBook | null,
  charge: ChargeSources,
  amount: Minor,
  now: number,
  seq: number,
  refundId: string,
) {
  if (book === null) return { fields: {}, book };
  let funded_by = charge.funded_by;
  let returned = charge.returned;
  if (funded_by === null) {
    assert(book.lots.has(LEGACY_LOT_ID), "a charge from before lots was paid by the legacy lot");
    funded_by = [{ lot_id: LEGACY_LOT_ID, amount: charge.amount }];
    const before = charge.refunded - returned.reduce((sum, part) => sum + part.amount, 0);
    if (before > 0) returned = [{ source: LEGACY_LOT_ID, to_lot_id: LEGACY_LOT_ID, amount: before }, ...returned];
  }
  let n = 0;
  const result = refund(book, funded_by, returned, amount, now, seq, () => refundLotId(refundId, ++n));
  const fields = { returned_to: result.returned_to, created_lots: result.created.map(refundedLot) };
  return { fields, book: result.book };
}

/**
 * The `LotsOpened` of an account opened before lots existed (decision 0006): its balance as one
 * paid lot that never expires (the legacy lot, there even when empty: refunds of older charges
 * go back to it), a negative balance as the debt, and its open holds, oldest first, earmarking
 * that lot's credit as far as it goes.
 */
export function lotsOpenedBody(state: {
  account: { balance: Minor } | null;
  reservations: ReadonlyMap<string, { reservation_id: string; amount: Minor; status: string; reserve_seq: number }>;
}): EventBody<LotsOpened> {
  assert(state.account !== null, "lots open on an open account");
  const balance = state.account.balance;
  const remaining = Math.max(balance, 0);
  const earmarks: LotsOpened["earmarks"] = [];
  let spendable = remaining;
  const open = [...state.reservations.values()].filter((r) => r.status === "open");
  for (const r of open.sort((a, b) => a.reserve_seq - b.reserve_seq)) {
    const part = Math.min(r.amount, spendable);
    spendable -= part;
    earmarks.push({
      reservation_id: r.reservation_id,
      funded_by: holdFunding(part > 0 ? [{ lot_id: LEGACY_LOT_ID, amount: part }] : [], r.amount - part),
    });
  }
  const legacy: OpenedLot = { lot_id: LEGACY_LOT_ID, ...DEFAULT_GRANT, amount: remaining, remaining };
  return { type: "LotsOpened", lots: [legacy], debt: Math.max(-balance, 0), earmarks };
}
