import { generateKeyPairSync, randomBytes } from "node:crypto";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Every test runs inside workerd (the plugin bundles its own), with the bindings of
// wrangler.toml, local SQLite for Durable Objects and D1, and no route to Cloudflare.
export default defineConfig(async () => {
  const migrations = await readD1Migrations("./migrations");
  // A fresh checkpoint-signing key per run, made the way `npm start` makes one.
  const auditSigningKey = generateKeyPairSync("ed25519")
    .privateKey.export({ format: "der", type: "pkcs8" })
    .toString("base64");
  // A fresh bootstrap key per run, as strong as `npm start` makes one (32 random bytes): a weak
  // ADMIN_API_KEY makes every request answer 503. Tests read it from env.ADMIN_API_KEY.
  const adminApiKey = `oel_admin_${randomBytes(32).toString("base64url")}`;
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        remoteBindings: false,
        miniflare: {
          // Small limits so that tests can reach them (wrangler.toml has the real ones); each test
          // file has its own limiter state. The bootstrap key's limit stays far above what any test
          // file sends with it (the most, the fuzz test at its default 400 runs, sends about 650;
          // a deep FUZZ_RUNS hunt may reach it and see 429s, which the fuzz test accepts).
          ratelimits: {
            RATE_LIMITER: { namespace_id: "1001", simple: { limit: 25, period: 60 } },
            BOOTSTRAP_RATE_LIMITER: { namespace_id: "1002", simple: { limit: 10_000, period: 60 } },
            AUTH_FAILURE_LIMITER: { namespace_id: "1003", simple: { limit: 10, period: 60 } },
          },
          // Two read-side shards (src/projection/shards.ts): DB from wrangler.toml, and DB_1.
          // REFERENCE_DB is not a shard: tests compare a one-shard run against the two shards in it.
          d1Databases: { DB: "openedge-ledger", DB_1: "openedge-ledger-shard-1", REFERENCE_DB: "reference" },
          bindings: {
            ADMIN_API_KEY: adminApiKey,
            AUDIT_SIGNING_KEY: auditSigningKey,
            CONFIG_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
            // Flush at once and write D1 directly (no queue), so tests see D1 move command by
            // command; the queue's producer and consumer have their own tests.
            PROJECTION_COALESCE_MS: "0",
            PROJECTION_DELIVERY: "direct",
            // Log lines are silent under test; LOG_REQUESTS=1 npm test shows them.
            LOG_REQUESTS: process.env.LOG_REQUESTS === "1" ? "1" : "0",
            // Deeper property and fuzz runs, and printed measurements, on request (test/budget.ts):
            // e.g. PROPERTY_RUNS=50000 npx vitest run test/domain/property.test.ts
            PROPERTY_RUNS: process.env.PROPERTY_RUNS ?? "",
            HISTORY_RUNS: process.env.HISTORY_RUNS ?? "",
            FUZZ_RUNS: process.env.FUZZ_RUNS ?? "",
            PRINT_MEASUREMENTS: process.env.PRINT_MEASUREMENTS === "1" ? "1" : "0",
            TEST_MIGRATIONS: migrations,
          },
        },
      }),
    ],
    test: {
      setupFiles: ["./test/setup.ts"],
      include: ["test/**/*.test.ts"],
      // On a 2-core machine running every file in parallel, a test that takes 1-2 s alone (200
      // concurrent reservations, a long log) takes several times that, and the default 5 s would
      // measure the machine, not the code. No test waits on the wall clock, so a timeout only
      // ever catches a hang; property and fuzz tests state their own budgets (test/budget.ts).
      testTimeout: 60_000,
      hookTimeout: 60_000,
    },
  };
});
