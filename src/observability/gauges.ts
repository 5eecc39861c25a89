/**
 * The gauges the alert rules read from D1 when they are evaluated (issue 14):
 * - pending refunds: holds past their expiry plus SWEEP_GRACE_MS that nobody has settled (the
 *   read side's open holds, every shard). Such a hold keeps the customer's money reserved that
 *   its expiry rule should already have given back (or charged); the example gateway retries its
 *   settles inline and leaves a settle that still fails to the hold's expiry rule, so these holds
 *   are also where its failed refunds wait. README, "Pending refunds".
 * - dead letters: rows of projection_dead_letters (shard 0).
 * A gauge whose read fails is null (and counts as a D1 failure, `read:gauges`): the rules that
 * need it keep their previous state (neither fired nor resolved on a guess), and every other
 * rule is still evaluated, so the alerts do not go blind exactly when D1 is down.
 */

import { SWEEP_GRACE_MS } from "../domain/limits";
import type { Env } from "../env";
import { controlDb, shardsOf } from "../read-side/shards";
import { recordD1Failure } from "./metrics";
import type { Gauges } from "./windows";

/** The value of `read`, or null (counted as a failed D1 read) when it fails. */
async function gauge(nowMs: number, read: () => Promise<number>): Promise<number | null> {
  try {
    return await read();
  } catch {
    recordD1Failure(nowMs, "read:gauges");
    return null;
  }
}

export async function readGauges(env: Env, nowMs: number): Promise<Gauges> {
  const threshold = new Date(nowMs - SWEEP_GRACE_MS).toISOString();
  const [pending_refunds, dead_letters] = await Promise.all([
    gauge(nowMs, async () => {
      const stale = await Promise.all(
        shardsOf(env).map((shard) =>
          shard.db
            .prepare("SELECT COUNT(*) AS n FROM open_holds WHERE status = 'open' AND expires_at < ?")
            .bind(threshold)
            .first<{ n: number }>(),
        ),
      );
      return stale.reduce((sum, row) => sum + (row?.n ?? 0), 0);
    }),
    gauge(
      nowMs,
      async () =>
        (await controlDb(env).prepare("SELECT COUNT(*) AS n FROM projection_dead_letters").first<{ n: number }>())?.n ??
        0,
    ),
  ]);
  return { pending_refunds, dead_letters };
}
