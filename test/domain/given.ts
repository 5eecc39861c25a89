/**
 * Given/when/then over the pure decider: `given(...commands)` builds a state by deciding and
 * evolving each command (every one of them must be accepted), `when` decides one more.
 * The clock is explicit and only moves when a test says so.
 */
import type {
  CaptureReservation,
  ChargeAccount,
  Command,
  CreditFunds,
  RefundCharge,
  ReserveFunds,
} from "../../src/domain/commands";
import { type Decision, decide, stamp } from "../../src/domain/decide";
import type { LedgerEvent } from "../../src/domain/events";
import { evolve, initialState, type LedgerState } from "../../src/domain/state";

export const T0 = Date.parse("2026-11-28T12:00:00.000Z");

export class Ledger {
  state: LedgerState = initialState();
  log: LedgerEvent[] = [];
  now = T0;
  private ids = 0;

  tick(ms: number): this {
    this.now += ms;
    return this;
  }

  decide(command: Command): Decision {
    return decide(command, this.state, this.now);
  }

  /** Decides and applies; returns the decision. */
  run(command: Command): Decision {
    const decision = this.decide(command);
    if (decision.outcome === "accepted") {
      for (const event of stamp(decision.events, this.state.account, this.now, () => `ev_${++this.ids}`)) {
        this.state = evolve(this.state, event);
        this.log.push(event);
      }
    }
    return decision;
  }

  /** Each item is a command that must be accepted, or a number of milliseconds to wait. */
  given(...commands: (Command | number)[]): this {
    for (const command of commands) {
      if (typeof command === "number") {
        this.tick(command);
        continue;
      }
      const decision = this.run(command);
      if (decision.outcome !== "accepted") {
        throw new Error(`given ${command.type} was ${decision.outcome}: ${JSON.stringify(decision)}`);
      }
    }
    return this;
  }

  get account() {
    const account = this.state.account;
    if (account === null) throw new Error("no account");
    return account;
  }
}

export const open = (credit_limit = 0): Command => ({
  type: "OpenAccount",
  account_id: "acct",
  currency: "USD",
  credit_limit,
  metadata: {},
});
export const credit = (amount: number, credit_id = `cr_${amount}`, extra: Partial<CreditFunds> = {}): CreditFunds => ({
  type: "CreditFunds",
  credit_id,
  amount,
  reason: null,
  metadata: {},
  ...extra,
});
export const reserve = (reservation_id: string, amount: number, extra: Partial<ReserveFunds> = {}): ReserveFunds => ({
  type: "ReserveFunds",
  reservation_id,
  amount,
  ttl_seconds: 900,
  on_expiry: "release",
  context: {},
  metadata: {},
  ...extra,
});
export const capture = (
  reservation_id: string,
  amount: number,
  extra: Partial<CaptureReservation> = {},
): CaptureReservation => ({
  type: "CaptureReservation",
  reservation_id,
  amount,
  allow_overage: false,
  usage: {},
  metadata: {},
  ...extra,
});
export const release = (reservation_id: string, reason: string | null = null): Command => ({
  type: "ReleaseReservation",
  reservation_id,
  reason,
});
export const extend = (
  reservation_id: string,
  ttl_seconds: number,
  extension_id: string | null = null,
  on_expiry: "release" | "capture" | null = null,
): Command => ({ type: "ExtendReservation", reservation_id, extension_id, ttl_seconds, on_expiry });
export const charge = (charge_id: string, amount: number, extra: Partial<ChargeAccount> = {}): ChargeAccount => ({
  type: "ChargeAccount",
  charge_id,
  amount,
  context: {},
  metadata: {},
  ...extra,
});
export const refund = (
  refund_id: string,
  charge_id: string,
  amount: number,
  extra: Partial<RefundCharge> = {},
): RefundCharge => ({ type: "RefundCharge", refund_id, charge_id, amount, reason: null, ...extra });
export const adjust = (adjustment_id: string, amount: number, reason = "correction"): Command => ({
  type: "AdjustBalance",
  adjustment_id,
  amount,
  reason,
});
export const freeze = (): Command => ({ type: "UpdateAccount", status: "frozen" });
export const unfreeze = (): Command => ({ type: "UpdateAccount", status: "active" });
export const expire = (...reservation_ids: string[]): Command => ({ type: "ExpireReservations", reservation_ids });

export function codeOf(decision: Decision): string {
  return decision.outcome === "rejected" ? decision.rejection.code : decision.outcome;
}
