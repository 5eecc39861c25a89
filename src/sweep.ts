/**
 * The scheduled sweep (Cron Trigger, every minute). Durable Object alarms are at-least-once but
 * can be lost (local dev drops them across restarts), so the sweep catches accounts up, from D1:
 *   1. accounts holding open reservations past expiry plus a grace period, and
 *   2. the next slice of all accounts in a round-robin (the projection of an account whose
 *      alarm was lost cannot be seen lagging from D1, so every account is visited in turn).
 * A catch-up expires what is due, re-arms the alarm and brings the projection up to date; it is
 * idempotent and serialised inside each object, so the sweep is safe alongside alarms and
 * alongside another sweep.
 */

import { SWEEP_GRACE_MS } from "./domain/limits";
import type { Env } from "./env";
import { writeLog } from "./observability/log";
import { shardsOf } from "./read-side/shards";

export { SWEEP_GRACE_MS };
/** Accounts caught up per run and per shard for stale reservations, and for the round-robin. */
export const SWEEP_STALE_ACCOUNTS_MAX = 100;
export const SWEEP_ROUND_ROBIN_ACCOUNTS_MAX = 100;

export interface SweepReport {
  stale_accounts: number;
  round_robin_accounts: number;
  caught_up: number;
  failed: number;
  lagging: number;
  worst_lag_ms: number;
}

/** The accounts one shard asks the sweep to catch up: stale holds, and its next round-robin slice. */
async function candidates(db: D1Database, threshold: string): Promise<{ stale: string[]; round: string[] }> {
  const [stale, position] = await db.batch<{ account_id?: string; value?: string }>([
    db
      .prepare(
        "SELECT DISTINCT account_id FROM open_holds WHERE status = 'open' AND expires_at < ? ORDER BY account_id LIMIT ?",
      )
      .bind(threshold, SWEEP_STALE_ACCOUNTS_MAX),
    db.prepare("SELECT value FROM sweep_state WHERE key = 'round_robin_after'"),
  ]);
  const after = position?.results[0]?.value ?? "";
  let round = await db
    .prepare("SELECT account_id FROM accounts WHERE account_id > ? ORDER BY account_id LIMIT ?")
    .bind(after, SWEEP_ROUND_ROBIN_ACCOUNTS_MAX)
    .all<{ account_id: string }>();
  if (round.results.length === 0 && after !== "") {
    round = await db
      .prepare("SELECT account_id FROM accounts ORDER BY account_id LIMIT ?")
      .bind(SWEEP_ROUND_ROBIN_ACCOUNTS_MAX)
      .all<{ account_id: string }>();
  }
  await db
    .prepare(
      "INSERT INTO sweep_state (key, value) VALUES ('round_robin_after', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(round.results.at(-1)?.account_id ?? "")
    .run();
  return {
    stale: (stale?.results ?? []).map((r) => r.account_id as string),
    round: round.results.map((r) => r.account_id),
  };
}

/** One sweep over every shard (each keeps its own round-robin position). */
export async function runSweep(env: Env, nowMs: number): Promise<SweepReport> {
  const threshold = new Date(nowMs - SWEEP_GRACE_MS).toISOString();
  const perShard = await Promise.all(shardsOf(env).map((shard) => candidates(shard.db, threshold)));
  const stale = perShard.flatMap((s) => s.stale);
  const round = perShard.flatMap((s) => s.round);
  const ids = [...new Set([...stale, ...round])];
  const outcomes = await Promise.allSettled(ids.map((id) => env.ACCOUNTS.getByName(id).catchUp()));
  const report: SweepReport = {
    stale_accounts: stale.length,
    round_robin_accounts: round.length,
    caught_up: 0,
    failed: 0,
    lagging: 0,
    worst_lag_ms: 0,
  };
  for (const outcome of outcomes) {
    if (outcome.status === "rejected") {
      report.failed += 1;
      continue;
    }
    report.caught_up += 1;
    if (outcome.value.projected_seq < outcome.value.last_seq) report.lagging += 1;
    report.worst_lag_ms = Math.max(report.worst_lag_ms, outcome.value.lag_ms);
  }
  writeLog(env, "log", { msg: "sweep", ...report });
  return report;
}
