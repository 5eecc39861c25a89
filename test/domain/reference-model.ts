/**
 * An independent reference model of the ledger's rules, written from the product spec only
 * (it does not read or import the decider, the state fold or the views). It is deliberately
 * plain: its own maps, its own arithmetic, one method per command. The property test in
 * property.test.ts runs random command sequences through this model and through the real
 * decider and compares every outcome and every balance.
 */
import type {
  AccountStatus,
  AdjustBalance,
  CaptureReservation,
  ChargeAccount,
  Command,
  CreditFunds,
  ExpireReservations,
  ExtendReservation,
  OnExpiry,
  OpenAccount,
  RefundCharge,
  ReleaseReservation,
  ReserveFunds,
  UpdateAccount,
} from "../../src/domain/commands";
import { BALANCE_ABS_MINOR_MAX, OPEN_RESERVATIONS_MAX } from "../../src/domain/limits";
import type { RejectionCode } from "../../src/domain/rejections";

/** The model covers every rejection except pricing's (priced holds are tested in test/pricing). */
export type ModelRejectionCode = Exclude<RejectionCode, "price_not_pinned" | "unpriceable">;

export type ModelOutcome =
  | { outcome: "accepted"; events: number }
  | { outcome: "replayed" }
  | { outcome: "rejected"; code: ModelRejectionCode };

export type ReservationStatus = "open" | "captured" | "released" | "expired";

export interface ModelAccount {
  account_id: string;
  currency: string;
  balance: number;
  reserved: number;
  credit_limit: number;
  status: AccountStatus;
  /** Number of events written so far. */
  last_seq: number;
}

export interface ModelReservation {
  id: string;
  hold: number;
  status: ReservationStatus;
  expires_at_ms: number;
  on_expiry: OnExpiry;
  /** The fields of the ReserveFunds that created it (its idempotency record). */
  reserve: unknown;
  /** The fields of the CaptureReservation that ended it, when a capture ended it. */
  capture: unknown | null;
  /** The fields of the ReleaseReservation that ended it, when a release ended it. */
  release: unknown | null;
}

export interface ModelCharge {
  id: string;
  amount: number;
  refunded: number;
  /** The fields of the ChargeAccount that created it; null for a captured reservation. */
  direct: unknown | null;
}

/** Structural equality by value; object key order is irrelevant. */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i += 1) if (!sameValue(a[i], b[i])) return false;
    return true;
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const ak = Object.keys(ao);
  const bk = Object.keys(bo);
  if (ak.length !== bk.length) return false;
  for (const k of ak) {
    if (!Object.hasOwn(bo, k)) return false;
    if (!sameValue(ao[k], bo[k])) return false;
  }
  return true;
}

const accepted = (events = 1): ModelOutcome => ({ outcome: "accepted", events });
const replayed: ModelOutcome = { outcome: "replayed" };
const rejected = (code: ModelRejectionCode): ModelOutcome => ({ outcome: "rejected", code });

/** Same key seen before: replay when the fields are identical, conflict otherwise. */
const replayOrConflict = (recorded: unknown, incoming: unknown): ModelOutcome =>
  sameValue(recorded, incoming) ? replayed : rejected("idempotency_conflict");

const outOfBounds = (value: number): boolean => Math.abs(value) > BALANCE_ABS_MINOR_MAX;

export class ReferenceLedger {
  account: ModelAccount | null = null;
  openRequest: unknown = null;
  readonly reservations = new Map<string, ModelReservation>();
  readonly charges = new Map<string, ModelCharge>();
  readonly credits = new Map<string, unknown>();
  readonly refunds = new Map<string, unknown>();
  readonly adjustments = new Map<string, unknown>();
  /** Keyed by reservation id and extension id. */
  readonly extensions = new Map<string, { ttl_seconds: number; on_expiry: OnExpiry }>();

  available(): number {
    return this.account === null ? 0 : this.account.balance - this.account.reserved;
  }

  openReservations(): ModelReservation[] {
    return [...this.reservations.values()].filter((r) => r.status === "open");
  }

  /** Open reservations whose expiry is at or before `now`, earliest first. */
  dueReservations(now: number): string[] {
    return this.openReservations()
      .filter((r) => r.expires_at_ms <= now)
      .sort((a, b) => a.expires_at_ms - b.expires_at_ms || (a.id < b.id ? -1 : 1))
      .map((r) => r.id);
  }

  apply(command: Command, now: number): ModelOutcome {
    if (command.type === "OpenAccount") return this.open(command);
    const account = this.account;
    if (account === null) return rejected("account_not_found");
    const result = this.rulesFor(account, now)[command.type](command as never);
    if (result.outcome === "accepted") account.last_seq += result.events;
    return result;
  }

  /** Each command's method, bound to the account it acts on and the time it is decided at. */
  private rulesFor(
    account: ModelAccount,
    now: number,
  ): { [T in Exclude<Command["type"], "OpenAccount">]: (c: Extract<Command, { type: T }>) => ModelOutcome } {
    return {
      UpdateAccount: (c) => this.update(account, c),
      CreditFunds: (c) => this.credit(account, c),
      ReserveFunds: (c) => this.reserve(account, c, now),
      CaptureReservation: (c) => this.captureReservation(account, c),
      ReleaseReservation: (c) => this.releaseReservation(account, c),
      ExtendReservation: (c) => this.extend(c, now),
      ChargeAccount: (c) => this.charge(account, c),
      RefundCharge: (c) => this.refund(account, c),
      AdjustBalance: (c) => this.adjust(account, c),
      ExpireReservations: (c) => this.expire(account, c),
      // Spend limits have their own fold and property test (test/domain/spend-limits.test.ts).
      SetLimit: () => unmodelled("SetLimit"),
      RemoveLimit: () => unmodelled("RemoveLimit"),
    };
  }

  private open(c: OpenAccount): ModelOutcome {
    const fields = {
      account_id: c.account_id,
      currency: c.currency,
      credit_limit: c.credit_limit,
      metadata: c.metadata,
    };
    if (this.account !== null) return replayOrConflict(this.openRequest, fields);
    this.openRequest = structuredClone(fields);
    this.account = {
      account_id: c.account_id,
      currency: c.currency,
      balance: 0,
      reserved: 0,
      credit_limit: c.credit_limit,
      status: "active",
      last_seq: 1,
    };
    return accepted();
  }

  /**
   * The spec says only that an update sets the fields it names. It is silent on an update that
   * changes nothing; this model (like the implementation) accepts it and writes no event.
   */
  private update(account: ModelAccount, c: UpdateAccount): ModelOutcome {
    let changed = 0;
    if (c.credit_limit !== undefined && c.credit_limit !== account.credit_limit) {
      account.credit_limit = c.credit_limit;
      changed += 1;
    }
    if (c.status !== undefined && c.status !== account.status) {
      account.status = c.status;
      changed += 1;
    }
    return accepted(changed > 0 ? 1 : 0);
  }

  private credit(account: ModelAccount, c: CreditFunds): ModelOutcome {
    const fields = { amount: c.amount, reason: c.reason, metadata: c.metadata };
    return this.moveBalance(account, this.credits, c.credit_id, c.amount, fields);
  }

  /**
   * A movement of the balance under a key of its own (a credit or an adjustment): a replay or
   * a conflict when the key was seen, otherwise the balance moves if it stays in bounds.
   */
  private moveBalance(
    account: ModelAccount,
    seenKeys: Map<string, unknown>,
    key: string,
    amount: number,
    fields: unknown,
  ): ModelOutcome {
    const seen = seenKeys.get(key);
    if (seen !== undefined) return replayOrConflict(seen, fields);
    if (outOfBounds(account.balance + amount)) return rejected("balance_limit_exceeded");
    account.balance += amount;
    seenKeys.set(key, structuredClone(fields));
    return accepted();
  }

  private reserve(account: ModelAccount, c: ReserveFunds, now: number): ModelOutcome {
    const fields = {
      amount: c.amount,
      ttl_seconds: c.ttl_seconds,
      on_expiry: c.on_expiry,
      context: c.context,
      metadata: c.metadata,
    };
    const existing = this.reservations.get(c.reservation_id);
    if (existing !== undefined) return replayOrConflict(existing.reserve, fields);
    // One namespace: a direct charge already owns this id.
    if (this.charges.has(c.reservation_id)) return rejected("idempotency_conflict");
    if (account.status === "frozen") return rejected("account_frozen");
    if (this.openReservations().length >= OPEN_RESERVATIONS_MAX) return rejected("too_many_open_reservations");
    if (c.amount > this.available() + account.credit_limit) return rejected("insufficient_funds");
    if (outOfBounds(account.balance) || account.reserved + c.amount > BALANCE_ABS_MINOR_MAX) {
      return rejected("balance_limit_exceeded");
    }
    account.reserved += c.amount;
    this.reservations.set(c.reservation_id, {
      id: c.reservation_id,
      hold: c.amount,
      status: "open",
      expires_at_ms: now + c.ttl_seconds * 1000,
      on_expiry: c.on_expiry,
      reserve: structuredClone(fields),
      capture: null,
      release: null,
    });
    return accepted();
  }

  private captureReservation(account: ModelAccount, command: CaptureReservation): ModelOutcome {
    // Priced captures (amount computed from usage) are covered by the pricing tests, not this model.
    const amount = command.amount;
    if (amount === null) throw new Error("the reference model takes explicit capture amounts only");
    const c = { ...command, amount };
    const fields = { amount: c.amount, allow_overage: c.allow_overage, usage: c.usage, metadata: c.metadata };
    const r = this.reservations.get(c.reservation_id);
    if (r === undefined) return rejected("reservation_not_found");
    if (r.status === "captured" && r.capture !== null) return replayOrConflict(r.capture, fields);
    if (r.status !== "open") return rejected("reservation_not_open");
    if (c.amount > r.hold && !c.allow_overage) return rejected("capture_exceeds_reservation");
    if (outOfBounds(account.balance - c.amount)) return rejected("balance_limit_exceeded");
    account.balance -= c.amount;
    account.reserved -= r.hold;
    r.status = "captured";
    r.capture = structuredClone(fields);
    this.charges.set(r.id, { id: r.id, amount: c.amount, refunded: 0, direct: null });
    return accepted();
  }

  private releaseReservation(account: ModelAccount, c: ReleaseReservation): ModelOutcome {
    const fields = { reason: c.reason };
    const r = this.reservations.get(c.reservation_id);
    if (r === undefined) return rejected("reservation_not_found");
    if (r.status === "released" && r.release !== null) return replayOrConflict(r.release, fields);
    if (r.status !== "open") return rejected("reservation_not_open");
    account.reserved -= r.hold;
    r.status = "released";
    r.release = structuredClone(fields);
    return accepted();
  }

  /**
   * The extension's idempotency key is (reservation, extension_id). An omitted on_expiry means
   * "keep the rule in effect", and like every omitted field it is compared as the value it
   * resolves to: a retry matches when its ttl_seconds is equal and its on_expiry is null or
   * equal to the rule the original extension left in effect.
   */
  private extend(c: ExtendReservation, now: number): ModelOutcome {
    const key = c.extension_id === null ? null : `${c.reservation_id}\u0000${c.extension_id}`;
    if (key !== null) {
      const seen = this.extensions.get(key);
      if (seen !== undefined) {
        const same = seen.ttl_seconds === c.ttl_seconds && (c.on_expiry === null || c.on_expiry === seen.on_expiry);
        return same ? replayed : rejected("idempotency_conflict");
      }
    }
    const r = this.reservations.get(c.reservation_id);
    if (r === undefined) return rejected("reservation_not_found");
    if (r.status !== "open") return rejected("reservation_not_open");
    r.expires_at_ms = now + c.ttl_seconds * 1000;
    if (c.on_expiry !== null) r.on_expiry = c.on_expiry;
    if (key !== null) this.extensions.set(key, { ttl_seconds: c.ttl_seconds, on_expiry: r.on_expiry });
    return accepted();
  }

  private charge(account: ModelAccount, c: ChargeAccount): ModelOutcome {
    const fields = { amount: c.amount, context: c.context, metadata: c.metadata };
    const existing = this.charges.get(c.charge_id);
    if (existing !== undefined && existing.direct !== null) return replayOrConflict(existing.direct, fields);
    // One namespace: any reservation (open or ended) already owns this id.
    if (this.reservations.has(c.charge_id)) return rejected("idempotency_conflict");
    if (account.status === "frozen") return rejected("account_frozen");
    if (c.amount > this.available() + account.credit_limit) return rejected("insufficient_funds");
    if (outOfBounds(account.balance - c.amount) || account.reserved > BALANCE_ABS_MINOR_MAX) {
      return rejected("balance_limit_exceeded");
    }
    account.balance -= c.amount;
    this.charges.set(c.charge_id, { id: c.charge_id, amount: c.amount, refunded: 0, direct: structuredClone(fields) });
    return accepted();
  }

  private refund(account: ModelAccount, c: RefundCharge): ModelOutcome {
    const fields = { charge_id: c.charge_id, amount: c.amount, reason: c.reason };
    const seen = this.refunds.get(c.refund_id);
    if (seen !== undefined) return replayOrConflict(seen, fields);
    const charge = this.charges.get(c.charge_id);
    if (charge === undefined) return rejected("charge_not_found");
    if (c.amount > charge.amount - charge.refunded) return rejected("refund_exceeds_charge");
    if (outOfBounds(account.balance + c.amount)) return rejected("balance_limit_exceeded");
    account.balance += c.amount;
    charge.refunded += c.amount;
    this.refunds.set(c.refund_id, structuredClone(fields));
    return accepted();
  }

  private adjust(account: ModelAccount, c: AdjustBalance): ModelOutcome {
    const fields = { amount: c.amount, reason: c.reason };
    return this.moveBalance(account, this.adjustments, c.adjustment_id, c.amount, fields);
  }

  private expire(account: ModelAccount, c: ExpireReservations): ModelOutcome {
    let events = 0;
    for (const id of c.reservation_ids) {
      const r = this.reservations.get(id);
      if (r === undefined || r.status !== "open") throw new Error(`model: expiry of ${id}, which is not open`);
      account.reserved -= r.hold;
      r.status = "expired";
      if (r.on_expiry === "capture") {
        account.balance -= r.hold;
        this.charges.set(id, { id, amount: r.hold, refunded: 0, direct: null });
      }
      events += 1;
    }
    return accepted(events);
  }

  /** The model's own invariants; returns the list of violations (empty when all hold). */
  invariantViolations(): string[] {
    const problems: string[] = [];
    const a = this.account;
    if (a === null) {
      if (this.reservations.size > 0 || this.charges.size > 0) problems.push("entities without an account");
      return problems;
    }
    const holds = this.openReservations().reduce((sum, r) => sum + r.hold, 0);
    if (a.reserved !== holds) problems.push(`reserved ${a.reserved} != sum of open holds ${holds}`);
    if (a.reserved < 0) problems.push(`reserved ${a.reserved} < 0`);
    if (this.available() !== a.balance - a.reserved) problems.push("available != balance - reserved");
    if (a.credit_limit < 0) problems.push(`credit_limit ${a.credit_limit} < 0`);
    for (const ch of this.charges.values()) {
      if (ch.refunded < 0 || ch.refunded > ch.amount) problems.push(`charge ${ch.id} refunded ${ch.refunded}`);
    }
    for (const id of this.reservations.keys()) {
      const ch = this.charges.get(id);
      if (ch !== undefined && ch.direct !== null) problems.push(`id ${id} is both a reservation and a direct charge`);
    }
    return problems;
  }
}

function unmodelled(type: string): never {
  throw new Error(`${type} is not in the reference model`);
}
