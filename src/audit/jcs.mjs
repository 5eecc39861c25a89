// @ts-check
/**
 * RFC 8785 (JCS) canonical JSON for the offline verifier. It is written apart from the ledger's
 * own src/domain/canonical.ts on purpose: the verifier re-implements the published rules so that
 * a bug in the ledger is not mirrored here. It is plain ESM JavaScript so that the CLI runs on
 * Node with no build step.
 */

/** Serialised member names: events repeat the same few dozen, so each is escaped once. */
const memberNames = new Map();
const MEMBER_NAMES_CACHED_MAX = 10_000;

/**
 * RFC 8785 (JCS) canonical JSON for the values a ledger event holds: object members sorted by
 * the UTF-16 code units of their names, no insignificant white space, JSON string escaping,
 * numbers in ECMAScript shortest form. `omit` leaves out one member of the top-level object
 * (the event's own "hash").
 * @param {unknown} value
 * @param {string} [omit]
 * @returns {string}
 */
export function canonicalize(value, omit) {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error("non-finite number");
    return String(value);
  }
  if (value === null || typeof value !== "object") {
    if (value === undefined || typeof value === "function" || typeof value === "symbol" || typeof value === "bigint") {
      throw new Error(`cannot canonicalize a ${typeof value}`);
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) out += (i === 0 ? "" : ",") + canonicalize(value[i]);
    return `${out}]`;
  }
  const record = /** @type {Record<string, unknown>} */ (value);
  // The default sort compares UTF-16 code units: exactly JCS's member order.
  const keys = Object.keys(record).sort();
  let out = "{";
  let first = true;
  for (const key of keys) {
    const member = record[key];
    if (member === undefined || key === omit) continue;
    let name = memberNames.get(key);
    if (name === undefined) {
      name = `${JSON.stringify(key)}:`;
      if (memberNames.size < MEMBER_NAMES_CACHED_MAX) memberNames.set(key, name);
    }
    out += (first ? "" : ",") + name + canonicalize(member);
    first = false;
  }
  return `${out}}`;
}
