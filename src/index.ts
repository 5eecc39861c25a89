/**
 * Worker entry: the HTTP API (src/http) and the account Durable Object class, which the
 * runtime needs exported from the main module.
 */
import type { Env } from "./env";
import { createApp } from "./http/app";
import { pruneReadSide, retentionConfig } from "./projection/retention";
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
    ctx.waitUntil(pruneReadSide(env.DB, retentionConfig(env), controller.scheduledTime));
  },
} satisfies ExportedHandler<Env>;
