// @ts-check
/**
 * The deployed bundle, built as `wrangler deploy` builds it: bench-only routes (issue 11) and the
 * browser tests' clock and alarm routes (issue 15) must not be in it. They live in their own
 * entries (bench/worker.ts, test/browser/worker.ts), not behind a variable.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

const ROOT = new URL("../..", import.meta.url).pathname;
const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");

/** @param {string[]} args */
function bundle(args) {
  const out = mkdtempSync(join(tmpdir(), "ledger-bundle-"));
  try {
    // The Node that runs this test (npm test runs the project's pinned Node 22, which wrangler needs).
    execFileSync(process.execPath, [WRANGLER, "deploy", ...args, "--dry-run", "--outdir", out], {
      cwd: ROOT,
      stdio: "ignore",
      env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
    });
    return readdirSync(out)
      .filter((f) => f.endsWith(".js"))
      .map((f) => readFileSync(join(out, f), "utf8"))
      .join("\n");
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

test("the deployed bundle has no bench or test route; their own bundles have them", () => {
  const deployed = bundle([]);
  assert.ok(deployed.includes("/v1/accounts"), "the deployed bundle is the ledger");
  assert.ok(!deployed.includes("/v1/bench"), "no bench route in the deployed bundle");
  // The browser tests' clock and alarm routes (test/browser/worker.ts) exist only in their entry.
  assert.ok(!deployed.includes("/v1/test/"), "no test route in the deployed bundle");
  assert.ok(bundle(["test/browser/worker.ts"]).includes("/v1/test/clock"), "the browser tests' bundle drives time");
  assert.ok(bundle(["bench/worker.ts"]).includes("/v1/bench/noop"), "the bench's bundle serves its ceilings");
});
