/**
 * Webhook signatures (issue 14), like Stripe's: the header
 *   Ledger-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>
 * The key is the endpoint's whole secret string (`whsec_...`) as UTF-8. A receiver recomputes the
 * HMAC over the raw body it received and refuses a timestamp outside its tolerance window, so a
 * captured delivery cannot be replayed later (README, "Webhooks").
 */
import { bytesToBase64url, bytesToHex } from "../encoding";

export const SIGNATURE_HEADER = "Ledger-Signature";
/** The tolerance the README recommends to receivers, and that `verifySignature` uses by default. */
export const SIGNATURE_TOLERANCE_SECONDS_DEFAULT = 300;
export const WEBHOOK_SECRET_PREFIX = "whsec_";
export const WEBHOOK_SECRET_BYTES = 32;

const utf8 = new TextEncoder();

async function hmacHex(secret: string, message: string): Promise<string> {
  const key = await crypto.subtle.importKey("raw", utf8.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return bytesToHex(new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8.encode(message))));
}

/** The header value for `body` signed at `tSeconds`. */
export async function signatureHeader(secret: string, tSeconds: number, body: string): Promise<string> {
  return `t=${tSeconds},v1=${await hmacHex(secret, `${tSeconds}.${body}`)}`;
}

/**
 * Checks a header as a receiver would: a v1 signature over `t.body` under `secret`, with `t`
 * within `toleranceSeconds` of `nowSeconds`. Compares in constant time.
 */
export async function verifySignature(
  header: string,
  secret: string,
  body: string,
  nowSeconds: number,
  toleranceSeconds: number = SIGNATURE_TOLERANCE_SECONDS_DEFAULT,
): Promise<boolean> {
  const parts = new Map(header.split(",").map((part) => part.split("=", 2) as [string, string]));
  const t = Number(parts.get("t"));
  const v1 = parts.get("v1");
  if (!Number.isSafeInteger(t) || v1 === undefined) return false;
  if (Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const expected = await hmacHex(secret, `${t}.${body}`);
  if (expected.length !== v1.length) return false;
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff |= expected.charCodeAt(i) ^ v1.charCodeAt(i);
  return diff === 0;
}

/** A new signing secret: `whsec_` and 32 random bytes, base64url. */
export function newWebhookSecret(): string {
  return `${WEBHOOK_SECRET_PREFIX}${bytesToBase64url(crypto.getRandomValues(new Uint8Array(WEBHOOK_SECRET_BYTES)))}`;
}
