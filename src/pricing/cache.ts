/**
 * Prices resolved once per (service, provider, model) within one request or batch, all at the
 * same instant, so every item of a batch is priced by the same rules. A batch prefetches its
 * distinct prices in one D1 round trip instead of one sequential lookup per item.
 */
import { clock } from "../clock";
import type { PinnedRule, PriceRef } from "../domain/pricing";
import { resolvePrice, resolvePrices } from "./store";

const keyOf = (price: PriceRef) => JSON.stringify([price.service_id, price.provider, price.model]);

export class PriceCache {
  private readonly resolved = new Map<string, Promise<PinnedRule[]>>();
  private readonly at = new Date(clock.now()).toISOString();

  constructor(private readonly db: D1Database) {}

  /** Resolves every distinct price not resolved yet, in one round trip. */
  async prefetch(prices: readonly PriceRef[]): Promise<void> {
    const missing = new Map<string, PriceRef>();
    for (const price of prices) if (!this.resolved.has(keyOf(price))) missing.set(keyOf(price), price);
    const refs = [...missing.values()];
    const all = resolvePrices(this.db, refs, this.at);
    refs.forEach((ref, i) => {
      this.resolved.set(
        keyOf(ref),
        all.then((rules) => rules[i] ?? []),
      );
    });
    await all;
  }

  rules(price: PriceRef): Promise<PinnedRule[]> {
    const key = keyOf(price);
    let rules = this.resolved.get(key);
    if (rules === undefined) {
      rules = resolvePrice(this.db, price, this.at);
      this.resolved.set(key, rules);
    }
    return rules;
  }
}
