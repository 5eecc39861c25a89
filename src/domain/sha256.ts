/**
 * SHA-256 (FIPS 180-4) of a string's UTF-8 bytes, as lower-case hex, synchronous and in plain
 * JavaScript. The hash chain hashes every event inside the command's synchronous append, and
 * workerd's node:crypto `hash()` builds a Hash stream object (node's Duplex) around OpenSSL for
 * every call: profiled under the hot-account load it was the largest single cost of a command
 * after SQLite itself. This function allocates only its result: the input is encoded into one
 * reused buffer and the message schedule is one reused Int32Array.
 *
 * It is checked against node:crypto on the NIST vectors and on random inputs of every length
 * around the block boundaries (test/domain/sha256.test.ts); the offline verifier keeps using
 * node:crypto, so an auditor's check never shares this code with the ledger that wrote the chain.
 */

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const encoder = new TextEncoder();
const schedule = new Int32Array(64);
/** The message and its padding; grows (never shrinks) to the longest input seen. */
let bytes = new Uint8Array(4096);

/** Bytes the encoded message with its padding may need: at most 3 UTF-8 bytes per UTF-16 unit. */
const paddedCapacity = (length: number): number => length * 3 + 72;

const hex32 = (x: number): string =>
  (HEX[x >>> 24] as string) +
  (HEX[(x >>> 16) & 0xff] as string) +
  (HEX[(x >>> 8) & 0xff] as string) +
  (HEX[x & 0xff] as string);

export function sha256HexJs(text: string): string {
  const capacity = paddedCapacity(text.length);
  if (bytes.length < capacity) bytes = new Uint8Array(2 ** Math.ceil(Math.log2(capacity)));
  const b = bytes;
  const n = encoder.encodeInto(text, b).written;
  // Padding: 0x80, zeros, then the length in bits as a 64-bit big-endian integer.
  const total = Math.ceil((n + 9) / 64) * 64;
  b[n] = 0x80;
  b.fill(0, n + 1, total - 8);
  const bitsHigh = Math.floor(n / 0x20000000);
  const bitsLow = (n * 8) >>> 0;
  b[total - 8] = bitsHigh >>> 24;
  b[total - 7] = (bitsHigh >>> 16) & 0xff;
  b[total - 6] = (bitsHigh >>> 8) & 0xff;
  b[total - 5] = bitsHigh & 0xff;
  b[total - 4] = bitsLow >>> 24;
  b[total - 3] = (bitsLow >>> 16) & 0xff;
  b[total - 2] = (bitsLow >>> 8) & 0xff;
  b[total - 1] = bitsLow & 0xff;

  const h = state;
  h.set(H0);
  for (let offset = 0; offset < total; offset += 64) compress(b, offset, h);
  return (
    hex32(h[0] as number) +
    hex32(h[1] as number) +
    hex32(h[2] as number) +
    hex32(h[3] as number) +
    hex32(h[4] as number) +
    hex32(h[5] as number) +
    hex32(h[6] as number) +
    hex32(h[7] as number)
  );
}

/** The initial hash value (FIPS 180-4, 5.3.3). */
const H0 = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
/** The running hash value of the message being hashed (reused: the function is synchronous). */
const state = new Int32Array(8);

/** One 64-byte block at `offset` of `b` folded into the hash value `hv` (FIPS 180-4, 6.2.2). */
function compress(b: Uint8Array, offset: number, hv: Int32Array): void {
  const w = schedule;
  for (let i = 0; i < 16; i++) {
    const j = offset + i * 4;
    w[i] = ((b[j] as number) << 24) | ((b[j + 1] as number) << 16) | ((b[j + 2] as number) << 8) | (b[j + 3] as number);
  }
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15] as number;
    const y = w[i - 2] as number;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = ((w[i - 16] as number) + s0 + (w[i - 7] as number) + s1) | 0;
  }
  let a = hv[0] as number;
  let bb = hv[1] as number;
  let c = hv[2] as number;
  let d = hv[3] as number;
  let e = hv[4] as number;
  let f = hv[5] as number;
  let g = hv[6] as number;
  let h = hv[7] as number;
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (h + s1 + ch + (K[i] as number) + (w[i] as number)) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & bb) ^ (a & c) ^ (bb & c);
    const t2 = (s0 + maj) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = bb;
    bb = a;
    a = (t1 + t2) | 0;
  }
  hv[0] = ((hv[0] as number) + a) | 0;
  hv[1] = ((hv[1] as number) + bb) | 0;
  hv[2] = ((hv[2] as number) + c) | 0;
  hv[3] = ((hv[3] as number) + d) | 0;
  hv[4] = ((hv[4] as number) + e) | 0;
  hv[5] = ((hv[5] as number) + f) | 0;
  hv[6] = ((hv[6] as number) + g) | 0;
  hv[7] = ((hv[7] as number) + h) | 0;
}
