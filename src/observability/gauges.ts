/**
 * The gauges the alert rules read from D1 when they are evaluated (issue 14):
 * - pending refunds: holds past their expiry plus SWEEP_GRACE_MS that nobody has settled (the
 *   read side's open holds, every shard). Such a hold keeps the customer's money reserved that
 *   its expiry rule should already have given back (or charged); the example gateway retries its
 *   settles inline and leaves a settle that still fails to the hold's expiry rule, so these holds
 *   are also where its failed refunds wait. README, "Pending refunds".
 * - dead letters: rows of projection_dead_letters (shard 0).
 * A failed read throws (and counts as a D1 failure): rules are never evaluated on a guess.
 */
import type { Env } from "../env";
import { shardsOf } from "../projection/shards";
import { SWEEP_GRACE_MS } from "../sweep";
import { recordD1Failure } from "./metrics";
import type { Gauges } from "./windows";

export async function readGauges(env: Env, nowMs: number): Promise<Gauges> {
  const threshold = new Date(nowMs - SWEEP_GRACE_MS).toISOString();
  try {
    const [stale, dead] = await Promise.all([
      Promise.all(
        shardsOf(env).map((shard) =>
          shard.db
            .prepare("SELECT COUNT(*) AS n FROM open_holds WHERE status = 'open' AND expires_at < ?")
            .bind(threshold)
            .first<{ n: number }>(),
        ),
      ),
      env.DB.prepare("SELECT COUNT(*) AS n FROM projection_dead_letters").first<{ n: number }>(),
    ]);
    return { pending_refunds: stale.reduce((sum, row) => sum + (row?.n ?? 0), 0), dead_letters: dead?.n ?? 0 };
  } catch (error) {
    recordD1Failure(nowMs, "read:gauges");
    throw error;
  }
}
