/**
 * Routes that exist only in the bench's own Worker (bench/worker.ts), never in the deployed
 * bundle: the ceilings the ledger is measured against, through the same middleware and auth
 * as every ledger route, and the runtime's own counters (an account object's rows, the
 * projection consumer's D1 writes, D1's size, how far the read side is behind the objects).
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { accountClient } from "../src/app/account-client";
import type { AppEnv } from "../src/http/context";
import { applyStats } from "../src/projection/consumer/apply";
import { shardsOf } from "../src/read-side/shards";
import { type AccountDurableObject, constructions } from "./account";

/** Accounts one positions request may ask about. */
const POSITIONS_ACCOUNTS_MAX = 250;

const percentile = (sorted: number[], p: number): number | null =>
  sorted.length === 0 ? null : (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? null);

/** The bench's own account object (bench/account.ts): the ledger's calls and the bench hooks. */
function benchAccount(env: AppEnv["Bindings"], accountId: string) {
  return (env.ACCOUNTS as unknown as DurableObjectNamespace<AccountDurableObject>).getByName(accountId);
}

export function registerBenchRoutes(app: OpenAPIHono<AppEnv>): void {
  app.get("/v1/bench/plain", (c) => {
    c.get("log").route = "GET /v1/bench/plain";
    return c.json({ ok: true });
  });
  app.get("/v1/bench/noop/:account_id", async (c) => {
    c.get("log").route = "GET /v1/bench/noop/{account_id}";
    return c.json({ seq: await benchAccount(c.env, c.req.param("account_id")).ping() });
  });
  // The durable-write ceiling: one SQLite row written and committed in the account's object.
  app.post("/v1/bench/durable-write/:account_id", async (c) => {
    c.get("log").route = "POST /v1/bench/durable-write/{account_id}";
    const namespace = c.env.ACCOUNTS as unknown as DurableObjectNamespace<AccountDurableObject>;
    return c.json({ n: await namespace.getByName(c.req.param("account_id")).benchWrite() });
  });
  // Account objects constructed in this isolate so far (bench/account.ts `constructions`).
  app.get("/v1/bench/constructions", (c) => {
    c.get("log").route = "GET /v1/bench/constructions";
    return c.json({ constructions: constructions.count });
  });
  // A full garbage collection of this isolate (the Worker and its objects), when workerd runs with
  // V8's --expose-gc (bench/instructions.mjs): a count then holds the collection of the garbage its
  // own requests made, wherever the collector would have run.
  app.post("/v1/bench/gc", (c) => {
    c.get("log").route = "POST /v1/bench/gc";
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    return c.json({ collected: gc !== undefined });
  });
  // The same write inside a transaction (bench/instructions.mjs: what transactionSync costs).
  app.post("/v1/bench/durable-write-in-transaction/:account_id", async (c) => {
    c.get("log").route = "POST /v1/bench/durable-write-in-transaction/{account_id}";
    const namespace = c.env.ACCOUNTS as unknown as DurableObjectNamespace<AccountDurableObject>;
    return c.json({ n: await namespace.getByName(c.req.param("account_id")).benchWriteInTransaction() });
  });
  // A long history built inside the object (bench/account.ts benchFill), and what it costs.
  app.post("/v1/bench/fill/:account_id", async (c) => {
    c.get("log").route = "POST /v1/bench/fill/{account_id}";
    const { from, count, mix } = await c.req.json<{ from: number; count: number; mix?: "gateway" | "credits" }>();
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(count) || count < 1)
      return c.json({ error: "from, count" }, 400);
    const namespace = c.env.ACCOUNTS as unknown as DurableObjectNamespace<AccountDurableObject>;
    return c.json(await namespace.getByName(c.req.param("account_id")).benchFill(from, count, mix));
  });
  app.get("/v1/bench/storage/:account_id", async (c) => {
    c.get("log").route = "GET /v1/bench/storage/{account_id}";
    const namespace = c.env.ACCOUNTS as unknown as DurableObjectNamespace<AccountDurableObject>;
    return c.json(await namespace.getByName(c.req.param("account_id")).benchStorage());
  });
  app.get("/v1/bench/stats/:account_id", async (c) => {
    c.get("log").route = "GET /v1/bench/stats/{account_id}";
    const stub = benchAccount(c.env, c.req.param("account_id"));
    const [stats, projection] = await Promise.all([stub.stats(), stub.projectionStatus()]);
    return c.json({ ...stats, projection });
  });
  // The projection consumer's counters in this isolate (src/projection/consumer/apply.ts `applyStats`).
  app.get("/v1/bench/apply-stats", (c) => {
    c.get("log").route = "GET /v1/bench/apply-stats";
    const lags = [...applyStats.lags].sort((a, b) => a - b);
    return c.json({
      batches: applyStats.batches,
      statements: applyStats.statements,
      rows_written: applyStats.rowsWritten,
      events_applied: applyStats.eventsApplied,
      lags: {
        count: lags.length,
        p50_ms: percentile(lags, 50),
        p99_ms: percentile(lags, 99),
        max_ms: lags.at(-1) ?? null,
      },
    });
  });
  app.post("/v1/bench/apply-stats", (c) => {
    c.get("log").route = "POST /v1/bench/apply-stats";
    applyStats.reset();
    return c.json({ reset: true });
  });
  // D1's own size of each read-side database (meta.size_after, as the retention reads it) and
  // the events it holds (every account's last_seq: nothing is pruned during a bench run).
  app.get("/v1/bench/d1-size", async (c) => {
    c.get("log").route = "GET /v1/bench/d1-size";
    const shards = await Promise.all(
      shardsOf(c.env).map(async (shard) => {
        const result = await shard.db.prepare("SELECT COALESCE(SUM(last_seq), 0) AS events FROM accounts").run();
        const events = (result.results[0] as { events: number } | undefined)?.events ?? 0;
        return { index: shard.index, size_after: result.meta.size_after ?? null, events };
      }),
    );
    return c.json({
      shards,
      bytes: shards.reduce((sum, s) => sum + (s.size_after ?? 0), 0),
      events: shards.reduce((sum, s) => sum + s.events, 0),
    });
  });
  // How far the read side is behind: each account's head, its object's cursor (what the queue
  // accepted) and its D1 row's last_seq (what the consumer applied).
  app.post("/v1/bench/positions", async (c) => {
    c.get("log").route = "POST /v1/bench/positions";
    const { account_ids: ids } = await c.req.json<{ account_ids: string[] }>();
    if (!Array.isArray(ids) || ids.length > POSITIONS_ACCOUNTS_MAX) return c.json({ error: "account_ids" }, 400);
    const param = JSON.stringify(ids);
    const d1 = new Map<string, number>();
    for (const shard of shardsOf(c.env)) {
      const { results } = await shard.db
        .prepare("SELECT account_id, last_seq FROM accounts WHERE account_id IN (SELECT value FROM json_each(?1))")
        .bind(param)
        .all<{ account_id: string; last_seq: number }>();
      for (const row of results) d1.set(row.account_id, Math.max(d1.get(row.account_id) ?? 0, row.last_seq));
    }
    const statuses = await Promise.all(ids.map((id) => accountClient(c.env, id).projectionStatus()));
    let objectsBehind = 0;
    let d1Behind = 0;
    let eventsPending = 0;
    let failures = 0;
    statuses.forEach((s, i) => {
      const applied = d1.get(ids[i] as string) ?? 0;
      if (s.projected_seq < s.last_seq) objectsBehind++;
      if (applied < s.last_seq) d1Behind++;
      eventsPending += Math.max(0, s.last_seq - applied);
      failures += s.failures;
    });
    return c.json({
      accounts: ids.length,
      objects_behind: objectsBehind,
      d1_behind: d1Behind,
      events_pending: eventsPending,
      failures,
    });
  });
}
