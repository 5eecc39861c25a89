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
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      out += (i === 0 ? "" : ",") + (item === undefined ? "null" : canonicalJson(item));
    }
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  // sort() without a comparator orders strings by their UTF-16 code units, as JCS requires.
  const names = Object.keys(record).sort();
  let out = "{";
  for (const name of names) {
    const member = record[name];
    if (member === undefined) continue;
    out += `${out.length === 1 ? "" : ","}${JSON.stringify(name)}:${canonicalJson(member)}`;
  }
  return `${out}}`;
}
