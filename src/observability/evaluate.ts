/**
 * Evaluating the alert rules now (the cron each minute, and GET /v1/admin/alerts). The rules themselves are pure (alerts.ts); this reads their gauges,
 * the thresholds in force, and asks the monitor.
 */

import { configOf } from "../config";
import type { Env } from "../env";
import type { Alert } from "./alerts";
import { MONITOR_NAME } from "./flush";
import { readGauges } from "./gauges";

export function monitorOf(env: Env) {
  return env.MONITOR.getByName(MONITOR_NAME);
}

export async function evaluateAlertsNow(env: Env, nowMs: number): Promise<Alert[]> {
  const gauges = await readGauges(env, nowMs);
  return monitorOf(env).evaluate(gauges, configOf(env).alerts);
}
