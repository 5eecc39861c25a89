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
 * each charge.
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
});

/**
 * Verifies a stream of events pushed in order. `push` returns null while all is well and the
 * first failure otherwise (after which the verifier refuses more input).
 */
export class ChainVerifier {
  /** @param {{ sha256Hex: Sha256Hex }} options */
  constructor(options) {
    this.sha256Hex = options.sha256Hex;
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
    this.balance = balance;
    this.reserved = reserved;
    return null;
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
    return this[RULES[/** @type {keyof typeof RULES} */ (type)]](e);
  }

  // The account.

  /** @param {Record<string, any>} e @returns {Effect} */
  accountOpened(e) {
    if (this.seq !== 0) return "AccountOpened after the first event";
    if (!isId(e.account_id) || typeof e.currency !== "string") return "AccountOpened lacks account_id or currency";
    if (!isAmountOrZero(e.credit_limit)) return "credit_limit must be a non-negative integer";
    this.accountId = e.account_id;
    this.currency = e.currency;
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
    return [e.amount, 0];
  }

  /** @param {Record<string, any>} e @returns {Effect} */
  balanceAdjusted(e) {
    if (!isInt(e.amount) || e.amount === 0) return "adjustment must be a non-zero integer";
    if (typeof e.reason !== "string" || e.reason.length === 0) return "adjustment without a reason";
    if (!this.useKey(`adjustment:${e.adjustment_id}`)) return `adjustment_id ${e.adjustment_id} applied twice`;
    return [e.amount, 0];
  }

  /** @param {Record<string, any>} e @returns {Effect} */
  accountCharged(e) {
    if (!isAmount(e.amount)) return "charge amount must be a positive integer";
    if (!isId(e.charge_id)) return "charge_id is invalid";
    if (this.charges.has(e.charge_id) || this.reservationIds.has(e.charge_id)) return `charge_id ${e.charge_id} reused`;
    this.charges.add(e.charge_id, [e.amount, 0]);
    return [-e.amount, 0];
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
    this.charges.setValue(charge.index, 1, refunded);
    return [e.amount, 0];
  }

  // Reservations: a hold opens, may be extended, and ends once (captured, released or expired).

  /** @param {Record<string, any>} e @returns {Effect} */
  fundsReserved(e) {
    if (!isAmount(e.amount)) return "reservation amount must be a positive integer";
    if (!isId(e.reservation_id)) return "reservation_id is invalid";
    if (this.reservationIds.has(e.reservation_id) || this.charges.has(e.reservation_id)) {
      return `reservation_id ${e.reservation_id} reused`;
    }
    if (e.pricing !== undefined) {
      const priced = priceAmount(e.pricing?.rules, e.pricing?.estimate ?? {});
      if (priced !== e.amount) return `the hold ${e.amount} is not the estimate at the pinned price (${priced})`;
      this.pinned.set(e.reservation_id, e.pricing.rules);
    }
    this.reservationIds.add(e.reservation_id);
    this.open.set(e.reservation_id, e.amount);
    this.openSum += e.amount;
    return [0, e.amount];
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
    return [-e.amount, -hold];
  }

  /** @param {Record<string, any>} e @returns {Effect} */
  reservationReleased(e) {
    const hold = this.endingHold(e, "release");
    if (typeof hold === "string") return hold;
    this.close(e.reservation_id, hold);
    return [0, -hold];
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
    return [-captured, -hold];
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
    };
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
