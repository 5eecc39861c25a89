// @ts-check
/**
 * Compact memory for the offline verifier: ids as 64-bit fingerprints in open-addressing tables
 * of typed arrays (16 bytes per id at most half full, plus 8 bytes per numeric value), instead
 * of JavaScript Sets and Maps (hundreds of bytes per entry).
 *
 * A fingerprint collision can only make the verifier report a failure that is not there (an id
 * "reused"); it can never let a broken history pass. With n ids the chance of any collision is
 * about n² / 2^65: under 1e-7 for a million ids.
 */

/**
 * Two 32-bit hashes of the string's UTF-16 code units (FNV-1a and a murmur-style mix).
 * @param {string} text
 * @returns {[number, number]}
 */
export function fingerprint(text) {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 13;
  }
  b = Math.imul(b ^ (b >>> 15), 0x27d4eb2d) ^ text.length;
  // 0/0 marks an empty slot.
  if (a === 0 && b === 0) a = 1;
  return [a >>> 0, b >>> 0];
}

const INITIAL_CAPACITY = 1 << 10;

export class FingerprintTable {
  /** @param {number} lanes numeric values stored per entry */
  constructor(lanes = 0) {
    this.lanes = lanes;
    this.size = 0;
    this.mask = 0;
    this.hi = new Uint32Array(0);
    this.lo = new Uint32Array(0);
    this.values = new Float64Array(0);
    this.allocate(INITIAL_CAPACITY);
  }

  /** @param {number} capacity */
  allocate(capacity) {
    this.mask = capacity - 1;
    this.hi = new Uint32Array(capacity);
    this.lo = new Uint32Array(capacity);
    this.values = new Float64Array(capacity * Math.max(this.lanes, 1));
  }

  /** The slot of `text`'s fingerprint: where it is, or the empty slot where it would go. @param {number} a @param {number} b */
  slot(a, b) {
    let i = (a ^ Math.imul(b, 0x9e3779b1)) & this.mask;
    for (;;) {
      const h = this.hi[i];
      const l = this.lo[i];
      if ((h === 0 && l === 0) || (h === a && l === b)) return i;
      i = (i + 1) & this.mask;
    }
  }

  /** @param {string} text */
  has(text) {
    const [a, b] = fingerprint(text);
    const i = this.slot(a, b);
    return this.hi[i] === a && this.lo[i] === b;
  }

  /** Adds `text`; false if it was there already. @param {string} text @param {number[]} [values] */
  add(text, values = []) {
    const [a, b] = fingerprint(text);
    let i = this.slot(a, b);
    if (this.hi[i] === a && this.lo[i] === b) return false;
    if ((this.size + 1) * 2 > this.mask + 1) {
      this.grow();
      i = this.slot(a, b);
    }
    this.hi[i] = a;
    this.lo[i] = b;
    for (let lane = 0; lane < this.lanes; lane++) this.values[i * this.lanes + lane] = values[lane] ?? 0;
    this.size++;
    return true;
  }

  /** The entry's values, or null if absent. @param {string} text */
  get(text) {
    const [a, b] = fingerprint(text);
    const i = this.slot(a, b);
    if (this.hi[i] !== a || this.lo[i] !== b) return null;
    return {
      index: i,
      values: Array.from({ length: this.lanes }, (_, lane) => this.values[i * this.lanes + lane] ?? 0),
    };
  }

  /** @param {number} index @param {number} lane @param {number} value */
  setValue(index, lane, value) {
    this.values[index * this.lanes + lane] = value;
  }

  grow() {
    const { hi, lo, values, lanes } = this;
    const old = this.mask + 1;
    this.allocate(old * 2);
    for (let j = 0; j < old; j++) {
      const a = /** @type {number} */ (hi[j]);
      const b = /** @type {number} */ (lo[j]);
      if (a === 0 && b === 0) continue;
      const i = this.slot(a, b);
      this.hi[i] = a;
      this.lo[i] = b;
      for (let lane = 0; lane < lanes; lane++) this.values[i * lanes + lane] = values[j * lanes + lane] ?? 0;
    }
  }
}
