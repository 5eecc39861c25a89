// @ts-check
/**
 * A local ledger for the browser tests: the test Worker entry (test/browser/worker.ts: the ledger
 * as deployed plus the clock and alarm routes) bundled as a deploy bundles it and served by
 * workerd with wrangler.toml's bindings and static assets (scripts/local-ledger.mjs), in a
 * temporary directory removed afterwards. The projection writes D1 directly and at once, as in
 * the workerd tests, so a test waits on the projection's own status, never on time.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildWorker, freshSecrets, serveLedger } from "../../scripts/local-ledger.mjs";

/** How many times a condition is polled before the test fails (each poll is one API round trip). */
const POLLS_MAX = 500;

/**
 * Builds and serves the ledger; `close()` stops it and removes its files.
 * @param {{ port?: number }} [options]
 */
export async function startLedger(options = {}) {
  const work = mkdtempSync(join(tmpdir(), "ledger-browser-"));
  buildWorker("test/browser/worker.ts", join(work, "dist"));
  const secrets = freshSecrets();
  const { mf, url } = await serveLedger({
    dist: join(work, "dist"),
    persist: join(work, "state"),
    bindings: { ...secrets, PROJECTION_DELIVERY: "direct", PROJECTION_COALESCE_MS: "0", LOG_REQUESTS: "0" },
    ...(options.port === undefined ? {} : { port: options.port }),
  });
  const api = apiClient(url, secrets.ADMIN_API_KEY);
  return {
    url,
    adminKey: secrets.ADMIN_API_KEY,
    api,
    /** Sets the ledger's clock (ms since the epoch). */
    setClock: (/** @type {number} */ nowMs) => api.call("POST", "/v1/test/clock", { now_ms: nowMs }),
    /** Runs the account object's alarm handler now, then waits until D1 shows everything. */
    async runAlarm(/** @type {string} */ accountId) {
      await api.call("POST", `/v1/test/accounts/${accountId}/alarm`);
      await projected(api, accountId);
    },
    /** Waits until the account's D1 rows have caught up with its object. */
    projected: (/** @type {string} */ accountId) => projected(api, accountId),
    async close() {
      await mf.dispose();
      rmSync(work, { recursive: true, force: true });
    },
  };
}

/**
 * A small JSON client of the ledger; a non-2xx answer throws with its problem's code.
 * @param {string} url @param {string} key
 */
export function apiClient(url, key) {
  return {
    /** @param {string} method @param {string} path @param {unknown} [body] @returns {Promise<any>} */
    async call(method, path, body) {
      const response = await fetch(url + path, {
        method,
        headers: {
          authorization: `Bearer ${key}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
      return text === "" ? null : JSON.parse(text);
    },
  };
}

/**
 * Polls the account's projection status until nothing is left to project: a condition, not a
 * wait (each poll is a round trip; POLLS_MAX bounds a hang).
 * @param {ReturnType<typeof apiClient>} api @param {string} accountId
 */
async function projected(api, accountId) {
  for (let poll = 0; poll < POLLS_MAX; poll++) {
    const status = await api.call("GET", `/v1/admin/accounts/${accountId}/projection`);
    if (status.projected_seq === status.last_seq) return;
  }
  throw new Error(`the projection of ${accountId} did not catch up`);
}
