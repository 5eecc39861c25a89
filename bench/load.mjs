// @ts-check
/**
 * One load scenario, run in its own process so the load generator does not share a CPU budget
 * with the benchmark's bookkeeping. Bounded by duration; 127.0.0.1 only.
 */
import autocannon from "autocannon";

const s = JSON.parse(process.argv[2] ?? "{}");
if (!String(s.url).startsWith("http://127.0.0.1:")) throw new Error("load goes to 127.0.0.1 only");
const headers = { authorization: `Bearer ${s.key}`, "content-type": "application/json" };
const accounts = s.accounts ?? [];
let counter = 0;
const unique = () => `${process.pid}_${++counter}`;
const pick = () => accounts[counter % accounts.length];

/** @type {Record<string, any[]>} */
const plans = {
  plain: [{ method: "GET", path: "/v1/bench/plain" }],
  noop: [{ method: "GET", path: `/v1/bench/noop/${accounts[0]}` }],
  // One durable SQLite write per request, round-robin over the accounts (one account: all on it).
  durable_write: [
    {
      method: "POST",
      setupRequest: (req) => {
        counter++;
        return { ...req, path: `/v1/bench/durable-write/${pick()}` };
      },
    },
  ],
  reserve_capture: [
    {
      method: "POST",
      setupRequest: (req, ctx) => {
        ctx.rid = `r_${unique()}`;
        ctx.account = pick();
        return {
          ...req,
          path: `/v1/accounts/${ctx.account}/reservations`,
          body: JSON.stringify({ reservation_id: ctx.rid, amount: 10 }),
        };
      },
    },
    {
      method: "POST",
      setupRequest: (req, ctx) => ({
        ...req,
        path: `/v1/accounts/${ctx.account}/reservations/${ctx.rid}/capture`,
        body: JSON.stringify({ amount: 7 }),
      }),
    },
  ],
  credit_charge: [
    {
      method: "POST",
      setupRequest: (req) => ({
        ...req,
        path: `/v1/accounts/${pick()}/credits`,
        body: JSON.stringify({ credit_id: `c_${unique()}`, amount: 5 }),
      }),
    },
    {
      method: "POST",
      setupRequest: (req) => ({
        ...req,
        path: `/v1/accounts/${pick()}/charges`,
        // What the credit before it added: each top-up's lot is spent, and lots stay few.
        body: JSON.stringify({ charge_id: `ch_${unique()}`, amount: 5 }),
      }),
    },
  ],
  refund_storm: [
    {
      method: "POST",
      path: `/v1/accounts/${accounts[0]}/refunds`,
      body: JSON.stringify({ refund_id: "storm_refund", charge_id: "paid", amount: 1 }),
    },
  ],
  batch: [
    {
      method: "POST",
      setupRequest: (req) => {
        const prefix = unique();
        // A credit and a charge of it in turn: each credit's lot is spent by the next operation, so
        // the account never nears LOTS_ACTIVE_MAX lots with credit in them.
        const operations = Array.from({ length: 1000 }, (_, i) =>
          i % 2 === 0
            ? { op: "credit", credit_id: `b_${prefix}_${i}`, amount: 1 }
            : { op: "charge", charge_id: `b_${prefix}_${i}`, amount: 1 },
        );
        return { ...req, path: `/v1/accounts/${accounts[0]}/batch`, body: JSON.stringify({ operations }) };
      },
    },
  ],
};

const result = await autocannon({
  url: s.url,
  connections: s.connections,
  duration: s.duration,
  headers,
  requests: plans[s.kind],
  initialContext: {},
});
process.stdout.write(
  JSON.stringify({
    requests: result.requests.total,
    requests_per_second: Math.round(result.requests.total / result.duration),
    latency_p50_ms: result.latency.p50,
    latency_p99_ms: result.latency.p99,
    errors: result.errors + result.timeouts + result.non2xx,
  }),
);
