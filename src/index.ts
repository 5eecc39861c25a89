/**
 * Worker entry: the HTTP API (src/http) and the account Durable Object class, which the
 * runtime needs exported from the main module.
 */
import type { Env } from "./env";
import { createApp } from "./http/app";
import { evaluateAlertsNow, sweepWebhooks } from "./observability/evaluate";
import { flushMetricsIfDue } from "./observability/flush";
import { writeLog } from "./observability/log";
import { consumeQueue } from "./projection/consumer";
import { pruneReadSide, retentionConfig } from "./projection/retention";
import { shardsOf } from "./projection/shards";
import { maintainSecurityCounters } from "./security/counters";
import { runSweep } from "./sweep";

export { AccountDurableObject } from "../durable-objects/account";
export { MonitorDurableObject } from "../durable-objects/monitor";
export { LedgerService } from "./service";

const app = createApp();

export default {
  fetch: app.fetch,
  /**
   * Cron Trigger (wrangler.toml): the sweep that covers lost alarms and lagging projections, and
   * the security counters' upkeep (this isolate's due counts written, a bounded prune).
   */
  async scheduled(controller, env, ctx) {
    ctx.waitUntil(runSweep(env, controller.scheduledTime));
    ctx.waitUntil(maintainSecurityCounters(env, controller.scheduledTime));
    // The read side's retention: a bounded prune of raw events and hourly rollups.
    for (const shard of shardsOf(env)) {
      ctx.waitUntil(pruneReadSide(shard.db, retentionConfig(env), controller.scheduledTime));
    }
    // Monitoring (issue 14): this isolate's metrics, the alert rules, the webhooks' safety net.
    flushMetricsIfDue(env, (work) => ctx.waitUntil(work), true);
    ctx.waitUntil(
      evaluateAlertsNow(env, controller.scheduledTime).catch((error: unknown) =>
        writeLog(env, "error", { msg: "alerts_not_evaluated", error: (error as Error).name ?? "Error" }),
      ),
    );
    ctx.waitUntil(
      sweepWebhooks(env, controller.scheduledTime).catch((error: unknown) =>
        writeLog(env, "error", { msg: "webhook_sweep_failed", error: (error as Error).name ?? "Error" }),
      ),
    );
  },
  /** The projection queue and its dead-letter queue (src/projection/consumer.ts). */
  async queue(batch, env) {
    await consumeQueue(batch, env);
  },
} satisfies ExportedHandler<Env>;
