/**
 * Evaluating the alert rules now (the cron each minute, and GET /v1/admin/alerts), and the
 * cron's webhook upkeep. The rules themselves are pure (alerts.ts); this reads their gauges,
 * the thresholds in force, and asks the monitor.
 */
import type { Env } from "../env";
import { pruneDeliveries } from "../webhooks/store";
import { type Alert, alertThresholds } from "./alerts";
import { MONITOR_NAME } from "./flush";
import { readGauges } from "./gauges";
import { writeLog } from "./log";
import { recordBackgroundFailure } from "./metrics";

/** Pending account deliveries this late are nudged by the cron (their account's alarm was lost). */
export const WEBHOOK_SWEEP_GRACE_MS = 60_000;
/** Accounts nudged per cron run for late webhook deliveries. */
export const WEBHOOK_SWEEP_ACCOUNTS_MAX = 100;

export function monitorOf(env: Env) {
  return env.MONITOR.getByName(MONITOR_NAME);
}

export async function evaluateAlertsNow(env: Env, nowMs: number): Promise<Alert[]> {
  const gauges = await readGauges(env, nowMs);
  return monitorOf(env).evaluate(gauges, alertThresholds(env as unknown as Record<string, unknown>));
}

/**
 * The cron's safety net for webhooks: accounts whose pending deliveries are overdue (an alarm
 * lost to eviction) are woken, the alerts' deliveries are sent, and old records are pruned.
 */
export async function sweepWebhooks(env: Env, nowMs: number): Promise<{ woken: number; pruned: number }> {
  const late = await env.DB.prepare(
    `SELECT DISTINCT account_id FROM webhook_deliveries
     WHERE state = 'pending' AND account_id IS NOT NULL AND next_attempt_at_ms <= ? LIMIT ?`,
  )
    .bind(nowMs - WEBHOOK_SWEEP_GRACE_MS, WEBHOOK_SWEEP_ACCOUNTS_MAX)
    .all<{ account_id: string }>();
  await Promise.allSettled(late.results.map((row) => env.ACCOUNTS.getByName(row.account_id).wakeWebhooks()));
  await monitorOf(env).sendAlerts();
  const pruned = await pruneDeliveries(env.DB, nowMs);
  // Failed deliveries past their bound leave a trace: a log line each (ids only) and a count.
  for (const failure of pruned.failed) {
    writeLog(env, "warn", { msg: "webhook_failed_delivery_pruned", ...failure });
    recordBackgroundFailure(nowMs, "webhook_failed_pruned");
  }
  return { woken: late.results.length, pruned: pruned.delivered + pruned.failed.length };
}
