/**
 * The hash chain that makes an account's history tamper-evident:
 *
 *   hash(event) = SHA-256( prev_hash || JCS(event without its "hash" member) )
 *
 * where prev_hash is the previous event's hash as 64 lower-case hex characters (GENESIS_HASH
 * for seq 1), `||` is concatenation of the ASCII hex and the UTF-8 bytes of the canonical JSON
 * (src/domain/canonical.ts), and the result is lower-case hex. SHA-256 is synchronous here
 * (src/domain/sha256.ts: plain JavaScript, since workerd's node:crypto builds a stream object per
 * call), so the chain is computed inside the same synchronous append as the event. The switch
 * CHAIN_SHA256 = "node" selects node:crypto instead (docs/decisions/0005-javascript-sha256.md);
 * both give the same bytes (test/domain/sha256.test.ts).
 */
import { hash } from "node:crypto";
import { canonicalJson } from "./canonical";
import { sha256HexJs } from "./sha256";

export const GENESIS_HASH = "0".repeat(64);

/** node:crypto's one-shot `hash()`, the form decision 0005 measured. */
const sha256HexNode = (text: string): string => hash("sha256", text, "hex");

let sha256Impl: (text: string) => string = sha256HexJs;

/** SHA-256 of a string's UTF-8 bytes, as lower-case hex, by the implementation in force. */
export function sha256Hex(text: string): string {
  return sha256Impl(text);
}

/** Selects the implementation for this isolate (the account object does, from its config). */
export function useChainSha256(impl: "js" | "node"): void {
  sha256Impl = impl === "node" ? sha256HexNode : sha256HexJs;
}

export function chainHash(prevHash: string, eventWithoutHash: object): string {
  return sha256Hex(prevHash + canonicalJson(eventWithoutHash));
}

/** The hash an event must carry, given the hash before it. */
export function expectedHash(prevHash: string, event: { hash: string }): string {
  const { hash: _hash, ...rest } = event;
  return chainHash(prevHash, rest);
}

/**
 * Events that `stamp` just chained, with the head hash it chained each from. `evolve` checks a
 * stamped event by that link (the head it is applied to must be the one it was hashed on)
 * instead of hashing it a second time; events read back from storage are always re-hashed.
 */
export const stampedFrom = new WeakMap<object, string>();
