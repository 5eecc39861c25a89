/**
 * Worker entry: the HTTP API (src/http) and the account Durable Object class, which the
 * runtime needs exported from the main module.
 */
import type { Env } from "./env";
import { createApp } from "./http/app";
import { runSweep } from "./sweep";

export { AccountDurableObject } from "../durable-objects/account";
export { LedgerService } from "./service";

const app = createApp();

export default {
  fetch: app.fetch,
  /** Cron Trigger (wrangler.toml): the sweep that covers lost alarms and lagging projections. */
  async scheduled(controller, env, ctx) {
    ctx.waitUntil(runSweep(env, controller.scheduledTime));
  },
} satisfies ExportedHandler<Env>;
