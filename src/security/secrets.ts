/**
 * Encryption of configuration secrets at rest. Secrets that the ledger has to store and later use in
 * clear (for example a webhook's signing secret) are encrypted with AES-256-GCM under the
 * CONFIG_ENCRYPTION_KEY secret before they are written, so that a copy of the database alone does not
 * reveal them. Only WebCrypto (`crypto.subtle`) is used, so the module runs in workerd and in tests alike.
 *
 * Key material: CONFIG_ENCRYPTION_KEY is base64 or base64url (padding optional, surrounding whitespace
 * ignored) of at least CONFIG_ENCRYPTION_KEY_BYTES_MIN random bytes, for example the output of
 * `openssl rand -base64 32`. The AES key is always derived from it with HKDF-SHA-256 (info
 * HKDF_INFO), whatever its length: one code path for every length, and the AES key is separated from
 * the raw secret, so the same secret reused elsewhere by mistake would not yield the same key.
 *
 * Format of a stored value (every part but the first two is base64url without padding):
 *
 *   enc:v1:<key_id>:<12-byte IV>:<ciphertext followed by the 16-byte GCM tag>
 *
 * key_id is the first 8 hex characters of SHA-256 of the raw key material: it names the key that made
 * the value without revealing it. The IV is fresh and random for every encryption. The additional data
 * authenticated by GCM is the UTF-8 of `enc:v1:<key_id>:<context>`, where the context names the record
 * the secret belongs to (for example "webhook:acct_1:hook_7"): a value copied to another record, or
 * whose version or key_id was edited, fails to decrypt.
 *
 * Rotation: set CONFIG_ENCRYPTION_KEY_PREVIOUS to the old key and CONFIG_ENCRYPTION_KEY to a new one,
 * deploy, run reencryptSecret over every stored value (and write back those that changed), then remove
 * CONFIG_ENCRYPTION_KEY_PREVIOUS. From then on, values still under the old key are refused.
 *
 * Plaintext is never stored or logged: this module logs nothing, and no error it throws carries a
 * plaintext, a key, or any part of the value it was given other than a validated key_id.
 */

import { base64urlToBytes, bytesToBase64url, bytesToHex } from "../encoding";
import { LedgerError } from "../errors";

/** Every encrypted value starts with this prefix; what follows it is the version. */
export const ENCRYPTED_PREFIX = "enc:";
/** The only version this module writes and reads. */
export const ENCRYPTION_VERSION = "v1";
/** The shortest CONFIG_ENCRYPTION_KEY accepted, in decoded bytes: the 256 bits of an AES-256 key. */
export const CONFIG_ENCRYPTION_KEY_BYTES_MIN = 32;
/** The longest plaintext accepted, in UTF-8 bytes; configuration secrets are far shorter. */
export const MAX_SECRET_PLAINTEXT_BYTES = 4096;
/** The length of a GCM IV in bytes: 96 bits, the size GCM is designed for. */
export const IV_BYTES = 12;
/** The HKDF info string, so that keys derived here cannot collide with keys derived for other uses. */
export const HKDF_INFO = "openedge-ledger config secrets v1";

const TAG_BYTES = 16;
const HEADER = `${ENCRYPTED_PREFIX}${ENCRYPTION_VERSION}:`;
const KEY_ID = /^[0-9a-f]{8}$/;
const BASE64_STANDARD = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64_URL = /^[A-Za-z0-9_-]*={0,2}$/;
const BASE64_URL_UNPADDED = /^[A-Za-z0-9_-]+$/;

type KeyVariable = "CONFIG_ENCRYPTION_KEY" | "CONFIG_ENCRYPTION_KEY_PREVIOUS";

/** One usable key: the AES-GCM key derived from a secret, and the id that names it in stored values. */
export interface ConfigKey {
  readonly keyId: string;
  readonly cryptoKey: CryptoKey;
}

/** The key that encrypts (current) and, during a rotation, the key that only decrypts (previous). */
export interface ConfigKeys {
  readonly current: ConfigKey;
  readonly previous?: ConfigKey;
}

/** A key secret is missing or unusable. The message names the variable and the reason, never the value. */
export class ConfigKeyError extends LedgerError {
  override name = "ConfigKeyError";
  readonly code = "service_misconfigured";
  readonly publicDetail = "The service is not configured correctly; see its logs.";
  override readonly log = "config_error";
  readonly variable: KeyVariable;

  constructor(variable: KeyVariable, reason: string) {
    super(`${variable} ${reason}`);
    this.variable = variable;
  }
}

/** Why a value could not be decrypted; callers may branch on it, and tests pin it. */
export type SecretDecryptionFailure = "malformed" | "unsupported_version" | "unknown_key" | "authentication_failed";

/** A stored value cannot be decrypted. The message never carries a plaintext, a key or the value itself. */
export class SecretDecryptionError extends LedgerError {
  override name = "SecretDecryptionError";
  readonly code = "internal_error";
  readonly publicDetail = "The ledger failed to process the request.";
  override readonly log = "unhandled_error";
  readonly reason: SecretDecryptionFailure;

  constructor(reason: SecretDecryptionFailure, message: string) {
    super(message);
    this.reason = reason;
  }
}

// Imported keys, per secret string. The map holds promises so that concurrent first calls share one
// import; it stays tiny because an isolate only ever sees the one or two keys of its configuration.
const cache = new Map<string, Promise<ConfigKey>>();

/**
 * Validates and imports CONFIG_ENCRYPTION_KEY and, when set, CONFIG_ENCRYPTION_KEY_PREVIOUS. The Worker
 * calls this at start so that a bad key is refused at once rather than at the first secret it touches.
 * The previous key is absent only when undefined: an empty value is refused like any other bad key,
 * because an empty setting is more likely a mistake than a way of saying "no previous key".
 */
export async function loadConfigKeys(env: {
  CONFIG_ENCRYPTION_KEY?: string;
  CONFIG_ENCRYPTION_KEY_PREVIOUS?: string;
}): Promise<ConfigKeys> {
  const current = await loadKey("CONFIG_ENCRYPTION_KEY", env.CONFIG_ENCRYPTION_KEY);
  if (env.CONFIG_ENCRYPTION_KEY_PREVIOUS === undefined) return { current };
  const previous = await loadKey("CONFIG_ENCRYPTION_KEY_PREVIOUS", env.CONFIG_ENCRYPTION_KEY_PREVIOUS);
  return { current, previous };
}

function loadKey(variable: KeyVariable, secret: string | undefined): Promise<ConfigKey> {
  if (secret === undefined) return Promise.reject(new ConfigKeyError(variable, "is not set"));
  if (typeof secret !== "string") return Promise.reject(new ConfigKeyError(variable, "is not a string"));
  const cached = cache.get(secret);
  if (cached !== undefined) return cached;
  let material: Uint8Array;
  try {
    material = validateKeyMaterial(variable, secret);
  } catch (error) {
    return Promise.reject(error);
  }
  const key = importKey(variable, material);
  // A failed import is not cached, so that a transient failure does not stick to the isolate.
  key.catch(() => cache.delete(secret));
  cache.set(secret, key);
  return key;
}

function validateKeyMaterial(variable: KeyVariable, secret: string): Uint8Array {
  // Surrounding whitespace is ignored because secrets pasted or piped into `wrangler secret put` often
  // carry a trailing newline; whitespace inside the value is still refused as not base64.
  const text = secret.trim();
  if (text === "") throw new ConfigKeyError(variable, "is empty");
  const material = decodeBase64(text);
  if (material === undefined) throw new ConfigKeyError(variable, "is not valid base64 or base64url");
  if (material.length < CONFIG_ENCRYPTION_KEY_BYTES_MIN) {
    throw new ConfigKeyError(
      variable,
      `decodes to ${material.length} bytes; at least ${CONFIG_ENCRYPTION_KEY_BYTES_MIN} random bytes are required`,
    );
  }
  // Random bytes are never all equal in practice, while placeholders such as 32 zero bytes are.
  if (material.every((byte) => byte === material[0])) {
    throw new ConfigKeyError(variable, "is not random (every byte is the same)");
  }
  return material;
}

async function importKey(variable: KeyVariable, material: Uint8Array): Promise<ConfigKey> {
  try {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", material));
    const keyId = bytesToHex(digest.subarray(0, 4));
    const base = await crypto.subtle.importKey("raw", material, "HKDF", false, ["deriveKey"]);
    // The salt is empty because the input is already uniformly random key material (checked above to
    // be at least 32 bytes): RFC 5869 makes a salt optional in that case, and a salt would have to be
    // stored or configured next to the key without adding to its strength.
    const cryptoKey = await crypto.subtle.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: new TextEncoder().encode(HKDF_INFO) },
      base,
      { name: "AES-GCM", length: 256 },
      false,
      ["encrypt", "decrypt"],
    );
    return { keyId, cryptoKey };
  } catch {
    // The underlying error is dropped rather than chained so that nothing about the key can leak.
    throw new ConfigKeyError(variable, "could not be imported as a key");
  }
}

/** True when the value claims to be an encrypted value (it starts with "enc:"); says nothing of its validity. */
export function isEncrypted(value: string): boolean {
  // Any "enc:" value counts, whatever its version or shape, so that a migration which encrypts legacy
  // plaintext never wraps an encrypted value a second time; decryptSecret is what checks the rest.
  return typeof value === "string" && value.startsWith(ENCRYPTED_PREFIX);
}

/**
 * Encrypts a secret under the current key for the record named by context. Refuses (RangeError) a
 * plaintext longer than MAX_SECRET_PLAINTEXT_BYTES in UTF-8, one that is not well-formed UTF-16 (a lone
 * surrogate would not survive the round trip), and an empty context (which would bind nothing).
 */
export async function encryptSecret(keys: ConfigKeys, plaintext: string, context: string): Promise<string> {
  if (typeof plaintext !== "string") throw new TypeError("plaintext must be a string");
  if (!plaintext.isWellFormed()) throw new RangeError("plaintext is not well-formed UTF-16");
  const bytes = new TextEncoder().encode(plaintext);
  if (bytes.length > MAX_SECRET_PLAINTEXT_BYTES) {
    throw new RangeError(`plaintext is ${bytes.length} bytes; at most ${MAX_SECRET_PLAINTEXT_BYTES} are allowed`);
  }
  if (typeof context !== "string" || context === "") throw new RangeError("context must be a non-empty string");
  return seal(keys.current, bytes, context);
}

/** Decrypts a value made by encryptSecret with the same context, under the current or the previous key. */
export async function decryptSecret(keys: ConfigKeys, value: string, context: string): Promise<string> {
  const { plaintext } = await open(keys, value, context);
  return plaintext;
}

/**
 * Returns the value encrypted under the current key, for the rotation run. The value is always decrypted
 * first, so a tampered or misplaced value fails here too. A value already under the current key is
 * returned unchanged (not re-encrypted with a new IV), so the run is idempotent and callers can skip
 * the write when the result equals the input.
 */
export async function reencryptSecret(keys: ConfigKeys, value: string, context: string): Promise<string> {
  const { key, bytes } = await open(keys, value, context);
  if (key === keys.current) return value;
  return seal(keys.current, bytes, context);
}

async function seal(key: ConfigKey, plaintext: Uint8Array, context: string): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: additionalData(key.keyId, context), tagLength: TAG_BYTES * 8 },
    key.cryptoKey,
    plaintext,
  );
  return `${HEADER}${key.keyId}:${bytesToBase64url(iv)}:${bytesToBase64url(new Uint8Array(sealed))}`;
}

async function open(
  keys: ConfigKeys,
  value: string,
  context: string,
): Promise<{ key: ConfigKey; bytes: Uint8Array; plaintext: string }> {
  if (typeof value !== "string" || !value.startsWith(ENCRYPTED_PREFIX)) {
    throw new SecretDecryptionError("malformed", "value is not an encrypted secret");
  }
  const parts = value.slice(ENCRYPTED_PREFIX.length).split(":");
  if (parts[0] !== ENCRYPTION_VERSION) {
    if (!/^v[0-9]+$/.test(parts[0] ?? "")) throw new SecretDecryptionError("malformed", "value has no version");
    throw new SecretDecryptionError("unsupported_version", `only version ${ENCRYPTION_VERSION} can be decrypted`);
  }
  const [, keyId, ivText, sealedText] = parts;
  if (parts.length !== 4 || keyId === undefined || ivText === undefined || sealedText === undefined) {
    throw new SecretDecryptionError("malformed", "value does not have the enc:v1:<key_id>:<iv>:<ciphertext> shape");
  }
  if (!KEY_ID.test(keyId)) throw new SecretDecryptionError("malformed", "key id is not 8 hex characters");
  const iv = decodeBase64UrlUnpadded(ivText);
  if (iv === undefined || iv.length !== IV_BYTES) {
    throw new SecretDecryptionError("malformed", `IV is not ${IV_BYTES} bytes of base64url`);
  }
  const sealed = decodeBase64UrlUnpadded(sealedText);
  if (sealed === undefined || sealed.length < TAG_BYTES || sealed.length > MAX_SECRET_PLAINTEXT_BYTES + TAG_BYTES) {
    throw new SecretDecryptionError("malformed", "ciphertext is not base64url of a plausible length");
  }
  // Normally one key matches; trying every key whose id matches also covers the rare case of two keys
  // whose 32-bit ids collide.
  const candidates = [keys.current, keys.previous].filter(
    (key, index, all): key is ConfigKey => key !== undefined && key.keyId === keyId && all.indexOf(key) === index,
  );
  if (candidates.length === 0) {
    throw new SecretDecryptionError("unknown_key", `value was encrypted under key ${keyId}, which is not configured`);
  }
  for (const key of candidates) {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(
        await crypto.subtle.decrypt(
          { name: "AES-GCM", iv, additionalData: additionalData(keyId, context), tagLength: TAG_BYTES * 8 },
          key.cryptoKey,
          sealed,
        ),
      );
    } catch {
      continue;
    }
    try {
      // ignoreBOM keeps a leading U+FEFF that was part of the plaintext instead of stripping it.
      const plaintext = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
      return { key, bytes, plaintext };
    } catch {
      // Authenticated bytes are always UTF-8 because encryptSecret wrote them, so this is unreachable in
      // practice; it is still refused rather than silently altered.
      throw new SecretDecryptionError("malformed", "decrypted secret is not UTF-8");
    }
  }
  throw new SecretDecryptionError(
    "authentication_failed",
    "value failed authentication (tampered, or encrypted for another context)",
  );
}

function additionalData(keyId: string, context: string): Uint8Array {
  // The header has a fixed length, so the concatenation with the context is unambiguous.
  return new TextEncoder().encode(`${HEADER}${keyId}:${context}`);
}

/** Decodes base64 or base64url, padded or not; undefined unless the text is the canonical encoding. */
function decodeBase64(text: string): Uint8Array | undefined {
  if (!BASE64_STANDARD.test(text) && !BASE64_URL.test(text)) return undefined;
  const body = text.replace(/=+$/, "");
  if (body.length !== text.length && text.length % 4 !== 0) return undefined;
  if (body.length % 4 === 1) return undefined;
  let bytes: Uint8Array;
  try {
    // The checks above leave a body without padding or white space whose length is never one more
    // than a multiple of four, so the decoder's forgiving rules have nothing to forgive but padding.
    bytes = base64urlToBytes(body);
  } catch {
    return undefined;
  }
  // Re-encoding refuses texts whose unused trailing bits are set, so that one byte string has one text.
  if (bytesToBase64url(bytes) !== body.replaceAll("+", "-").replaceAll("/", "_")) return undefined;
  return bytes;
}

function decodeBase64UrlUnpadded(text: string): Uint8Array | undefined {
  return BASE64_URL_UNPADDED.test(text) ? decodeBase64(text) : undefined;
}
