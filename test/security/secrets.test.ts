/**
 * Encryption of configuration secrets at rest, inside workerd: round trips, the exact stored shape,
 * binding to the record's context, refusal of every kind of tampering, validation of the key secrets,
 * error messages that never carry a key or a plaintext, key rotation, and the plaintext size limit.
 */
import { describe, expect, it } from "vitest";
import {
  CONFIG_ENCRYPTION_KEY_BYTES_MIN,
  ConfigKeyError,
  type ConfigKeys,
  decryptSecret,
  ENCRYPTED_PREFIX,
  ENCRYPTION_VERSION,
  encryptSecret,
  HKDF_INFO,
  isEncrypted,
  loadConfigKeys,
  MAX_SECRET_PLAINTEXT_BYTES,
  reencryptSecret,
  SecretDecryptionError,
  type SecretDecryptionFailure,
} from "../../src/security/secrets";

const CONTEXT = "webhook:acct_1:hook_7";
const SHAPE = /^enc:v1:[0-9a-f]{8}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]+$/;

function randomBytes(length: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(length));
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function toBase64Url(bytes: Uint8Array): string {
  return toBase64(bytes).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function fromBase64Url(text: string): Uint8Array {
  const standard = text.replaceAll("-", "+").replaceAll("_", "/");
  return Uint8Array.from(atob(standard + "=".repeat((4 - (standard.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

/** A fresh random key secret, base64, as an operator would make one with `openssl rand -base64 32`. */
function newKey(length = CONFIG_ENCRYPTION_KEY_BYTES_MIN): string {
  return toBase64(randomBytes(length));
}

async function keyIdOf(secret: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", fromBase64Url(secret)));
  return Array.from(digest.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Splits a stored value into its five parts, failing the test if it does not have them. */
function partsOf(value: string): [string, string, string, string, string] {
  const parts = value.split(":");
  expect(parts).toHaveLength(5);
  return parts as [string, string, string, string, string];
}

/** Flips one bit of the byte at index (negative counts from the end) of a base64url part. */
function flipBit(part: string, index: number): string {
  const bytes = fromBase64Url(part);
  const at = index < 0 ? bytes.length + index : index;
  bytes[at] = (bytes[at] ?? 0) ^ 0x01;
  return toBase64Url(bytes);
}

/** The error `promise` rejects with, failing the test unless it is one of `type`. */
async function failureOf<E>(promise: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(type);
  return error as E;
}

const decryptionFailure = (promise: Promise<unknown>) => failureOf(promise, SecretDecryptionError);
const keyFailure = (promise: Promise<unknown>) => failureOf(promise, ConfigKeyError);

async function expectRejected(promise: Promise<unknown>, reason: SecretDecryptionFailure): Promise<void> {
  const error = await decryptionFailure(promise);
  expect(error.reason).toBe(reason);
}

describe("round trip", () => {
  it.each([
    ["ascii", "whsec_3f9a1c0d7e"],
    ["unicode", "sécret — 秘密 🔑 \u0000 end"],
    ["empty string", ""],
    ["a leading byte order mark", "\ufeffbom"],
    ["the maximum size", "x".repeat(MAX_SECRET_PLAINTEXT_BYTES)],
    ["a value that itself looks encrypted", "enc:v1:00000000:AAAA:BBBB"],
  ])("decrypts %s back to the same string", async (_name, plaintext) => {
    const keys = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: newKey() });
    const value = await encryptSecret(keys, plaintext, CONTEXT);
    expect(value).toMatch(SHAPE);
    if (plaintext !== "") expect(value).not.toContain(plaintext);
    expect(await decryptSecret(keys, value, CONTEXT)).toBe(plaintext);
  });

  it("uses a fresh IV, so the same plaintext never gives the same value", async () => {
    const keys = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: newKey() });
    const values = await Promise.all(Array.from({ length: 20 }, () => encryptSecret(keys, "same", CONTEXT)));
    expect(new Set(values).size).toBe(values.length);
    expect(new Set(values.map((value) => partsOf(value)[3])).size).toBe(values.length);
  });

  it("writes exactly enc:v1:<key_id>:<12-byte IV>:<ciphertext + 16-byte tag>", async () => {
    const secret = newKey();
    const keys = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: secret });
    const plaintext = "héllo";
    const value = await encryptSecret(keys, plaintext, CONTEXT);
    const [prefix, version, keyId, iv, sealed] = partsOf(value);
    expect(`${prefix}:`).toBe(ENCRYPTED_PREFIX);
    expect(version).toBe(ENCRYPTION_VERSION);
    expect(keyId).toBe(await keyIdOf(secret));
    expect(keyId).toBe(keys.current.keyId);
    expect(fromBase64Url(iv)).toHaveLength(12);
    expect(fromBase64Url(sealed)).toHaveLength(new TextEncoder().encode(plaintext).length + 16);
  });

  it("follows the documented derivation and additional data, so the format can be read independently", async () => {
    const secret = newKey(48);
    const keys = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: secret });
    const value = await encryptSecret(keys, "interop", CONTEXT);
    const [, , keyId, iv, sealed] = partsOf(value);
    const base = await crypto.subtle.importKey("raw", fromBase64Url(secret), "HKDF", false, ["deriveKey"]);
    const aes = await crypto.subtle.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: new TextEncoder().encode(HKDF_INFO) },
      base,
      { name: "AES-GCM", length: 256 },
      false,
      ["decrypt"],
    );
    const clear = await crypto.subtle.decrypt(
      {
        name: "AES-GCM",
        iv: fromBase64Url(iv),
        additionalData: new TextEncoder().encode(`enc:v1:${keyId}:${CONTEXT}`),
      },
      aes,
      fromBase64Url(sealed),
    );
    expect(new TextDecoder().decode(clear)).toBe("interop");
  });

  it("isEncrypted tells stored values from legacy plaintext", async () => {
    const keys = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: newKey() });
    expect(isEncrypted(await encryptSecret(keys, "s", CONTEXT))).toBe(true);
    expect(isEncrypted("enc:v2:whatever")).toBe(true);
    expect(isEncrypted("whsec_plain")).toBe(false);
    expect(isEncrypted("")).toBe(false);
  });
});

describe("context binding", () => {
  it("refuses a value decrypted under another record's context", async () => {
    const keys = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: newKey() });
    const value = await encryptSecret(keys, "whsec_abc", "webhook:acct_1:hook_7");
    for (const context of ["webhook:acct_1:hook_8", "webhook:acct_2:hook_7", "webhook:acct_1:hook_7 ", "x"]) {
      await expectRejected(decryptSecret(keys, value, context), "authentication_failed");
      await expectRejected(reencryptSecret(keys, value, context), "authentication_failed");
    }
    expect(await decryptSecret(keys, value, "webhook:acct_1:hook_7")).toBe("whsec_abc");
  });

  it("refuses to encrypt with an empty context, which would bind nothing", async () => {
    const keys = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: newKey() });
    await expect(encryptSecret(keys, "s", "")).rejects.toBeInstanceOf(RangeError);
  });
});

describe("tampering", async () => {
  const secret = newKey();
  const other = newKey();
  const keys = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: secret, CONFIG_ENCRYPTION_KEY_PREVIOUS: other });
  const plaintext = "whsec_tamper_target";
  const value = await encryptSecret(keys, plaintext, CONTEXT);
  const [prefix, version, keyId, iv, sealed] = partsOf(value);
  const join = (...parts: string[]) => parts.join(":");
  const otherKeyId = keys.previous?.keyId ?? "";
  const unknownKeyId = [...keyId].map((c) => (c === "0" ? "1" : "0")).join("");

  // A reason of undefined accepts any: a string cut by one character may or may not still be canonical base64url.
  const cases: [string, string, SecretDecryptionFailure | undefined][] = [
    ["a flipped bit in the ciphertext", join(prefix, version, keyId, iv, flipBit(sealed, 0)), "authentication_failed"],
    ["a flipped bit in the tag", join(prefix, version, keyId, iv, flipBit(sealed, -1)), "authentication_failed"],
    ["a flipped bit in the IV", join(prefix, version, keyId, flipBit(iv, 5), sealed), "authentication_failed"],
    ["the key_id of the other configured key", join(prefix, version, otherKeyId, iv, sealed), "authentication_failed"],
    ["a key_id no key has", join(prefix, version, unknownKeyId, iv, sealed), "unknown_key"],
    ["a key_id that is not 8 hex characters", join(prefix, version, `${keyId.slice(0, 7)}g`, iv, sealed), "malformed"],
    ["an IV of 11 bytes", join(prefix, version, keyId, toBase64Url(fromBase64Url(iv).slice(1)), sealed), "malformed"],
    ["an IV of 16 bytes", join(prefix, version, keyId, toBase64Url(randomBytes(16)), sealed), "malformed"],
    ["a ciphertext shorter than a tag", join(prefix, version, keyId, iv, toBase64Url(randomBytes(15))), "malformed"],
    [
      "the ciphertext cut short",
      join(prefix, version, keyId, iv, toBase64Url(fromBase64Url(sealed).slice(0, -1))),
      "authentication_failed",
    ],
    ["the last character removed", value.slice(0, -1), undefined],
    ["the string truncated to three parts", join(prefix, version, keyId), "malformed"],
    ["an extra part", `${value}:AAAA`, "malformed"],
    ["an empty IV", join(prefix, version, keyId, "", sealed), "malformed"],
    ["padding in a part", `${value}==`, "malformed"],
    ["a character outside base64url", join(prefix, version, keyId, iv, `${sealed.slice(0, -1)}+`), "malformed"],
    ["version v2", join(prefix, "v2", keyId, iv, sealed), "unsupported_version"],
    ["version V1", join(prefix, "V1", keyId, iv, sealed), "malformed"],
    ["another prefix", join("ENC", version, keyId, iv, sealed), "malformed"],
    ["no prefix at all", plaintext, "malformed"],
    ["the empty string", "", "malformed"],
    ["just the prefix", "enc:", "malformed"],
  ];

  it.each(cases)("refuses %s", async (_name, tampered, reason) => {
    expect(tampered).not.toBe(value);
    const error = await decryptionFailure(decryptSecret(keys, tampered, CONTEXT));
    if (reason !== undefined) expect(error.reason).toBe(reason);
    expect(error.message).not.toContain(plaintext);
    expect(error.message).not.toContain(secret);
    expect(error.message).not.toContain(other);
    const again = await decryptionFailure(reencryptSecret(keys, tampered, CONTEXT));
    expect(again.reason).toBe(error.reason);
  });

  it("still decrypts the untouched value", async () => {
    expect(await decryptSecret(keys, value, CONTEXT)).toBe(plaintext);
  });
});

describe("key validation", () => {
  const allZero = toBase64(new Uint8Array(32));
  const allSame = toBase64(new Uint8Array(64).fill(0xa5));
  const short = toBase64(randomBytes(31));
  const cases: [string, string | undefined][] = [
    ["missing", undefined],
    ["empty", ""],
    ["only whitespace", "  \n"],
    ["31 bytes", short],
    ["not base64", "this is not base64 at all!!"],
    ["base64 with a character outside both alphabets", `${newKey().slice(0, -2)}*=`],
    ["base64 with both alphabets mixed", `+_${newKey().slice(2)}`],
    ["base64 with bad padding", `${toBase64(randomBytes(33))}=`],
    ["base64 with whitespace inside", `${newKey().slice(0, 20)} ${newKey().slice(20)}`],
    ["32 zero bytes", allZero],
    ["64 equal bytes", allSame],
  ];

  it.each(cases)("refuses a key that is %s with ConfigKeyError", async (_name, secret) => {
    const error = await keyFailure(loadConfigKeys({ CONFIG_ENCRYPTION_KEY: secret }));
    expect(error.variable).toBe("CONFIG_ENCRYPTION_KEY");
    if (secret !== undefined && secret.trim() !== "") expect(error.message).not.toContain(secret.trim());
  });

  const presentCases = cases.flatMap(([name, secret]) => (secret === undefined ? [] : [[name, secret] as const]));

  it.each(presentCases)("refuses a previous key that is %s, even with a good current key", async (_name, secret) => {
    const error = await keyFailure(
      loadConfigKeys({ CONFIG_ENCRYPTION_KEY: newKey(), CONFIG_ENCRYPTION_KEY_PREVIOUS: secret }),
    );
    expect(error.variable).toBe("CONFIG_ENCRYPTION_KEY_PREVIOUS");
    if (secret.trim() !== "") expect(error.message).not.toContain(secret.trim());
  });

  it("never puts any part of a refused key in the message", async () => {
    const error = await keyFailure(loadConfigKeys({ CONFIG_ENCRYPTION_KEY: short }));
    expect(error.message).toMatch(/31 bytes/);
    for (let i = 0; i + 8 <= short.length; i += 4) expect(error.message).not.toContain(short.slice(i, i + 8));
  });

  it.each([
    ["32 random bytes", newKey(32)],
    ["64 random bytes", newKey(64)],
    ["33 random bytes", newKey(33)],
    ["base64 with a trailing newline", `${newKey()}\n`],
  ])("accepts %s", async (_name, secret) => {
    const keys = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: secret });
    expect(keys.current.keyId).toMatch(/^[0-9a-f]{8}$/);
    expect(keys.previous).toBeUndefined();
    expect(await decryptSecret(keys, await encryptSecret(keys, "ok", CONTEXT), CONTEXT)).toBe("ok");
  });

  it("accepts base64 and base64url, padded or not, as the same key", async () => {
    // These bytes encode to "++++////" in base64, so the base64url form differs from it.
    const bytes = randomBytes(32);
    bytes.set([0xfb, 0xef, 0xbe, 0xff, 0xff, 0xff], 0);
    const standard = toBase64(bytes);
    expect(standard).toMatch(/^\+\+\+\+\/\/\/\/.*=$/);
    const url = toBase64Url(bytes);
    const forms = [standard, standard.replace(/=+$/, ""), url, `${url}=`];
    const loaded = await Promise.all(forms.map((secret) => loadConfigKeys({ CONFIG_ENCRYPTION_KEY: secret })));
    const ids = new Set(loaded.map((keys) => keys.current.keyId));
    expect(ids.size).toBe(1);
    const [first, ...rest] = loaded as [ConfigKeys, ...ConfigKeys[]];
    const value = await encryptSecret(first, "shared", CONTEXT);
    for (const keys of rest) expect(await decryptSecret(keys, value, CONTEXT)).toBe("shared");
  });

  it("returns the cached key for a repeated secret", async () => {
    const secret = newKey();
    const [a, b] = await Promise.all([
      loadConfigKeys({ CONFIG_ENCRYPTION_KEY: secret }),
      loadConfigKeys({ CONFIG_ENCRYPTION_KEY: secret }),
    ]);
    expect(a.current).toBe(b.current);
  });
});

describe("rotation", () => {
  it("moves a value from the previous key to the current one", async () => {
    const k1 = newKey();
    const k2 = newKey();
    const plaintext = "whsec_rotate_me";
    const before = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: k1 });
    const old = await encryptSecret(before, plaintext, CONTEXT);
    expect(partsOf(old)[2]).toBe(await keyIdOf(k1));

    const during = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: k2, CONFIG_ENCRYPTION_KEY_PREVIOUS: k1 });
    expect(await decryptSecret(during, old, CONTEXT)).toBe(plaintext);
    const rotated = await reencryptSecret(during, old, CONTEXT);
    expect(rotated).toMatch(SHAPE);
    expect(partsOf(rotated)[2]).toBe(await keyIdOf(k2));
    expect(partsOf(rotated)[2]).toBe(during.current.keyId);
    // A value already under the current key comes back unchanged, so the rotation run is idempotent.
    expect(await reencryptSecret(during, rotated, CONTEXT)).toBe(rotated);

    const after = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: k2 });
    expect(await decryptSecret(after, rotated, CONTEXT)).toBe(plaintext);
    const error = await decryptionFailure(decryptSecret(after, old, CONTEXT));
    expect(error.reason).toBe("unknown_key");
    expect(error.message).not.toContain(plaintext);
    expect(error.message).not.toContain(k1);
    expect(error.message).not.toContain(k2);
    await expectRejected(reencryptSecret(after, old, CONTEXT), "unknown_key");
  });

  it("encrypts new values under the current key only", async () => {
    const k1 = newKey();
    const k2 = newKey();
    const during = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: k2, CONFIG_ENCRYPTION_KEY_PREVIOUS: k1 });
    const value = await encryptSecret(during, "fresh", CONTEXT);
    expect(partsOf(value)[2]).toBe(await keyIdOf(k2));
    const onlyOld = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: k1 });
    await expectRejected(decryptSecret(onlyOld, value, CONTEXT), "unknown_key");
  });
});

describe("plaintext limits", () => {
  it("refuses a plaintext over the maximum, counted in UTF-8 bytes, without echoing it", async () => {
    const keys = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: newKey() });
    const tooLong = "y".repeat(MAX_SECRET_PLAINTEXT_BYTES + 1);
    // 1366 three-byte characters are 4098 bytes although the string has fewer than 4096 characters.
    const tooManyBytes = "€".repeat(Math.ceil((MAX_SECRET_PLAINTEXT_BYTES + 1) / 3));
    expect(tooManyBytes.length).toBeLessThan(MAX_SECRET_PLAINTEXT_BYTES);
    for (const plaintext of [tooLong, tooManyBytes]) {
      const error = await encryptSecret(keys, plaintext, CONTEXT).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(RangeError);
      expect((error as Error).message).not.toContain(plaintext.slice(0, 16));
    }
  });

  it("refuses a lone surrogate, which would not survive UTF-8", async () => {
    const keys = await loadConfigKeys({ CONFIG_ENCRYPTION_KEY: newKey() });
    await expect(encryptSecret(keys, "a\ud800b", CONTEXT)).rejects.toBeInstanceOf(RangeError);
  });
});
