/**
 * Worker entry: the HTTP API (src/http) and the account Durable Object class, which the
 * runtime needs exported from the main module.
 */

import { runCron } from "./cron";
import type { Env } from "./env";
import { createApp } from "./http/app";
import { consumeQueue } from "./projection/consumer/queue";

export { AccountDurableObject } from "../durable-objects/account";
export { MonitorDurableObject } from "../durable-objects/monitor";
export { LedgerService } from "./service";

const app = createApp();

export default {
  fetch: app.fetch,
  /** Cron Trigger (wrangler.toml): the minute's jobs (src/cron.ts). */
  async scheduled(controller, env, ctx) {
    runCron(env, controller.scheduledTime, (work) => ctx.waitUntil(work));
  },
  /** The projection queue and its dead-letter queue (src/projection/consumer/queue.ts). */
  async queue(batch, env) {
    await consumeQueue(batch, env);
  },
} satisfies ExportedHandler<Env>;
