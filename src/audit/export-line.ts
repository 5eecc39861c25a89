/**
 * The canonical export line, shared by `GET .../events/export` and the sealed segments the
 * account object archives to R2 (durable-objects/archive.ts): a segment object is exactly the
 * lines the export would have produced for its events, so an auditor verifies either the same way.
 */
import { canonicalJson } from "../domain/canonical";
import type { LedgerEvent } from "../domain/events";

/**
 * One export line: the event's canonical JSON (the very bytes its hash covers) with "hash" as its
 * last member, so a verifier can check the chain over the line's own bytes.
 */
export function exportLine(event: LedgerEvent): string {
  const { hash, ...rest } = event;
  return `${canonicalJson(rest).slice(0, -1)},"hash":"${hash}"}\n`;
}
