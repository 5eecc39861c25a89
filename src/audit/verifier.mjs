// @ts-check
/**
 * The offline auditor's core: an independent re-implementation of the ledger's published rules
 * (docs/audit.md), written without the ledger's code so that a bug in the ledger is not
 * mirrored here. It runs on plain Node (bin/ledger-audit.mjs) and inside workerd (the account
 * Durable Object's streaming verification, and the tests), so the two platform-specific
 * operations, SHA-256 and Ed25519 verification, are passed in. It is plain ESM JavaScript with
 * JSDoc types so that the CLI needs no build step.
 *
 * It consumes events one at a time (streaming) and keeps only what the rules need: the
 * running balances, the hold of each reservation still open, and the refundable remainder of
 * each charge. Once the account keeps its credit in lots (issue 27), it also folds the lots on its
 * own (`LotFold`, below) and checks every lot field an event records against that fold.
 */

import { FingerprintTable } from "./fingerprint-table.mjs";
import { canonicalize } from "./jcs.mjs";

export { canonicalize };

export const GENESIS_HASH = "0".repeat(64);

/** @typedef {{ seq: number, reason: string }} Failure */
/** @typedef {(text: string) => string} Sha256Hex */
/** What one event does to [balance, reserved], or the reason it breaks the rules. */
/** @typedef {readonly [number, number] | string} Effect */
/**
 * @typedef {object} Summary
 * @property {number} events
 * @property {string | null} account_id
 * @property {string | null} currency
 * @property {number} head_seq
 * @property {string} head_hash
 * @property {number} balance
 * @property {number} reserved
 * @property {number} available
 * @property {number} open_reservations
 * @property {number | null} debt what was spent beyond every lot (null: the account keeps no lots)
 * @property {{ paid: number, promotional: number } | null} balance_by_kind the lots' remaining by kind
 */
/** @typedef {"paid" | "promotional"} LotKind */
/**
 * A lot as the verifier's own fold keeps it (the same figures as the ledger's book).
 * @typedef {object} Lot
 * @property {string} lot_id
 * @property {LotKind} kind
 * @property {number} priority
 * @property {number} amount granted (never changes)
 * @property {number} remaining granted, not consumed, not expired (it includes what holds earmark)
 * @property {number} held the part of `remaining` that open holds earmark
 * @property {number} expired what expired unused
 * @property {number | null} expires_at_ms
 * @property {number} created_seq the seq of the event that created it
 */
/** @typedef {{ lot_id: string | null, amount: number }} Funding */
/**
 * What `ChainVerifier.lots()` returns: every lot's figures and the debt.
 * @typedef {{ lots: Record<string, Omit<Lot, "lot_id">>, debt: number }} LotsSnapshot
 */

const MONEY_MAX = 2 ** 53 - 1;
/** Length of `,"hash":"<64 hex>"}` at the end of an exported line. */
const HASH_MEMBER_LENGTH = ',"hash":"'.length + 64 + '"}'.length;
/** The effect of the events that move no money; shared, since the caller only reads it. */
const UNCHANGED = /** @type {readonly [number, number]} */ (Object.freeze([0, 0]));

/**
 * The published pricing rule, re-implemented: ceil( Σ quantity × price_minor / per_units ),
 * exact, rounded up once. Returns the amount as a number, or null for malformed rules.
 * @param {unknown} rules
 * @param {Record<string, number>} quantities
 * @returns {number | null}
 */
export function priceAmount(rules, quantities) {
  if (!Array.isArray(rules)) return null;
  let num = 0n;
  let den = 1n;
  for (const r of rules) {
    if (!isInt(r?.price_minor) || r.price_minor < 0 || !isInt(r?.per_units) || r.per_units < 1) return null;
    const q = quantities[r.unit] ?? 0;
    if (!isInt(q) || q < 0) return null;
    num = num * BigInt(r.per_units) + BigInt(q) * BigInt(r.price_minor) * den;
    den *= BigInt(r.per_units);
  }
  const amount = (num + den - 1n) / den;
  return amount > BigInt(MONEY_MAX) ? null : Number(amount);
}
const isInt = (/** @type {unknown} */ v) => typeof v === "number" && Number.isSafeInteger(v);
const isAmount = (/** @type {unknown} */ v) =>
  isInt(v) && /** @type {number} */ (v) > 0 && /** @type {number} */ (v) <= MONEY_MAX;
const isAmountOrZero = (/** @type {unknown} */ v) => isInt(v) && /** @type {number} */ (v) >= 0;
const isId = (/** @type {unknown} */ v) => typeof v === "string" && /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/.test(v);

/**
 * The quantities a capture's usage bills, by the pricing rules' unit names.
 * @param {Record<string, any> | undefined} usage
 * @returns {Record<string, number>}
 */
function usageQuantities(usage) {
  const u = usage ?? {};
  return {
    input_token: u.input_tokens ?? 0,
    output_token: u.output_tokens ?? 0,
    cached_token: u.cached_tokens ?? 0,
    request: 1,
  };
}

/** The rule of each event type: the name of the verifier's method that checks and applies it. */
const RULES = /** @type {const} */ ({
  AccountOpened: "accountOpened",
  AccountUpdated: "accountUpdated",
  FundsCredited: "fundsCredited",
  BalanceAdjusted: "balanceAdjusted",
  FundsReserved: "fundsReserved",
  ReservationExtended: "reservationExtended",
  ReservationCaptured: "reservationCaptured",
  ReservationReleased: "reservationReleased",
  ReservationExpired: "reservationExpired",
  AccountCharged: "accountCharged",
  ChargeRefunded: "chargeRefunded",
  LotExpired: "lotExpired",
  LotsOpened: "lotsOpened",
  LimitSet: "limitSet",
  LimitRemoved: "limitRemoved",
});

/** The event fields that only an account keeping lots may carry. */
const LOT_FIELDS = ["lot_id", "grant", "applied_to_debt", "funded_by", "earmarks", "returned_to", "created_lots"];

/**
 * Verifies a stream of events pushed in order. `push` returns null while all is well and the
 * first failure otherwise (after which the verifier refuses more input).
 */
export class ChainVerifier {
  /**
   * @param {{ sha256Hex: Sha256Hex, chargeSources?: boolean }} options `chargeSources: false` keeps
   *   no per-charge sources (memory bounded by the lots and open holds, not by the charges): refunds
   *   are then checked against the lots and the debt, not source by source.
   */
  constructor(options) {
    this.sha256Hex = options.sha256Hex;
    this.chargeSources = options.chargeSources ?? true;
    /** @type {Failure | null} */
    this.failure = null;
    this.seq = 0;
    this.hash = GENESIS_HASH;
    this.balance = 0;
    this.reserved = 0;
    this.lastAt = "";
    /** @type {string | null} */
    this.accountId = null;
    /** @type {string | null} */
    this.currency = null;
    /** Pinned price rules of open priced reservations: reservation_id -> rules. */
    /** @type {Map<string, unknown>} */
    this.pinned = new Map();
    /** Spend limits (issue 28), folded on their own. */
    this.limits = new LimitFold();
    /** Open holds: reservation_id -> amount. */
    /** @type {Map<string, number>} */
    this.open = new Map();
    /** Sum of the open holds, kept next to the map. */
    this.openSum = 0;
    // Ids are remembered as fingerprints in compact tables (src/audit/fingerprint-table.mjs):
    // memory grows by a few dozen bytes per id, and a collision can only cause a false failure.
    /** Every reservation id ever used (a reservation ends once and is never reused). */
    this.reservationIds = new FingerprintTable();
    /** Charges: charge_id -> [amount, refunded]. */
    this.charges = new FingerprintTable(2);
    /** Idempotency keys consumed (credit, refund, adjustment, extension ids). */
    this.keys = new FingerprintTable();
    /** The event each checkpointable seq had: seq -> [hash, balance, reserved]; only those asked for. */
    /** @type {Map<number, [string, number, number]>} */
    this.marks = new Map();
    /** @type {Set<number>} */
    this.wanted = new Set();
    /** The account's lots, from `AccountOpened.lots` or its `LotsOpened` event; null before. */
    /** @type {LotFold | null} */
    this.book = null;
    /** The event's time (epoch ms): lots expire by it. */
    this.nowMs = 0;
    /** The current event's lot movement, run once its balances are checked. @type {(() => string | null) | null} */
    this.lotStep = null;
  }

  /** Remember the state at `seq` so a checkpoint can be compared with it later. @param {number} seq */
  watch(seq) {
    this.wanted.add(seq);
  }

  /**
   * @param {unknown} raw one parsed NDJSON line
   * @param {string} [line] the line's text: when it is already canonical with "hash" last (as the
   *   ledger exports it), the hash is checked over those very bytes, skipping re-serialisation;
   *   any other form falls back to canonicalising the parsed event.
   * @returns {Failure | null}
   */
  push(raw, line) {
    if (this.failure !== null) return this.failure;
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return this.fail("line is not a JSON object");
    const e = /** @type {Record<string, any>} */ (raw);
    const reason = this.checkLink(e, line) ?? this.checkFold(e);
    if (reason !== null) return this.fail(reason);
    this.seq = e.seq;
    this.hash = e.hash;
    this.lastAt = e.at;
    if (this.wanted.has(this.seq)) this.marks.set(this.seq, [e.hash, this.balance, this.reserved]);
    return null;
  }

  /**
   * Records the first failure, at the seq expected next unless told otherwise.
   * @param {string} reason
   * @returns {Failure}
   */
  fail(reason, seq = this.seq + 1) {
    this.failure = { seq, reason };
    return this.failure;
  }

  /**
   * The event's place in the chain: its seq, its hash over the previous one, its time and id.
   * @param {Record<string, any>} e
   * @param {string | undefined} line
   * @returns {string | null} the reason to fail, or null
   */
  checkLink(e, line) {
    const expectedSeq = this.seq + 1;
    if (e.seq !== expectedSeq) {
      return isInt(e.seq)
        ? `expected seq ${expectedSeq}, found seq ${e.seq} (missing, extra or reordered events)`
        : "seq is not an integer";
    }
    // Shape only: equality with the recomputed digest below is the real check.
    if (typeof e.hash !== "string" || e.hash.length !== 64) return "hash is missing or malformed";
    const hash = e.hash;
    let chained = false;
    if (line?.endsWith(`,"hash":"${hash}"}`)) {
      chained = this.sha256Hex(`${this.hash}${line.slice(0, -HASH_MEMBER_LENGTH)}}`) === hash;
    }
    if (!chained && this.sha256Hex(this.hash + canonicalize(e, "hash")) !== hash) {
      return `hash does not chain from seq ${this.seq} (content or order was altered)`;
    }
    if (typeof e.at !== "string" || Number.isNaN(Date.parse(e.at)) || e.at < this.lastAt) {
      return "time is missing or goes backwards";
    }
    if (typeof e.event_id !== "string" || e.event_id.length === 0) return "event_id is missing";
    return null;
  }

  /**
   * Applies the event's rules and checks the balances it states against the fold; on success
   * the running balances move to the event's.
   * @param {Record<string, any>} e
   * @returns {string | null} the reason to fail, or null
   */
  checkFold(e) {
    const effect = this.apply(e);
    if (typeof effect === "string") return effect;
    const balance = this.balance + effect[0];
    const reserved = this.reserved + effect[1];
    if (e.balance_after !== balance) return `balance_after is ${e.balance_after}, the fold gives ${balance}`;
    if (e.reserved_after !== reserved) return `reserved_after is ${e.reserved_after}, the fold gives ${reserved}`;
    if (reserved < 0) return "reserved went negative";
    if (Math.abs(balance) > MONEY_MAX || reserved > MONEY_MAX) return "balance left the exact-integer range";
    if (this.openSum !== reserved) return `reserved ${reserved} differs from the open holds ${this.openSum}`;
    const lots = this.foldLots(balance);
    if (lots !== null) return lots;
    this.balance = balance;
    this.reserved = reserved;
    return null;
  }

  /**
   * The event's lot movement, checked against what it recorded, then the book's bounds at this
   * seq. It runs after the balances are checked, so a wrong amount is named as such.
   * @param {number} balance the balance after the event
   * @returns {string | null}
   */
  foldLots(balance) {
    const step = this.lotStep;
    this.lotStep = null;
    const reason = step === null ? null : step();
    if (reason !== null) return reason;
    return this.book === null ? null : this.book.check(balance);
  }

  /**
   * The event's effect, and its lot movement (`foldLots` runs it) if the account keeps lots.
   * @param {Effect} effect
   * @param {(book: LotFold) => string | null} step
   * @returns {Effect}
   */
  withLots(effect, step) {
    const book = this.book;
    if (book !== null) this.lotStep = () => step(book);
    return effect;
  }

  /**
   * The rules per event type, one method each. Returns [balance change, reserved change] or
   * the reason to fail.
   * @param {Record<string, any>} e
   * @returns {Effect}
   */
  apply(e) {
    if (this.seq === 0 && e.type !== "AccountOpened") return "the first event must be AccountOpened";
    /** @type {unknown} */
    const type = e.type;
    // A string own key only: an array or an inherited name must not pass for an event type.
    if (typeof type !== "string" || !Object.hasOwn(RULES, type)) return `unknown event type ${String(type)}`;
    this.nowMs = Date.parse(e.at);
    if (this.book === null && type !== "LotExpired" && type !== "LotsOpened") {
      const field = LOT_FIELDS.find((name) => Object.hasOwn(e, name));
      if (field !== undefined) return `${field} on an event before the account keeps lots`;
    }
    return this[RULES[/** @type {keyof typeof RULES} */ (type)]](e);
  }

  // The account.

  /** @param {Record<string, any>} e @returns {Effect} */
  accountOpened(e) {
    if (this.seq !== 0) return "AccountOpened after the first event";
    if (!isId(e.account_id) || typeof e.currency !== "string") return "AccountOpened lacks account_id or currency";
    if (!isAmountOrZero(e.credit_limit)) return "credit_limit must be a non-negative integer";
    if (e.lots !== undefined && e.lots !== true) return "AccountOpened.lots must be true or absent";
    this.accountId = e.account_id;
    this.currency = e.currency;
    if (e.lots === true) this.book = new LotFold(this.chargeSources);
    return UNCHANGED;
  }

  /** AccountUpdated moves no money: only its fields are checked. @param {Record<string, any>} e @returns {Effect} */
  accountUpdated(e) {
    if (!isAmountOrZero(e.credit_limit) || (e.status !== "active" && e.status !== "frozen")) {
      return "AccountUpdated has an invalid credit_limit or status";
    }
    return UNCHANGED;
  }

  // Money in and out without a reservation.

  /** @param {Record<string, any>} e @returns {Effect} */
  fundsCredited(e) {
    if (!isAmount(e.amount)) return "credit amount must be a positive integer";
    if (!this.useKey(`credit:${e.credit_id}`)) return `credit_id ${e.credit_id} applied twice`;
    return this.withLots([e.amount, 0], (book) => book.grant(e, e.amount, this.nowMs));
  }

  /** @param {Record<string, any>} e @returns {Effect} */
  balanceAdjusted(e) {
    if (!isInt(e.amount) || e.amount === 0) return "adjustment must be a non-zero integer";
    if (typeof e.reason !== "string" || e.reason.length === 0) return "adjustment without a reason";
    if (!this.useKey(`adjustment:${e.adjustment_id}`)) return `adjustment_id ${e.adjustment_id} applied twice`;
    if (e.amount > 0) return this.withLots([e.amount, 0], (book) => book.grant(e, e.amount, this.nowMs));
    return this.withLots([e.amount, 0], (book) => book.spend(e.funded_by, -e.amount, this.nowMs, null));
  }

  /** @param {Record<string, any>} e @returns {Effect} */
  accountCharged(e) {
    if (!isAmount(e.amount)) return "charge amount must be a positive integer";
    if (!isId(e.charge_id)) return "charge_id is invalid";
    if (this.charges.has(e.charge_id) || this.reservationIds.has(e.charge_id)) return `charge_id ${e.charge_id} reused`;
    const limited = this.limits.count(e, e.amount, this.nowMs, "spent");
    if (limited !== null) return limited;
    this.charges.add(e.charge_id, [e.amount, 0]);
    return this.withLots([-e.amount, 0], (book) => book.spend(e.funded_by, e.amount, this.nowMs, e.charge_id));
  }

  /** @param {Record<string, any>} e @returns {Effect} */
  chargeRefunded(e) {
    if (!isAmount(e.amount)) return "refund amount must be a positive integer";
    const charge = this.charges.get(e.charge_id);
    if (charge === null) return `refund of charge ${e.charge_id}, which does not exist`;
    const [chargeAmount = 0, alreadyRefunded = 0] = charge.values;
    const refunded = alreadyRefunded + e.amount;
    if (refunded > chargeAmount) return `refunds of charge ${e.charge_id} exceed its amount ${chargeAmount}`;
    if (e.charge_amount !== chargeAmount || e.charge_refunded_total !== refunded) {
      return "charge_amount or charge_refunded_total do not match the charge";
    }
    if (!this.useKey(`refund:${e.refund_id}`)) return `refund_id ${e.refund_id} applied twice`;
    const limited = this.limits.giveBack(e, e.charge_id, e.amount, refunded === chargeAmount);
    if (limited !== null) return limited;
    this.charges.setValue(charge.index, 1, refunded);
    return this.withLots([e.amount, 0], (book) => book.refund(e, chargeAmount - alreadyRefunded, this.nowMs));
  }

  // Reservations: a hold opens, may be extended, and ends once (captured, released or expired).

  /** @param {Record<string, any>} e @returns {Effect} */
  fundsReserved(e) {
    if (!isAmount(e.amount)) return "reservation amount must be a positive integer";
    if (!isId(e.reservation_id)) return "reservation_id is invalid";
    if (this.reservationIds.has(e.reservation_id) || this.charges.has(e.reservation_id)) {
      return `reservation_id ${e.reservation_id} reused`;
    }
    // A hold sized to what is affordable holds between what it asked at least and at most.
    const most = e.requested === undefined ? e.amount : e.requested.amount_max;
    if (e.requested !== undefined && !(e.requested.amount_min <= e.amount && e.amount <= most)) {
      return `the hold ${e.amount} is outside what it asked (${e.requested.amount_min} to ${most})`;
    }
    if (e.pricing !== undefined) {
      const priced = priceAmount(e.pricing?.rules, e.pricing?.estimate ?? {});
      if (priced !== most) return `the hold's most ${most} is not the estimate at the pinned price (${priced})`;
      this.pinned.set(e.reservation_id, e.pricing.rules);
    }
    const limited = this.limits.count(e, e.amount, this.nowMs, "held");
    if (limited !== null) return limited;
    this.reservationIds.add(e.reservation_id);
    this.open.set(e.reservation_id, e.amount);
    this.openSum += e.amount;
    return this.withLots([0, e.amount], (book) => book.earmark(e, this.nowMs));
  }

  /** @param {Record<string, any>} e @returns {Effect} */
  reservationExtended(e) {
    if (!this.open.has(e.reservation_id)) return `extension of reservation ${e.reservation_id}, which is not open`;
    if (e.extension_id !== null && !this.useKey(JSON.stringify(["extend", e.reservation_id, e.extension_id]))) {
      return `extension ${e.extension_id} applied twice`;
    }
    return UNCHANGED;
  }

  /** @param {Record<string, any>} e @returns {Effect} */
  reservationCaptured(e) {
    const hold = this.endingHold(e, "capture");
    if (typeof hold === "string") return hold;
    if (!isAmountOrZero(e.amount)) return "capture amount must be a non-negative integer";
    if (e.amount > hold && e.allow_overage !== true) return "capture above the hold without allow_overage";
    if (e.released_amount !== Math.max(hold - e.amount, 0) || e.overage !== Math.max(e.amount - hold, 0)) {
      return "released_amount or overage do not add up";
    }
    if (e.pricing !== undefined) {
      const priced = priceAmount(this.pinned.get(e.reservation_id), usageQuantities(e.usage));
      if (priced !== e.amount) return `the capture ${e.amount} is not the usage at the pinned price (${priced})`;
    }
    this.close(e.reservation_id, hold);
    this.charges.add(e.reservation_id, [e.amount, 0]);
    return this.withLots([-e.amount, -hold], (book) => book.settle(e, e.amount, this.nowMs, true));
  }

  /** @param {Record<string, any>} e @returns {Effect} */
  reservationReleased(e) {
    const hold = this.endingHold(e, "release");
    if (typeof hold === "string") return hold;
    this.close(e.reservation_id, hold);
    if (this.book !== null && e.funded_by !== undefined) return "funded_by on a release, which charges nothing";
    return this.withLots([0, -hold], (book) => book.settle(e, 0, this.nowMs, false));
  }

  /** @param {Record<string, any>} e @returns {Effect} */
  reservationExpired(e) {
    const hold = this.endingHold(e, "expiry");
    if (typeof hold === "string") return hold;
    const captured = e.on_expiry === "capture" ? hold : e.on_expiry === "release" ? 0 : -1;
    if (captured < 0) return "on_expiry must be capture or release";
    if (e.captured_amount !== captured || e.released_amount !== hold - captured) {
      return "captured_amount or released_amount do not follow the on_expiry rule";
    }
    this.close(e.reservation_id, hold);
    if (e.on_expiry === "capture") this.charges.add(e.reservation_id, [captured, 0]);
    return this.withLots([-captured, -hold], (book) => book.settle(e, captured, this.nowMs, true));
  }

  // Spend limits (issue 28).

  /** @param {Record<string, any>} e @returns {Effect} */
  limitSet(e) {
    return this.limits.set(e) ?? UNCHANGED;
  }

  /** @param {Record<string, any>} e @returns {Effect} */
  limitRemoved(e) {
    return this.limits.remove(e) ?? UNCHANGED;
  }

  // Lots (issue 27): events that only an account keeping lots has.

  /** A lot's spendable remainder expired (breakage). @param {Record<string, any>} e @returns {Effect} */
  lotExpired(e) {
    if (this.book === null) return "LotExpired before the account keeps lots";
    if (!isAmount(e.amount)) return "LotExpired amount must be a positive integer";
    return this.withLots([-e.amount, 0], (book) => book.expire(e, this.nowMs));
  }

  /**
   * An account opened before lots existed starts keeping them: the lots, the debt, and the
   * earmarks of every hold open now. Moves no money; `check` then holds the lots to the balance.
   * @param {Record<string, any>} e
   * @returns {Effect}
   */
  lotsOpened(e) {
    if (this.book !== null) return "LotsOpened on an account that keeps lots already (lots are opened once)";
    const book = new LotFold(this.chargeSources);
    const reason = book.open(e, this.open);
    if (reason !== null) return reason;
    // Its lots are held to the balance by `check`, with every other event's.
    this.book = book;
    return UNCHANGED;
  }

  /**
   * The hold an ending event (capture, release, expiry) ends, or the reason it cannot end it:
   * the reservation must be open, and the event must state its hold.
   * @param {Record<string, any>} e
   * @param {string} ending
   * @returns {number | string}
   */
  endingHold(e, ending) {
    const hold = this.open.get(e.reservation_id);
    if (hold === undefined) return `${ending} of reservation ${e.reservation_id}, which is not open (ends once)`;
    if (e.reserved_amount !== hold) return `reserved_amount ${e.reserved_amount} differs from the hold ${hold}`;
    const captured =
      e.type === "ReservationCaptured" ? e.amount : e.type === "ReservationExpired" ? e.captured_amount : 0;
    const limited = this.limits.settle(e, hold, isAmountOrZero(captured) ? captured : 0);
    if (limited !== null) return limited;
    return hold;
  }

  /** @param {string} id @param {number} hold */
  close(id, hold) {
    this.open.delete(id);
    this.pinned.delete(id);
    this.openSum -= hold;
  }

  /** @param {string} key */
  useKey(key) {
    return this.keys.add(key);
  }

  /** @returns {Summary} */
  summary() {
    return {
      events: this.seq,
      account_id: this.accountId,
      currency: this.currency,
      head_seq: this.seq,
      head_hash: this.hash,
      balance: this.balance,
      reserved: this.reserved,
      available: this.balance - this.reserved,
      open_reservations: this.open.size,
      debt: this.book === null ? null : this.book.debt,
      balance_by_kind: this.book === null ? null : { ...this.book.byKind },
    };
  }

  /** Every lot's figures and the debt as the verifier folded them; null while the account keeps no lots. @returns {LotsSnapshot | null} */
  lots() {
    return this.book === null ? null : this.book.snapshot();
  }
}

/**
 * Checks a signed checkpoint against the verified stream: signature first, then that the
 * stream reached the checkpoint's seq (no truncation) with the same hash and balances there
 * (no rewriting of anything before it).
 * @param {ChainVerifier} verifier a verifier that has consumed the whole export and `watch`ed the checkpoint's seq
 * @param {{ checkpoint: Record<string, any>, signature: string }} signed
 * @param {(message: Uint8Array, signature: Uint8Array) => Promise<boolean>} verifySignature
 * @returns {Promise<Failure | null>}
 */
export async function checkCheckpoint(verifier, signed, verifySignature) {
  const c = signed.checkpoint;
  const seq = isInt(c?.seq) ? c.seq : 0;
  const message = new TextEncoder().encode(canonicalize(c));
  let valid = false;
  try {
    valid = await verifySignature(message, base64UrlDecode(signed.signature));
  } catch {
    valid = false;
  }
  if (!valid) return { seq, reason: "the checkpoint's signature is not valid for this public key" };
  if (c.account_id !== verifier.accountId) return { seq, reason: `the checkpoint is for account ${c.account_id}` };
  if (verifier.summary().head_seq < seq) {
    return {
      seq,
      reason: `the export ends at seq ${verifier.summary().head_seq}, before the checkpoint's seq ${seq} (truncated)`,
    };
  }
  const mark = verifier.marks.get(seq);
  if (mark === undefined) return { seq, reason: "the verifier was not watching the checkpoint's seq" };
  if (mark[0] !== c.head_hash)
    return { seq, reason: "the export's hash at the checkpoint's seq differs (history rewritten)" };
  if (mark[1] !== c.balance || mark[2] !== c.reserved)
    return { seq, reason: "the balances at the checkpoint's seq differ" };
  return null;
}

/**
 * Decodes base64url, padded or not. The verifier keeps its own copy rather than importing
 * src/encoding.ts: it must run on plain Node with no build step, and it shares no code with the
 * ledger it checks.
 * @param {string} text
 */
export function base64UrlDecode(text) {
  const b64 = text.replaceAll("-", "+").replaceAll("_", "/");
  const binary = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
}

// ---------------------------------------------------------------- the lots' own fold (issue 27)

/** The lot holding an account's balance from before lots (decision 0006): it paid every charge from then. */
const LEGACY_LOT_ID = "legacy/balance";
const LOT_PRIORITY_MAX = 100;
const isKind = (/** @type {unknown} */ v) => v === "paid" || v === "promotional";
const isPriority = (/** @type {unknown} */ v) =>
  isInt(v) && /** @type {number} */ (v) >= 0 && /** @type {number} */ (v) <= LOT_PRIORITY_MAX;
/** An RFC 3339 time as epoch ms; null for null (never expires); NaN for anything else. @param {unknown} v */
const msOrNull = (v) => (v === null ? null : typeof v === "string" ? Date.parse(v) : Number.NaN);
const iso = (/** @type {number | null} */ ms) => (ms === null ? "never" : new Date(ms).toISOString());
const expiredAt = (/** @type {Lot} */ lot, /** @type {number} */ nowMs) =>
  lot.expires_at_ms !== null && lot.expires_at_ms <= nowMs;
const sumOf = (/** @type {readonly Funding[]} */ parts) => parts.reduce((sum, f) => sum + f.amount, 0);

/**
 * The burn order, written from the published rule: lower priority first; then the soonest expiry
 * (never-expiring last); then the oldest (the seq that created it); then the lot id.
 * @param {Lot} a
 * @param {Lot} b
 */
function burnOrder(a, b) {
  if (a.priority !== b.priority) return a.priority - b.priority;
  if (a.expires_at_ms !== b.expires_at_ms) {
    if (a.expires_at_ms === null) return 1;
    if (b.expires_at_ms === null) return -1;
    return a.expires_at_ms - b.expires_at_ms;
  }
  if (a.created_seq !== b.created_seq) return a.created_seq - b.created_seq;
  return a.lot_id < b.lot_id ? -1 : a.lot_id > b.lot_id ? 1 : 0;
}

/** A recorded value as short canonical text for a failure reason. @param {unknown} value */
function shown(value) {
  let text;
  try {
    text = value === undefined ? "missing" : canonicalize(value);
  } catch {
    text = String(value);
  }
  return text.length > 240 ? `${text.slice(0, 240)}…` : text;
}

/** The sum of a recorded funding list, or null unless it is a list of { lot_id: string | null, amount > 0 }. @param {unknown} list */
function fundingSum(list) {
  if (!Array.isArray(list)) return null;
  let sum = 0;
  for (const part of list) {
    if (part === null || typeof part !== "object" || !isAmount(part.amount)) return null;
    if (part.lot_id !== null && typeof part.lot_id !== "string") return null;
    sum += part.amount;
  }
  return sum;
}

/**
 * A recorded funding list (`field`) against the fold's: it sums to `total`, and names the same
 * sources with the same amounts in the same order.
 * @param {string} field
 * @param {unknown} recorded
 * @param {readonly Funding[]} computed
 * @param {number} total
 * @returns {string | null}
 */
function sameFunding(field, recorded, computed, total) {
  if (recorded === undefined) return `${field} is missing`;
  const sum = fundingSum(recorded);
  if (sum === null) return `${field} is malformed: ${shown(recorded)}`;
  if (sum !== total) return `${field} sums to ${sum}, not ${total}`;
  let same = false;
  try {
    same = canonicalize(recorded) === canonicalize(computed);
  } catch {
    same = false;
  }
  if (!same) {
    return `${field} is ${shown(recorded)}, the lots give ${shown(computed)}`;
  }
  return null;
}

/**
 * The verifier's own fold of an account's lots, written from the published rules (issue 27,
 * decision 0006) without the ledger's code:
 * - a grant pays the debt first (`applied_to_debt`), the rest is its new lot;
 * - a hold earmarks spendable credit (remaining - held) in burn order; what no lot covers is unfunded;
 * - a hold's end consumes its earmarks in burn order up to what it charges, the rest goes back to
 *   the lots, and a charge past the earmarks draws like a direct charge;
 * - a charge (or a negative adjustment) draws spendable credit in burn order, then the debt;
 * - LotExpired takes an expired lot's spendable remainder (what holds earmark stays theirs);
 * - a refund is applied from what it recorded (`returned_to`, `created_lots`), checked part by part
 *   against what each source paid for that charge.
 * Each movement's recorded fields are compared with what this fold computes. `check` then holds,
 * at every seq, the lots it touched within bounds and sum(remaining) - debt to the balance.
 *
 * Memory, beyond the chain's (measured on V8, ids included):
 * - one record per lot ever made, about 160 bytes (a refund may credit a used-up lot again, so none
 *   is dropped);
 * - the earmarks of each open hold (bounded by the open holds);
 * - per charge made while the account keeps lots and not yet wholly refunded, its sources and what
 *   each has left to get back: about 220 bytes with two sources. This one grows with the log (a
 *   million such charges hold about 220 MB); it is what lets a refund be checked source by source.
 *   A charge from before lots costs nothing here: its legacy lot paid it all, and the charge table's
 *   refunded total says what is left.
 * A draw reads only the lots with credit in them (`live`, at most LOTS_ACTIVE_MAX = 10,000 while the
 * ledger keeps its bound), and `check` only the lots the event moved, so the work per event does not
 * grow with the number of lots ever made.
 */
class LotFold {
  /** @param {boolean} trackSources keep each charge's sources to check its refunds part by part */
  constructor(trackSources = true) {
    this.trackSources = trackSources;
    /** Every lot, by id. @type {Map<string, Lot>} */
    this.lots = new Map();
    /** Lots with credit in them (remaining > 0): the only ones a draw or an expiry reads. @type {Set<Lot>} */
    this.live = new Set();
    this.debt = 0;
    /** What grants of each kind paid of the debt and no refund gave back yet. */
    this.debtPaidBy = { paid: 0, promotional: 0 };
    /** Sum of the lots' remaining, in all and by kind, kept as they move. */
    this.total = 0;
    this.byKind = { paid: 0, promotional: 0 };
    /** Lots the current event moved: `check` bounds them. @type {Set<Lot>} */
    this.touched = new Set();
    /** Open holds: reservation_id -> the lots it earmarked, as its FundsReserved (or LotsOpened) said. @type {Map<string, Funding[]>} */
    this.holds = new Map();
    /** Charges: charge_id -> each source (null: the debt) and what it has left to get back. @type {Map<string, { ids: (string | null)[], left: number[] }>} */
    this.charges = new Map();
  }

  /** @param {Lot} lot @param {number} remaining its change @param {number} [held] its change */
  move(lot, remaining, held = 0) {
    lot.remaining += remaining;
    lot.held += held;
    this.total += remaining;
    this.byKind[lot.kind] += remaining;
    if (lot.remaining > 0) this.live.add(lot);
    else this.live.delete(lot);
    this.touched.add(lot);
  }

  /** @param {Omit<Lot, "remaining" | "held" | "expired">} terms @param {number} remaining */
  create(terms, remaining) {
    const lot = { ...terms, remaining: 0, held: 0, expired: 0 };
    this.lots.set(lot.lot_id, lot);
    this.move(lot, remaining);
  }

  /**
   * The reason a new lot's terms are not valid, or null.
   * @param {string} where the field that states them
   * @param {unknown} id @param {unknown} kind @param {unknown} priority @param {number | null} expiresAtMs
   */
  badTerms(where, id, kind, priority, expiresAtMs) {
    if (typeof id !== "string" || id.length === 0) return `${where}: a lot id must be a non-empty string`;
    if (this.lots.has(id)) return `${where}: lot_id ${id} exists already (a lot id is used once)`;
    if (!isKind(kind)) return `${where}: kind ${shown(kind)} is neither paid nor promotional`;
    if (!isPriority(priority)) return `${where}: priority ${shown(priority)} is not an integer from 0 to 100`;
    if (Number.isNaN(expiresAtMs)) return `${where}: expires_at is neither an RFC 3339 time nor null`;
    return null;
  }

  /**
   * A grant (a credit or a positive adjustment): the debt first, the rest is its new lot.
   * @param {Record<string, any>} e @param {number} amount @param {number} nowMs
   * @returns {string | null}
   */
  grant(e, amount, nowMs) {
    if (e.lot_id === undefined || e.grant === undefined || e.applied_to_debt === undefined) {
      return "a grant names its lot: lot_id, grant and applied_to_debt are required";
    }
    const terms = e.grant === null || typeof e.grant !== "object" ? {} : e.grant;
    const expiresAtMs = msOrNull(terms.expires_at);
    const bad = this.badTerms("grant", e.lot_id, terms.kind, terms.priority, expiresAtMs);
    if (bad !== null) return bad;
    if (expiresAtMs !== null && expiresAtMs <= nowMs) {
      return `grant.expires_at ${terms.expires_at} is not after the grant's time ${iso(nowMs)}`;
    }
    const applied = Math.min(this.debt, amount);
    if (e.applied_to_debt !== applied) {
      return `applied_to_debt is ${shown(e.applied_to_debt)}, the debt of ${this.debt} makes it ${applied}`;
    }
    const kind = /** @type {LotKind} */ (terms.kind);
    this.debt -= applied;
    this.debtPaidBy[kind] += applied;
    const lot = { lot_id: e.lot_id, kind, priority: terms.priority, amount, expires_at_ms: expiresAtMs };
    this.create({ ...lot, created_seq: e.seq }, amount - applied);
    return null;
  }

  /**
   * The lots with spendable credit in burn order, or the reason the log let a lot's credit outlive
   * its expiry (the ledger expires every due lot before it decides).
   * @param {number} nowMs
   * @returns {Lot[] | string}
   */
  drawable(nowMs) {
    const lots = [];
    for (const lot of this.live) {
      const spendable = lot.remaining - lot.held;
      if (spendable <= 0) continue;
      if (expiredAt(lot, nowMs)) {
        return `lot ${lot.lot_id} expired at ${iso(lot.expires_at_ms)} with ${spendable} spendable, and no LotExpired took it before this event`;
      }
      lots.push(lot);
    }
    return lots.sort(burnOrder);
  }

  /**
   * Draws up to `amount` of spendable credit in burn order: into holds (`hold`), or spent.
   * @param {number} amount @param {number} nowMs @param {boolean} hold
   * @returns {{ parts: Funding[], short: number } | string}
   */
  draw(amount, nowMs, hold) {
    const lots = this.drawable(nowMs);
    if (typeof lots === "string") return lots;
    /** @type {Funding[]} */
    const parts = [];
    let left = amount;
    for (const lot of lots) {
      if (left === 0) break;
      const part = Math.min(lot.remaining - lot.held, left);
      if (hold) this.move(lot, 0, part);
      else this.move(lot, -part);
      parts.push({ lot_id: lot.lot_id, amount: part });
      left -= part;
    }
    return { parts, short: left };
  }

  /**
   * A direct charge or a negative adjustment: spendable credit in burn order, then the debt.
   * @param {unknown} recorded its funded_by
   * @param {number} amount
   * @param {number} nowMs
   * @param {string | null} chargeId the charge it makes (null: an adjustment, never refunded)
   * @returns {string | null}
   */
  spend(recorded, amount, nowMs, chargeId) {
    const drawn = this.draw(amount, nowMs, false);
    if (typeof drawn === "string") return drawn;
    if (drawn.short > 0) {
      drawn.parts.push({ lot_id: null, amount: drawn.short });
      this.debt += drawn.short;
    }
    return this.charged(recorded, drawn.parts, amount, chargeId);
  }

  /**
   * A charge's recorded funded_by against the fold's; its sources are kept for its refunds.
   * @param {unknown} recorded @param {Funding[]} computed @param {number} amount @param {string | null} chargeId
   * @returns {string | null}
   */
  charged(recorded, computed, amount, chargeId) {
    const reason = sameFunding("funded_by", recorded, computed, amount);
    if (reason !== null) return reason;
    if (this.trackSources && chargeId !== null && amount > 0) {
      this.charges.set(chargeId, { ids: computed.map((f) => f.lot_id), left: computed.map((f) => f.amount) });
    }
    return null;
  }

  /**
   * A hold earmarks spendable credit in burn order; `funded_by` ends with what no lot covers.
   * @param {Record<string, any>} e @param {number} nowMs
   * @returns {string | null}
   */
  earmark(e, nowMs) {
    const drawn = this.draw(e.amount, nowMs, true);
    if (typeof drawn === "string") return drawn;
    const computed = drawn.short > 0 ? [...drawn.parts, { lot_id: null, amount: drawn.short }] : drawn.parts;
    const reason = sameFunding("funded_by", e.funded_by, computed, e.amount);
    if (reason !== null) return reason;
    this.holds.set(e.reservation_id, drawn.parts);
    return null;
  }

  /**
   * A hold ends, charging `captured`: its earmarks (as recorded when it was made) are consumed in
   * burn order, the rest goes back to their lots, and a charge past them draws like a charge.
   * @param {Record<string, any>} e @param {number} captured @param {number} nowMs
   * @param {boolean} charges whether the event records a funded_by (a release does not)
   * @returns {string | null}
   */
  settle(e, captured, nowMs, charges) {
    const earmarks = this.holds.get(e.reservation_id) ?? [];
    this.holds.delete(e.reservation_id);
    const reason = sameFunding("earmarks", e.earmarks, earmarks, sumOf(earmarks));
    if (reason !== null) return `${reason} (as the hold earmarked them)`;
    const ordered = earmarks
      .map((f) => ({ amount: f.amount, lot: /** @type {Lot} */ (this.lots.get(/** @type {string} */ (f.lot_id))) }))
      .sort((x, y) => burnOrder(x.lot, y.lot));
    /** What paid the charge, one entry per source, in the order first drawn. @type {Map<string | null, number>} */
    const paid = new Map();
    let left = captured;
    for (const { amount, lot } of ordered) {
      const consumed = Math.min(amount, left);
      left -= consumed;
      this.move(lot, -consumed, -amount);
      if (consumed > 0) paid.set(lot.lot_id, (paid.get(lot.lot_id) ?? 0) + consumed);
    }
    if (left > 0) {
      const drawn = this.draw(left, nowMs, false);
      if (typeof drawn === "string") return drawn;
      for (const part of drawn.parts) paid.set(part.lot_id, (paid.get(part.lot_id) ?? 0) + part.amount);
      if (drawn.short > 0) paid.set(null, drawn.short);
      this.debt += drawn.short;
    }
    if (!charges) return null;
    const computed = [...paid].map(([lot_id, amount]) => ({ lot_id, amount }));
    return this.charged(e.funded_by, computed, captured, e.reservation_id);
  }

  /**
   * LotExpired: the lot's expiry has come, and its spendable remainder goes.
   * @param {Record<string, any>} e @param {number} nowMs
   * @returns {string | null}
   */
  expire(e, nowMs) {
    const lot = typeof e.lot_id === "string" ? this.lots.get(e.lot_id) : undefined;
    if (lot === undefined) return `LotExpired lot_id ${shown(e.lot_id)} names no lot`;
    if (!expiredAt(lot, nowMs)) {
      return `LotExpired: lot ${lot.lot_id} expires ${iso(lot.expires_at_ms)}, not by the event's time ${iso(nowMs)}`;
    }
    if (msOrNull(e.expires_at) !== lot.expires_at_ms) {
      return `LotExpired expires_at is ${shown(e.expires_at)}, lot ${lot.lot_id} expires at ${iso(lot.expires_at_ms)}`;
    }
    if (e.kind !== lot.kind) return `LotExpired kind is ${shown(e.kind)}, lot ${lot.lot_id} is ${lot.kind}`;
    const spendable = lot.remaining - lot.held;
    if (e.amount !== spendable) {
      return `LotExpired amount is ${e.amount}, lot ${lot.lot_id}'s spendable remainder is ${spendable}`;
    }
    this.move(lot, -spendable);
    lot.expired += spendable;
    return null;
  }

  /**
   * A refund, applied from what it recorded and checked part by part: each part goes back to the
   * debt (from the debt), to a lot the refund creates, or to its own source lot while that lives;
   * no source gets back more than it paid for the charge.
   * @param {Record<string, any>} e
   * @param {number} legacyLeft what is left to refund of a charge from before lots (all its legacy lot's)
   * @param {number} nowMs
   * @returns {string | null}
   */
  refund(e, legacyLeft, nowMs) {
    if (!Array.isArray(e.returned_to) || !Array.isArray(e.created_lots)) {
      return "a refund says where it went: returned_to and created_lots are required";
    }
    const sum = fundingSum(e.returned_to.map((part) => ({ lot_id: null, amount: part?.amount })));
    if (sum !== e.amount) return `returned_to sums to ${sum ?? "(malformed)"}, not the refund's amount ${e.amount}`;
    const made = this.refundLots(e.created_lots, nowMs);
    if (typeof made === "string") return made;
    const sources = this.trackSources
      ? (this.charges.get(e.charge_id) ?? { ids: [LEGACY_LOT_ID], left: [legacyLeft] })
      : null;
    for (const part of e.returned_to) {
      const reason = this.returnPart(part, sources, made, e, nowMs);
      if (reason !== null) return reason;
    }
    for (const id of made.keys()) {
      if (!this.lots.has(id)) return `created_lots: lot ${id} is credited by no part of returned_to`;
    }
    if (sources?.left.every((left) => left === 0)) this.charges.delete(e.charge_id);
    return null;
  }

  /**
   * The lots a refund creates, by id, or the reason they are not valid.
   * @param {any[]} created @param {number} nowMs
   * @returns {Map<string, Omit<Lot, "remaining" | "held" | "expired" | "amount" | "created_seq">> | string}
   */
  refundLots(created, nowMs) {
    const made = new Map();
    for (const lot of created) {
      if (lot === null || typeof lot !== "object") return "created_lots is malformed";
      const expiresAtMs = msOrNull(lot.expires_at);
      const bad = this.badTerms("created_lots", lot.lot_id, lot.kind, lot.priority, expiresAtMs);
      if (bad !== null) return bad;
      if (made.has(lot.lot_id)) return `created_lots names lot ${lot.lot_id} twice`;
      if (expiresAtMs !== null && expiresAtMs <= nowMs) return `created_lots: lot ${lot.lot_id} expires by the refund`;
      made.set(lot.lot_id, { lot_id: lot.lot_id, kind: lot.kind, priority: lot.priority, expires_at_ms: expiresAtMs });
    }
    return made;
  }

  /**
   * One part of a refund's returned_to.
   * @param {any} part
   * @param {{ ids: (string | null)[], left: number[] } | null} sources the charge's (null: not kept)
   * @param {Map<string, Omit<Lot, "remaining" | "held" | "expired" | "amount" | "created_seq">>} made
   * @param {Record<string, any>} e
   * @param {number} nowMs
   * @returns {string | null}
   */
  returnPart(part, sources, made, e, nowMs) {
    const { source, to_lot_id: to, amount } = part;
    if (sources !== null) {
      const i = sources.ids.indexOf(source);
      const left = i < 0 ? 0 : /** @type {number} */ (sources.left[i]);
      if (amount > left) {
        const who = source === null ? "the debt" : typeof source === "string" ? `lot ${source}` : shown(source);
        return `returned_to gives ${amount} back to ${who}, which has ${left} of charge ${e.charge_id} left to get back`;
      }
      sources.left[i] = left - amount;
    }
    if (to === null) {
      if (source !== null) return `returned_to sends lot ${source}'s part to the debt`;
      if (amount > this.debt) return `returned_to pays ${amount} back to a debt of ${this.debt}`;
      this.debt -= amount;
      return null;
    }
    const terms = typeof to === "string" ? made.get(to) : undefined;
    if (terms !== undefined) return this.creditNewLot(terms, source, amount, e.seq, nowMs);
    const lot = typeof to === "string" ? this.lots.get(to) : undefined;
    if (lot === undefined || to !== source) {
      return `returned_to names lot ${shown(to)}, neither the part's source nor a lot the refund creates`;
    }
    if (expiredAt(lot, nowMs)) return `returned_to credits lot ${to}, which expired at ${iso(lot.expires_at_ms)}`;
    this.move(lot, amount);
    return null;
  }

  /**
   * A refunded part to a lot the refund creates: for a source lot that has expired (its kind and
   * priority, expiring), or for a part charged on credit that grants paid since (debt_paid_by).
   * @param {Omit<Lot, "remaining" | "held" | "expired" | "amount" | "created_seq">} terms
   * @param {string | null} source @param {number} amount @param {number} seq @param {number} nowMs
   * @returns {string | null}
   */
  creditNewLot(terms, source, amount, seq, nowMs) {
    const id = terms.lot_id;
    if (this.lots.has(id)) return `returned_to credits the new lot ${id} twice`;
    if (source === null) {
      if (this.debt > 0) return `returned_to makes lot ${id} while a debt of ${this.debt} is left to pay back first`;
      const paid = this.debtPaidBy[terms.kind];
      if (amount > paid)
        return `returned_to makes ${terms.kind} lot ${id} of ${amount}; ${terms.kind} grants paid ${paid} of the debt`;
      if (terms.kind === "promotional" && this.debtPaidBy.paid > 0) {
        return `returned_to makes promotional lot ${id} before giving back what paid grants paid of the debt`;
      }
      this.debtPaidBy[terms.kind] -= amount;
    } else {
      const from = this.lots.get(source);
      if (from === undefined || !expiredAt(from, nowMs)) {
        return `returned_to makes lot ${id} for lot ${source}, which has not expired (the part goes back to it)`;
      }
      if (terms.kind !== from.kind || terms.priority !== from.priority || terms.expires_at_ms === null) {
        return `created_lots: lot ${id} for expired lot ${source} must have its kind and priority, and expire`;
      }
    }
    this.create({ ...terms, amount, created_seq: seq }, amount);
    return null;
  }

  /**
   * LotsOpened: the lots, the debt, and every open hold's earmarks.
   * @param {Record<string, any>} e
   * @param {ReadonlyMap<string, number>} openHolds reservation_id -> hold
   * @returns {string | null}
   */
  open(e, openHolds) {
    if (!Array.isArray(e.lots) || !Array.isArray(e.earmarks)) return "LotsOpened lacks lots or earmarks";
    if (!isAmountOrZero(e.debt)) return "LotsOpened debt must be a non-negative integer";
    for (const lot of e.lots) {
      if (lot === null || typeof lot !== "object") return "LotsOpened lots is malformed";
      const expiresAtMs = msOrNull(lot.expires_at);
      const bad = this.badTerms("LotsOpened lots", lot.lot_id, lot.kind, lot.priority, expiresAtMs);
      if (bad !== null) return bad;
      if (!isAmountOrZero(lot.amount) || !isAmountOrZero(lot.remaining)) {
        return `LotsOpened lot ${lot.lot_id}: amount and remaining must be non-negative integers`;
      }
      const terms = { lot_id: lot.lot_id, kind: lot.kind, priority: lot.priority, amount: lot.amount };
      this.create({ ...terms, expires_at_ms: expiresAtMs, created_seq: e.seq }, lot.remaining);
    }
    this.debt = e.debt;
    for (const hold of e.earmarks) {
      const reason = this.openedHold(hold, openHolds);
      if (reason !== null) return reason;
    }
    if (this.holds.size !== openHolds.size) {
      return `LotsOpened earmarks name ${this.holds.size} of the ${openHolds.size} open holds`;
    }
    return null;
  }

  /** @param {any} hold @param {ReadonlyMap<string, number>} openHolds @returns {string | null} */
  openedHold(hold, openHolds) {
    const id = hold?.reservation_id;
    const amount = typeof id === "string" ? openHolds.get(id) : undefined;
    if (amount === undefined) return `LotsOpened earmarks reservation ${shown(id)}, which is not open`;
    if (this.holds.has(id)) return `LotsOpened earmarks reservation ${id} twice`;
    const sum = fundingSum(hold.funded_by);
    if (sum !== amount)
      return `LotsOpened earmarks: funded_by of reservation ${id} sums to ${sum}, not its hold ${amount}`;
    /** @type {Funding[]} */
    const earmarks = [];
    for (const part of hold.funded_by) {
      if (part.lot_id === null) continue;
      const lot = this.lots.get(part.lot_id);
      if (lot === undefined) return `LotsOpened earmarks lot ${part.lot_id}, which it does not open`;
      this.move(lot, 0, part.amount);
      earmarks.push({ lot_id: part.lot_id, amount: part.amount });
    }
    this.holds.set(id, earmarks);
    return null;
  }

  /**
   * The book's bounds after an event: every lot it moved has no negative figure and holds no more
   * than it has; the debt is not negative; sum(remaining) - debt is the balance.
   * @param {number} balance
   * @returns {string | null}
   */
  check(balance) {
    for (const lot of this.touched) {
      if (lot.remaining < 0 || lot.held < 0 || lot.expired < 0) {
        return `lot ${lot.lot_id}: a figure went negative (remaining ${lot.remaining}, held ${lot.held}, expired ${lot.expired})`;
      }
      if (lot.held > lot.remaining) return `lot ${lot.lot_id}: held ${lot.held} exceeds remaining ${lot.remaining}`;
    }
    this.touched.clear();
    if (this.debt < 0 || this.debtPaidBy.paid < 0 || this.debtPaidBy.promotional < 0) return "the debt went negative";
    if (this.total - this.debt !== balance) {
      return `the lots' remaining ${this.total} minus the debt ${this.debt} is not the balance ${balance}`;
    }
    return null;
  }

  /** @returns {LotsSnapshot} */
  snapshot() {
    const lots = Object.fromEntries(
      [...this.lots.values()].map((lot) => [
        lot.lot_id,
        {
          kind: lot.kind,
          priority: lot.priority,
          amount: lot.amount,
          remaining: lot.remaining,
          held: lot.held,
          expired: lot.expired,
          expires_at_ms: lot.expires_at_ms,
          created_seq: lot.created_seq,
        },
      ]),
    );
    return { lots, debt: this.debt };
  }
}

const LIMIT_WINDOWS = ["day", "week", "month", "total"];
const LIMIT_DIMENSIONS = ["api_key_id", "project_id", "service_id", "model"];
const DAY_MS = 86_400_000;

/** The start of the UTC window `window` holding `ms` (a week starts on Monday). @param {string} window @param {number} ms */
function windowStart(window, ms) {
  const day = Math.floor(ms / DAY_MS) * DAY_MS;
  if (window === "day") return day;
  if (window === "week") return day - ((((day / DAY_MS + 3) % 7) + 7) % 7) * DAY_MS;
  if (window === "month") {
    const d = new Date(ms);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  }
  return 0;
}

/**
 * Spend limits (issue 28), folded independently of the ledger's code: each limit's terms (and the
 * seq that set its scope and window), and what holds and charges counted in each of its windows.
 * Checks, at every hold and charge, that it counted in exactly the limits its key, project,
 * service and model match (in id order, with their windows), and that none passes its amount; at
 * every end and refund, that it names where its hold or charge counted. Keeps per hold and charge
 * that counted in a limit a fingerprint and the number of where it did (the distinct places are
 * few: a window's matching limits), and per window its usage.
 */
class LimitFold {
  constructor() {
    /** @type {Map<string, { since: number, window: string, scope: Record<string, string>, amount: number }>} */
    this.limits = new Map();
    /** "limit|since|windowStart" -> usage. @type {Map<string, { spent: number, held: number }>} */
    this.usage = new Map();
    /** Where a hold or a charge counted, as its event recorded it (JSON), numbered from 1. */
    this.places = /** @type {Map<string, number>} */ (new Map());
    this.placeList = /** @type {string[]} */ ([""]);
    /** Hold or charge id -> its place's number (0: none any more). */
    this.counted = new FingerprintTable(1);
  }

  /** Where `id` counted (JSON), or undefined. @param {string} id */
  countedOf(id) {
    const entry = this.counted.get(id);
    const n = entry === null ? 0 : (entry.values[0] ?? 0);
    return n === 0 ? undefined : this.placeList[n];
  }

  /** @param {string} id @param {string | undefined} place */
  setCounted(id, place) {
    let n = 0;
    if (place !== undefined) {
      n = this.places.get(place) ?? 0;
      if (n === 0) {
        n = this.placeList.length;
        this.places.set(place, n);
        this.placeList.push(place);
      }
    }
    const entry = this.counted.get(id);
    if (entry === null) {
      if (n !== 0) this.counted.add(id, [n]);
    } else {
      this.counted.setValue(entry.index, 0, n);
    }
  }

  /** @param {Record<string, any>} e @returns {string | null} */
  set(e) {
    const t = e.terms ?? {};
    const scope = t.applies_to ?? {};
    const named = LIMIT_DIMENSIONS.filter((d) => scope[d] !== undefined);
    if (!isId(e.limit_id) || !LIMIT_WINDOWS.includes(t.window) || !isAmountOrZero(t.amount) || named.length === 0) {
      return "LimitSet has an invalid limit_id, window, amount or applies_to";
    }
    if (Object.keys(scope).length !== named.length || !named.every((d) => typeof scope[d] === "string")) {
      return "LimitSet applies_to names only the known dimensions, as strings";
    }
    const old = this.limits.get(e.limit_id);
    const same =
      old !== undefined && old.window === t.window && LIMIT_DIMENSIONS.every((d) => old.scope[d] === scope[d]);
    this.limits.set(e.limit_id, { since: same ? old.since : e.seq, window: t.window, scope, amount: t.amount });
    return null;
  }

  /** @param {Record<string, any>} e @returns {string | null} */
  remove(e) {
    if (!this.limits.delete(e.limit_id)) return `LimitRemoved names no limit ${String(e.limit_id)}`;
    return null;
  }

  /** @param {string} id @param {number} since @param {number} start */
  cell(id, since, start) {
    const key = `${id}|${since}|${start}`;
    let u = this.usage.get(key);
    if (u === undefined) {
      u = { spent: 0, held: 0 };
      this.usage.set(key, u);
    }
    return u;
  }

  /**
   * A hold (`held`) or a direct charge (`spent`) of `amount`.
   * @param {Record<string, any>} e @param {number} amount @param {number} nowMs @param {"held" | "spent"} as
   * @returns {string | null}
   */
  count(e, amount, nowMs, as) {
    // A priced hold is for its price's service and model, whatever its context says.
    const price = e.pricing?.price;
    const dims = {
      ...(e.caller ?? {}),
      service_id: price?.service_id ?? e.context?.service_id,
      model: price?.model ?? e.context?.model,
    };
    const expected = [...this.limits]
      .filter(([, l]) => LIMIT_DIMENSIONS.every((d) => l.scope[d] === undefined || l.scope[d] === dims[d]))
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([limit_id, l]) => ({
        limit_id,
        since_seq: l.since,
        window_start: new Date(windowStart(l.window, nowMs)).toISOString(),
      }));
    /** @type {{ limit_id: string, since_seq: number, window_start: string }[]} */
    const recorded = e.limits ?? [];
    if (
      JSON.stringify(recorded.map((c) => [c.limit_id, c.since_seq, c.window_start])) !==
      JSON.stringify(expected.map((c) => [c.limit_id, c.since_seq, c.window_start]))
    ) {
      return `limits: the event counted in ${JSON.stringify(recorded)}, its caller matches ${JSON.stringify(expected)}`;
    }
    for (const c of expected) {
      const u = this.cell(c.limit_id, c.since_seq, Date.parse(c.window_start));
      u[as] += amount;
      const limit = /** @type {{ amount: number }} */ (this.limits.get(c.limit_id));
      if (u.spent + u.held > limit.amount) return `limit ${c.limit_id} passes its amount ${limit.amount}`;
    }
    const id = e.reservation_id ?? e.charge_id;
    if (expected.length > 0) this.setCounted(id, JSON.stringify(expected));
    return null;
  }

  /** @param {Record<string, any>} e @param {number} hold @param {number} captured @returns {string | null} */
  settle(e, hold, captured) {
    const own = this.countedOf(e.reservation_id);
    if (JSON.stringify(e.limits ?? []) !== (own ?? "[]")) return "limits: a hold's end names where its hold counted";
    if (own === undefined) return null;
    for (const c of JSON.parse(own)) {
      const u = this.cell(c.limit_id, c.since_seq, Date.parse(c.window_start));
      u.held -= hold;
      u.spent += captured;
    }
    // A capture stays a charge that counted there (its refunds give back); a release is done.
    if (captured === 0) this.setCounted(e.reservation_id, undefined);
    return null;
  }

  /** @param {Record<string, any>} e @param {string} chargeId @param {number} amount @param {boolean} whole @returns {string | null} */
  giveBack(e, chargeId, amount, whole) {
    const own = this.countedOf(chargeId);
    if (JSON.stringify(e.limits ?? []) !== (own ?? "[]")) return "limits: a refund names where its charge counted";
    if (own === undefined) return null;
    for (const c of JSON.parse(own)) this.cell(c.limit_id, c.since_seq, Date.parse(c.window_start)).spent -= amount;
    if (whole) this.setCounted(chargeId, undefined);
    return null;
  }
}
