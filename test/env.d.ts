import type { D1Migration } from "cloudflare:test";
import type { Env as LedgerEnv } from "../src/env";

declare global {
  namespace Cloudflare {
    interface Env extends LedgerEnv {
      TEST_MIGRATIONS: D1Migration[];
      /** The second read-side shard (vitest.config.ts). */
      DB_1: D1Database;
      /** Not a shard: a one-database read side to compare the sharded one against. */
      REFERENCE_DB: D1Database;
      /** Test budgets and output (vitest.config.ts, test/budget.ts); "" when not set. */
      PROPERTY_RUNS: string;
      HISTORY_RUNS: string;
      FUZZ_RUNS: string;
      PRINT_MEASUREMENTS: string;
    }
    interface GlobalProps {
      mainModule: typeof import("../src/index");
    }
  }
}
