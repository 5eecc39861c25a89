/** Shared helpers for tests that run against the Worker and its Durable Objects in workerd. */
import { listDurableObjectIds } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { expect } from "vitest";

export const ADMIN_KEY = "test-admin-key";
export const AUTH = { authorization: `Bearer ${ADMIN_KEY}` };

export interface ApiResponse {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: test responses are inspected field by field
  body: any;
}

/** Calls the API through the Worker's fetch handler, as a client would. */
export async function api(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<ApiResponse> {
  const init: RequestInit = { method, headers: { ...AUTH, ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers = { "content-type": "application/json", ...AUTH, ...headers };
  }
  const response = await exports.default.fetch(`http://ledger.test${path}`, init);
  const text = await response.text();
  const json = /^application\/(problem\+)?json/.test(response.headers.get("content-type") ?? "");
  return {
    status: response.status,
    headers: response.headers,
    body: text.length === 0 ? null : json ? JSON.parse(text) : text,
  };
}

export function stub(accountId: string) {
  return env.ACCOUNTS.getByName(accountId);
}

let accounts = 0;
/** Opens a fresh account (unique per call within a test file) with an optional top-up. */
export async function openAccount(balance = 0, creditLimit = 0): Promise<string> {
  accounts += 1;
  const id = `acct_${accounts}_${crypto.randomUUID().slice(0, 8)}`;
  const opened = await api("POST", "/v1/accounts", { account_id: id, currency: "USD", credit_limit: creditLimit });
  expect(opened.status).toBe(201);
  if (balance > 0) {
    const credited = await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "initial", amount: balance });
    expect(credited.status).toBe(201);
  }
  return id;
}

export async function account(accountId: string) {
  const read = await api("GET", `/v1/accounts/${accountId}`);
  expect(read.status).toBe(200);
  return read.body;
}

/**
 * Replays every account object's log and compares the fold with its snapshot and rows.
 * Called after every test: the snapshot must equal the fold of the log at all times.
 */
export async function expectEveryAccountConsistent(): Promise<void> {
  for (const id of await listDurableObjectIds(env.ACCOUNTS)) {
    const report = await env.ACCOUNTS.get(id).verify();
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns true or `timeoutMs` passes; returns whether it did. */
export async function eventually(probe: () => Promise<boolean>, timeoutMs = 5_000, everyMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return true;
    await sleep(everyMs);
  }
  return probe();
}
