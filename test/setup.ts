import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { vi } from "vitest";

// Idempotent: applies only migrations not yet recorded in this test file's database.
await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);

// Issue 10: on a slow 2-core machine running every file in parallel, a test that takes 1-2 s
// alone (200 concurrent reservations, a long log) takes several times that, and vitest's default
// 5 s timeout then measures the machine, not the code. Every test and hook (afterEach verifies
// every account of its file) gets 60 s; property and fuzz tests state their own budgets
// (test/budget.ts). No test waits on the wall clock, so a timeout only ever catches a hang.
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });
