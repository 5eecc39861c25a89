/**
 * Credit in lots (issue 27), pure: the arithmetic of an account's lots, each paid or promotional,
 * each maybe expiring, spent in one stated order. The account object will decide every money
 * movement against its book of lots inside its serialized turn, so the order and the expiry are
 * exact under any concurrency; this module is that decision's arithmetic, with no I/O and no
 * clock (times are arguments).
 *
 * A lot's figures, all integer minor units:
 * - `amount`: what was granted (never changes);
 * - `remaining`: granted, not consumed, not expired (it includes what holds earmark);
 * - `held`: the part of `remaining` that open holds earmarked (0 <= held <= remaining);
 * - `expired`: what expired unused (breakage).
 * Spendable now is `remaining - held`. The book also keeps the account's `debt` (>= 0): what was
 * spent inside the credit limit beyond every lot. The invariant, at every seq:
 *   balance = sum(remaining) - debt.
 *
 * Burn order (`burnOrder`): lower priority first; then the soonest expiry (lots that never expire
 * last); then the oldest (by the seq that created it). Promotional lots default to priority 10,
 * paid to 50, so promotional credit burns first.
 *
 * The shell's part: every command applies `expireDue(book, now)` before it decides (an expired
 * lot's credit still counts in the balance until it is expired, and a decision against that
 * balance would pass the credit limit), and `now` is the time the events are stamped with. The
 * movements assert it (`assertNothingLapsed`).
 *
 * What each movement does:
 * - a grant pays the debt first (`applied_to_debt`), and the rest is the new lot;
 * - a hold earmarks spendable credit in burn order (`funded_by`); what no lot covers is unfunded
 *   (it will be debt if it is charged);
 * - a capture consumes its earmarks in burn order; the part not consumed goes back to its lots
 *   (where such a lot has expired, that part expires at once after it); a capture past its earmarks
 *   (overage, or a hold no lot funded) draws from spendable credit in burn order, then debt;
 * - a direct charge draws like an overage;
 * - expiry takes a lot's spendable remainder; what holds earmark stays theirs until they settle;
 * - a refund returns to the sources that paid in the reverse of the order they paid in (the
 *   charge's `funded_by` is in that order: earmarks, then draws in burn order, the debt last), so
 *   it needs no lot but those it credits; to a lot that has expired it goes to a new lot of the
 *   same kind and priority, which expires REFUND_LOT_TTL_MS after the refund (long enough to be
 *   used, never forever: a promotion that ended is not revived for good). A debt part pays the
 *   debt back; what a later grant paid of it since comes back as a new lot of that grant's kind
 *   (`debt_paid_by`, paid first: the book counts what each kind paid of the debt, not per charge,
 *   and where both paid, a customer's cash must not come back as credit that expires).
 * A capture consumes its own earmarks even where credit that burns earlier was freed since (a
 * released hold): the earmark is the order as of the hold, as issue 27 states it.
 */
import { AMOUNT_MINOR_MAX } from "./limits";
import { LotMap, LotOrder } from "./lot-index";
import { assert, type Minor } from "./money";

export const LOT_KINDS = ["paid", "promotional"] as const;
export type LotKind = (typeof LOT_KINDS)[number];

export const LOT_PRIORITY_MIN = 0;
export const LOT_PRIORITY_MAX = 100;
/** A lot's priority when the grant names none: promotional credit burns before paid. */
export const LOT_PRIORITY_DEFAULT: Readonly<Record<LotKind, number>> = { promotional: 10, paid: 50 };
/**
 * Lots an account may hold with credit in them (remaining > 0). A movement's cost barely grows
 * with the count (lot-index.ts); what the bound holds is what reads every such lot: the object's
 * memory and start (about 250 bytes and one row each: 2.5 MB and 10,000 rows at the bound), and a
 * page of `GET .../lots`, which reads past the lots memory holds (decision 0006).
 */
export const LOTS_ACTIVE_MAX = 10_000;
/** A refund to a lot that has expired makes a new lot of its kind, expiring this long after (30 days). */
export const REFUND_LOT_TTL_MS = 30 * 86_400_000;

export interface Lot {
  lot_id: string;
  kind: LotKind;
  priority: number;
  amount: Minor;
  remaining: Minor;
  held: Minor;
  expired: Minor;
  /** Epoch milliseconds, or null: never expires. */
  expires_at_ms: number | null;
  /** The seq of the event that created it: the burn order's last key, and its age. */
  created_seq: number;
}

/** The terms of a lot a grant creates: its kind, its place in the burn order, its expiry. */
export interface LotGrant {
  kind: LotKind;
  priority: number;
  /** RFC 3339, or null: never expires. */
  expires_at: string | null;
}

/** Who paid for (or is earmarked to) an amount: a lot, or the account's debt (lot_id null). */
export interface Funding {
  lot_id: string | null;
  amount: Minor;
}

export interface LotBook {
  /** Every lot the book knows: those with credit, and spent ones a refund may credit back. */
  lots: LotMap<Lot>;
  /** The lots with credit in them (remaining > 0), in burn order. */
  live: LotOrder<Lot>;
  /** Of those, the ones that expire, soonest first. */
  expiring: LotOrder<Lot>;
  /** Sum of remaining per kind, over every lot. */
  totals: Readonly<Record<LotKind, Minor>>;
  debt: Minor;
  /** What grants of each kind paid of the debt and no refund has given back yet. */
  debt_paid_by: Readonly<Record<LotKind, Minor>>;
}

/** Where a refunded amount went: the source that paid, and the lot credited (null: the debt). */
export interface Returned {
  source: string | null;
  to_lot_id: string | null;
  amount: Minor;
}

/** A new lot a refund made (a source that expired, or debt paid since): its id and expiry. */
export interface RefundLot {
  lot_id: string;
  kind: LotKind;
  priority: number;
  expires_at_ms: number | null;
}

/** Soonest expiry first, then burn order: the order `expiring` keeps (only lots that expire). */
function expiryOrder(a: Lot, b: Lot): number {
  return (a.expires_at_ms as number) - (b.expires_at_ms as number) || burnOrder(a, b);
}

const NOTHING: Readonly<Record<LotKind, Minor>> = { paid: 0, promotional: 0 };

/** A book of `lots` with `debt`, indexed. */
export function bookOf(
  lots: readonly Lot[],
  debt: Minor = 0,
  debt_paid_by: Readonly<Record<LotKind, Minor>> = NOTHING,
): LotBook {
  const live = lots.filter((lot) => lot.remaining > 0);
  const totals = { paid: 0, promotional: 0 };
  for (const lot of lots) totals[lot.kind] += lot.remaining;
  return {
    lots: LotMap.of(lots),
    live: LotOrder.of(live, burnOrder),
    expiring: LotOrder.of(
      live.filter((lot) => lot.expires_at_ms !== null),
      expiryOrder,
    ),
    totals,
    debt,
    debt_paid_by: { ...debt_paid_by },
  };
}

export const emptyBook = (): LotBook => bookOf([]);

/** Negative when `a` burns before `b`. A total order: lot ids are unique. */
export function burnOrder(a: Lot, b: Lot): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  if (a.expires_at_ms !== b.expires_at_ms) {
    if (a.expires_at_ms === null) return 1;
    if (b.expires_at_ms === null) return -1;
    return a.expires_at_ms - b.expires_at_ms;
  }
  if (a.created_seq !== b.created_seq) return a.created_seq - b.created_seq;
  return a.lot_id < b.lot_id ? -1 : a.lot_id > b.lot_id ? 1 : 0;
}

const spendable = (lot: Lot): Minor => lot.remaining - lot.held;
const expiredAt = (lot: Lot, nowMs: number): boolean => lot.expires_at_ms !== null && lot.expires_at_ms <= nowMs;

/** A lot as the book holds it now (an index keeps the lot as it was indexed). */
const current = (book: LotBook, indexed: Lot): Lot => lotOf(book, indexed.lot_id);

/** The lots that may be drawn on now, in burn order (lots fully held are passed over). */
function* drawable(book: LotBook, nowMs: number): Generator<Lot> {
  assertNothingLapsed(book, nowMs);
  for (const indexed of book.live) {
    const lot = current(book, indexed);
    if (spendable(lot) > 0) yield lot;
  }
}

/** The lots with credit whose expiry has come, soonest first (what holds earmark keeps them here). */
function* lapsing(book: LotBook, nowMs: number): Generator<Lot> {
  for (const indexed of book.expiring) {
    if (!expiredAt(indexed, nowMs)) return;
    yield current(book, indexed);
  }
}

/** The shell applied `expireDue` first: no lot past its expiry has spendable credit left. */
export function assertNothingLapsed(book: LotBook, nowMs: number): void {
  for (const lot of lapsing(book, nowMs)) {
    assert(spendable(lot) === 0, `lot ${lot.lot_id} was expired before the command`);
  }
}

function assertAmount(amount: Minor, min: number, what: string): void {
  assert(Number.isSafeInteger(amount) && amount >= min && amount <= AMOUNT_MINOR_MAX, `${what}: ${amount}`);
}

/**
 * The book with `changed` lots set (new or changed; each id once) and `debt`: the indexes and
 * totals follow. A lot's terms (kind, priority, expiry, created seq) never change.
 */
export function withLots(book: LotBook, changed: readonly Lot[], debt = book.debt): LotBook {
  let { live, expiring } = book;
  const totals = { ...book.totals };
  const seen = new Set<string>();
  for (const lot of changed) {
    assert(!seen.has(lot.lot_id), `lot ${lot.lot_id} changes once per movement`);
    seen.add(lot.lot_id);
    const before = book.lots.get(lot.lot_id);
    if (before !== undefined) {
      assert(
        before.kind === lot.kind &&
          before.priority === lot.priority &&
          before.expires_at_ms === lot.expires_at_ms &&
          before.created_seq === lot.created_seq,
        `lot ${lot.lot_id} keeps its terms`,
      );
      totals[lot.kind] -= before.remaining;
    }
    totals[lot.kind] += lot.remaining;
    const was = before !== undefined && before.remaining > 0;
    const is = lot.remaining > 0;
    if (was === is) continue;
    const key = before ?? lot;
    live = is ? live.with(key) : live.without(key);
    if (key.expires_at_ms !== null) expiring = is ? expiring.with(key) : expiring.without(key);
  }
  return { lots: book.lots.with(changed), live, expiring, totals, debt, debt_paid_by: book.debt_paid_by };
}

/** The book without lots `ids`, each spent (no credit in it): the object keeps those as rows. */
export function withoutLots(book: LotBook, ids: readonly string[]): LotBook {
  for (const id of ids) assert(lotOf(book, id).remaining === 0, `lot ${id} leaves the book spent`);
  return { ...book, lots: book.lots.without(ids) };
}

function lotOf(book: LotBook, lotId: string): Lot {
  const lot = book.lots.get(lotId);
  assert(lot !== undefined, `lot ${lotId} exists`);
  return lot;
}

/**
 * A grant: the debt is paid first, then the rest is the new lot (possibly empty). A lot that
 * expires at or before `nowMs` would be born expired: the API refuses `expires_at <= now`.
 */
export function grant(
  book: LotBook,
  lot: Omit<Lot, "remaining" | "held" | "expired">,
  nowMs: number,
): { book: LotBook; applied_to_debt: Minor } {
  assert(!book.lots.has(lot.lot_id), "a lot id is granted once");
  assertAmount(lot.amount, 1, "a grant's amount");
  assert(lot.expires_at_ms === null || lot.expires_at_ms > nowMs, "a lot is granted before its expiry");
  const applied_to_debt = Math.min(book.debt, lot.amount);
  const created: Lot = { ...lot, remaining: lot.amount - applied_to_debt, held: 0, expired: 0 };
  const after = withLots(book, [created], book.debt - applied_to_debt);
  const paid = { ...book.debt_paid_by, [lot.kind]: book.debt_paid_by[lot.kind] + applied_to_debt };
  return { book: { ...after, debt_paid_by: paid }, applied_to_debt };
}

/** Draws up to `amount` of spendable credit in burn order; `take` says what a drawn lot becomes. */
function draw(
  book: LotBook,
  amount: Minor,
  nowMs: number,
  take: (lot: Lot, part: Minor) => Lot,
): { changed: Lot[]; funded_by: Funding[]; short: Minor } {
  const changed: Lot[] = [];
  const funded_by: Funding[] = [];
  let left = amount;
  for (const lot of drawable(book, nowMs)) {
    if (left === 0) break;
    const part = Math.min(spendable(lot), left);
    changed.push(take(lot, part));
    funded_by.push({ lot_id: lot.lot_id, amount: part });
    left -= part;
  }
  return { changed, funded_by, short: left };
}

/** A hold earmarks spendable credit in burn order; `unfunded` is what no lot covers. */
export function earmark(
  book: LotBook,
  amount: Minor,
  nowMs: number,
): { book: LotBook; funded_by: Funding[]; unfunded: Minor } {
  assertAmount(amount, 1, "a hold's amount");
  const drawn = draw(book, amount, nowMs, (lot, part) => ({ ...lot, held: lot.held + part }));
  return { book: withLots(book, drawn.changed), funded_by: drawn.funded_by, unfunded: drawn.short };
}

/** A direct charge (or a capture's part past its earmarks): spendable credit in burn order, then debt. */
export function spend(book: LotBook, amount: Minor, nowMs: number): { book: LotBook; funded_by: Funding[] } {
  assertAmount(amount, 1, "a charge's amount");
  const drawn = draw(book, amount, nowMs, (lot, part) => ({ ...lot, remaining: lot.remaining - part }));
  const funded_by = drawn.short > 0 ? [...drawn.funded_by, { lot_id: null, amount: drawn.short }] : drawn.funded_by;
  return { book: withLots(book, drawn.changed, book.debt + drawn.short), funded_by };
}

/**
 * A hold ends: `captured` of it is charged (0 for a release). Its earmarks are consumed in burn
 * order, the rest goes back to its lots, and a capture past the earmarks draws like a charge.
 * `funded_by` is what paid for the charge. A part that goes back to a lot that has expired is
 * spendable in an expired lot for a moment: the caller expires it at once (`expireDue`, the
 * `LotExpired` events that follow the hold's end).
 */
export function settleHold(
  book: LotBook,
  earmarks: readonly Funding[],
  captured: Minor,
  nowMs: number,
): { book: LotBook; funded_by: Funding[] } {
  assertAmount(captured, 0, "a capture's amount");
  // One entry per lot: the same lot named twice would be worked from one old copy and lose money.
  const ordered = mergeFunding(earmarks)
    .map((e) => {
      assert(e.lot_id !== null, "an earmark names its lot (what no lot covers is not earmarked)");
      return { earmark: e, lot: lotOf(book, e.lot_id) };
    })
    .sort((x, y) => burnOrder(x.lot, y.lot));
  const changed: Lot[] = [];
  const funded_by: Funding[] = [];
  let left = captured;
  for (const { earmark: e, lot } of ordered) {
    assert(e.amount >= 1 && lot.held >= e.amount, "an earmark is held by its lot");
    const consumed = Math.min(e.amount, left);
    left -= consumed;
    changed.push({ ...lot, held: lot.held - e.amount, remaining: lot.remaining - consumed });
    if (consumed > 0) funded_by.push({ lot_id: lot.lot_id, amount: consumed });
  }
  const after = withLots(book, changed);
  // Past the earmarks nothing was released, so no expired lot has credit to draw on here.
  if (left === 0) return { book: after, funded_by };
  const rest = spend(after, left, nowMs);
  return { book: rest.book, funded_by: mergeFunding([...funded_by, ...rest.funded_by]) };
}

/** Lot `lotId` expires now: its spendable remainder goes (what holds earmark stays theirs). */
export function expireLot(book: LotBook, lotId: string, nowMs: number): { book: LotBook; amount: Minor } {
  const lot = lotOf(book, lotId);
  assert(expiredAt(lot, nowMs), `lot ${lotId} expires at or before now`);
  const amount = spendable(lot);
  assert(amount > 0, `lot ${lotId} has spendable credit to expire`);
  return { book: withLots(book, [{ ...lot, remaining: lot.held, expired: lot.expired + amount }]), amount };
}

/** Lots whose expiry has come: each one's spendable remainder expires (held parts stay their holds'). */
export function expireDue(book: LotBook, nowMs: number): { book: LotBook; expired: Funding[] } {
  const expired: Funding[] = [];
  let after = book;
  const due = [...lapsing(book, nowMs)].filter((lot) => spendable(lot) > 0);
  for (const lot of due.sort(burnOrder)) {
    const lapsed = expireLot(after, lot.lot_id, nowMs);
    after = lapsed.book;
    expired.push({ lot_id: lot.lot_id, amount: lapsed.amount });
  }
  return { book: after, expired };
}

/** The next time a lot expires with spendable credit in it (the alarm's due time), or null. */
export function nextExpiryMs(book: LotBook): number | null {
  for (const indexed of book.expiring) if (spendable(current(book, indexed)) > 0) return indexed.expires_at_ms;
  return null;
}

/**
 * A refund of `amount` of a charge that `funded_by` paid, of which `returned` went back already
 * (earlier refunds): it goes back to the sources in the reverse of the order they paid in.
 * `newLot(source, kind)` names the lot a part goes to when its source expired, or when it is a
 * debt part that a grant of `kind` paid since (source null); each name must be new. The book must
 * hold the lots that are credited; the other sources are not read.
 */
export function refund(
  book: LotBook,
  funded_by: readonly Funding[],
  returned: readonly Returned[],
  amount: Minor,
  nowMs: number,
  seq: number,
  newLot: (source: string | null, kind: LotKind) => string,
): { book: LotBook; returned_to: Returned[]; created: RefundLot[] } {
  assertAmount(amount, 1, "a refund's amount");
  const open = outstanding(funded_by, returned);
  assert(open.reduce((sum, f) => sum + f.amount, 0) >= amount, "a refund never exceeds what the charge's sources paid");
  const lots = new Staged(book);
  let debt = book.debt;
  const paidBy = { ...book.debt_paid_by };
  const returned_to: Returned[] = [];
  const created: RefundLot[] = [];
  const toNewLot = (
    source: string | null,
    kind: LotKind,
    part: Minor,
    expiresAtMs: number | null,
    priority = LOT_PRIORITY_DEFAULT[kind],
  ) => {
    const lotId = newLot(source, kind);
    creditBack(lots, { lot_id: lotId, kind, priority, expires_at_ms: expiresAtMs }, part, seq);
    created.push({ lot_id: lotId, kind, priority, expires_at_ms: expiresAtMs });
    returned_to.push({ source, to_lot_id: lotId, amount: part });
  };
  let left = amount;
  for (const source of [...open].reverse()) {
    if (left === 0) break;
    const part = Math.min(source.amount, left);
    left -= part;
    if (source.lot_id === null) {
      const toDebt = Math.min(debt, part);
      debt -= toDebt;
      if (toDebt > 0) returned_to.push({ source: null, to_lot_id: null, amount: toDebt });
      // Beyond the debt left, grants paid that part since: it goes back as their kind, paid first.
      // The book keeps what each kind paid of the debt in all, not per charge: where both kinds
      // paid, paid credit comes back first, so a customer never loses cash to an expiring lot.
      let beyond = part - toDebt;
      for (const kind of ["paid", "promotional"] as const) {
        const share = Math.min(paidBy[kind], beyond);
        if (share === 0) continue;
        paidBy[kind] -= share;
        beyond -= share;
        toNewLot(null, kind, share, kind === "promotional" ? nowMs + REFUND_LOT_TTL_MS : null);
      }
      assert(beyond === 0, "what was charged on credit is in the debt or was paid by a grant");
      continue;
    }
    const lot = lots.get(source.lot_id);
    if (expiredAt(lot, nowMs)) {
      toNewLot(lot.lot_id, lot.kind, part, nowMs + REFUND_LOT_TTL_MS, lot.priority);
      continue;
    }
    lots.set({ ...lot, remaining: lot.remaining + part });
    returned_to.push({ source: lot.lot_id, to_lot_id: lot.lot_id, amount: part });
  }
  return { book: { ...lots.book(debt), debt_paid_by: paidBy }, returned_to, created };
}

/** Lots a refund changes, over the book it started from: one `withLots` at the end. */
class Staged {
  private readonly changed = new Map<string, Lot>();
  constructor(private readonly base: LotBook) {}
  has(id: string): boolean {
    return this.changed.has(id) || this.base.lots.has(id);
  }
  get(id: string): Lot {
    return this.changed.get(id) ?? lotOf(this.base, id);
  }
  set(lot: Lot): void {
    this.changed.set(lot.lot_id, lot);
  }
  book(debt: Minor): LotBook {
    return withLots(this.base, [...this.changed.values()], debt);
  }
}

function creditBack(lots: Staged, terms: RefundLot, amount: Minor, seq: number): void {
  assert(!lots.has(terms.lot_id), `a refund's new lot ${terms.lot_id} is new`);
  lots.set({ ...terms, amount, remaining: amount, held: 0, expired: 0, created_seq: seq });
}

/**
 * A refund applied from what it recorded (`refund` computed it where the charge was known): each
 * part back to the debt, to its lot, or to the new lot it created, checked against the book.
 */
export function applyRefund(
  book: LotBook,
  returned_to: readonly Returned[],
  created: readonly RefundLot[],
  nowMs: number,
  seq: number,
): LotBook {
  const lots = new Staged(book);
  let debt = book.debt;
  const paidBy = { ...book.debt_paid_by };
  const terms = new Map(created.map((lot) => [lot.lot_id, lot]));
  assert(terms.size === created.length, "a refund creates each new lot once");
  for (const part of returned_to) {
    assertAmount(part.amount, 1, "a refunded part");
    const made = part.to_lot_id === null ? undefined : terms.get(part.to_lot_id);
    if (part.to_lot_id === null) {
      assert(part.source === null && debt >= part.amount, "a part back to the debt came from it and fits it");
      debt -= part.amount;
    } else if (made !== undefined) {
      creditBack(lots, made, part.amount, seq);
      if (part.source === null) {
        assert(paidBy[made.kind] >= part.amount, "a grant paid that much of the debt");
        paidBy[made.kind] -= part.amount;
      }
    } else {
      const lot = lots.get(part.to_lot_id);
      assert(part.source === lot.lot_id && !expiredAt(lot, nowMs), "a part goes back to its own live lot");
      lots.set({ ...lot, remaining: lot.remaining + part.amount });
    }
  }
  for (const lot of created) assert(lots.get(lot.lot_id).created_seq === seq, `new lot ${lot.lot_id} is credited`);
  return { ...lots.book(debt), debt_paid_by: paidBy };
}

/** Each source's part of a charge not yet returned by a refund, in the order they paid. */
function outstanding(funded_by: readonly Funding[], returned: readonly Returned[]): Funding[] {
  const left = new Map<string | null, Minor>();
  for (const f of funded_by) left.set(f.lot_id, (left.get(f.lot_id) ?? 0) + f.amount);
  for (const r of returned) left.set(r.source, (left.get(r.source) ?? 0) - r.amount);
  return [...left].flatMap(([lot_id, amount]) => {
    assert(amount >= 0, "no source gets back more than it paid");
    return amount > 0 ? [{ lot_id, amount }] : [];
  });
}

/** The same lot named twice (an earmark consumed, then drawn again past it) as one entry. */
function mergeFunding(parts: readonly Funding[]): Funding[] {
  const merged = new Map<string | null, Minor>();
  for (const part of parts) merged.set(part.lot_id, (merged.get(part.lot_id) ?? 0) + part.amount);
  return [...merged].map(([lot_id, amount]) => ({ lot_id, amount }));
}

/** The balance the book accounts for: sum(remaining) - debt. */
export function bookBalance(book: LotBook): Minor {
  return book.totals.paid + book.totals.promotional - book.debt;
}

/** Every lot within its bounds; the book equal to `balance`. Throws on the first breach. */
export function assertBook(book: LotBook, balance: Minor): void {
  const totals = { paid: 0, promotional: 0 };
  const live: string[] = [];
  for (const lot of book.lots.values()) {
    assertLot(lot);
    totals[lot.kind] += lot.remaining;
    if (lot.remaining > 0) live.push(lot.lot_id);
  }
  assert(
    totals.paid === book.totals.paid && totals.promotional === book.totals.promotional,
    "the totals are the lots'",
  );
  const order = [...book.live];
  assert(order.length === live.length, "every lot with credit, and no other, is in the burn order");
  for (let i = 1; i < order.length; i += 1) assert(burnOrder(order[i - 1] as Lot, order[i] as Lot) < 0, "in order");
  assert(
    order.every((lot) => (book.lots.get(lot.lot_id)?.remaining ?? 0) > 0),
    "the burn order holds live lots",
  );
  const expiring = [...book.expiring].map((lot) => lot.lot_id);
  const due = order.filter((lot) => lot.expires_at_ms !== null).sort(expiryOrder);
  assert(expiring.join("\n") === due.map((lot) => lot.lot_id).join("\n"), "the expiry order: live lots that expire");
  assertBalance(book, balance);
}

function assertLot(lot: Lot): void {
  assert(lot.held >= 0 && lot.held <= lot.remaining, `lot ${lot.lot_id}: 0 <= held <= remaining`);
  assert(lot.expired >= 0 && lot.remaining >= 0, `lot ${lot.lot_id}: no figure negative`);
  assert(lot.priority >= LOT_PRIORITY_MIN && lot.priority <= LOT_PRIORITY_MAX, `lot ${lot.lot_id}: priority`);
}

function assertBalance(book: LotBook, balance: Minor): void {
  assert(Number.isSafeInteger(book.debt) && book.debt >= 0, "debt is a non-negative integer");
  for (const kind of LOT_KINDS) assert(book.debt_paid_by[kind] >= 0, `debt paid by ${kind} is not negative`);
  assert(bookBalance(book) === balance, "balance = sum(lots' remaining) - debt");
}

/**
 * What `assertBook` checks, for one movement: the lots it changed within their bounds, and the
 * book (its totals kept per change) equal to `balance`. Its cost is the movement's, not the book's.
 */
export function assertMoved(before: LotBook, after: LotBook, balance: Minor): void {
  for (const lot of after.lots.changedSince(before.lots)) assertLot(lot);
  assertBalance(after, balance);
}
