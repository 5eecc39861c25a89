// @ts-check
/**
 * One throughput target of `npm run bench` alone: the hot account (or `accounts` accounts)
 * against its durable-write ceiling, in the bench's own alternating rounds (bench/run.mjs
 * `alternating`), printing each round. A tool for deciding whether a change to the command path
 * helps, faster than a full run; the bench's table stays the record. Each round prints its failed
 * requests, and the summary says when any failed: an experiment whose requests fail (an error
 * answers fast) would otherwise look like a gain.
 *
 *   node bench/pair.mjs [rounds=6] [seconds=4] [accounts=1]
 */
import { randomBytes } from "node:crypto";

const rounds = Number(process.argv[2] ?? 6);
const seconds = Number(process.argv[3] ?? 4);
const accountCount = Number(process.argv[4] ?? 1);
// The bench's alternation reads its rounds and its round length (half of BENCH_SECONDS) from these.
process.env.BENCH_ROUNDS = String(rounds);
process.env.BENCH_SECONDS = String(seconds * 2);
process.env.BENCH_ADMIN_KEY ??= `bench_${randomBytes(32).toString("base64url")}`;
const { alternating, build, openAccounts, serve, warmCeiling } = await import("./run.mjs");

build();
const { mf, url } = await serve("pair");
try {
  const accounts = await openAccounts(url, `pair_${Date.now()}`, accountCount, 1e12);
  await warmCeiling(url, accounts);
  const common = { url, key: process.env.BENCH_ADMIN_KEY, connections: 64, accounts };
  const { ceiling, ledger } = await alternating(
    { ...common, kind: "durable_write" },
    { ...common, kind: "reserve_capture" },
  );
  ledger.rounds.forEach((l, i) => {
    const c = ceiling.rounds[i];
    console.log(
      `round ${i + 1}: ceiling ${c.requests_per_second} req/s ${c.workerd_cpu_us_per_request} µs/req; ` +
        `reserve+capture ${l.requests_per_second} req/s ${l.workerd_cpu_us_per_request} µs/req; x ${ledger.round_ratios[i]}; ` +
        `objects constructed: ${c.do_constructions} / ${l.do_constructions}; failed requests: ${c.errors} / ${l.errors}`,
    );
  });
  // A failed request is answered sooner than a served one: rounds with failures rank nothing.
  const failed = ceiling.errors + ledger.errors;
  if (failed > 0) console.log(`NOT COMPARABLE: ${failed} requests failed (errors, timeouts or non-2xx answers)`);
  const sorted = [...ledger.round_ratios].sort((a, b) => a - b);
  console.log(
    `all rounds: ceiling ${ceiling.workerd_cpu_us_per_request} µs/req, reserve+capture ${ledger.workerd_cpu_us_per_request} µs/req; ` +
      `x durable write ${(ledger.requests_per_second / ceiling.requests_per_second).toFixed(2)} ` +
      `(rounds: median ${sorted[Math.floor(sorted.length / 2)]}, min ${sorted[0]}); ` +
      `cpu ratio ${(ceiling.workerd_cpu_us_per_request / ledger.workerd_cpu_us_per_request).toFixed(2)}`,
  );
} finally {
  await mf.dispose();
}
