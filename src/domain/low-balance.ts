/**
 * Low-balance crossings (issue 14), pure. The account's spendable balance is what it could still
 * spend: balance - reserved + credit_limit. With a threshold set, the account becomes *low* when its
 * spendable balance goes strictly below the threshold (`account.low_balance`), and stops being low
 * when it goes back strictly above it (`account.balance_recovered`), in the words: "crosses
 * below", "goes back above". At exactly the threshold it stays as it was, so whether it is low is
 * state (kept by the caller: durable-objects/outbox.ts), not a function of one command's before
 * and after. Everything else sends nothing, which is what makes the event fire once per crossing
 * and re-arm only after a recovery: the account object serialises commands, so of 100 concurrent
 * charges exactly one moves the account to low.
 *
 * Turning a threshold on above the current spendable balance is a crossing (the account was not
 * watched, and now is low); turning it off sends nothing and forgets that it was low.
 */
import type { Minor } from "./money";
import type { AccountState } from "./state";

export type LowBalanceTransition = "account.low_balance" | "account.balance_recovered" | null;

type Watched = Pick<AccountState, "balance" | "reserved" | "credit_limit" | "low_balance_threshold">;

export function spendable(account: Pick<AccountState, "balance" | "reserved" | "credit_limit">): Minor {
  return account.balance - account.reserved + account.credit_limit;
}

/** True while strictly below the threshold, null while the threshold is off. */
export function isBelow(account: Watched): boolean | null {
  if (account.low_balance_threshold === null) return null;
  return spendable(account) < account.low_balance_threshold;
}

/**
 * What one command's after state sends, given whether the account was low before it (`wasLow`:
 * as last notified), and whether it is low after.
 */
export function lowBalanceTransition(
  wasLow: boolean,
  after: Watched,
): { transition: LowBalanceTransition; low: boolean } {
  const threshold = after.low_balance_threshold;
  if (threshold === null) return { transition: null, low: false };
  const available = spendable(after);
  if (!wasLow && available < threshold) return { transition: "account.low_balance", low: true };
  if (wasLow && available > threshold) return { transition: "account.balance_recovered", low: false };
  return { transition: null, low: wasLow };
}
