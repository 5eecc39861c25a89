// @ts-check
/**
 * The long-history scenario of `npm run bench` (issue 13; docs/benchmarks.md, "A long history"):
 * an account of BENCH_ARCHIVE_EVENTS events (1,000,000) built inside its object through the real
 * decide/append path (bench/account.ts `benchFill`), sealed into R2 segments as it grows. Then:
 * - its storage: the object's SQLite bytes and what R2 holds (`account_storage`);
 * - commands on it against a new account, each as a ratio to the durable-write ceiling of the
 *   same object;
 * - the export of its whole history, events/s (segments piped from R2, then the tail);
 * - the offline verifier over its segments as an auditor downloads them from the bucket, plus
 *   the tail, events/s.
 * Run it alone with BENCH_ONLY_ARCHIVE=1 npm run bench (BENCH_ARCHIVE_MIX=credits: only credits).
 */
import { execFileSync } from "node:child_process";
import { createWriteStream, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Events appended per fill request (one request stays well under a CPU budget). */
const FILL_EVENTS_PER_REQUEST = 50_000;

/**
 * @param {{ url: string, key: string, mf: any, common: Record<string, unknown>, work: string, root: string, quick: boolean,
 *   call: (base: string, method: string, path: string, body?: unknown) => Promise<any>,
 *   load: (scenario: Record<string, unknown>) => Promise<any> }} ctx
 */
export async function archiveScenario(ctx) {
  const { url, call } = ctx;
  const target = Number(process.env.BENCH_ARCHIVE_EVENTS ?? (ctx.quick ? 100_000 : 1_000_000));
  const id = "archive_long";
  // BENCH_ARCHIVE_MIX=credits: only credits (the smallest key per event), for comparison.
  const mix = process.env.BENCH_ARCHIVE_MIX === "credits" ? "credits" : "gateway";
  await call(url, "POST", "/v1/accounts", { account_id: id, currency: "USD" });
  const started = performance.now();
  for (let from = 0; from < target - 1; from += FILL_EVENTS_PER_REQUEST) {
    const count = Math.min(FILL_EVENTS_PER_REQUEST, target - 1 - from);
    await call(url, "POST", `/v1/bench/fill/${id}`, { from, count, mix });
  }
  const fillSeconds = (performance.now() - started) / 1000;
  const storage = await call(url, "GET", `/v1/bench/storage/${id}`);
  const commands = await commandsOnLongHistory(ctx, id);
  const exported = await exportSpeed(ctx, id, storage.archive.archived_through);
  const verified = await offlineVerifySpeed(ctx, id, exported.tail);
  return {
    events: target,
    mix,
    fill_seconds: +fillSeconds.toFixed(1),
    fill_events_per_second: Math.round(target / fillSeconds),
    account_storage: storage,
    commands,
    export: { events: exported.events, seconds: exported.seconds, events_per_second: exported.events_per_second },
    offline_verify: verified,
  };
}

/** Reserve+capture on the long account and on a new one, each against its own object's durable-write ceiling. */
async function commandsOnLongHistory(ctx, id) {
  const { url, call, load, common } = ctx;
  const fresh = "archive_fresh";
  await call(url, "POST", "/v1/accounts", { account_id: fresh, currency: "USD" });
  // The same read side for both (accepted without D1), and money to spend.
  await call(url, "POST", `/v1/bench/fill/${fresh}`, { from: 0, count: 4 });
  await call(url, "POST", `/v1/accounts/${fresh}/credits`, { credit_id: "seed", amount: 1e12 });
  await call(url, "POST", `/v1/accounts/${id}/credits`, { credit_id: "seed", amount: 1e12 });
  /** @type {Record<string, any>} */
  const result = {};
  for (const [name, account] of [
    ["long", id],
    ["new", fresh],
  ]) {
    await call(url, "POST", `/v1/bench/durable-write/${account}`);
    const ceiling = await load({ ...common, kind: "durable_write", accounts: [account] });
    const ledger = await load({ ...common, kind: "reserve_capture", accounts: [account] });
    result[name] = {
      requests_per_second: ledger.requests_per_second,
      p99_ms: ledger.latency?.p99 ?? null,
      durable_write_requests_per_second: ceiling.requests_per_second,
      x_durable_write: +(ledger.requests_per_second / ceiling.requests_per_second).toFixed(3),
    };
  }
  return result;
}

/**
 * GET .../events/export of the whole history, counted as it streams; the lines after the archive
 * are kept as the tail an auditor would export.
 */
async function exportSpeed(ctx, id, archivedThrough) {
  const tail = join(ctx.work, "archive-tail.ndjson");
  const out = createWriteStream(tail);
  const started = performance.now();
  const response = await fetch(`${ctx.url}/v1/accounts/${id}/events/export`, {
    headers: { authorization: `Bearer ${ctx.key}` },
  });
  if (!response.ok || response.body === null) throw new Error(`export answered ${response.status}`);
  const decoder = new TextDecoder();
  let lines = 0;
  let pending = "";
  for await (const chunk of /** @type {AsyncIterable<Uint8Array>} */ (/** @type {unknown} */ (response.body))) {
    pending += decoder.decode(chunk, { stream: true });
    let start = 0;
    for (let end = pending.indexOf("\n"); end !== -1; end = pending.indexOf("\n", start)) {
      lines += 1;
      if (lines > archivedThrough) out.write(`${pending.slice(start, end)}\n`);
      start = end + 1;
    }
    pending = pending.slice(start);
  }
  const seconds = (performance.now() - started) / 1000;
  await new Promise((resolve) => out.end(resolve));
  return { events: lines, seconds: +seconds.toFixed(2), events_per_second: Math.round(lines / seconds), tail };
}

/** The auditor's path: the segments and entries downloaded from the bucket, then ledger-audit verify. */
async function offlineVerifySpeed(ctx, id, tail) {
  const dir = join(ctx.work, "archive-segments");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const bucket = await ctx.mf.getR2Bucket("ARCHIVE");
  const prefix = `accounts/${id}/segments/`;
  let files = 0;
  for (let cursor; ; ) {
    const listed = await bucket.list({ prefix, cursor });
    for (const object of listed.objects) {
      const body = await bucket.get(object.key);
      writeFileSync(join(dir, object.key.slice(prefix.length)), new Uint8Array(await body.arrayBuffer()));
      files += 1;
    }
    if (!listed.truncated) break;
    cursor = listed.cursor;
  }
  const key = await ctx.call(ctx.url, "GET", "/v1/audit/public-key");
  const started = performance.now();
  const out = execFileSync(
    process.execPath,
    [join(ctx.root, "bin/ledger-audit.mjs"), "verify", dir, tail, "--public-key", key.public_key, "--json"],
    { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 1 << 24 },
  );
  const seconds = (performance.now() - started) / 1000;
  const verdict = JSON.parse(out.trim().split("\n")[0] ?? "{}");
  const events = verdict.summary?.events ?? 0;
  return {
    ok: verdict.ok,
    failure: verdict.failure ?? null,
    files,
    segments: verdict.archive?.segments ?? null,
    events,
    seconds: +seconds.toFixed(2),
    events_per_second: Math.round(events / seconds),
  };
}
