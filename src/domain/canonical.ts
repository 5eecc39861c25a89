/**
 * Canonical JSON, the RFC 8785 (JCS) form for the values the ledger stores: object members
 * sorted by the UTF-16 code units of their names at every depth (written out explicitly: a JS
 * object would put integer-like names such as "0" first), no white space, strings escaped as
 * JSON.stringify does, numbers in ECMAScript's shortest form. It is what the hash chain hashes
 * and what idempotency compares, and docs/audit.md specifies it for re-implementers.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new Error("non-finite number in canonical JSON");
    // undefined (an absent optional member) never reaches here: objects skip it below.
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : canonicalJson(v))).join(",")}]`;
  const record = value as Record<string, unknown>;
  const names = Object.keys(record)
    .filter((name) => record[name] !== undefined)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${names.map((name) => `${JSON.stringify(name)}:${canonicalJson(record[name])}`).join(",")}}`;
}
