/** A fake webhook receiver behind the outbound-fetch seam, and an independent signature check. */
import { createHmac, timingSafeEqual } from "node:crypto";
import { onTestFinished } from "vitest";
import { useWebhookFetch } from "../../src/webhooks/send";

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
 * A receiver's check, written from the README with node:crypto (not the ledger's WebCrypto code):
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
