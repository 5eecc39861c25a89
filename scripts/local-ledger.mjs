// @ts-check
/**
 * Serves a bundle of the ledger in workerd through Miniflare, with the bindings wrangler.toml
 * declares (Durable Objects, D1, queues, rate limiters, static assets with their `_headers`) and a
 * direct socket on 127.0.0.1: no `wrangler dev` proxy in front. Used by the bench (bench/run.mjs)
 * and the console's browser tests (test/browser/), each with its own Worker entry.
 *
 * Bundling: `wrangler deploy <entry> --dry-run --outdir`, exactly as a deploy bundles the Worker.
 */
import { execFileSync } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

export const ROOT = new URL("..", import.meta.url).pathname;
const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");

/** Bundles `entry` (a Worker entry relative to the repository) into `outdir` as a deploy would. */
export function buildWorker(/** @type {string} */ entry, /** @type {string} */ outdir) {
  rmSync(outdir, { recursive: true, force: true });
  // The Node that runs the caller (npm scripts run the project's pinned Node 22, which wrangler needs).
  execFileSync(process.execPath, [WRANGLER, "deploy", entry, "--dry-run", "--outdir", outdir], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
}

/** Fresh secrets as strong as `npm start` makes them (a weak ADMIN_API_KEY makes the ledger answer 503). */
export function freshSecrets(adminKey = `oel_admin_${randomBytes(32).toString("base64url")}`) {
  return {
    ADMIN_API_KEY: adminKey,
    CONFIG_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
    AUDIT_SIGNING_KEY: generateKeyPairSync("ed25519")
      .privateKey.export({ format: "der", type: "pkcs8" })
      .toString("base64"),
  };
}

/**
 * Starts the bundle in `dist` in workerd; returns the Miniflare instance and its direct URL.
 * @param {{ dist: string, persist: string, bindings: Record<string, string>,
 *   ratelimits?: Record<string, unknown>, port?: number, inspectorPort?: number,
 *   preventEviction?: boolean }} options
 */
export async function serveLedger({ dist, persist, bindings, ratelimits, port = 0, inspectorPort, preventEviction }) {
  const requireFromWrangler = createRequire(createRequire(import.meta.url).resolve("wrangler"));
  const { Miniflare, convertV4MiniflareOptions } = requireFromWrangler("miniflare");
  const { unstable_getMiniflareWorkerOptions } = await import("wrangler");
  // The bindings, Durable Objects, D1, assets and compatibility settings of wrangler.toml; the
  // bundle is one ES module, so wrangler's module rules are not needed.
  const { workerOptions: fromWrangler } = unstable_getMiniflareWorkerOptions(join(ROOT, "wrangler.toml"));
  const { modulesRules: _rules, ...workerOptions } = fromWrangler;
  // Miniflare 5 takes a new options shape; wrangler still produces the v4 one.
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      ...workerOptions,
      name: "openedge-ledger",
      modules: true,
      modulesRoot: dist,
      scriptPath: join(dist, "worker.js"),
      bindings: { ...(workerOptions.bindings ?? {}), ...bindings },
      // Objects stay in memory when idle (bench/instructions.mjs: under valgrind requests come
      // so slowly that the runtime would evict and rebuild the objects between them).
      ...(preventEviction === true
        ? {
            durableObjects: Object.fromEntries(
              Object.entries(workerOptions.durableObjects ?? {}).map(([name, o]) => [
                name,
                { ...o, unsafePreventEviction: true },
              ]),
            ),
          }
        : {}),
      resourcePersistencePath: persist,
      // One log line per request is the log policy; the callers do not print them.
      handleStructuredLogs: () => undefined,
      unsafeDirectSockets: [{ host: "127.0.0.1", port }],
      ...(ratelimits === undefined ? {} : { ratelimits }),
      // V8's inspector (bench/profile.mjs attaches a CPU profiler through it).
      ...(inspectorPort === undefined ? {} : { inspectorPort }),
    }),
  );
  await mf.ready;
  await applyMigrations(mf, Object.keys(workerOptions.d1Databases ?? {}));
  const url = await mf.unsafeGetDirectURL();
  return { mf, url: url.toString().replace(/\/$/, "") };
}

/**
 * Every read-side database (DB, DB_1, ...) gets the migrations not yet applied, recorded in the
 * table `wrangler d1 migrations apply` keeps (a second serve of the same state skips them).
 * @param {any} mf @param {string[]} bindings
 */
async function applyMigrations(mf, bindings) {
  for (const binding of bindings.length > 0 ? bindings : ["DB"]) {
    const db = await mf.getD1Database(binding);
    await db.exec(
      "CREATE TABLE IF NOT EXISTS d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)",
    );
    const applied = new Set(
      (await db.prepare("SELECT name FROM d1_migrations").all()).results.map((/** @type {any} */ r) => r.name),
    );
    for (const file of readdirSync(join(ROOT, "migrations")).sort()) {
      if (!file.endsWith(".sql") || applied.has(file)) continue;
      const sql = readFileSync(join(ROOT, "migrations", file), "utf8");
      await db.exec(sql.replace(/--[^\n]*\n/g, "\n").replace(/\s*\n\s*/g, " "));
      await db.prepare("INSERT INTO d1_migrations (name) VALUES (?)").bind(file).run();
    }
  }
}
