// @ts-check
/**
 * Instructions per request, counted by valgrind's callgrind in the whole workerd process (the
 * Worker, its objects, the queue and D1 as Miniflare runs them): the ledger's requests beside its
 * ceilings. Unlike time, an instruction count does not move with whatever else the machine runs,
 * so it can tell a 5% change from noise where `npm run bench` and bench/pair.mjs cannot (their
 * ratios wander by 20% between rounds on a shared 2-core machine). It is a guide, not the
 * record: instructions are not time (cache misses and the kernel's share are not counted).
 *
 * workerd runs under callgrind (MINIFLARE_WORKERD_PATH points at a wrapper), about 50 times
 * slower, so the projection's coalescing window is stretched to match (BENCH_COALESCE_MS, 2500 ms
 * unless set; past 60000 the projection is held off). Each kind is warmed and its projection
 * drained, a full garbage collection runs, the counters are zeroed, N requests run at 8 at a time,
 * the projection is drained again (the queue and D1 done), a full collection runs and the total is
 * dumped (callgrind_control). The forced collection and the drain's polls, each counted alone right
 * after, are taken out: what is left is all the work the N requests caused, collecting their
 * garbage included. Two runs of one tree agreed within about 1% in the fourth pass, but ranged over
 * 3% in the sixth (6.47M to 6.67M per request for reserve_capture_many): compare counts made one
 * after the other, repeat a count before believing a change smaller than that, and prefer splits
 * (one part stubbed out at a time) whose parts are larger than it (docs/benchmarks.md, sixth pass).
 *
 * Kinds beside the ceilings: `durable_write_in_transaction` (the ceiling's write inside
 * `transactionSync`, as a command writes), `invalid_body` (a reserve body the contract refuses: the
 * route's body read and validation, no call into the object), `get_account` (a read through the
 * object), `replay` (an idempotent replay: the whole command path, nothing written);
 * `durable_write_many` and `reserve_capture_many` go round-robin over BENCH_ACCOUNTS accounts (100).
 * With BENCH_PROJECTION_SINK=1 the objects' messages go to a sink that accepts them (bench/run.mjs):
 * the drain then waits for the objects' cursors only, and a count holds the object's side alone.
 *
 *   node bench/instructions.mjs [requests=200] [kinds=plain,noop,durable_write,replay,reserve_capture]
 *
 * The dumps stay in bench/.work/callgrind/ until the next run: out.<pid>.<n>, three per kind in turn
 * (its window, the lone collection, the lone poll: the first kind's window is .1, the second's .4).
 * workerd keeps its symbols, so `callgrind_annotate --auto=no --threshold=100 <dump>` says where a
 * window's instructions went in the runtime's C++ (SQLite, V8's JSON, the allocator, KJ); comparing a
 * ledger kind's window with its ceiling's is how the consumer's JSON rewrites were found
 * (docs/benchmarks.md, fourth pass).
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
// POST /v1/bench/gc collects before the counters are zeroed and before they are dumped.
process.env.MINIFLARE_WORKERD_V8_FLAGS = "--expose-gc";
// About 50 times slower, an account of the `_many` kinds is idle long enough between its requests
// for the runtime to evict and rebuild its object each time, which `npm run bench` never sees
// (its rows count the objects constructed: none at 1,000 accounts).
process.env.BENCH_PREVENT_EVICTION = "1";
process.env.BENCH_COALESCE_MS ??= "2500";
process.env.BENCH_ADMIN_KEY ??= `bench_${randomBytes(32).toString("base64url")}`;
const { build, call, drain, openAccounts, serve, workerdPids } = await import("./run.mjs");

const N = Number(process.argv[2] ?? 200);
const kinds = (process.argv[3] ?? "plain,noop,durable_write,replay,reserve_capture").split(",");
const CONCURRENCY = 8;
/** Accounts of the `_many` kinds (BENCH_ACCOUNTS; the bench's many-accounts scenarios use 1,000). */
const MANY_ACCOUNTS = Number(process.env.BENCH_ACCOUNTS ?? 100);

/** Zeroes (-z) or dumps (-d) this run's counters only: another run on the machine is left alone. */
const callgrind = (/** @type {string} */ flag) => {
  const [pid] = workerdPids();
  if (pid === undefined) throw new Error("no workerd under callgrind");
  execFileSync("callgrind_control", [flag, pid], { stdio: "ignore" });
};
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
  // The many-accounts kinds go round-robin over these, as the 1,000-account scenario does.
  const many = await openAccounts(url, `cgm_${Date.now()}`, MANY_ACCOUNTS, 1e12);
  let turn = 0;
  const next = () => /** @type {string} */ (many[turn++ % many.length]);
  await call(url, "POST", `/v1/bench/durable-write/${account}`);
  await call(url, "POST", `/v1/accounts/${account}/reservations`, { reservation_id: "replayed", amount: 10 });
  let serial = 0;
  const reserveCapture = async (/** @type {string} */ id) => {
    const rid = `r_${process.pid}_${++serial}`;
    await call(url, "POST", `/v1/accounts/${id}/reservations`, { reservation_id: rid, amount: 10 });
    await call(url, "POST", `/v1/accounts/${id}/reservations/${rid}/capture`, { amount: 7 });
  };
  /** @type {Record<string, () => Promise<unknown>>} */
  const request = {
    plain: () => call(url, "GET", "/v1/bench/plain"),
    noop: () => call(url, "GET", `/v1/bench/noop/${account}`),
    durable_write: () => call(url, "POST", `/v1/bench/durable-write/${account}`),
    durable_write_in_transaction: () => call(url, "POST", `/v1/bench/durable-write-in-transaction/${account}`),
    // A read through the object: the HTTP stack, one call, the account's view.
    get_account: () => call(url, "GET", `/v1/accounts/${account}`),
    // A body the contract refuses (400): the route's body read and validation, no call.
    invalid_body: () => call(url, "POST", `/v1/accounts/${account}/reservations`, { reservation_id: "x", amount: -1 }),
    // An idempotent replay: the ledger's whole path, nothing written.
    replay: () => call(url, "POST", `/v1/accounts/${account}/reservations`, { reservation_id: "replayed", amount: 10 }),
    // Two requests: a reserve, then its capture.
    reserve_capture: () => reserveCapture(account),
    durable_write_many: () => call(url, "POST", `/v1/bench/durable-write/${next()}`),
    reserve_capture_many: () => reserveCapture(next()),
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
  /**
   * Waits until the read side holds every event of the kind's accounts (the queue and D1 done),
   * so that a count holds all the work its requests caused and none of the warm-up's. Returns the
   * polls it made: each is a request that asks every account object for its position, and its
   * cost (`pollCost`) is taken out of the count.
   */
  const drained = async (/** @type {string[]} */ accounts) => {
    // A window past a minute holds the projection off (what the command costs without it).
    if (Number(process.env.BENCH_COALESCE_MS) > 60_000) return 0;
    const result = await drain(url, accounts, 2000);
    if (!result.drained) throw new Error(`the projection did not drain: ${JSON.stringify(result)}`);
    return result.polls;
  };
  /**
   * A full collection before a count's window opens and before it closes: without it a count held
   * whichever major collections happened to fall inside its window (runs of one tree differed by
   * up to 10%).
   */
  const collect = async () => {
    const result = /** @type {{ collected: boolean }} */ (await call(url, "POST", "/v1/bench/gc"));
    if (!result.collected) throw new Error("workerd runs without --expose-gc");
  };
  for (const kind of kinds) {
    if (request[kind] === undefined) throw new Error(`unknown kind ${kind}`);
    const calls = kind.startsWith("reserve_capture") ? N / 2 : N;
    const accounts = kind.endsWith("_many") ? many : [account];
    // Warm: every account of a `_many` kind once (its table, its compiled paths), others 20 times.
    await run(kind, kind.endsWith("_many") ? MANY_ACCOUNTS : 20);
    await drained(accounts);
    await collect();
    callgrind("-z");
    await run(kind, calls);
    const polls = await drained(accounts);
    await collect();
    callgrind("-d");
    const window = lastDump();
    // Counted alone on about the same heap and taken out: the forced collection (it marks what
    // is live whatever the requests did; what their garbage cost to collect stays in), and the
    // drain's polls.
    callgrind("-z");
    await collect();
    callgrind("-d");
    const collection = lastDump();
    callgrind("-z");
    await drained(accounts);
    callgrind("-d");
    const pollCost = lastDump();
    perRequest[kind] = Math.round((window - collection - polls * pollCost) / N);
    console.log(`${kind.padEnd(16)} ${perRequest[kind].toLocaleString("en")} instructions/request`);
  }
  for (const [ledger, ceiling, name] of [
    ["reserve_capture", "durable_write", "durable_write_one_account"],
    ["reserve_capture_many", "durable_write_many", `durable_write on ${MANY_ACCOUNTS} accounts`],
  ]) {
    const l = perRequest[/** @type {string} */ (ledger)];
    const c = perRequest[/** @type {string} */ (ceiling)];
    if (l !== undefined && c !== undefined) console.log(`${ledger}: ${(c / l).toFixed(2)}x ${name} in instructions`);
  }
} finally {
  await mf.dispose();
}
