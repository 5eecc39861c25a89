import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";

// Idempotent: applies only migrations not yet recorded in this test file's databases. Tests run
// with two read-side shards (DB and DB_1, vitest.config.ts).
await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
await applyD1Migrations(env.DB_1, env.TEST_MIGRATIONS);
await applyD1Migrations(env.REFERENCE_DB, env.TEST_MIGRATIONS);
