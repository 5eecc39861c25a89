#!/usr/bin/env node
// @ts-check
/**
 * `npm run bench`: the ledger under load, side by side with the runtime's own ceilings measured
 * in the same run with the same client settings.
 *
 * Serving: the Worker is bundled as `wrangler deploy` bundles it (`--dry-run --outdir`), and
 * served by workerd through Miniflare with the bindings wrangler.toml declares
 * (`unstable_getMiniflareWorkerOptions`), SQLite persistence on disk (bench/.work/state), and a
 * direct socket on 127.0.0.1: no `wrangler dev` proxy in front. Load comes from autocannon in a
 * separate process, bounded in duration. Numbers go to stdout as a table and to
 * bench/results/<date>.json with the machine's facts.
 *
 * Knobs for investigation (not needed for a normal run): BENCH_SECONDS (per scenario),
 * BENCH_STATE_ROOT (e.g. a tmpfs, to separate disk cost), BENCH_COALESCE_MS (projection window),
 * BENCH_ONLY_HOT (stop after the hot-account scenario), BENCH_ADMIN_KEY; `--quick` (100 accounts,
 * no 1,000,000-event memory run, a 100,000-event verifier run).
 */
import { execFileSync, spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { join } from "node:path";

const ROOT = new URL("..", import.meta.url).pathname;
const WORK = join(ROOT, "bench/.work");
const DURATION_SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = 64;
// A strong key: the ledger refuses to serve with a weak ADMIN_API_KEY (docs/security.md).
const ADMIN_KEY = process.env.BENCH_ADMIN_KEY ?? `bench_${randomBytes(32).toString("base64url")}`;
const quick = process.argv.includes("--quick");

const requireFromWrangler = createRequire(require_resolve("wrangler"));
/** @param {string} name */
function require_resolve(name) {
  return createRequire(import.meta.url).resolve(name);
}
const { Miniflare, convertV4MiniflareOptions } = requireFromWrangler("miniflare");
const { unstable_getMiniflareWorkerOptions } = await import("wrangler");

/** Bundles the bench's Worker (the ledger plus the bench routes) as a deploy would. */
function build() {
  rmSync(join(WORK, "dist"), { recursive: true, force: true });
  execFileSync("wrangler", ["deploy", "bench/worker.ts", "--dry-run", "--outdir", join(WORK, "dist")], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
}

/** Starts the ledger in workerd; returns the Miniflare instance and its direct URL. */
async function serve(state = "state") {
  // The bindings, Durable Objects, D1 and compatibility settings of wrangler.toml; the bundle
  // is one ES module, so wrangler's module rules are not needed.
  const { workerOptions: fromWrangler } = unstable_getMiniflareWorkerOptions(join(ROOT, "wrangler.toml"));
  const { modulesRules: _rules, ...workerOptions } = fromWrangler;
  // Miniflare 5 takes a new options shape; wrangler still produces the v4 one.
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      ...workerOptions,
      name: "openedge-ledger",
      modules: true,
      modulesRoot: join(WORK, "dist"),
      scriptPath: join(WORK, "dist", "worker.js"),
      bindings: {
        ...(workerOptions.bindings ?? {}),
        ADMIN_API_KEY: ADMIN_KEY,
        CONFIG_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
        AUDIT_SIGNING_KEY: generateKeyPairSync("ed25519")
          .privateKey.export({ format: "der", type: "pkcs8" })
          .toString("base64"),
        // The projection's coalescing window under investigation (wrangler.toml's value otherwise).
        ...(process.env.BENCH_COALESCE_MS === undefined
          ? {}
          : { PROJECTION_COALESCE_MS: process.env.BENCH_COALESCE_MS }),
      },
      resourcePersistencePath: join(process.env.BENCH_STATE_ROOT ?? WORK, state),
      // One log line per request is the log policy; printing them here would measure the terminal.
      handleStructuredLogs: () => undefined,
      unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
      // The benchmark drives the bootstrap key far past any production limit.
      ratelimits: {
        RATE_LIMITER: { namespace_id: "1001", simple: { limit: 100_000_000, period: 60 } },
        BOOTSTRAP_RATE_LIMITER: { namespace_id: "1002", simple: { limit: 100_000_000, period: 60 } },
        AUTH_FAILURE_LIMITER: { namespace_id: "1003", simple: { limit: 120, period: 60 } },
      },
    }),
  );
  await mf.ready;
  const db = await mf.getD1Database("DB");
  for (const file of readdirSync(join(ROOT, "migrations")).sort()) {
    const sql = readFileSync(join(ROOT, "migrations", file), "utf8");
    try {
      await db.exec(sql.replace(/--[^\n]*\n/g, "\n").replace(/\s*\n\s*/g, " "));
    } catch (error) {
      if (!/already exists/.test(String(error))) throw error;
    }
  }
  const url = await mf.unsafeGetDirectURL();
  return { mf, url: url.toString().replace(/\/$/, "") };
}

/** The workerd process's resident memory and its peak (kB), from /proc. */
function workerdMemory() {
  let rss = 0;
  let hwm = 0;
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (!cmdline.includes("workerd") || !cmdline.includes("serve")) continue;
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      rss += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      hwm += Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
    } catch {
      // The process went away while we looked.
    }
  }
  return { rss_kb: rss, peak_kb: hwm };
}

/** @param {string} base @param {string} method @param {string} path @param {unknown} [body] */
async function call(base, method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status >= 500) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text.length > 0 && text.startsWith("{") ? JSON.parse(text) : text;
}

/** Runs one autocannon scenario in a separate process. @param {Record<string, unknown>} scenario */
function load(scenario) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, "bench/load.mjs"), JSON.stringify(scenario)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`load exited ${code}`))));
  });
}

/** Sums the account objects' own counters. @param {string} base @param {string[]} accounts */
async function counters(base, accounts) {
  const total = { commits: 0, rows_written: 0, projection_rows_written: 0, d1_rows_written: 0, events_projected: 0 };
  for (let i = 0; i < accounts.length; i += 50) {
    const batch = await Promise.all(accounts.slice(i, i + 50).map((a) => call(base, "GET", `/v1/bench/stats/${a}`)));
    for (const s of batch) for (const k of Object.keys(total)) total[/** @type {keyof typeof total} */ (k)] += s[k];
  }
  return total;
}

async function openAccounts(base, prefix, count, balance) {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}_${i}`);
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(
      ids.slice(i, i + 50).map(async (id) => {
        await call(base, "POST", "/v1/accounts", { account_id: id, currency: "USD" });
        await call(base, "POST", `/v1/accounts/${id}/credits`, { credit_id: "seed", amount: balance });
      }),
    );
  }
  return ids;
}

const percentile = (values, p) => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};

async function main() {
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  rmSync(join(WORK, "state"), { recursive: true, force: true });
  build();
  const { mf, url } = await serve();
  const common = { url, key: ADMIN_KEY, connections: CONNECTIONS, duration: DURATION_SECONDS };
  /** @type {Record<string, any>} */
  const rows = {};
  try {
    const [hot] = await openAccounts(url, "hot", 1, 1e12);
    const many = await openAccounts(url, "many", quick ? 100 : 1000, 1e12);
    const [mixed] = await openAccounts(url, "mixed", 1, 1e12);
    const [storm] = await openAccounts(url, "storm", 1, 1e12);
    const [bulk] = await openAccounts(url, "bulk", 1, 0);
    await call(url, "POST", `/v1/accounts/${storm}/charges`, { charge_id: "paid", amount: 1_000_000 });

    rows.plain_route = await load({ ...common, kind: "plain" });
    rows.noop_durable_object = await load({ ...common, kind: "noop", accounts: [hot] });

    // Hot account, with projection lag sampled while the load runs.
    const before = await counters(url, [hot]);
    const lags = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const p = await call(url, "GET", `/v1/admin/accounts/${hot}/projection`);
        lags.push(p.lag_ms);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    rows.hot_reserve_capture = await load({ ...common, kind: "reserve_capture", accounts: [hot] });
    sampling = false;
    await sampler;
    await call(url, "GET", `/v1/bench/stats/${hot}`);
    await new Promise((r) => setTimeout(r, 1000));
    const after = await counters(url, [hot]);
    rows.hot_reserve_capture.projection_lag_p99_ms = percentile(lags, 99);
    rows.hot_reserve_capture.do_rows_per_command =
      (after.rows_written - before.rows_written + after.projection_rows_written - before.projection_rows_written) /
      Math.max(1, after.commits - before.commits);
    rows.hot_reserve_capture.d1_rows_per_event =
      (after.d1_rows_written - before.d1_rows_written) / Math.max(1, after.events_projected - before.events_projected);
    rows.hot_reserve_capture.memory = workerdMemory();

    const manyBefore = await counters(url, many);
    if (process.env.BENCH_ONLY_HOT) return report(rows, null, null);
    rows.many_accounts_reserve_capture = await load({ ...common, kind: "reserve_capture", accounts: many });
    await new Promise((r) => setTimeout(r, 1000));
    const manyAfter = await counters(url, many);
    rows.many_accounts_reserve_capture.do_rows_per_command =
      (manyAfter.rows_written -
        manyBefore.rows_written +
        manyAfter.projection_rows_written -
        manyBefore.projection_rows_written) /
      Math.max(1, manyAfter.commits - manyBefore.commits);
    rows.many_accounts_reserve_capture.d1_rows_per_event =
      (manyAfter.d1_rows_written - manyBefore.d1_rows_written) /
      Math.max(1, manyAfter.events_projected - manyBefore.events_projected);
    rows.many_accounts_reserve_capture.memory = workerdMemory();

    rows.credits_and_charges = await load({ ...common, kind: "credit_charge", accounts: [mixed] });
    rows.refund_retry_storm = await load({ ...common, kind: "refund_storm", accounts: [storm] });
    rows.batch_1000 = await load({ ...common, kind: "batch", accounts: [bulk], connections: 4 });
    rows.batch_1000.operations_per_second = rows.batch_1000.requests_per_second * 1000;
    rows.batch_1000.memory = workerdMemory();
  } finally {
    await mf.dispose();
  }

  const memory = quick ? null : await objectMemory();
  const verifier = {
    small: await verifierSpeed(100_000),
    large: quick ? null : await verifierSpeed(1_000_000),
  };
  report(rows, memory, verifier);
}

/** Memory of workerd after waking one account of 1,000 events vs one of 1,000,000 (fresh processes). */
async function objectMemory() {
  rmSync(join(WORK, "memory"), { recursive: true, force: true });
  const sizes = { small: 1_000, large: 1_000_000 };
  {
    const { mf, url } = await serve("memory");
    try {
      for (const [name, events] of Object.entries(sizes)) {
        await call(url, "POST", "/v1/accounts", { account_id: name, currency: "USD" });
        for (let done = 1; done < events; done += 1000) {
          const n = Math.min(1000, events - done);
          const operations = Array.from({ length: n }, (_, i) => ({
            op: "credit",
            credit_id: `c${done + i}`,
            amount: 1,
          }));
          await call(url, "POST", `/v1/accounts/${name}/batch`, { operations });
        }
      }
    } finally {
      await mf.dispose();
    }
  }
  const result = {};
  for (const name of Object.keys(sizes)) {
    const { mf, url } = await serve("memory");
    try {
      const idle = workerdMemory();
      const account = await call(url, "GET", `/v1/accounts/${name}`);
      await call(url, "GET", `/v1/bench/noop/${name}`);
      const awake = workerdMemory();
      result[name] = { events: account.last_seq, workerd_rss_kb_idle: idle.rss_kb, workerd_rss_kb_awake: awake.rss_kb };
    } finally {
      await mf.dispose();
    }
  }
  return result;
}

/** The offline verifier on a synthetic chained export; events/s and peak memory. */
async function verifierSpeed(events) {
  const file = join(WORK, `export-${events}.ndjson`);
  if (!existsSync(file)) {
    execFileSync(process.execPath, [join(ROOT, "bench/make-export.mjs"), String(events), file], { stdio: "inherit" });
  }
  const started = process.hrtime.bigint();
  const out = execFileSync(
    process.execPath,
    ["--import", join(ROOT, "bench/report-rss.mjs"), join(ROOT, "bin/ledger-audit.mjs"), "verify", file, "--json"],
    { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const lines = out.trim().split("\n");
  const verdict = JSON.parse(lines[0]);
  const rss = JSON.parse(lines.at(-1));
  return {
    events,
    ok: verdict.ok,
    seconds,
    events_per_second: Math.round(events / seconds),
    peak_rss_kb: rss.max_rss_kb,
  };
}

function report(rows, memory, verifier) {
  const plain = rows.plain_route?.requests_per_second ?? 0;
  const noop = rows.noop_durable_object?.requests_per_second ?? 0;
  const table = Object.entries(rows).map(([name, r]) => ({
    scenario: name,
    "ops/s": Math.round(r.operations_per_second ?? r.requests_per_second),
    "x plain": plain ? +(r.requests_per_second / plain).toFixed(2) : null,
    "x no-op DO": noop ? +(r.requests_per_second / noop).toFixed(2) : null,
    "p50 ms": r.latency_p50_ms,
    "p99 ms": r.latency_p99_ms,
    errors: r.errors,
    "DO rows/cmd": r.do_rows_per_command === undefined ? "" : +r.do_rows_per_command.toFixed(2),
    "D1 rows/event": r.d1_rows_per_event === undefined ? "" : +r.d1_rows_per_event.toFixed(2),
    "lag p99 ms": r.projection_lag_p99_ms ?? "",
    "workerd peak MB": r.memory ? Math.round(r.memory.peak_kb / 1024) : "",
  }));
  console.table(table);
  console.log("object memory:", JSON.stringify(memory));
  console.log("offline verifier:", JSON.stringify(verifier));
  const date = new Date().toISOString();
  const versions = {
    node: process.version,
    workerd: execFileSync(join(ROOT, "node_modules/wrangler/node_modules/.bin/workerd"), ["--version"], {
      encoding: "utf8",
    }).trim(),
    wrangler: JSON.parse(readFileSync(join(ROOT, "node_modules/wrangler/package.json"), "utf8")).version,
    autocannon: JSON.parse(readFileSync(join(ROOT, "node_modules/autocannon/package.json"), "utf8")).version,
  };
  const machine = {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model,
    memory_gb: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()}`,
  };
  const result = {
    date,
    machine,
    versions,
    duration_seconds: DURATION_SECONDS,
    connections: CONNECTIONS,
    scenarios: rows,
    table,
    object_memory: memory,
    offline_verifier: verifier,
  };
  const out = join(ROOT, "bench/results", `${date.slice(0, 19).replaceAll(":", "-")}.json`);
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`written ${out}`);
}

if (process.argv[1] === new URL(import.meta.url).pathname) await main();

export { build, call, serve };
