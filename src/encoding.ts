/**
 * Byte encodings the ledger writes and reads: lower-case hex, base64url without padding, and
 * plain base64. Pure functions over Uint8Array, using only atob/btoa (present in workerd, Node
 * and browsers), so any module may import them, src/domain included.
 *
 * Decoding follows atob's "forgiving-base64" rules: padding is optional, ASCII white space is
 * skipped, unused trailing bits are ignored, and anything else that is not base64 throws a
 * DOMException (InvalidCharacterError). Callers that need a canonical encoding check it
 * themselves (src/security/secrets.ts does, by re-encoding).
 *
 * The offline verifier (src/audit/verifier.mjs) keeps its own base64url decoder: it runs on
 * plain Node with no build step and shares no code with the ledger it checks.
 */

const HEX_DIGITS = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"));
const HEX_TEXT = /^(?:[0-9a-fA-F]{2})*$/;

/** Two lower-case hex digits per byte. */
export function bytesToHex(bytes: Uint8Array): string {
  let hex = "";
  for (const byte of bytes) hex += HEX_DIGITS[byte];
  return hex;
}

/** Decodes hex of either case; throws a RangeError unless the text is whole bytes of hex digits. */
export function hexToBytes(hex: string): Uint8Array {
  if (!HEX_TEXT.test(hex)) throw new RangeError("not an even number of hex digits");
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/** base64url (RFC 4648 section 5) without padding. */
export function bytesToBase64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/**
 * Decodes base64url, padded or not (standard base64 is accepted too, its alphabet being mapped
 * the same way). Throws on text that is not base64 by atob's rules.
 */
export function base64urlToBytes(text: string): Uint8Array {
  return base64ToBytes(text.replaceAll("-", "+").replaceAll("_", "/"));
}

/** Decodes standard base64 (RFC 4648 section 4), padded or not. Throws on text that is not base64 by atob's rules. */
export function base64ToBytes(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (char) => char.charCodeAt(0));
}
