/**
 * The gateway's own caller keys (issue 11). A caller presents `Authorization: Bearer gwk_...`; the
 * gateway stores only the key's SHA-256 (as the ledger stores its API keys, see
 * src/security/api-keys.ts: the key holds 32 random bytes, so a slow hash would add nothing), and
 * each key names exactly one account and one role. The account of a request comes from its key
 * and from nothing the caller sends, so no caller can bill, inspect or lock another account.
 *
 * Storage sits behind `GatewayKeyStore`, so a deployment can keep its keys in D1 or KV; the
 * implementation here reads them from configuration (a JSON list in an environment variable).
 */
import { z } from "zod";
import { bytesToBase64url } from "../../../src/encoding";
import { sha256Hex } from "../../../src/security/api-keys";

export const GATEWAY_ROLES = ["caller", "operator"] as const;
/** `caller`: chat completions only. `operator`: also refunds and asynchronous orders. */
export type GatewayRole = (typeof GATEWAY_ROLES)[number];

export interface GatewayPrincipal {
  readonly account_id: string;
  readonly role: GatewayRole;
  /** The key's name and project (issue 28): the ledger counts its calls against their spend limits. */
  readonly key_id?: string;
  readonly project_id?: string;
}

export interface GatewayKeyStore {
  /** The principal of a presented secret, or null for a key that is unknown, revoked or malformed. */
  lookup(secret: string): Promise<GatewayPrincipal | null>;
}

/** One configured key: its hash, never the key itself. */
export interface GatewayKeyEntry {
  sha256_hex: string;
  account_id: string;
  role: GatewayRole;
  key_id?: string;
  project_id?: string;
}

const KEY_SECRET_BYTES = 32;
/** `gwk_` and 32 random bytes in base64url: anything else is refused before it is hashed. */
export const GATEWAY_KEY_PATTERN = /^gwk_[A-Za-z0-9_-]{43}$/;
/**
 * Account ids a key may name. The reservation id is `gw:<account_id>:<request_id>` and the
 * ledger's ids are at most 128 characters: 3 + 60 + 1 + 64 fits with any valid request id.
 */
export const GATEWAY_ACCOUNT_ID_LENGTH_MAX = 60;
const ACCOUNT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,59}$/;

const KeyEntries = z.array(
  z.strictObject({
    sha256_hex: z.string().regex(/^[0-9a-f]{64}$/),
    account_id: z.string().max(GATEWAY_ACCOUNT_ID_LENGTH_MAX).regex(ACCOUNT_ID_PATTERN),
    role: z.enum(GATEWAY_ROLES),
    key_id: z.string().regex(ACCOUNT_ID_PATTERN).optional(),
    project_id: z.string().regex(ACCOUNT_ID_PATTERN).optional(),
  }),
);

/** A configuration that cannot be read. Its message never repeats the configuration. */
export class GatewayKeyConfigError extends Error {
  override name = "GatewayKeyConfigError";
}

/**
 * A key store over a JSON list of `{sha256_hex, account_id, role}`. It throws on a list that is
 * not valid or hashes a key twice: a gateway that cannot tell its callers apart must not start.
 */
export function keyStoreFromConfig(config: string | undefined): GatewayKeyStore {
  let parsed: unknown;
  try {
    parsed = JSON.parse(config ?? "");
  } catch {
    throw new GatewayKeyConfigError("GATEWAY_KEYS is not JSON");
  }
  const entries = KeyEntries.safeParse(parsed);
  if (!entries.success) {
    const where = entries.error.issues.map((issue) => issue.path.join(".")).join(", ");
    throw new GatewayKeyConfigError(`GATEWAY_KEYS is not a list of {sha256_hex, account_id, role}: ${where}`);
  }
  const byHash = new Map<string, GatewayPrincipal>();
  for (const entry of entries.data) {
    if (byHash.has(entry.sha256_hex)) throw new GatewayKeyConfigError("GATEWAY_KEYS lists one key twice");
    const { sha256_hex: _hash, ...principal } = entry;
    byHash.set(entry.sha256_hex, Object.freeze(principal));
  }
  return {
    async lookup(secret) {
      if (!GATEWAY_KEY_PATTERN.test(secret)) return null;
      return byHash.get(await sha256Hex(secret)) ?? null;
    },
  };
}

/** Makes a key: the secret goes to its holder once, the entry into the configuration. */
export async function newGatewayKey(
  accountId: string,
  role: GatewayRole,
): Promise<{ secret: string; entry: GatewayKeyEntry }> {
  const secret = `gwk_${bytesToBase64url(crypto.getRandomValues(new Uint8Array(KEY_SECRET_BYTES)))}`;
  return { secret, entry: { sha256_hex: await sha256Hex(secret), account_id: accountId, role } };
}

/** The bearer token of a request, or null. Only the Authorization header is read. */
export function bearerToken(request: Request): string | null {
  const header = request.headers.get("authorization");
  const match = header === null ? null : /^Bearer ([^\s]+)$/i.exec(header.trim());
  return match?.[1] ?? null;
}
