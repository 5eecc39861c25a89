/**
 * The browser tests' own Worker entry (test/browser/ledger.mjs bundles this file instead of
 * src/index.ts): the ledger exactly as deployed, plus two routes that let a test drive time.
 *
 * - `POST /v1/test/clock {now_ms}` installs a ManualClock (src/clock.ts) set to `now_ms` in this
 *   isolate. The Worker and its account objects share the isolate and its module graph (as in
 *   the workerd tests), so the objects stamp, expire and arm their alarms by it.
 * - `POST /v1/test/accounts/{account_id}/alarm` runs the account object's alarm handler now.
 *
 * Why this can never be enabled in a deployed ledger: these routes exist only in this file,
 * which no deploy bundles (wrangler.toml's `main` is src/index.ts, and `npm run deploy` runs
 * plain `wrangler deploy`); no variable or binding switches them on, and test/cli/bundle.test.mjs
 * checks that the deployed bundle contains neither route. They still sit behind the ledger's
 * authentication and answer only an admin key.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { ManualClock, useClock } from "../../src/clock";
import type { Env } from "../../src/env";
import { createApp } from "../../src/http/app";
import { requireScope } from "../../src/http/auth";
import type { AppEnv } from "../../src/http/context";
import ledger from "../../src/index";
import type { AccountDurableObject } from "./account";

export { LedgerService, MonitorDurableObject } from "../../src/index";
export { AccountDurableObject } from "./account";

/** The one manual clock of this isolate, installed by the first POST /v1/test/clock. */
let manual: ManualClock | null = null;

function registerTestRoutes(app: OpenAPIHono<AppEnv>): void {
  app.post("/v1/test/clock", async (c) => {
    c.get("log").route = "POST /v1/test/clock";
    const refused = requireScope(c, "admin");
    if (refused !== null) return refused;
    const { now_ms } = await c.req.json<{ now_ms: number }>();
    if (!Number.isSafeInteger(now_ms)) return c.json({ error: "now_ms must be an integer" }, 400);
    if (manual === null) {
      manual = new ManualClock(now_ms);
      useClock(manual);
    }
    manual.set(now_ms);
    return c.json({ now_ms });
  });
  app.post("/v1/test/accounts/:account_id/alarm", async (c) => {
    c.get("log").route = "POST /v1/test/accounts/{account_id}/alarm";
    const refused = requireScope(c, "admin");
    if (refused !== null) return refused;
    const namespace = c.env.ACCOUNTS as unknown as DurableObjectNamespace<AccountDurableObject>;
    await namespace.getByName(c.req.param("account_id")).runAlarm();
    return c.json({ ok: true });
  });
}

const app = createApp(registerTestRoutes);

export default {
  fetch: app.fetch,
  scheduled: ledger.scheduled,
  queue: ledger.queue,
} satisfies ExportedHandler<Env>;
