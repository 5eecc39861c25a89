// @ts-check
/**
 * Where a scenario's CPU goes: serves the bench's Worker as `npm run bench` does, attaches the V8
 * CPU profiler to it through workerd's inspector (the Worker and its account objects share one
 * isolate), runs one load scenario and prints the functions with the most self time, grouped by
 * source file. A tool for finding the next optimisation, not a measurement to compare runs by:
 * the profiler itself slows the isolate down.
 *
 *   node bench/profile.mjs [reserve_capture|durable_write] [seconds]
 *
 * PROFILE_ACCOUNTS=N spreads the load over N accounts (the many-accounts scenario's shape).
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";

process.env.BENCH_ADMIN_KEY ??= `bench_${randomBytes(32).toString("base64url")}`;
process.env.BENCH_INSPECTOR_PORT ??= "9329";
const { build, load, openAccounts, serve, warmCeiling } = await import("./run.mjs");

const kind = process.argv[2] ?? "reserve_capture";
const seconds = Number(process.argv[3] ?? 8);
const TOP = Number(process.env.PROFILE_TOP ?? 40);

/** A minimal Chrome DevTools Protocol session over the runtime's WebSocket. */
async function inspect(port) {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  const target = targets.find((t) => String(t.title ?? t.id).includes("openedge")) ?? targets[0];
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let id = 0;
  const pending = new Map();
  ws.onmessage = (m) => {
    const msg = JSON.parse(String(m.data));
    if (msg.id !== undefined) pending.get(msg.id)?.(msg);
  };
  /** @param {string} method @param {object} [params] */
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      id += 1;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { send, close: () => ws.close() };
}

/** Self time per function and per file, from a V8 CPU profile. */
function summarise(profile) {
  const dt = new Map();
  profile.samples.forEach((node, i) => {
    dt.set(node, (dt.get(node) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  const byFunction = new Map();
  const byFile = new Map();
  let total = 0;
  for (const node of profile.nodes) {
    const us = dt.get(node.id) ?? 0;
    total += us;
    const f = node.callFrame;
    const file = (f.url || "(native)").split("/").slice(-2).join("/");
    const name = `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    byFile.set(file, (byFile.get(file) ?? 0) + us);
  }
  // Inclusive time per function: its nodes' subtrees, each counted once per stack (recursion).
  const children = new Map(profile.nodes.map((n) => [n.id, n.children ?? []]));
  const nodeById = new Map(profile.nodes.map((n) => [n.id, n]));
  const inclusive = new Map();
  const subtree = (id) => (dt.get(id) ?? 0) + (children.get(id) ?? []).reduce((sum, c) => sum + subtree(c), 0);
  const walk = (id, onStack) => {
    const f = nodeById.get(id).callFrame;
    const name = `${f.functionName || "(anonymous)"} ${(f.url || "(native)").split("/").slice(-2).join("/")}:${f.lineNumber + 1}`;
    const counted = onStack.has(name);
    if (!counted && f.url.endsWith("worker.js")) inclusive.set(name, (inclusive.get(name) ?? 0) + subtree(id));
    const next = counted ? onStack : new Set([...onStack, name]);
    for (const c of children.get(id) ?? []) walk(c, next);
  };
  walk(profile.nodes[0].id, new Set());
  const top = (map) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, TOP)
      .map(([name, us]) => `${((100 * us) / total).toFixed(1).padStart(5)}%  ${name}`);
  return {
    total_ms: Math.round(total / 1000),
    functions: top(byFunction),
    files: top(byFile),
    inclusive: top(inclusive),
  };
}

build();
const { mf, url } = await serve("profile");
try {
  // PROFILE_ACCOUNTS: the load goes round-robin over that many accounts (1: the hot account).
  const accounts = await openAccounts(url, `prof_${Date.now()}`, Number(process.env.PROFILE_ACCOUNTS ?? 1), 1e12);
  await warmCeiling(url, accounts);
  const session = await inspect(Number(process.env.BENCH_INSPECTOR_PORT));
  await session.send("Profiler.enable");
  await session.send("Profiler.setSamplingInterval", { interval: 200 });
  await session.send("Profiler.start");
  const row = await load({
    url,
    key: process.env.BENCH_ADMIN_KEY,
    // Fewer connections (PROFILE_CONNECTIONS) keep the isolate's thread from being descheduled
    // mid-function: the profiler charges wall time to whatever was running.
    connections: Number(process.env.PROFILE_CONNECTIONS ?? 64),
    duration: seconds,
    kind,
    accounts,
  });
  const stopped = /** @type {any} */ (await session.send("Profiler.stop"));
  session.close();
  const summary = summarise(stopped.result.profile);
  // The raw profile, for a diff of two scenarios per request (PROFILE_OUT=file.json).
  if (process.env.PROFILE_OUT)
    writeFileSync(process.env.PROFILE_OUT, JSON.stringify({ requests: row.requests, profile: stopped.result.profile }));
  console.log(`${kind}: ${row.requests_per_second} requests/s under the profiler; ${summary.total_ms} ms sampled`);
  console.log("\nself time by file:");
  for (const line of summary.files) console.log(line);
  console.log("\nself time by function:");
  for (const line of summary.functions) console.log(line);
  console.log("\ninclusive time of the Worker's own functions:");
  for (const line of summary.inclusive) console.log(line);
} finally {
  await mf.dispose();
}
