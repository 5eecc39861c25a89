/**
 * Prices resolved once per (service, provider, model) within one request or batch, all at the
 * same instant, so every item of a batch is priced by the same rules.
 */
import { clock } from "../clock";
import type { PinnedRule, PriceRef } from "../domain/pricing";
import { resolvePrice } from "./store";

export class PriceCache {
  private readonly resolved = new Map<string, Promise<PinnedRule[]>>();
  private readonly at = new Date(clock.now()).toISOString();

  constructor(private readonly db: D1Database) {}

  rules(price: PriceRef): Promise<PinnedRule[]> {
    const key = JSON.stringify([price.service_id, price.provider, price.model]);
    let rules = this.resolved.get(key);
    if (rules === undefined) {
      rules = resolvePrice(this.db, price, this.at);
      this.resolved.set(key, rules);
    }
    return rules;
  }
}
