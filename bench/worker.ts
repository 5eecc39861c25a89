/**
 * The bench's own Worker entry (`npm run bench` bundles this file instead of src/index.ts): the
 * ledger exactly as deployed, plus the bench-only routes of bench/routes.ts. The deployed bundle
 * never contains those routes, so no variable can switch them on in production.
 */
import { createApp } from "../src/http/app";
import ledger from "../src/index";
import { registerBenchRoutes } from "./routes";

export { AccountDurableObject, LedgerService } from "../src/index";

const app = createApp(registerBenchRoutes);

export default { fetch: app.fetch, scheduled: ledger.scheduled } satisfies ExportedHandler<
  Parameters<typeof ledger.scheduled>[1]
>;
