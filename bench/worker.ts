/**
 * The bench's own Worker entry (`npm run bench` bundles this file instead of src/index.ts): the
 * ledger exactly as deployed, plus the bench-only routes of bench/routes.ts. The deployed bundle
 * never contains those routes, so no variable can switch them on in production.
 *
 * The account object is the ledger's own class with one method added, `benchWrite`: the
 * ceiling for a durable write into a Durable Object (one SQLite row upserted, committed before
 * the answer leaves, like a ledger command's commit). It is exported under the class name
 * wrangler.toml binds, so the ledger's routes reach the same objects, unchanged.
 */
import type { Env } from "../src/env";
import { createApp } from "../src/http/app";
import ledger from "../src/index";
import { registerBenchRoutes } from "./routes";

export { LedgerService, MonitorDurableObject } from "../src/index";
export { AccountDurableObject } from "./account";

const app = createApp(registerBenchRoutes);

export default {
  fetch: app.fetch,
  scheduled: ledger.scheduled,
  // The projection queue's consumer, as deployed: the bench consumes the queue it produces to.
  queue: ledger.queue,
} satisfies ExportedHandler<Env>;
