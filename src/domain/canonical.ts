/**
 * Canonical JSON, the RFC 8785 (JCS) form for the values the ledger stores: object keys sorted
 * by UTF-16 code units at every depth, no white space, strings escaped as JSON.stringify does,
 * numbers in ECMAScript's shortest form (ledger numbers are safe integers). It is what the hash
 * chain hashes and what idempotency compares, and the README specifies it for re-implementers.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
    const entries = Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return Object.fromEntries(entries);
  });
}
