#!/usr/bin/env node
// @ts-check
/**
 * `npm run bench`: the ledger under load, side by side with the runtime's own ceilings measured
 * in the same run with the same client settings.
 *
 * Serving (scripts/local-ledger.mjs): the Worker is bundled as `wrangler deploy` bundles it
 * (`--dry-run --outdir`), and served by workerd through Miniflare with the bindings wrangler.toml declares
 * (`unstable_getMiniflareWorkerOptions`), SQLite persistence on disk (bench/.work/state), and a
 * direct socket on 127.0.0.1: no `wrangler dev` proxy in front. Load comes from autocannon in a
 * separate process, bounded in duration. Numbers go to stdout as a table and to
 * bench/results/<date>.json with the machine's facts.
 *
 * Ceilings, same client, same run: a plain route, a no-op call into a Durable Object, and one
 * durable SQLite write per request into a Durable Object, on one account and across the same
 * accounts the 1,000-account scenario uses. Each ledger scenario is shown as a ratio of
 * requests/s to its matching durable-write ceiling (a reserve+capture pair is two requests). The
 * two throughput targets (hot account, 1,000 accounts) are measured in BENCH_ROUNDS rounds that
 * alternate the ceiling and the ledger scenario (`alternating`), so that the machine's drift
 * weighs on both sides of the ratio alike; the JSON keeps each round's ratio.
 *
 * The projection runs as deployed: account objects send messages to the projection queue and
 * the Worker's queue() handler applies them to D1 in bulk. After each ledger scenario the bench
 * waits (bounded, BENCH_DRAIN_SECONDS) until every account's D1 row has caught up with its
 * object, then reads the consumer's own counters (applyStats: statements, D1 rows_written,
 * events applied, commit-to-visible lags) and D1's size (meta.size_after).
 *
 * Knobs for investigation (not needed for a normal run): BENCH_SECONDS (per scenario),
 * BENCH_STATE_ROOT (e.g. a tmpfs, to separate disk cost), BENCH_COALESCE_MS (projection window),
 * BENCH_DELIVERY=direct (objects write D1 themselves, no queue), BENCH_PROJECTION_SINK=1 (objects
 * hand their messages to a sink that accepts them: their own side only), BENCH_DRAIN_SECONDS (bound on
 * the wait for the queue to drain), BENCH_ACCOUNTS (accounts of the many-accounts scenarios,
 * also with --quick), BENCH_ONLY_HOT (stop after the hot-account scenario), BENCH_ONLY_ARCHIVE
 * (only the long-history scenario, bench/archive.mjs), BENCH_ARCHIVE_EVENTS (its length),
 * BENCH_ADMIN_KEY; `--quick` (100 accounts, no 1,000,000-event memory run, a 100,000-event
 * verifier run).
 */
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { buildWorker, freshSecrets, serveLedger } from "../scripts/local-ledger.mjs";

const { unstable_getMiniflareWorkerOptions } = await import("wrangler");

import { archiveScenario } from "./archive.mjs";

const ROOT = new URL("..", import.meta.url).pathname;
const WORK = join(ROOT, "bench/.work");
const DURATION_SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = 64;
const DRAIN_SECONDS = Number(process.env.BENCH_DRAIN_SECONDS ?? 120);
/**
 * BENCH_PROJECTION_SINK=1: every account object's projection delivery accepts its messages
 * without sending them (as the platform's queue takes a send as I/O done elsewhere): what the
 * object's own side of the projection costs, without the local queue, consumer and D1.
 */
const SINK = process.env.BENCH_PROJECTION_SINK === "1";
const LOADAVG_START = os.loadavg().map((l) => +l.toFixed(2));
// A strong key: the ledger refuses to serve with a weak ADMIN_API_KEY (docs/security.md).
const ADMIN_KEY = process.env.BENCH_ADMIN_KEY ?? `bench_${randomBytes(32).toString("base64url")}`;
const quick = process.argv.includes("--quick");

/** Bundles the bench's Worker (the ledger plus the bench routes) as a deploy would. */
function build() {
  buildWorker("bench/worker.ts", join(WORK, "dist"));
}

/** Starts the ledger in workerd (scripts/local-ledger.mjs); returns the Miniflare instance and its direct URL. */
async function serve(state = "state") {
  return serveLedger({
    dist: join(WORK, "dist"),
    persist: join(process.env.BENCH_STATE_ROOT ?? WORK, state),
    bindings: {
      ...freshSecrets(ADMIN_KEY),
      // The projection's coalescing window under investigation (wrangler.toml's value otherwise).
      ...(process.env.BENCH_COALESCE_MS === undefined ? {} : { PROJECTION_COALESCE_MS: process.env.BENCH_COALESCE_MS }),
      // "direct": the objects write D1 themselves (same code) instead of the queue.
      ...(process.env.BENCH_DELIVERY === undefined ? {} : { PROJECTION_DELIVERY: process.env.BENCH_DELIVERY }),
      // "1": the objects hand their messages to a sink that accepts them (bench/account.ts).
      ...(SINK ? { BENCH_PROJECTION_SINK: "1" } : {}),
    },
    // bench/profile.mjs attaches a CPU profiler to the Worker (and its objects) through it.
    inspectorPort:
      process.env.BENCH_INSPECTOR_PORT === undefined ? undefined : Number(process.env.BENCH_INSPECTOR_PORT),
    // bench/instructions.mjs: no eviction of idle objects (its requests come 50 times slower).
    preventEviction: process.env.BENCH_PREVENT_EVICTION === "1",
    // The benchmark drives the bootstrap key far past any production limit.
    ratelimits: {
      RATE_LIMITER: { namespace_id: "1001", simple: { limit: 100_000_000, period: 60 } },
      BOOTSTRAP_RATE_LIMITER: { namespace_id: "1002", simple: { limit: 100_000_000, period: 60 } },
      AUTH_FAILURE_LIMITER: { namespace_id: "1003", simple: { limit: 120, period: 60 } },
    },
  });
}

/** The pids of the workerd processes this process started (not another workerd on the machine). */
function workerdPids() {
  const pids = [];
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (!cmdline.includes("workerd") || !cmdline.includes("serve")) continue;
      const parent = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
      if (parent === process.pid) pids.push(pid);
    } catch {
      // The process went away while we looked.
    }
  }
  return pids;
}

/** The resident memory and its peak (kB) of the workerd this process started, from /proc. */
function workerdMemory() {
  let rss = 0;
  let hwm = 0;
  for (const pid of workerdPids()) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      rss += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      hwm += Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
    } catch {
      // The process went away while we looked.
    }
  }
  return { rss_kb: rss, peak_kb: hwm };
}

/** Clock ticks per second of /proc's CPU times (USER_HZ; 100 on Linux). */
const USER_HZ = 100;

/**
 * CPU milliseconds (user + system, all threads) the bench's workerd has used so far. Per request,
 * it is what a scenario costs the runtime whatever else the machine runs at the time: the
 * requests/s ratios move with the machine's load, CPU per request much less.
 */
function workerdCpuMs() {
  let ticks = 0;
  for (const pid of workerdPids()) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // The process went away while we looked.
    }
  }
  return (ticks * 1000) / USER_HZ;
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

/**
 * Runs one autocannon scenario in a separate process; the row also counts the account objects
 * the runtime constructed meanwhile (`do_constructions`: reconstructions of evicted idle objects,
 * whose start-up each such request pays). @param {Record<string, unknown>} scenario
 */
async function load(scenario) {
  const built = async () =>
    /** @type {{ constructions: number }} */ (await call(String(scenario.url), "GET", "/v1/bench/constructions"))
      .constructions;
  const before = await built();
  const row = await loadOnly(scenario);
  row.do_constructions = (await built()) - before;
  return row;
}

/** @param {Record<string, unknown>} scenario @returns {Promise<Record<string, any>>} */
function loadOnly(scenario) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, "bench/load.mjs"), JSON.stringify(scenario)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    const started_at = new Date().toISOString();
    const cpuBefore = workerdCpuMs();
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`load exited ${code}`));
      const row = { started_at, ...JSON.parse(out) };
      const cpuMs = workerdCpuMs() - cpuBefore;
      row.workerd_cpu_us_per_request = row.requests > 0 ? Math.round((cpuMs * 1000) / row.requests) : null;
      resolve(row);
    });
  });
}

/**
 * Sums the account objects' own counters (commits and the SQLite rows they wrote). The D1
 * counters come from the consumer's `applyStats` instead (per isolate, not per object).
 * @param {string} base @param {string[]} accounts
 */
async function counters(base, accounts) {
  const total = { commits: 0, rows_written: 0, projection_rows_written: 0, events_projected: 0, messages_delivered: 0 };
  for (let i = 0; i < accounts.length; i += 50) {
    const batch = await Promise.all(accounts.slice(i, i + 50).map((a) => call(base, "GET", `/v1/bench/stats/${a}`)));
    for (const s of batch)
      for (const k of Object.keys(total)) total[/** @type {keyof typeof total} */ (k)] += s[k] ?? 0;
  }
  return total;
}

/**
 * Waits until every account's D1 row has caught up with its object's head (the queue drained
 * and the consumer applied it), polling, at most BENCH_DRAIN_SECONDS. Returns how long it took
 * and how many polls, and, if it did not drain, what was still pending.
 * @param {string} base @param {string[]} accounts @param {number} [pollMs]
 */
async function drain(base, accounts, pollMs = 250) {
  const started = Date.now();
  let last = null;
  for (let polls = 1; ; polls++) {
    const parts = [];
    for (let i = 0; i < accounts.length; i += 250) {
      parts.push(call(base, "POST", "/v1/bench/positions", { account_ids: accounts.slice(i, i + 250) }));
    }
    const all = await Promise.all(parts);
    last = all.reduce(
      (sum, p) => ({
        objects_behind: sum.objects_behind + p.objects_behind,
        d1_behind: sum.d1_behind + p.d1_behind,
        events_pending: sum.events_pending + p.events_pending,
        failures: sum.failures + p.failures,
      }),
      { objects_behind: 0, d1_behind: 0, events_pending: 0, failures: 0 },
    );
    const seconds = (Date.now() - started) / 1000;
    // With the sink nothing reaches D1: drained when every object's cursor is at its head.
    if ((SINK || last.d1_behind === 0) && last.objects_behind === 0) return { drained: true, seconds, polls, ...last };
    if (seconds > DRAIN_SECONDS) {
      console.error(`not drained after ${DRAIN_SECONDS} s: ${JSON.stringify(last)}`);
      return { drained: false, seconds, polls, ...last };
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/**
 * One ledger scenario with its read-side costs: the queue drained before (so the consumer's
 * counters start at zero) and after (so they count every event of the scenario), the account
 * objects' rows per command, the consumer's statements and D1 rows per event applied, the
 * commit-to-visible lags and D1's growth per event.
 * @param {string} base @param {string[]} accounts @param {Record<string, unknown>} scenario
 */
async function ledgerScenario(base, accounts, scenario, measure = () => load(scenario)) {
  const before = await counters(base, accounts);
  const sizeBefore = await call(base, "GET", "/v1/bench/d1-size");
  await call(base, "POST", "/v1/bench/apply-stats");
  const row = await measure();
  row.drain = await drain(base, accounts);
  const applied = await call(base, "GET", "/v1/bench/apply-stats");
  const sizeAfter = await call(base, "GET", "/v1/bench/d1-size");
  const after = await counters(base, accounts);
  const commits = after.commits - before.commits;
  row.commits = commits;
  // The projection cursor's own rows (one SQLite write per flush, after the delivery).
  row.do_projection_rows_per_command =
    commits === 0 ? null : (after.projection_rows_written - before.projection_rows_written) / commits;
  row.messages_delivered = after.messages_delivered - before.messages_delivered;
  row.do_rows_per_command =
    commits === 0
      ? null
      : (after.rows_written - before.rows_written + after.projection_rows_written - before.projection_rows_written) /
        commits;
  // Events the objects handed to the projection (the queue accepted them).
  row.events_delivered = after.events_projected - before.events_projected;
  row.apply_stats = applied;
  const events = applied.events_applied;
  row.d1_rows_per_event = events > 0 ? applied.rows_written / events : null;
  row.d1_statements_per_1000_events = events > 0 ? (applied.statements * 1000) / events : null;
  row.d1_events_per_batch = applied.batches > 0 ? events / applied.batches : null;
  row.projection_lag_p50_ms = applied.lags.p50_ms;
  row.projection_lag_p99_ms = applied.lags.p99_ms;
  row.d1_bytes_before = sizeBefore.bytes;
  row.d1_bytes_after = sizeAfter.bytes;
  row.d1_bytes_per_event = events > 0 ? (sizeAfter.bytes - sizeBefore.bytes) / events : null;
  return row;
}

/** Rounds in which a throughput target's ledger scenario alternates with its ceiling (BENCH_ROUNDS). */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
/** Unmeasured load on each side before the rounds. */
const WARMUP_SECONDS = 1;

/** Rows of several rounds of one scenario as one row: sums, the median p50, the worst p99. */
function mergeRounds(rounds) {
  const requests = rounds.reduce((sum, r) => sum + r.requests, 0);
  const seconds = rounds.reduce((sum, r) => sum + r.requests / Math.max(r.requests_per_second, 1), 0);
  const cpu = rounds.reduce((sum, r) => sum + r.requests * (r.workerd_cpu_us_per_request ?? 0), 0);
  const p50s = rounds.map((r) => r.latency_p50_ms).sort((a, b) => a - b);
  return {
    started_at: rounds[0]?.started_at,
    requests,
    requests_per_second: Math.round(requests / seconds),
    latency_p50_ms: p50s[Math.floor(p50s.length / 2)],
    latency_p99_ms: Math.max(...rounds.map((r) => r.latency_p99_ms)),
    errors: rounds.reduce((sum, r) => sum + r.errors, 0),
    workerd_cpu_us_per_request: requests > 0 ? Math.round(cpu / requests) : null,
    do_constructions: rounds.reduce((sum, r) => sum + (r.do_constructions ?? 0), 0),
    rounds: rounds.map((r) => ({
      requests_per_second: r.requests_per_second,
      workerd_cpu_us_per_request: r.workerd_cpu_us_per_request,
      do_constructions: r.do_constructions,
      errors: r.errors,
    })),
  };
}

/**
 * A throughput target's two sides, interleaved: ROUNDS rounds of the ceiling then the ledger
 * scenario, DURATION_SECONDS / 2 each (2 s at least). This machine's speed drifts by a fifth and
 * more within a minute (a shared host), and one 8-second window per side, half a minute apart,
 * let that drift decide a ratio; alternating short rounds exposes both sides to the same drift.
 * Returns both merged, the ledger's row with each round's ratio.
 */
async function alternating(ceilingScenario, ledgerScenarioRow) {
  const duration = Math.max(2, Math.round(DURATION_SECONDS / 2));
  // Both sides warm, unmeasured, for WARMUP_SECONDS first: otherwise the ledger's first round
  // carries the compilation of its own code paths, which the ceiling's warm-up already paid.
  await load({ ...ceilingScenario, duration: WARMUP_SECONDS });
  await load({ ...ledgerScenarioRow, duration: WARMUP_SECONDS });
  const ceilings = [];
  const ledgers = [];
  for (let round = 0; round < ROUNDS; round++) {
    ceilings.push(await load({ ...ceilingScenario, duration }));
    ledgers.push(await load({ ...ledgerScenarioRow, duration }));
  }
  const ledger = mergeRounds(ledgers);
  ledger.round_ratios = ledgers.map(
    (l, i) => +(l.requests_per_second / (ceilings[i]?.requests_per_second ?? 1)).toFixed(2),
  );
  return { ceiling: mergeRounds(ceilings), ledger };
}

/**
 * One durable write into each account's object, 50 at a time: the ceiling's objects are then warm
 * before they are measured (their bench table made, one write done), as the ledger's are.
 * @param {string} base @param {string[]} accounts
 */
async function warmCeiling(base, accounts) {
  for (let i = 0; i < accounts.length; i += 50) {
    await Promise.all(accounts.slice(i, i + 50).map((a) => call(base, "POST", `/v1/bench/durable-write/${a}`)));
  }
}

/** @param {Record<string, unknown>} [grant] the seed lot's terms (default: a paid lot, never expiring) */
async function openAccounts(base, prefix, count, balance, grant) {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}_${i}`);
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(
      ids.slice(i, i + 50).map(async (id) => {
        await call(base, "POST", "/v1/accounts", { account_id: id, currency: "USD" });
        if (balance > 0) {
          await call(base, "POST", `/v1/accounts/${id}/credits`, { credit_id: "seed", amount: balance, grant });
        }
      }),
    );
  }
  return ids;
}

/**
 * The lots-heavy account (issue 27): LOTS_PER_ACCOUNT lots of mixed kinds and priorities, the first
 * to burn a promotional lot that expires at `expiresAtMs` (a tenth of the lots), with credit enough
 * to outlast the run. Reserve+capture earmarks it first, then, once it expired, the next in the order.
 */
async function openLotsAccount(base, expiresAtMs) {
  const [id] = await openAccounts(base, "lots", 1, 0);
  const expiring = { kind: "promotional", priority: 5, expires_at: new Date(expiresAtMs).toISOString() };
  await call(base, "POST", `/v1/accounts/${id}/credits`, { credit_id: "lot_0", amount: 1e11, grant: expiring });
  for (let i = 1; i < LOTS_PER_ACCOUNT; i++) {
    const grant = i % 3 === 0 ? { kind: "promotional", priority: 10 + i } : { kind: "paid", priority: 40 + i };
    await call(base, "POST", `/v1/accounts/${id}/credits`, { credit_id: `lot_${i}`, amount: 1e11, grant });
  }
  return id;
}
const LOTS_PER_ACCOUNT = 10;

/**
 * An account of existing callers at the bound (issue 27): LOTS_ACTIVE_MAX (10,000) plain top-ups,
 * none spent, made in batches of 1,000 credits. Reserve+capture on it draws from the oldest.
 */
async function openFullLotsAccount(base) {
  const [id] = await openAccounts(base, "full", 1, 0);
  for (let b = 0; b < FULL_LOTS / 1000; b++) {
    const operations = Array.from({ length: 1000 }, (_, i) => ({
      op: "credit",
      credit_id: `t_${b}_${i}`,
      amount: 1e8,
    }));
    await call(base, "POST", `/v1/accounts/${id}/batch`, { operations, atomic: true });
  }
  return id;
}
const FULL_LOTS = 10_000;

async function main() {
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  rmSync(join(WORK, "state"), { recursive: true, force: true });
  build();
  const { mf, url } = await serve();
  const common = { url, key: ADMIN_KEY, connections: CONNECTIONS, duration: DURATION_SECONDS };
  /** @type {Record<string, any>} */
  const rows = {};
  /** D1 with its migrations only, then after every scenario: bytes per event over the whole run. */
  const d1 = { empty: await call(url, "GET", "/v1/bench/d1-size"), end: null };
  const archive = { url, key: ADMIN_KEY, mf, common, work: WORK, root: ROOT, quick, call, load };
  /** @type {Record<string, any> | null} */
  let longHistory = null;
  try {
    if (process.env.BENCH_ONLY_ARCHIVE) {
      longHistory = await archiveScenario(archive);
      return report(rows, null, null, d1, longHistory);
    }
    const [hot] = await openAccounts(url, "hot", 1, 1e12);
    const many = await openAccounts(url, "many", Number(process.env.BENCH_ACCOUNTS ?? (quick ? 100 : 1000)), 1e12);
    // Its top-ups burn before the seed (priority 100), each spent by the charge after it.
    const [mixed] = await openAccounts(url, "mixed", 1, 1e12, { kind: "paid", priority: 100 });
    const [storm] = await openAccounts(url, "storm", 1, 1e12);
    const [bulk] = await openAccounts(url, "bulk", 1, 0);
    await call(url, "POST", `/v1/accounts/${storm}/charges`, { charge_id: "paid", amount: 1_000_000 });

    // Let the seed events (open and credit of every account) reach D1 before measuring.
    const seeded = await drain(url, [hot, ...many, mixed, storm, bulk]);
    if (!seeded.drained) console.error("the seed events did not drain; measuring anyway");

    rows.plain_route = await load({ ...common, kind: "plain" });
    rows.noop_durable_object = await load({ ...common, kind: "noop", accounts: [hot] });
    // The ceiling's objects, like the ledger's, are warm before they are measured: each has its
    // bench table and has written once (the ledger's accounts were opened and credited above).
    await warmCeiling(url, [hot, ...many]);
    // Each throughput target's ceiling is measured in rounds alternating with its ledger scenario
    // (`alternating`); the keys are set here to keep the table's order.
    rows.durable_write_one_account = null;
    rows.durable_write_1000_accounts = null;
    const hotScenario = { ...common, kind: "reserve_capture", accounts: [hot] };
    rows.hot_reserve_capture = await ledgerScenario(url, [hot], hotScenario, async () => {
      const { ceiling, ledger } = await alternating({ ...common, kind: "durable_write", accounts: [hot] }, hotScenario);
      rows.durable_write_one_account = ceiling;
      return ledger;
    });
    rows.hot_reserve_capture.memory = workerdMemory();
    if (process.env.BENCH_ONLY_HOT) {
      d1.end = await call(url, "GET", "/v1/bench/d1-size");
      return report(rows, null, null, d1);
    }

    // Issue 27: reserve+capture on 10 lots, one expiring mid-run, in rounds alternating with the
    // plain hot account's (the same drift on both): the ratio is lots-heavy over plain.
    const round = Math.max(2, Math.round(DURATION_SECONDS / 2));
    const lotsRunMs = (2 * WARMUP_SECONDS + 2 * ROUNDS * round) * 1000;
    const lotsAccount = await openLotsAccount(url, Date.now() + lotsRunMs / 2);
    await drain(url, [lotsAccount]);
    /** Reserve+capture on `account` in rounds alternating with the plain hot account's; the ratio on the row. */
    const besideHot = async (account) => {
      const scenario = { ...common, kind: "reserve_capture", accounts: [account] };
      let beside = null;
      const row = await ledgerScenario(url, [account, hot], scenario, async () => {
        const { ceiling, ledger } = await alternating(hotScenario, scenario);
        beside = ceiling;
        return ledger;
      });
      row.x_plain_same_rounds = +(row.requests_per_second / beside.requests_per_second).toFixed(2);
      return { row, beside };
    };
    const lotsRun = await besideHot(lotsAccount);
    rows.lots_reserve_capture = lotsRun.row;
    rows.hot_beside_lots = lotsRun.beside;
    const expired = await call(url, "GET", `/v1/accounts/${lotsAccount}/lots?status=expired`);
    rows.lots_reserve_capture.lots = { per_account: LOTS_PER_ACCOUNT, expired_during_run: expired.data.length };

    // Issue 28: reserve+capture counted against 3 matching spend limits (the bench's key, by day,
    // month and total), in rounds alternating with the plain hot account's.
    const [limited] = await openAccounts(url, "limited", 1, 1e12);
    for (const window of ["day", "month", "total"]) {
      const body = { applies_to: { api_key_id: "bootstrap" }, window, amount: 1e15 };
      await call(url, "PUT", `/v1/accounts/${limited}/limits/bench-${window}`, body);
    }
    await drain(url, [limited]);
    const limitedRun = await besideHot(limited);
    const counted = (await call(url, "GET", `/v1/accounts/${limited}/limits`)).data ?? [];
    if (counted.length !== 3 || counted.some((l) => l.spent === 0)) throw new Error("the bench's limits did not count");
    rows.limits_reserve_capture = {
      ...limitedRun.row,
      limits: counted.map((l) => ({ window: l.window, spent: l.spent })),
    };
    rows.hot_beside_limits = limitedRun.beside;

    // The same, on an account holding LOTS_ACTIVE_MAX lots with credit: a movement's cost is not the book's.
    const fullAccount = await openFullLotsAccount(url);
    await drain(url, [fullAccount]);
    const fullRun = await besideHot(fullAccount);
    rows.full_lots_reserve_capture = { ...fullRun.row, lots: { per_account: FULL_LOTS } };
    rows.hot_beside_full_lots = fullRun.beside;

    const manyScenario = { ...common, kind: "reserve_capture", accounts: many };
    rows.many_accounts_reserve_capture = await ledgerScenario(url, many, manyScenario, async () => {
      const { ceiling, ledger } = await alternating({ ...common, kind: "durable_write", accounts: many }, manyScenario);
      rows.durable_write_1000_accounts = { ...ceiling, accounts: many.length };
      return ledger;
    });
    rows.many_accounts_reserve_capture.accounts = many.length;
    rows.many_accounts_reserve_capture.memory = workerdMemory();

    rows.credits_and_charges = await ledgerScenario(url, [mixed], {
      ...common,
      kind: "credit_charge",
      accounts: [mixed],
    });
    rows.refund_retry_storm = await ledgerScenario(url, [storm], {
      ...common,
      kind: "refund_storm",
      accounts: [storm],
    });
    rows.batch_1000 = await ledgerScenario(url, [bulk], { ...common, kind: "batch", accounts: [bulk], connections: 4 });
    rows.batch_1000.operations_per_second = rows.batch_1000.requests_per_second * 1000;
    rows.batch_1000.memory = workerdMemory();
    d1.end = await call(url, "GET", "/v1/bench/d1-size");
    longHistory = await archiveScenario(archive);
  } finally {
    // Kept in case a later step fails: the scenarios took most of the run.
    writeFileSync(join(WORK, "scenarios.json"), `${JSON.stringify({ rows, d1 }, null, 2)}\n`);
    await mf.dispose();
  }

  const memory = quick ? null : await objectMemory();
  const verifier = {
    small: await verifierSpeed(100_000),
    large: quick ? null : await verifierSpeed(1_000_000),
  };
  report(rows, memory, verifier, d1, longHistory);
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
        // Credits appended inside the object (bench/account.ts benchFill), sealed as they go.
        for (let done = 1; done < events; done += 50_000) {
          await call(url, "POST", `/v1/bench/fill/${name}`, {
            from: done,
            count: Math.min(50_000, events - done),
            mix: "credits",
          });
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

/** Each ledger scenario's ceiling: the durable write on the same accounts. */
const CEILING_OF = {
  hot_reserve_capture: "durable_write_one_account",
  credits_and_charges: "durable_write_one_account",
  refund_retry_storm: "durable_write_one_account",
  many_accounts_reserve_capture: "durable_write_1000_accounts",
};

/** Operations per request: a reserve+capture pair is two requests, a batch request 1,000 operations. */
function operationsPerSecond(name, r) {
  if (r.operations_per_second !== undefined) return r.operations_per_second;
  return name.endsWith("reserve_capture") ? r.requests_per_second / 2 : r.requests_per_second;
}

/** A number from a source file (`export const NAME = 1_234;`), so the model follows the code. */
function constantOf(file, name) {
  const match = new RegExp(`${name}\\s*=\\s*([\\d_]+)`).exec(readFileSync(join(ROOT, file), "utf8"));
  if (match?.[1] === undefined) throw new Error(`${name} not found in ${file}`);
  return Number(match[1].replaceAll("_", ""));
}

/**
 * Days until one read-side database reaches 10 GB (docs/benchmarks.md, "D1 size", has the
 * formula): the platform writes `rate` events/s over `shards` databases with wrangler.toml's
 * retention; raw events cost the measured bytes per event, up to the prune's bytes bound (which
 * counts RAW_EVENT_BYTES_PER_ROW per event); hourly rollups are kept for
 * ROLLUPS_HOURLY_RETENTION_DAYS, daily rollups forever (the only part that grows).
 */
function daysTo10Gb({ bytesPerEvent, accounts, dimensionSets, rate = 1000, shards = 8 }) {
  const { workerOptions } = unstable_getMiniflareWorkerOptions(join(ROOT, "wrangler.toml"));
  const vars = workerOptions.bindings ?? {};
  const windowDays = Number(vars.RAW_EVENTS_WINDOW_DAYS);
  const windowBytesMax = Number(vars.RAW_EVENTS_WINDOW_BYTES_MAX);
  const hourlyDays = Number(vars.ROLLUPS_HOURLY_RETENTION_DAYS);
  const estimate = constantOf("src/projection/consumer/retention.ts", "RAW_EVENT_BYTES_PER_ROW");
  const pageEvents = constantOf("src/projection/wire.ts", "PROJECTION_PAGE_EVENTS");
  const limit = 10e9;
  const perShard = accounts / shards;
  const rawEvents = Math.min(windowDays * 86_400 * (rate / shards), windowBytesMax / estimate);
  const raw = rawEvents * bytesPerEvent;
  const hourly = perShard * dimensionSets * 24 * hourlyDays * ROLLUP_ROW_BYTES;
  // An accounts row holds its unsealed page (up to PAGE - 1 events) and its open hour and day rows.
  const accountRows = perShard * ((pageEvents - 1) * bytesPerEvent + 2 * dimensionSets * ROLLUP_ROW_BYTES + 300);
  const dailyPerDay = perShard * dimensionSets * ROLLUP_ROW_BYTES;
  return {
    rate,
    shards,
    accounts,
    dimension_sets: dimensionSets,
    bytes_per_event: bytesPerEvent,
    raw_window_hours: rawEvents / (rate / shards) / 3600,
    raw_bytes: raw,
    hourly_rollup_bytes: hourly,
    account_row_bytes: accountRows,
    daily_rollup_bytes_per_day: dailyPerDay,
    days: (limit - raw - hourly - accountRows) / dailyPerDay,
  };
}
/** Bytes of one rollup row with its index entries (docs/read-side.md, measured by a test). */
const ROLLUP_ROW_BYTES = 230;

const fixed = (value, digits = 2) => (typeof value === "number" ? +value.toFixed(digits) : "");

function report(rows, memory, verifier, d1, longHistory = null) {
  const plain = rows.plain_route?.requests_per_second ?? 0;
  const noop = rows.noop_durable_object?.requests_per_second ?? 0;
  const table = Object.entries(rows)
    .filter(([, r]) => r !== null)
    .map(([name, r]) => {
      const ceilingRow = rows[CEILING_OF[/** @type {keyof typeof CEILING_OF} */ (name)]];
      const ceiling = ceilingRow?.requests_per_second;
      const cpu = r.workerd_cpu_us_per_request;
      const ceilingCpu = ceilingRow?.workerd_cpu_us_per_request;
      return {
        scenario: name,
        "req/s": r.requests_per_second,
        "ops/s": Math.round(operationsPerSecond(name, r)),
        "x durable write": ceiling ? fixed(r.requests_per_second / ceiling) : "",
        "x plain": plain ? fixed(r.requests_per_second / plain) : "",
        "x no-op DO": noop ? fixed(r.requests_per_second / noop) : "",
        // The runtime's CPU per request, and the ceiling's divided by it (the throughput ratio a
        // CPU-bound runtime would show, whatever else the machine ran meanwhile).
        "cpu µs/req": cpu ?? "",
        "x durable write cpu": cpu && ceilingCpu ? fixed(ceilingCpu / cpu) : "",
        "p50 ms": r.latency_p50_ms,
        "p99 ms": r.latency_p99_ms,
        errors: r.errors,
        "DO rows/cmd": fixed(r.do_rows_per_command),
        "D1 rows/event": fixed(r.d1_rows_per_event),
        "D1 stmts/1000 events": fixed(r.d1_statements_per_1000_events, 1),
        "lag p99 ms": r.projection_lag_p99_ms ?? "",
        "D1 bytes/event": fixed(r.d1_bytes_per_event, 0),
        "drain s": r.drain ? `${fixed(r.drain.seconds, 1)}${r.drain.drained ? "" : " (not drained)"}` : "",
        "workerd peak MB": r.memory ? Math.round(r.memory.peak_kb / 1024) : "",
      };
    });
  console.table(table);
  const lots = rows.lots_reserve_capture;
  if (lots) {
    console.log(
      `lots-heavy reserve+capture: ${lots.x_plain_same_rounds}x the plain hot account's req/s in the same rounds ` +
        `(rounds ${JSON.stringify(lots.round_ratios)}); ${lots.lots.expired_during_run} of ${lots.lots.per_account} lots expired during it`,
    );
  }
  const limited = rows.limits_reserve_capture;
  if (limited) {
    console.log(
      `reserve+capture under 3 matching spend limits: ${limited.x_plain_same_rounds}x the plain hot account's req/s ` +
        `in the same rounds (rounds ${JSON.stringify(limited.round_ratios)})`,
    );
  }
  const full = rows.full_lots_reserve_capture;
  if (full) {
    console.log(
      `reserve+capture on ${full.lots.per_account} lots with credit: ${full.x_plain_same_rounds}x the plain hot ` +
        `account's req/s in the same rounds (rounds ${JSON.stringify(full.round_ratios)})`,
    );
  }
  // D1's bytes per event over the whole run (every event in D1, its accounts rows, holds and
  // rollups included), and the largest of that and the two reserve+capture loads' own growth.
  const overall = d1?.end && d1.end.events > 0 ? (d1.end.bytes - d1.empty.bytes) / d1.end.events : null;
  const measured = [
    rows.hot_reserve_capture?.d1_bytes_per_event,
    rows.many_accounts_reserve_capture?.d1_bytes_per_event,
    overall,
  ].filter((b) => typeof b === "number" && b > 0);
  const bytesPerEvent = measured.length > 0 ? Math.max(...measured) : null;
  // The headline platform: 100,000 accounts active every hour, 3 dimension sets each.
  const headline = bytesPerEvent === null ? null : daysTo10Gb({ bytesPerEvent, accounts: 100_000, dimensionSets: 3 });
  const d1Size =
    headline === null
      ? null
      : {
          d1_empty: d1.empty,
          d1_end: d1.end,
          d1_bytes_per_event_overall: overall,
          d1_bytes_per_event: bytesPerEvent,
          d1_days_to_10gb_at_1000_eps: Math.round(headline.days),
          headline_platform: headline,
          bench_platform: daysTo10Gb({ bytesPerEvent, accounts: 1_000, dimensionSets: 2 }),
        };
  console.log(
    "D1 size:",
    d1Size === null
      ? null
      : `${Math.round(d1Size.d1_bytes_per_event)} bytes/event; d1_days_to_10gb_at_1000_eps (8 databases, 100,000 accounts, 3 dimension sets): ${d1Size.d1_days_to_10gb_at_1000_eps}`,
  );
  console.log("object memory:", JSON.stringify(memory));
  console.log("offline verifier:", JSON.stringify(verifier));
  console.log("long history (sealed segments):", JSON.stringify(longHistory));
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
    // Load average (1, 5, 15 min) when the run started and ended: other work on the machine
    // shares its cores with the bench.
    loadavg_start: LOADAVG_START,
    loadavg_end: os.loadavg().map((l) => +l.toFixed(2)),
  };
  const result = {
    date,
    machine,
    versions,
    duration_seconds: DURATION_SECONDS,
    connections: CONNECTIONS,
    // The objects' messages went to a sink (BENCH_PROJECTION_SINK): D1's figures are not the read side's.
    ...(SINK ? { projection_sink: true } : {}),
    scenarios: rows,
    table,
    d1_size: d1Size,
    object_memory: memory,
    offline_verifier: verifier,
    long_history: longHistory,
  };
  const out = join(ROOT, "bench/results", `${date.slice(0, 19).replaceAll(":", "-")}.json`);
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`written ${out}`);
}

if (process.argv[1] === new URL(import.meta.url).pathname) await main();

export { alternating, build, call, drain, load, openAccounts, serve, warmCeiling, workerdPids };
