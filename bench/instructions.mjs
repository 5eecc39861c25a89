// @ts-check
/**
 * Instructions per request, counted by valgrind's callgrind in the whole workerd process (the
 * Worker, its objects, the queue and D1 as Miniflare runs them): the ledger's requests beside its
 * ceilings. Unlike time, an instruction count does not move with whatever else the machine runs,
 * so it can tell a 2% change from noise where `npm run bench` and bench/pair.mjs cannot (their
 * ratios wander by 20% between rounds on a shared 2-core machine). It is a guide, not the
 * record: instructions are not time (cache misses and the kernel's share are not counted).
 *
 * workerd runs under callgrind (MINIFLARE_WORKERD_PATH points at a wrapper), about 50 times
 * slower, so the projection's coalescing window is stretched to match (BENCH_COALESCE_MS, 2500 ms
 * unless set). Each kind is warmed, the counters are zeroed, N requests run at 8 at a time, and the
 * total is dumped (callgrind_control), including any background work during those requests.
 *
 *   node bench/instructions.mjs [requests=200] [kinds=plain,noop,durable_write,replay,reserve_capture]
 *
 * Needs valgrind (Debian's package, on these machines).
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const ROOT = new URL("..", import.meta.url).pathname;
const OUT = join(ROOT, "bench/.work/callgrind");
rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
const workerd = join(
  createRequire(join(ROOT, "node_modules/miniflare/package.json")).resolve("workerd/package.json"),
  "../bin/workerd",
);
const wrapper = join(OUT, "workerd.sh");
writeFileSync(
  wrapper,
  `#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=${OUT}/out.%p --smc-check=all-non-file -q "${workerd}" "$@"\n`,
);
chmodSync(wrapper, 0o755);
process.env.MINIFLARE_WORKERD_PATH = wrapper;
process.env.BENCH_COALESCE_MS ??= "2500";
process.env.BENCH_ADMIN_KEY ??= `bench_${randomBytes(32).toString("base64url")}`;
const { build, call, openAccounts, serve } = await import("./run.mjs");

const N = Number(process.argv[2] ?? 200);
const kinds = (process.argv[3] ?? "plain,noop,durable_write,replay,reserve_capture").split(",");
const CONCURRENCY = 8;

/** The pid of this run's workerd under callgrind (its command line names this run's output directory). */
function workerdPid() {
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(`--callgrind-out-file=${OUT}/`)) return pid;
    } catch {
      // The process went away while we looked.
    }
  }
  throw new Error("no workerd under callgrind");
}
/** Zeroes (-z) or dumps (-d) this run's counters only: another run on the machine is left alone. */
const callgrind = (/** @type {string} */ flag) =>
  execFileSync("callgrind_control", [flag, workerdPid()], { stdio: "ignore" });
/** The instructions of the newest dump. */
function lastDump() {
  const newest = readdirSync(OUT)
    .filter((f) => f.startsWith("out."))
    .map((f) => join(OUT, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (newest === undefined) throw new Error("no callgrind dump");
  const total = /^(?:summary|totals): (\d+)/m.exec(readFileSync(newest, "utf8"))?.[1];
  return Number(total);
}

build();
const { mf, url } = await serve("callgrind");
try {
  const [account] = await openAccounts(url, `cg_${Date.now()}`, 1, 1e12);
  await call(url, "POST", `/v1/bench/durable-write/${account}`);
  await call(url, "POST", `/v1/accounts/${account}/reservations`, { reservation_id: "replayed", amount: 10 });
  let serial = 0;
  /** @type {Record<string, () => Promise<unknown>>} */
  const request = {
    plain: () => call(url, "GET", "/v1/bench/plain"),
    noop: () => call(url, "GET", `/v1/bench/noop/${account}`),
    durable_write: () => call(url, "POST", `/v1/bench/durable-write/${account}`),
    // An idempotent replay: the ledger's whole path, nothing written.
    replay: () => call(url, "POST", `/v1/accounts/${account}/reservations`, { reservation_id: "replayed", amount: 10 }),
    // Two requests: a reserve, then its capture.
    reserve_capture: async () => {
      const id = `r_${process.pid}_${++serial}`;
      await call(url, "POST", `/v1/accounts/${account}/reservations`, { reservation_id: id, amount: 10 });
      await call(url, "POST", `/v1/accounts/${account}/reservations/${id}/capture`, { amount: 7 });
    },
  };
  const run = async (/** @type {string} */ kind, /** @type {number} */ calls) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next++ < calls) await request[kind]?.();
      }),
    );
  };
  /** @type {Record<string, number>} */
  const perRequest = {};
  for (const kind of kinds) {
    if (request[kind] === undefined) throw new Error(`unknown kind ${kind}`);
    const calls = kind === "reserve_capture" ? N / 2 : N;
    await run(kind, 20);
    callgrind("-z");
    await run(kind, calls);
    callgrind("-d");
    perRequest[kind] = Math.round(lastDump() / N);
    console.log(`${kind.padEnd(16)} ${perRequest[kind].toLocaleString("en")} instructions/request`);
  }
  const ceiling = perRequest.durable_write;
  const ledger = perRequest.reserve_capture;
  if (ceiling !== undefined && ledger !== undefined) {
    console.log(`reserve+capture: ${(ceiling / ledger).toFixed(2)}x durable_write_one_account in instructions`);
  }
} finally {
  await mf.dispose();
}
