/**
 * The cron's safety net for webhooks (src/cron.ts): accounts whose pending deliveries are overdue
 * (an alarm lost to eviction) are woken, the alerts' deliveries are sent, and old delivery
 * records are pruned.
 */
import type { Env } from "../env";
import { monitorOf } from "../observability/evaluate";
import { writeLog } from "../observability/log";
import { recordBackgroundFailure } from "../observability/metrics";
import { controlDb } from "../read-side/shards";
import { pruneDeliveries } from "./store";

/** Pending account deliveries this late are woken by the cron (their account's alarm was lost). */
export const WEBHOOK_SWEEP_GRACE_MS = 60_000;
/** Accounts woken per cron run for late webhook deliveries. */
export const WEBHOOK_SWEEP_ACCOUNTS_MAX = 100;

/** Wakes the accounts whose deliveries are late, sends the alerts' and prunes old records. */
export async function sweepWebhooks(env: Env, nowMs: number): Promise<{ woken: number; pruned: number }> {
  const late = await controlDb(env)
    .prepare(
      `SELECT DISTINCT account_id FROM webhook_deliveries
     WHERE state = 'pending' AND account_id IS NOT NULL AND next_attempt_at_ms <= ? LIMIT ?`,
    )
    .bind(nowMs - WEBHOOK_SWEEP_GRACE_MS, WEBHOOK_SWEEP_ACCOUNTS_MAX)
    .all<{ account_id: string }>();
  await Promise.allSettled(late.results.map((row) => env.ACCOUNTS.getByName(row.account_id).wakeWebhooks()));
  await monitorOf(env).sendAlerts();
  const pruned = await pruneDeliveries(controlDb(env), nowMs);
  // Failed deliveries past their bound leave a trace: a log line each (ids only) and a count.
  for (const failure of pruned.failed) {
    writeLog(env, "warn", { msg: "webhook_failed_delivery_pruned", ...failure });
    recordBackgroundFailure(nowMs, "webhook_failed_pruned");
  }
  return { woken: late.results.length, pruned: pruned.delivered + pruned.failed.length };
}
