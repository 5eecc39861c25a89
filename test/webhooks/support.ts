/**
 * A fake webhook receiver behind the outbound-fetch seam, an independent signature check, a D1
 * that is down, and the endpoint and delivery helpers the webhook tests share.
 */

import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { createHmac, timingSafeEqual } from "node:crypto";
import { onTestFinished } from "vitest";
import type { Env } from "../../src/env";
import { useWebhookFetch } from "../../src/webhooks/send";
import { api, stub } from "../helpers";

export const HOOK_URL = "https://hooks.receiver.example/ledger?token=abc";

export async function createEndpoint(body: Record<string, unknown>) {
  return api("POST", "/v1/admin/webhook-endpoints", body);
}

export async function clearEndpoints(): Promise<void> {
  await env.DB.prepare("DELETE FROM webhook_endpoints").run();
  await env.DB.prepare("DELETE FROM webhook_deliveries").run();
}

export async function deliveriesOf(accountId: string) {
  const rows = await env.DB.prepare("SELECT * FROM webhook_deliveries WHERE account_id = ? ORDER BY created_at, id")
    .bind(accountId)
    .all<{ id: string; event_type: string; state: string; attempts: number; next_attempt_at_ms: number | null }>();
  return rows.results;
}

export async function outboxCount(accountId: string): Promise<number> {
  return runInDurableObject(
    stub(accountId),
    (_instance, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM webhook_outbox").one().n,
  );
}

/** A D1 binding that is down: every statement and batch rejects, the way an outage does. */
export function downD1(): D1Database {
  const fail = async () => {
    throw new Error("D1_ERROR: injected outage");
  };
  const statement = { bind: () => statement, first: fail, run: fail, all: fail, raw: fail };
  return { prepare: () => statement, batch: fail, exec: fail, dump: fail } as unknown as D1Database;
}

/**
 * Gives a live Durable Object instance an env whose DB is down (`down`) or the real one again.
 * Only what reads `this.env` at run time sees it (webhooks, metrics); the projection keeps the
 * shards it was built with.
 */
export async function setObjectD1(target: DurableObjectStub, down: boolean): Promise<void> {
  await runInDurableObject(target, (instance: object) => {
    (instance as { env: Env }).env = down ? { ...env, DB: downD1() } : env;
  });
}

export interface Received {
  url: string;
  headers: Record<string, string>;
  body: string;
  answered: number;
}

/**
 * Installs a receiver answering each request with the next status of `statuses` (the last one
 * repeats), and records every request. Restored when the test finishes.
 */
export function fakeReceiver(statuses: readonly number[] = [200]): Received[] {
  const received: Received[] = [];
  const restore = useWebhookFetch(async (url, init) => {
    const status = statuses[Math.min(received.length, statuses.length - 1)] as number;
    const headers = Object.fromEntries(new Headers(init.headers).entries());
    received.push({ url, headers, body: String(init.body), answered: status });
    if (init.redirect !== "manual") throw new Error("webhooks must never follow redirects");
    return new Response(status === 204 ? null : "ok", { status });
  });
  onTestFinished(restore);
  return received;
}

/**
 * A receiver's check, written from docs/monitoring.md with node:crypto (not the ledger's WebCrypto code):
 * parse t and v1, refuse t outside the tolerance, compare HMAC-SHA256(secret, t + "." + body).
 */
export function receiverVerifies(header: string, secret: string, body: string, nowSeconds: number): boolean {
  const fields = Object.fromEntries(header.split(",").map((kv) => kv.split("=")));
  const t = Number(fields.t);
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > 300) return false;
  const expected = createHmac("sha256", secret).update(`${t}.${body}`).digest();
  const given = Buffer.from(String(fields.v1), "hex");
  return given.length === expected.length && timingSafeEqual(given, expected);
}
