/** What a forger who knows the algorithm would do: the tamper tests' tools. */
import { createHash } from "node:crypto";
import { canonicalize } from "../../src/audit/verifier.mjs";

export const sha256Hex = (text: string): string => createHash("sha256").update(text).digest("hex");

/** Recomputes every hash from index `from` on, with the verifier's canonical JSON and SHA-256. */
export function rechain(events: Record<string, unknown>[], from = 0): Record<string, unknown>[] {
  let prev = from === 0 ? "0".repeat(64) : (events[from - 1]?.hash as string);
  return events.map((event, i) => {
    if (i < from) return event;
    const { hash: _hash, ...rest } = event;
    prev = sha256Hex(prev + canonicalize(rest));
    return { ...rest, hash: prev };
  });
}
