/**
 * Price rules in D1: publishing (append-only, never backdated) and resolving the rules in
 * effect at a time. The Worker resolves before it calls an account object, so no command ever
 * awaits D1; the reservation then pins the rules it was priced with.
 */

import type { PinnedRule, PriceRef, PriceUnit } from "../domain/pricing";
import { LedgerError } from "../errors";
import { newUlid } from "../ids";

/** A publish whose effective_from is before now: it would rewrite what was in effect. */
export class PriceBackdated extends LedgerError {
  override name = "PriceBackdated";
  readonly code = "invalid_request";
  readonly publicDetail = "effective_from may not be in the past: it would rewrite what was in effect.";
  override readonly fieldErrors = [{ field: "body.effective_from", message: "must not be in the past" }];
}

export interface PublishRequest extends PriceRef {
  /** Defaults to now; never earlier than now. */
  effective_from?: string;
  rules: { unit: PriceUnit; price_minor: number; per_units: number }[];
}

export async function publishPrice(db: D1Database, request: PublishRequest, now: Date): Promise<PinnedRule[]> {
  const effectiveFrom = request.effective_from ?? now.toISOString();
  if (effectiveFrom < now.toISOString()) throw new PriceBackdated(effectiveFrom);
  const createdAt = now.toISOString();
  const rules: PinnedRule[] = request.rules.map((r) => ({
    rule_id: `pr_${newUlid()}`,
    unit: r.unit,
    price_minor: r.price_minor,
    per_units: r.per_units,
    effective_from: effectiveFrom,
  }));
  await db.batch(
    rules.map((r) =>
      db
        .prepare(
          "INSERT INTO price_rules (rule_id, service_id, provider, model, unit, price_minor, per_units, effective_from, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(
          r.rule_id,
          request.service_id,
          request.provider,
          request.model,
          r.unit,
          r.price_minor,
          r.per_units,
          r.effective_from,
          createdAt,
        ),
    ),
  );
  return rules;
}

interface RuleRow extends PriceRef {
  rule_id: string;
  unit: PriceUnit;
  price_minor: number;
  per_units: number;
  effective_from: string;
}

/** Per unit, the newest rule with effective_from <= at (ties: the later published). */
const IN_EFFECT = `
  SELECT p.* FROM price_rules p
  WHERE p.effective_from <= ?1 AND p.rule_id = (
    SELECT q.rule_id FROM price_rules q
    WHERE q.service_id = p.service_id AND q.provider = p.provider AND q.model = p.model AND q.unit = p.unit
      AND q.effective_from <= ?1
    ORDER BY q.effective_from DESC, q.rule_id DESC LIMIT 1
  )`;

function pinned(row: RuleRow): PinnedRule {
  return {
    rule_id: row.rule_id,
    unit: row.unit,
    price_minor: row.price_minor,
    per_units: row.per_units,
    effective_from: row.effective_from,
  };
}

const IN_EFFECT_FOR = `${IN_EFFECT} AND p.service_id = ?2 AND p.provider = ?3 AND p.model = ?4 ORDER BY p.unit`;

export async function resolvePrice(db: D1Database, ref: PriceRef, at: string): Promise<PinnedRule[]> {
  const [rules] = await resolvePrices(db, [ref], at);
  return rules ?? [];
}

/** Reads one D1 batch may carry when resolving prices (bounds a batch's query count). */
export const PRICE_RESOLVE_BATCH_MAX = 100;

/**
 * The rules in effect at `at` for each price, in the order asked, in D1 batches of up to
 * PRICE_RESOLVE_BATCH_MAX reads each: a batch of 1,000 operations on 1,000 distinct prices costs
 * 10 round trips, not 1,000 sequential lookups.
 */
export async function resolvePrices(db: D1Database, refs: readonly PriceRef[], at: string): Promise<PinnedRule[][]> {
  const resolved: PinnedRule[][] = [];
  for (let i = 0; i < refs.length; i += PRICE_RESOLVE_BATCH_MAX) {
    const chunk = refs.slice(i, i + PRICE_RESOLVE_BATCH_MAX);
    const statements = chunk.map((ref) => db.prepare(IN_EFFECT_FOR).bind(at, ref.service_id, ref.provider, ref.model));
    for (const result of await db.batch<RuleRow>(statements)) resolved.push(result.results.map(pinned));
  }
  return resolved;
}

export const PRICE_LIST_MAX = 1_000;

export async function pricesInEffect(
  db: D1Database,
  filter: Partial<PriceRef>,
  at: string,
): Promise<(PriceRef & { rules: PinnedRule[] })[]> {
  const conditions: string[] = [];
  const binds: string[] = [at];
  for (const field of ["service_id", "provider", "model"] as const) {
    const value = filter[field];
    if (value !== undefined) {
      binds.push(value);
      conditions.push(`p.${field} = ?${binds.length}`);
    }
  }
  const rows = await db
    .prepare(
      `${IN_EFFECT} ${conditions.map((c) => `AND ${c}`).join(" ")} ORDER BY p.service_id, p.provider, p.model, p.unit LIMIT ${PRICE_LIST_MAX}`,
    )
    .bind(...binds)
    .all<RuleRow>();
  const grouped = new Map<string, PriceRef & { rules: PinnedRule[] }>();
  for (const row of rows.results) {
    const key = JSON.stringify([row.service_id, row.provider, row.model]);
    let entry = grouped.get(key);
    if (entry === undefined) {
      entry = { service_id: row.service_id, provider: row.provider, model: row.model, rules: [] };
      grouped.set(key, entry);
    }
    entry.rules.push(pinned(row));
  }
  return [...grouped.values()];
}
