// @ts-check
/**
 * The hot account against its ceiling, interleaved: `durable_write_one_account` and a
 * reserve+capture on the same account, alternating in short rounds in one workerd, so that a
 * machine whose speed drifts over minutes (shared cores) slows both sides of every ratio alike.
 * A tool for deciding whether a change to the command path helps, faster than a full
 * `npm run bench` and less at the mercy of drift; the bench's table stays the record.
 *
 *   node bench/pair.mjs [rounds=6] [seconds=4] [accounts=1]
 *
 * With more accounts (e.g. 1000) the rounds compare `durable_write_1000_accounts` and the
 * reserve+capture spread over the same accounts.
 */
import { randomBytes } from "node:crypto";

process.env.BENCH_ADMIN_KEY ??= `bench_${randomBytes(32).toString("base64url")}`;
const { build, call, load, openAccounts, serve } = await import("./run.mjs");

const rounds = Number(process.argv[2] ?? 6);
const seconds = Number(process.argv[3] ?? 4);
const accountCount = Number(process.argv[4] ?? 1);

build();
const { mf, url } = await serve("pair");
try {
  const accounts = await openAccounts(url, `pair_${Date.now()}`, accountCount, 1e12);
  for (let i = 0; i < accounts.length; i += 50) {
    await Promise.all(accounts.slice(i, i + 50).map((a) => call(url, "POST", `/v1/bench/durable-write/${a}`)));
  }
  const common = { url, key: process.env.BENCH_ADMIN_KEY, connections: 64, duration: seconds, accounts };
  const sum = { ceiling: { requests: 0, cpu: 0 }, ledger: { requests: 0, cpu: 0 } };
  const ratios = [];
  for (let round = 1; round <= rounds; round++) {
    const ceiling = await load({ ...common, kind: "durable_write" });
    const ledger = await load({ ...common, kind: "reserve_capture" });
    for (const [side, row] of /** @type {const} */ ([
      ["ceiling", ceiling],
      ["ledger", ledger],
    ])) {
      sum[side].requests += row.requests;
      sum[side].cpu += row.requests * row.workerd_cpu_us_per_request;
    }
    const rps = ledger.requests_per_second / ceiling.requests_per_second;
    const cpu = ceiling.workerd_cpu_us_per_request / ledger.workerd_cpu_us_per_request;
    ratios.push({ rps, cpu });
    console.log(
      `round ${round}: ceiling ${ceiling.requests_per_second} req/s ${ceiling.workerd_cpu_us_per_request} µs/req; ` +
        `reserve+capture ${ledger.requests_per_second} req/s ${ledger.workerd_cpu_us_per_request} µs/req; ` +
        `x ${rps.toFixed(2)} (cpu ${cpu.toFixed(2)})`,
    );
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const cpuCeiling = sum.ceiling.cpu / sum.ceiling.requests;
  const cpuLedger = sum.ledger.cpu / sum.ledger.requests;
  console.log(
    `all rounds: ceiling ${Math.round(cpuCeiling)} µs/req, reserve+capture ${Math.round(cpuLedger)} µs/req; ` +
      `x durable write: median ${median(ratios.map((r) => r.rps)).toFixed(2)}, ` +
      `min ${Math.min(...ratios.map((r) => r.rps)).toFixed(2)}; cpu ratio ${(cpuCeiling / cpuLedger).toFixed(2)}`,
  );
} finally {
  await mf.dispose();
}
