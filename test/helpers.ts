/** Shared helpers for tests that run against the Worker and its Durable Objects in workerd. */
import { listDurableObjectIds, runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { expect, onTestFinished } from "vitest";
import type { AccountDurableObject } from "../durable-objects/account";
import { ManualClock, useClock } from "../src/clock";
import type { Command } from "../src/domain/commands";
import { checkResponse } from "./http/conformance";

/** The bootstrap key: a strong one generated per run by vitest.config.ts (ADMIN_API_KEY binding). */
export const ADMIN_KEY = env.ADMIN_API_KEY;
export const AUTH = { authorization: `Bearer ${ADMIN_KEY}` };

export interface ApiResponse {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: test responses are inspected field by field
  body: any;
}

/**
 * A body's text, decoded from its bytes: `Response.text()` on a body that is not declared as
 * text (application/x-ndjson, ...) makes workerd print a warning, and tests are quiet.
 */
export async function textOf(body: Body): Promise<string> {
  return new TextDecoder().decode(await body.arrayBuffer());
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
  const text = await textOf(response);
  const json = /^application\/(problem\+)?json/.test(response.headers.get("content-type") ?? "");
  const parsed = text.length === 0 ? null : json ? JSON.parse(text) : text;
  // Every JSON answer must match its declared schema in /openapi.json (test/http/conformance.ts).
  if (json && path !== "/openapi.json") {
    await checkResponse(method, path, response.status, response.headers.get("content-type"), parsed);
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

/** An account object's stub, typed as the class: tests may reach its parts (runInDurableObject). */
export function stub(accountId: string) {
  return (env.ACCOUNTS as unknown as DurableObjectNamespace<AccountDurableObject>).getByName(accountId);
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

/**
 * How far ahead of the wall clock a test's ManualClock starts by default. The account object
 * arms its alarm from the clock, so the alarms of a clock a day ahead lie in the real future:
 * the runtime never fires one during a test, and the test runs them itself, when it chooses,
 * with `runDurableObjectAlarm`. (A clock at the real time with a 1-second hold would arm a real
 * alarm that fires whenever the machine happens to get there.) Tests that need the real time
 * (e.g. prices published for later tests of the file) pass `Date.now()`.
 */
export const MANUAL_CLOCK_AHEAD_MS = 24 * 3_600_000;

/**
 * Installs a ManualClock for the running test, seen by the Worker and its objects (they share
 * this isolate), and restores the previous clock when the test finishes, pass or fail. Time then
 * passes only by `advance`: no test waits on the wall clock (issue 10).
 */
export function useManualClock(startMs: number = Date.now() + MANUAL_CLOCK_AHEAD_MS): ManualClock {
  const manual = new ManualClock(startMs);
  const restore = useClock(manual);
  onTestFinished(() => restore());
  return manual;
}

/**
 * Runs `work` inside account `accountId`'s object while the work of its alarm (settling what is
 * due) throws, as a failing alarm would; restored afterwards.
 */
export async function withFailingAlarmWork(
  accountId: string,
  work: (instance: AccountDurableObject) => Promise<void>,
): Promise<void> {
  await runInDurableObject(stub(accountId), async (instance: AccountDurableObject) => {
    const runner = (instance as unknown as { runner: { expireDue: () => void } }).runner;
    const expireDue = runner.expireDue;
    runner.expireDue = () => {
      throw new Error("injected: the alarm's work fails");
    };
    try {
      await work(instance);
    } finally {
      runner.expireDue = expireDue;
    }
  });
}

/**
 * At least `count` direct charges of 1 (ids `ch0`, `ch1`, ...) run inside account `accountId`'s
 * object in atomic batches of 500, each committed; `extra` adds to every charge (its caller).
 */
export async function chargeInBatches(
  accountId: string,
  count: number,
  extra: Partial<Extract<Command, { type: "ChargeAccount" }>> = {},
): Promise<void> {
  await runInDurableObject(stub(accountId), async (instance: AccountDurableObject) => {
    for (let done = 0; done < count; done += 500) {
      const charges = Array.from(
        { length: 500 },
        (_, i): Command => ({
          type: "ChargeAccount",
          charge_id: `ch${done + i}`,
          amount: 1,
          context: {},
          metadata: {},
          ...extra,
        }),
      );
      expect((await instance.executeBatch(charges, true)).committed).toBe(true);
    }
  });
}
