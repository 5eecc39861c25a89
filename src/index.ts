/**
 * Worker entry: the HTTP API (src/http) and the account Durable Object class, which the
 * runtime needs exported from the main module.
 */
import type { Env } from "./env";
import { createApp } from "./http/app";
import { consumeQueue } from "./projection/consumer";
import { pruneReadSide, retentionConfig } from "./projection/retention";
import { shardsOf } from "./projection/shards";
import { maintainSecurityCounters } from "./security/counters";
import { runSweep } from "./sweep";

export { AccountDurableObject } from "../durable-objects/account";
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
  },
  /** The projection queue and its dead-letter queue (src/projection/consumer.ts). */
  async queue(batch, env) {
    await consumeQueue(batch, env);
  },
} satisfies ExportedHandler<Env>;
