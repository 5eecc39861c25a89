/**
 * The Cron Trigger's jobs (wrangler.toml [triggers]), once a minute, each bounded and each
 * safe to run twice or late:
 * - the sweep that covers lost alarms and lagging projections (./sweep.ts);
 * - the security counters' upkeep: this isolate's due counts written, a bounded prune;
 * - the read side's retention: a bounded prune of raw events and hourly rollups per shard;
 * - monitoring: this isolate's metrics flushed, the alert rules evaluated;
 * - the webhooks' safety net: late deliveries woken, old records pruned (./webhooks/sweep.ts).
 */
import { configOf } from "./config";
import type { Env } from "./env";
import { ConfigError } from "./errors";
import { evaluateAlertsNow } from "./observability/evaluate";
import { flushMetricsIfDue } from "./observability/flush";
import { writeLog } from "./observability/log";
import { pruneReadSide } from "./projection/consumer/retention";
import { shardsOf } from "./read-side/shards";
import { maintainSecurityCounters } from "./security/counters";
import { runSweep } from "./sweep";
import { sweepWebhooks } from "./webhooks/sweep";

export function runCron(env: Env, scheduledTime: number, waitUntil: (work: Promise<unknown>) => void): void {
  // The error's class only (a D1 message may carry data); a ConfigError's message names the variable.
  const failed = (msg: string) => (error: unknown) =>
    writeLog(env, "error", {
      msg,
      error: (error as Error).name ?? "Error",
      ...(error instanceof ConfigError ? { detail: error.message } : {}),
    });
  // Each job on its own: one that throws (a malformed retention variable, D1 down) stops no other.
  const job = (msg: string, work: () => Promise<unknown>) => waitUntil(Promise.resolve().then(work).catch(failed(msg)));
  job("sweep_failed", () => runSweep(env, scheduledTime));
  job("security_counters_failed", () => maintainSecurityCounters(env, scheduledTime));
  job("retention_failed", () =>
    Promise.all(shardsOf(env).map((shard) => pruneReadSide(shard.db, configOf(env).retention, scheduledTime))),
  );
  flushMetricsIfDue(env, waitUntil, true);
  job("alerts_not_evaluated", () => evaluateAlertsNow(env, scheduledTime));
  job("webhook_sweep_failed", () => sweepWebhooks(env, scheduledTime));
}
