/**
 * Low-balance crossings (issue 14), pure. The account's spendable balance is what it could still
 * spend: balance - reserved + credit_limit. With a threshold set, the account is *low* while its
 * spendable balance is strictly below the threshold, and *not low* at or above it. A command that
 * moves the account from not low to low sends `account.low_balance`; from low to not low,
 * `account.balance_recovered`. Every other pair sends nothing, which is what makes the event fire
 * once per crossing and re-arm only after a recovery: the account object serialises commands, so
 * of 100 concurrent charges exactly one sees the before/after pair that crosses.
 *
 * Turning a threshold on above the current spendable balance is a crossing (the account was not
 * watched, and now is low); turning it off sends nothing.
 */
import type { Minor } from "./money";
import type { AccountState } from "./state";

export type LowBalanceTransition = "account.low_balance" | "account.balance_recovered" | null;

type Watched = Pick<AccountState, "balance" | "reserved" | "credit_limit" | "low_balance_threshold">;

export function spendable(account: Pick<AccountState, "balance" | "reserved" | "credit_limit">): Minor {
  return account.balance - account.reserved + account.credit_limit;
}

/** True while low, false while watched and not low, null while the threshold is off. */
export function isLow(account: Watched): boolean | null {
  if (account.low_balance_threshold === null) return null;
  return spendable(account) < account.low_balance_threshold;
}

/** What one command's before and after states send. `before` is null for a new account. */
export function lowBalanceTransition(before: Watched | null, after: Watched): LowBalanceTransition {
  const was = before === null ? null : isLow(before);
  const now = isLow(after);
  if (now === true && was !== true) return "account.low_balance";
  if (now === false && was === true) return "account.balance_recovered";
  return null;
}
