import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";

// Idempotent: applies only migrations not yet recorded in this test file's database.
await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
