/**
 * Usage pricing, pure. A price is a set of rules for one (service_id, provider, model), each an
 * integer price in minor units per a stated number of units (e.g. 150 per 1,000,000
 * input_token). The cost of some quantities is the exact rational sum
 *
 *   total = Σ quantity(unit) × price_minor(unit) / per_units(unit)
 *
 * rounded UP once, to the minor unit, for the whole charge (never per line), so that no charge
 * is ever below its exact cost by more than nothing and never above it by a whole minor unit.
 * The arithmetic is BigInt: token counts times prices overflow 2^53 long before they are silly.
 * A unit without a rule costs nothing. `input_token` counts input tokens that were not served
 * from cache; `cached_token` counts those that were.
 */
import { AMOUNT_MINOR_MAX } from "./limits";
import { assert, type Minor } from "./money";

export const PRICE_UNITS = ["input_token", "output_token", "cached_token", "request"] as const;
export type PriceUnit = (typeof PRICE_UNITS)[number];

export interface PriceRef {
  service_id: string;
  provider: string;
  model: string;
}

/** A rule as pinned on a reservation: copied whole, so later prices never change it. */
export interface PinnedRule {
  rule_id: string;
  unit: PriceUnit;
  price_minor: Minor;
  per_units: number;
  effective_from: string;
}

export type Quantities = Partial<Record<PriceUnit, number>>;

export interface PriceLine {
  rule_id: string;
  unit: PriceUnit;
  quantity: number;
  price_minor: Minor;
  per_units: number;
}

export interface PriceComputation {
  lines: PriceLine[];
  /** The exact total as a reduced fraction of minor units (decimal strings: they may exceed 2^53). */
  exact_numerator: string;
  exact_denominator: string;
  /** ceil(exact), the amount charged. */
  amount: Minor;
}

/** What a reservation pins: the price it named, the rules in effect then, and its estimate. */
export interface PinnedPricing {
  price: PriceRef;
  rules: PinnedRule[];
  estimate: Quantities;
}

function gcd(a: bigint, b: bigint): bigint {
  let x = a < 0n ? -a : a;
  let y = b;
  while (y !== 0n) [x, y] = [y, x % y];
  return x === 0n ? 1n : x;
}

/**
 * Prices `quantities` under `rules`. Returns null when the amount is beyond AMOUNT_MINOR_MAX
 * (the caller turns that into a rejection); asserts the rules are well formed.
 */
export function priceOf(rules: readonly PinnedRule[], quantities: Quantities): PriceComputation | null {
  let numerator = 0n;
  let denominator = 1n;
  const lines: PriceLine[] = [];
  for (const rule of rules) {
    assert(Number.isSafeInteger(rule.price_minor) && rule.price_minor >= 0, "rule price_minor");
    assert(Number.isSafeInteger(rule.per_units) && rule.per_units >= 1, "rule per_units");
    const quantity = quantities[rule.unit] ?? 0;
    assert(Number.isSafeInteger(quantity) && quantity >= 0, `quantity of ${rule.unit}`);
    lines.push({
      rule_id: rule.rule_id,
      unit: rule.unit,
      quantity,
      price_minor: rule.price_minor,
      per_units: rule.per_units,
    });
    // numerator/denominator + q*p/per, kept reduced.
    const per = BigInt(rule.per_units);
    numerator = numerator * per + BigInt(quantity) * BigInt(rule.price_minor) * denominator;
    denominator *= per;
    const g = gcd(numerator, denominator);
    numerator /= g;
    denominator /= g;
  }
  const amount = (numerator + denominator - 1n) / denominator;
  if (amount > BigInt(AMOUNT_MINOR_MAX)) return null;
  return {
    lines,
    exact_numerator: numerator.toString(),
    exact_denominator: denominator.toString(),
    amount: Number(amount),
  };
}

/** The quantities a capture's usage reports (a priced call is one `request`). */
export function usageQuantities(usage: {
  input_tokens?: number;
  output_tokens?: number;
  cached_tokens?: number;
}): Quantities {
  return {
    input_token: usage.input_tokens ?? 0,
    output_token: usage.output_tokens ?? 0,
    cached_token: usage.cached_tokens ?? 0,
    request: 1,
  };
}
