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

// The test's independent webhook-signature check (test/webhooks/support.ts) uses node:crypto's
// HMAC, which the Worker itself never does (src/types/node-crypto.d.ts declares what it uses).
declare module "node:crypto" {
  interface Hmac {
    update(data: string): Hmac;
    digest(): Uint8Array;
  }
  export function createHmac(algorithm: "sha256", key: string): Hmac;
  export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean;
}
