/**
 * Spend limits in the event log (issue 28): how each event moves an account's limits, and the
 * limit fields a decision puts on its events. As with lots (lot-events.ts), the rules compute the
 * fields and `evolveLimits` computes them again from the limits before the event and asserts that
 * the event recorded exactly that. Each event is self-contained: a hold's end and a refund copy
 * where their hold or charge counted (`limits`), so the object folds its limits from any seq on.
 */
import { canonicalJson } from "./canonical";
import type { LedgerEvent } from "./events";
import { assert, type Minor } from "./money";
import {
  type Counted,
  count,
  emptyLimits,
  giveBack,
  type LimitBook,
  type LimitScope,
  remainingAt,
  removeLimit,
  setLimit,
  settle,
} from "./spend-limits";

/**
 * Who a hold or a charge is for: the caller's key and project, and its service and model. A priced
 * hold's are its price's (the context is the caller's to write, the price is what it pays), so a
 * limit on a model cannot be passed by naming another in the context.
 */
export function dimensionsOf(event: {
  caller?: { api_key_id?: string; project_id?: string };
  context: { service_id?: string; model?: string };
  pricing?: { price: { service_id: string; model: string } };
}): LimitScope {
  const dims: LimitScope = {};
  if (event.caller?.api_key_id !== undefined) dims.api_key_id = event.caller.api_key_id;
  if (event.caller?.project_id !== undefined) dims.project_id = event.caller.project_id;
  const service = event.pricing?.price.service_id ?? event.context.service_id;
  const model = event.pricing?.price.model ?? event.context.model;
  if (service !== undefined) dims.service_id = service;
  if (model !== undefined) dims.model = model;
  return dims;
}

/** The field an event records: the list, or nothing where no limit counted. */
export const limitsField = (counted: readonly Counted[]): { limits?: Counted[] } =>
  counted.length === 0 ? {} : { limits: [...counted] };

/** The limits after `event`. Asserts the event's limit fields against the limits before it. */
export function evolveLimits(book: LimitBook | undefined, event: LedgerEvent): LimitBook {
  const limits = book ?? emptyLimits();
  const now = Date.parse(event.at);
  const at = `seq ${event.seq}`;
  switch (event.type) {
    case "LimitSet":
      return setLimit(limits, event.limit_id, event.terms, event.seq, now);
    case "LimitRemoved":
      return removeLimit(limits, event.limit_id);
    case "FundsReserved":
      return counting(limits, event, event.amount, now, "held", at);
    case "AccountCharged":
      return counting(limits, event, event.amount, now, "spent", at);
    case "ReservationCaptured":
      return settle(limits, event.limits ?? [], event.reserved_amount, event.amount);
    case "ReservationExpired":
      return settle(limits, event.limits ?? [], event.reserved_amount, event.captured_amount);
    case "ReservationReleased":
      return settle(limits, event.limits ?? [], event.reserved_amount, 0);
    case "ChargeRefunded":
      return giveBack(limits, event.limits ?? [], event.amount);
    default:
      return limits;
  }
}

function counting(
  book: LimitBook,
  event: Extract<LedgerEvent, { type: "FundsReserved" | "AccountCharged" }>,
  amount: Minor,
  now: number,
  as: "held" | "spent",
  at: string,
): LimitBook {
  const result = count(book, dimensionsOf(event), amount, now, as);
  assert(
    canonicalJson(event.limits ?? []) === canonicalJson(result.counted),
    `${at}: the limits it counted in are the matching ones`,
  );
  // No hold or charge takes a limit past its amount (only a capture's overage may).
  for (const c of result.counted) {
    const entry = result.book.get(c.limit_id);
    assert(entry !== undefined && remainingAt(entry, now) >= 0, `${at}: limit ${c.limit_id} stays within its amount`);
  }
  return result.book;
}
