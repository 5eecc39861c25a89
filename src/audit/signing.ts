/**
 * Signed checkpoints. The ledger signs {account_id, seq, head_hash, balance, reserved, at}
 * (canonical JSON, src/domain/canonical.ts) with Ed25519 under the AUDIT_SIGNING_KEY secret:
 * a PKCS#8 Ed25519 private key, base64 (`npm start` generates one locally; docs/audit.md says how
 * to make one for production). The public key is published as 32 raw bytes, base64url.
 */
import { canonicalJson } from "../domain/canonical";
import { base64ToBytes, base64urlToBytes, bytesToBase64url, bytesToHex } from "../encoding";
import { LedgerError } from "../errors";

export interface Checkpoint {
  account_id: string;
  seq: number;
  head_hash: string;
  balance: number;
  reserved: number;
  /** When the checkpoint was signed. */
  at: string;
}

export interface SignedCheckpoint {
  checkpoint: Checkpoint;
  algorithm: "Ed25519";
  key_id: string;
  /** base64url Ed25519 signature of the checkpoint's canonical JSON. */
  signature: string;
}

export interface AuditKey {
  privateKey: CryptoKey;
  /** 32 raw bytes, base64url. */
  publicKey: string;
  /** First 16 hex characters of SHA-256 of the raw public key. */
  keyId: string;
}

/** The secret is missing or not an Ed25519 PKCS#8 key. Never carries the secret's value. */
export class AuditKeyUnavailable extends LedgerError {
  override name = "AuditKeyUnavailable";
  readonly code = "audit_key_unavailable";
  readonly publicDetail = "Checkpoints cannot be signed: the audit signing key is not configured.";
  override readonly log = "audit_key_unavailable";
}

const cache = new Map<string, Promise<AuditKey>>();

export function auditKey(secret: string | undefined): Promise<AuditKey> {
  if (secret === undefined || secret.trim() === "") {
    return Promise.reject(new AuditKeyUnavailable("AUDIT_SIGNING_KEY is not set"));
  }
  let key = cache.get(secret);
  if (key === undefined) {
    key = importAuditKey(secret.trim());
    key.catch(() => cache.delete(secret));
    cache.set(secret, key);
  }
  return key;
}

async function importAuditKey(secret: string): Promise<AuditKey> {
  let privateKey: CryptoKey;
  try {
    const der = base64ToBytes(secret);
    privateKey = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, true, ["sign"]);
  } catch {
    throw new AuditKeyUnavailable("AUDIT_SIGNING_KEY is not a base64 PKCS#8 Ed25519 private key");
  }
  const jwk = (await crypto.subtle.exportKey("jwk", privateKey)) as JsonWebKey;
  const publicKey = jwk.x;
  if (publicKey === undefined) throw new AuditKeyUnavailable("AUDIT_SIGNING_KEY has no public part");
  const raw = base64urlToBytes(publicKey);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", raw));
  const keyId = bytesToHex(digest.subarray(0, 8));
  return { privateKey, publicKey, keyId };
}

export async function signCheckpoint(key: AuditKey, checkpoint: Checkpoint): Promise<SignedCheckpoint> {
  const message = new TextEncoder().encode(canonicalJson(checkpoint));
  const signature = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key.privateKey, message));
  return { checkpoint, algorithm: "Ed25519", key_id: key.keyId, signature: bytesToBase64url(signature) };
}
