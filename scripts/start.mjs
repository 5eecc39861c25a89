#!/usr/bin/env node
// `npm start`: prepares a local ledger and serves it on http://127.0.0.1:8787.
//   1. creates the git-ignored .dev.vars with a random ADMIN_API_KEY, CONFIG_ENCRYPTION_KEY and
//      Ed25519 AUDIT_SIGNING_KEY where missing (written to the file, never printed);
//   2. applies the D1 migrations to the local database under .wrangler/state;
//   3. runs `wrangler dev` (workerd + local SQLite for Durable Objects and D1), which also serves
//      the console (web/, Workers Static Assets) at /console/.
import { spawn, spawnSync } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";

const HOST = "127.0.0.1";
const PORT = process.env.PORT ?? "8787";
const DEV_VARS = resolve(".dev.vars");
const env = { ...process.env, WRANGLER_SEND_METRICS: "false" };

/**
 * The shortest ADMIN_API_KEY the ledger serves with (ADMIN_API_KEY_LENGTH_MIN in
 * src/security/api-keys.ts, which also refuses repeated or low-entropy keys): shorter, every
 * request answers 503 service_misconfigured.
 */
const ADMIN_API_KEY_LENGTH_MIN = 43;

/** Secrets the local ledger needs, each generated once. */
const GENERATED_SECRETS = {
  // 32 random bytes (53 characters with the prefix): passes the ledger's bootstrap-key check.
  ADMIN_API_KEY: () => `oel_admin_${randomBytes(32).toString("base64url")}`,
  // 32 random bytes that encrypt configuration secrets at rest.
  CONFIG_ENCRYPTION_KEY: () => randomBytes(32).toString("base64"),
  // Ed25519 private key (PKCS#8, base64) that signs audit checkpoints.
  AUDIT_SIGNING_KEY: () =>
    generateKeyPairSync("ed25519").privateKey.export({ format: "der", type: "pkcs8" }).toString("base64"),
};

function ensureDevVars() {
  const existing = existsSync(DEV_VARS) ? readFileSync(DEV_VARS, "utf8") : "";
  for (const [name, make] of Object.entries(GENERATED_SECRETS)) {
    if (new RegExp(`^${name}=`, "m").test(existing)) continue;
    const prefix = existing.length > 0 && !existing.endsWith("\n") ? "\n" : "";
    appendFileSync(DEV_VARS, `${prefix}${name}=${make()}\n`, { mode: 0o600 });
    console.log(`start: generated ${name} into ${DEV_VARS} (git-ignored; read it there)`);
  }
  const admin = /^ADMIN_API_KEY=(.*)$/m.exec(readFileSync(DEV_VARS, "utf8"))?.[1] ?? "";
  if (admin.length < ADMIN_API_KEY_LENGTH_MIN) {
    console.error(
      `start: ADMIN_API_KEY in ${DEV_VARS} is shorter than ${ADMIN_API_KEY_LENGTH_MIN} characters; the ledger would ` +
        "answer 503 to every request. Delete that line and run npm start again to generate a strong one.",
    );
  }
  console.log(`start: local secrets are in ${DEV_VARS}`);
}

/** @param {string[]} args @param {import("node:child_process").SpawnSyncOptions} options */
function wrangler(args, options = {}) {
  return spawnSync("wrangler", args, { stdio: "inherit", env, ...options });
}

ensureDevVars();
const migrate = wrangler(["d1", "migrations", "apply", "openedge-ledger", "--local"], { input: "y\n" });
if (migrate.status !== 0) {
  console.error("start: applying local D1 migrations failed");
  process.exit(migrate.status ?? 1);
}
console.log(`start: serving the ledger on http://${HOST}:${PORT} (the console: http://${HOST}:${PORT}/console/)`);
const dev = spawn("wrangler", ["dev", "--ip", HOST, "--port", PORT, ...process.argv.slice(2)], {
  stdio: "inherit",
  env,
});
for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM"])) process.on(signal, () => dev.kill(signal));
dev.on("exit", (code) => process.exit(code ?? 0));
