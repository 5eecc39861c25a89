/**
 * Spend limits per key, project, service and model (issue 28), pure: the arithmetic of an
 * account's limits, decided in the same step as the balance. No I/O and no clock: times are
 * arguments (the time the events are stamped with).
 *
 * A limit caps what matching commands spend in a calendar window in UTC (`day`; `week` from
 * Monday; `month`; `total`, one window for ever). A command matches when every dimension the limit
 * names (`applies_to`) equals the command's (its API key, project, service and model).
 *
 * Each limit keeps the usage of one window, the latest any event touched: `spent` (what charges
 * and captures counted in it, less refunds of them) and `held` (open holds counted in it). A
 * window that has passed counts for nothing, so the book forgets it when a later event rolls the
 * limit into a new one; a hold made before the roll settles into the window it was made in, which
 * no longer counts (the "a hold made before midnight and captured after it counts in the
 * window of the reservation").
 *
 * What each movement does:
 * - a hold counts its amount as `held` in every matching limit's window (`Counted`, recorded on
 *   the event and copied to the hold's end), refused past any limit's amount;
 * - its end takes the hold's amount from `held` and adds what it captured to `spent`, in the
 *   window it counted in (an overage too: the work is done, so `remaining` may go negative);
 * - a direct charge adds to `spent`, refused like a hold;
 * - a refund takes what it gives back from `spent` of the window the charge counted in.
 * A limit set again with the same `applies_to` and `window` keeps its usage (only the amount or
 * the threshold changed); with other terms it is a new limit (`since_seq`), and what counted in
 * the old one no longer moves the new one.
 */
import { AMOUNT_MINOR_MAX } from "./limits";
import { assert, type Minor } from "./money";

export const LIMIT_WINDOWS = ["day", "week", "month", "total"] as const;
export type LimitWindow = (typeof LIMIT_WINDOWS)[number];

/** The dimensions a limit may name, in the order the answers list them. */
export const LIMIT_DIMENSIONS = ["api_key_id", "project_id", "service_id", "model"] as const;
export type LimitDimension = (typeof LIMIT_DIMENSIONS)[number];
export type LimitScope = { [d in LimitDimension]?: string };

/** Limits per account: every hold and charge checks each (O(limits) per command). */
export const LIMITS_PER_ACCOUNT_MAX = 100;
/** The share of the amount at which `limit.threshold_reached` fires, when the limit names none. */
export const LIMIT_THRESHOLD_PERCENT_DEFAULT = 80;
export const LIMIT_THRESHOLD_PERCENT_MIN = 1;
export const LIMIT_THRESHOLD_PERCENT_MAX = 100;

export interface LimitTerms {
  applies_to: LimitScope;
  window: LimitWindow;
  amount: Minor;
  /** `limit.threshold_reached` fires once per window when spent + held reaches this percent. */
  threshold_percent: number;
}

export interface SpendLimit extends LimitTerms {
  limit_id: string;
  /** The seq that set its `applies_to` and `window`: usage counted before it is another limit's. */
  since_seq: number;
}

export interface LimitUsage {
  /** Epoch ms of the window's start (0 for `total`). */
  window_start_ms: number;
  spent: Minor;
  held: Minor;
  /** The most `spent + held` reached in the window: it only rises, so each crossing happens once. */
  peak: Minor;
}

export interface LimitEntry {
  limit: SpendLimit;
  usage: LimitUsage;
}

/** The limits of an account, by id. Immutable: a movement returns a new book. */
export type LimitBook = ReadonlyMap<string, LimitEntry>;

/** Where a hold or a charge counted: the limit (as of `since_seq`) and the window's start. */
export interface Counted {
  limit_id: string;
  since_seq: number;
  window_start: string;
}

export const emptyLimits = (): LimitBook => new Map();

const DAY_MS = 86_400_000;

/** The start of the window `window` that holds `ms` (UTC; a week starts on Monday). */
export function windowStartMs(window: LimitWindow, ms: number): number {
  const day = Math.floor(ms / DAY_MS) * DAY_MS;
  switch (window) {
    case "day":
      return day;
    case "week": {
      // 1970-01-01 was a Thursday: days since the epoch + 3 is 0 on Mondays (mod 7).
      const days = day / DAY_MS;
      return (days - ((((days + 3) % 7) + 7) % 7)) * DAY_MS;
    }
    case "month": {
      const d = new Date(ms);
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
    }
    case "total":
      return 0;
  }
}

/** When the window holding `ms` ends and the next begins; null for `total`. */
export function windowEndMs(window: LimitWindow, ms: number): number | null {
  const start = windowStartMs(window, ms);
  switch (window) {
    case "day":
      return start + DAY_MS;
    case "week":
      return start + 7 * DAY_MS;
    case "month": {
      const d = new Date(start);
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    }
    case "total":
      return null;
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** The limit's usage in the window holding `nowMs`: nothing yet when the book's is older. */
export function usageAt(entry: LimitEntry, nowMs: number): LimitUsage {
  const start = windowStartMs(entry.limit.window, nowMs);
  assert(entry.usage.window_start_ms <= start, `limit ${entry.limit.limit_id}: time runs forward`);
  return entry.usage.window_start_ms === start ? entry.usage : { window_start_ms: start, spent: 0, held: 0, peak: 0 };
}

/** What the limit still allows in the window holding `nowMs` (negative after an overage). */
export const remainingAt = (entry: LimitEntry, nowMs: number): Minor => {
  const usage = usageAt(entry, nowMs);
  return entry.limit.amount - usage.spent - usage.held;
};

export function matches(scope: LimitScope, dims: LimitScope): boolean {
  return LIMIT_DIMENSIONS.every((d) => scope[d] === undefined || scope[d] === dims[d]);
}

/** The limits a command with `dims` counts against, in id order (a stable record). */
export function matching(book: LimitBook, dims: LimitScope): LimitEntry[] {
  return [...book.values()]
    .filter((entry) => matches(entry.limit.applies_to, dims))
    .sort((a, b) => (a.limit.limit_id < b.limit.limit_id ? -1 : 1));
}

/** The first matching limit `amount` would take past its amount, with what it has left; else null. */
export function exceeded(
  book: LimitBook,
  dims: LimitScope,
  amount: Minor,
  nowMs: number,
): { entry: LimitEntry; remaining: Minor } | null {
  for (const entry of matching(book, dims)) {
    const remaining = remainingAt(entry, nowMs);
    if (amount > remaining) return { entry, remaining };
  }
  return null;
}

/** The most every matching limit allows now (AMOUNT_MINOR_MAX with none; never below 0). */
export function allowance(book: LimitBook, dims: LimitScope, nowMs: number): Minor {
  let most = AMOUNT_MINOR_MAX;
  for (const entry of matching(book, dims)) most = Math.min(most, Math.max(remainingAt(entry, nowMs), 0));
  return most;
}

function withUsage(book: LimitBook, entry: LimitEntry, usage: LimitUsage): LimitBook {
  assert(usage.spent >= 0 && usage.held >= 0, `limit ${entry.limit.limit_id}: spent and held are not negative`);
  const next = new Map(book);
  const peak = Math.max(usage.peak, usage.spent + usage.held);
  next.set(entry.limit.limit_id, { limit: entry.limit, usage: { ...usage, peak } });
  return next;
}

/**
 * A hold of `amount` (or a direct charge, `spent` true) counts in every matching limit's current
 * window. The caller checked `exceeded` first; a charge or hold is refused past any limit.
 */
export function count(
  book: LimitBook,
  dims: LimitScope,
  amount: Minor,
  nowMs: number,
  as: "held" | "spent",
): { book: LimitBook; counted: Counted[] } {
  let next = book;
  const counted: Counted[] = [];
  for (const entry of matching(book, dims)) {
    const usage = usageAt(entry, nowMs);
    next = withUsage(next, entry, { ...usage, [as]: usage[as] + amount });
    counted.push({
      limit_id: entry.limit.limit_id,
      since_seq: entry.limit.since_seq,
      window_start: iso(usage.window_start_ms),
    });
  }
  return { book: next, counted };
}

/** The entry `c` counted in, as long as the book still keeps that limit's window; else null. */
function countedIn(book: LimitBook, c: Counted): LimitEntry | null {
  const entry = book.get(c.limit_id);
  if (entry === undefined || entry.limit.since_seq !== c.since_seq) return null;
  return entry.usage.window_start_ms === Date.parse(c.window_start) ? entry : null;
}

/** A hold of `held` ends having captured `captured` (0 for a release): in the windows it counted in. */
export function settle(book: LimitBook, counted: readonly Counted[], held: Minor, captured: Minor): LimitBook {
  let next = book;
  for (const c of counted) {
    const entry = countedIn(next, c);
    if (entry === null) continue;
    assert(entry.usage.held >= held, `limit ${c.limit_id}: the hold is held`);
    next = withUsage(next, entry, {
      ...entry.usage,
      held: entry.usage.held - held,
      spent: entry.usage.spent + captured,
    });
  }
  return next;
}

/** A refund of `amount` of a charge that counted in `counted`: that window spent it no longer. */
export function giveBack(book: LimitBook, counted: readonly Counted[], amount: Minor): LimitBook {
  let next = book;
  for (const c of counted) {
    const entry = countedIn(next, c);
    if (entry === null) continue;
    assert(entry.usage.spent >= amount, `limit ${c.limit_id}: a refund gives back no more than was spent`);
    next = withUsage(next, entry, { ...entry.usage, spent: entry.usage.spent - amount });
  }
  return next;
}

export function sameTerms(a: Pick<LimitTerms, "applies_to" | "window">, b: Pick<LimitTerms, "applies_to" | "window">) {
  return a.window === b.window && LIMIT_DIMENSIONS.every((d) => a.applies_to[d] === b.applies_to[d]);
}

/** A limit set at `seq` (`nowMs`): the same scope and window keep their usage, others start anew. */
export function setLimit(book: LimitBook, limitId: string, terms: LimitTerms, seq: number, nowMs: number): LimitBook {
  const before = book.get(limitId);
  const next = new Map(book);
  if (before !== undefined && sameTerms(before.limit, terms)) {
    next.set(limitId, {
      limit: { ...terms, limit_id: limitId, since_seq: before.limit.since_seq },
      usage: before.usage,
    });
  } else {
    const usage = { window_start_ms: windowStartMs(terms.window, nowMs), spent: 0, held: 0, peak: 0 };
    next.set(limitId, { limit: { ...terms, limit_id: limitId, since_seq: seq }, usage });
  }
  assert(next.size <= LIMITS_PER_ACCOUNT_MAX, "at most LIMITS_PER_ACCOUNT_MAX limits");
  return next;
}

export function removeLimit(book: LimitBook, limitId: string): LimitBook {
  assert(book.has(limitId), `limit ${limitId} exists`);
  const next = new Map(book);
  next.delete(limitId);
  return next;
}

export type LimitCrossing = "limit.threshold_reached" | "limit.exhausted";

/**
 * What a movement from `before` to `after` at `nowMs` crossed, per limit: its usage's peak reaching
 * the threshold (`threshold_percent` of the amount) or the amount itself, in the window holding
 * `nowMs` (a late capture into a window that has passed crosses nothing: that window is over). A
 * peak only rises within a window, so each crossing happens at most once per window and amount.
 */
export function crossings(
  before: LimitBook,
  after: LimitBook,
  nowMs: number,
): { entry: LimitEntry; crossing: LimitCrossing }[] {
  const out: { entry: LimitEntry; crossing: LimitCrossing }[] = [];
  for (const entry of after.values()) {
    if (entry.usage.window_start_ms !== windowStartMs(entry.limit.window, nowMs)) continue;
    const old = before.get(entry.limit.limit_id);
    const same =
      old !== undefined &&
      old.limit.since_seq === entry.limit.since_seq &&
      old.usage.window_start_ms === entry.usage.window_start_ms;
    const from = same ? old.usage.peak : 0;
    const to = entry.usage.peak;
    const threshold = Math.ceil((entry.limit.amount * entry.limit.threshold_percent) / 100);
    if (from < threshold && to >= threshold) out.push({ entry, crossing: "limit.threshold_reached" });
    if (from < entry.limit.amount && to >= entry.limit.amount) out.push({ entry, crossing: "limit.exhausted" });
  }
  return out;
}

/** Every limit, by id, with its current window's figures: the answer of `GET .../limits`. */
export function limitsView(book: LimitBook, nowMs: number) {
  const entries = [...book.values()].sort((a, b) => (a.limit.limit_id < b.limit.limit_id ? -1 : 1));
  return { data: entries.map((entry) => limitView(entry, nowMs)) };
}

export type LimitView = ReturnType<typeof limitView>;

/** A limit as `GET .../limits` answers it: its terms and its current window's figures. */
export function limitView(entry: LimitEntry, nowMs: number) {
  const usage = usageAt(entry, nowMs);
  const { limit } = entry;
  const end = windowEndMs(limit.window, nowMs);
  return {
    limit_id: limit.limit_id,
    applies_to: limit.applies_to,
    window: limit.window,
    amount: limit.amount,
    threshold_percent: limit.threshold_percent,
    window_start: iso(usage.window_start_ms),
    spent: usage.spent,
    held: usage.held,
    remaining: limit.amount - usage.spent - usage.held,
    resets_at: end === null ? null : iso(end),
  };
}
