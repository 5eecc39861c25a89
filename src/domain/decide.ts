/**
 * `decide(command, state, now)`: the ledger's rules. Pure: no I/O, no clock, no randomness.
 * It returns the events to append, an idempotent replay of an earlier operation, or a named
 * rejection. Checks run in a fixed precedence order, documented per command in rules.ts and in
 * the docs; tests walk that order as tables (test/domain/decide.test.ts).
 *
 * Precedence for every money command:
 *   1. account_not_found
 *   2. idempotency: the same id again -> replay (same fields) or idempotency_conflict
 *   3. the referenced reservation / charge exists and is in the right state
 *   4. account_frozen (reserve and charge only)
 *   5. capacity and amount rules (too_many_open_reservations, capture_exceeds_reservation,
 *      refund_exceeds_charge, insufficient_funds)
 *   6. balance_limit_exceeded
 * Replays come before state checks on purpose: a retry of an operation that succeeded must
 * succeed again even if the account has since been frozen or spent.
 */

import { canonicalJson } from "./canonical";
import { chainHash, GENESIS_HASH, stampedFrom } from "./chain";
import type { Command } from "./commands";
import { type EventBody, eventEffect, type LedgerEvent } from "./events";
import { encodeKey } from "./keys";
import { assert } from "./money";
import { reject } from "./rejections";
import { type DecideInput, type Decision, rejected } from "./rules";
import type { AccountState, LedgerState } from "./state";
import { type ReplayField, specOf } from "./table";

export type { Decision } from "./rules";

export function decide(command: Command, state: LedgerState, now: number): Decision {
  assert(Number.isSafeInteger(now) && now > 0, "now must be epoch milliseconds");
  const spec = specOf(command);
  // Keys exist only on an open account, so an unknown account never finds a prior operation
  // and step 1 still comes first. An existing account's OpenAccount is a replay here.
  const key = spec.key(command);
  const prior = key === null ? undefined : state.operations.get(encodeKey(key));
  if (prior !== undefined) {
    assert(spec.replay !== null, `${command.type} has a key, so it declares its replay fields`);
    return replayOrConflict(prior, spec.replay(command, prior));
  }
  if (state.account === null && command.type !== "OpenAccount") {
    return rejected(reject("account_not_found", "The account does not exist."));
  }
  return spec.decide(command, { account: state.account, state, now } as DecideInput);
}

function replayOrConflict(prior: LedgerEvent, fields: readonly ReplayField[]): Decision {
  for (const [field, requested, original] of fields) {
    if (canonicalJson(requested) !== canonicalJson(original)) {
      return rejected(reject("idempotency_conflict", `This id was already used with a different ${field}.`, { field }));
    }
  }
  return { outcome: "replayed", event: prior };
}

/**
 * The time events are stamped at and a decision is made at: the clock, or the last event's time
 * if the clock is behind it (event time never goes backwards, and lots expire by that time).
 */
export function eventTime(account: Pick<AccountState, "updated_at"> | null, clockMs: number): number {
  return account === null ? clockMs : Math.max(clockMs, Date.parse(account.updated_at));
}

/**
 * Stamps decided event bodies with their seq, time, id, the balances after each and the hash
 * chain, in order. `nextEventId` is the shell's id source (ULIDs in production, a counter in
 * tests). Event time never goes backwards, even if the clock does.
 */
export function stamp(
  bodies: readonly EventBody[],
  account: AccountState | null,
  now: number,
  nextEventId: () => string,
): LedgerEvent[] {
  let seq = account?.last_seq ?? 0;
  let balance = account?.balance ?? 0;
  let reserved = account?.reserved ?? 0;
  let prevHash = account?.head_hash ?? GENESIS_HASH;
  const at = new Date(eventTime(account, now)).toISOString();
  return bodies.map((body) => {
    const effect = eventEffect(body);
    seq += 1;
    balance += effect.balance;
    reserved += effect.reserved;
    assert(Number.isSafeInteger(balance) && Number.isSafeInteger(reserved), "balances stay exact");
    const unhashed = { ...body, seq, event_id: nextEventId(), at, balance_after: balance, reserved_after: reserved };
    const from = prevHash;
    prevHash = chainHash(prevHash, unhashed);
    const event = { ...unhashed, hash: prevHash } as LedgerEvent;
    stampedFrom.set(event, from);
    return event;
  });
}
