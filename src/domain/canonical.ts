/**
 * Canonical JSON, the RFC 8785 (JCS) form for the values the ledger stores: object members
 * sorted by the UTF-16 code units of their names at every depth, no white space, strings escaped
 * as JSON.stringify does, numbers in ECMAScript's shortest form. It is what the hash chain hashes
 * and what idempotency compares, and docs/audit.md specifies it for re-implementers.
 *
 * The usual path copies the value with every object's members inserted in sorted order and lets
 * the engine's JSON.stringify write it: the language fixes the order it writes them in (insertion
 * order) for every name except array-index-like ones ("0", "12"), which it puts first in numeric
 * order, and `__proto__`, which a plain object cannot hold as a member. A value with such a name
 * anywhere is written member by member instead (`canonicalJsonByParts`). Both paths are checked
 * against the independent verifier's JCS on random JSON values (test/audit/audit.test.ts).
 */
export function canonicalJson(value: unknown): string {
  try {
    return JSON.stringify(sortedCopy(value));
  } catch (error) {
    if (error !== ENGINE_ORDERS_NAME) throw error;
    return canonicalJsonByParts(value);
  }
}

/** Thrown by `sortedCopy` at a name whose place the engine would choose itself. */
const ENGINE_ORDERS_NAME = new Error("a name the engine orders itself");

const isIndexLike = (name: string): boolean => {
  const first = name.charCodeAt(0);
  return first >= 48 && first <= 57 && /^(?:0|[1-9][0-9]*)$/.test(name);
};

function sortedCopy(value: unknown): unknown {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new Error("non-finite number in canonical JSON");
    return value;
  }
  if (Array.isArray(value)) {
    const out: unknown[] = new Array(value.length);
    for (let i = 0; i < value.length; i++) out[i] = sortedCopy(value[i]);
    return out;
  }
  const record = value as Record<string, unknown>;
  // sort() without a comparator orders strings by their UTF-16 code units, as JCS requires.
  const names = Object.keys(record).sort();
  const out: Record<string, unknown> = {};
  for (const name of names) {
    if (name === "__proto__" || isIndexLike(name)) throw ENGINE_ORDERS_NAME;
    const member = record[name];
    // An absent optional member (undefined) is left out, as JSON.stringify does.
    if (member !== undefined) out[name] = sortedCopy(member);
  }
  return out;
}

/** The same form written member by member, for values with names the engine would reorder. */
export function canonicalJsonByParts(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new Error("non-finite number in canonical JSON");
    // undefined (an absent optional member) never reaches here: objects skip it below.
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      out += (i === 0 ? "" : ",") + (item === undefined ? "null" : canonicalJsonByParts(item));
    }
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  const names = Object.keys(record).sort();
  let out = "{";
  for (const name of names) {
    const member = record[name];
    if (member === undefined) continue;
    out += `${out.length === 1 ? "" : ","}${JSON.stringify(name)}:${canonicalJsonByParts(member)}`;
  }
  return `${out}}`;
}
