// @ts-check
/**
 * The auditor's rules for an archived history (docs/archive.md): sealed segments, each an
 * object of export lines with a manifest entry, then the tail. Plain ESM with JSDoc types, like
 * the verifier core, and independent of the ledger's code.
 *
 * The events themselves are checked by one ChainVerifier fed every segment in seq order, so the
 * hash chain proves continuity across segments; these functions check what a segment adds:
 * its place in the sequence (no segment missing, reordered or repeated), that its object is
 * exactly what its manifest describes (length and SHA-256, nothing cut), and its signed
 * checkpoint. Every failure names the segment and the seq.
 */

import { checkCheckpoint } from "./verifier.mjs";

/** @typedef {import("./verifier.mjs").Failure} Failure */
/** @typedef {import("./verifier.mjs").ChainVerifier} ChainVerifier */
/**
 * @typedef {object} SegmentEntry
 * @property {number} segment
 * @property {string} account_id
 * @property {number} first_seq
 * @property {number} last_seq
 * @property {string} prev_hash
 * @property {string} first_hash
 * @property {string} last_hash
 * @property {number} bytes
 * @property {string} sha256
 * @property {string} object
 * @property {{ checkpoint: Record<string, any>, signature: string }} checkpoint
 */

/** @param {SegmentEntry} entry */
export function segmentName(entry) {
  return `segment ${entry.segment} (seqs ${entry.first_seq}-${entry.last_seq})`;
}

const isSeq = (/** @type {unknown} */ v) => typeof v === "number" && Number.isSafeInteger(v) && v >= 1;

/**
 * Before reading a segment's lines: it must start right after what the verifier has seen and
 * chain from its last hash.
 * @param {SegmentEntry} entry
 * @param {ChainVerifier} verifier
 * @returns {Failure | null}
 */
export function checkSegmentStart(entry, verifier) {
  const expected = verifier.seq + 1;
  const name = segmentName(entry);
  if (!isSeq(entry.first_seq) || !isSeq(entry.last_seq) || entry.last_seq < entry.first_seq) {
    return { seq: expected, reason: `${name}: its manifest entry has no valid seq range` };
  }
  if (entry.first_seq > expected) {
    return {
      seq: expected,
      reason: `${name} starts at seq ${entry.first_seq}: seqs ${expected}-${entry.first_seq - 1} are missing (a segment is missing)`,
    };
  }
  if (entry.first_seq < expected) {
    return {
      seq: entry.first_seq,
      reason: `${name} repeats seqs up to ${verifier.seq} (segments overlap or are out of order)`,
    };
  }
  if (entry.prev_hash !== verifier.hash) {
    return { seq: expected, reason: `${name}: its prev_hash is not the previous segment's last hash` };
  }
  return null;
}

/**
 * After a segment's lines: all of them were there, its bytes are the manifest's, it ends on the
 * manifest's hash, and its checkpoint is signed and matches the history there.
 * @param {SegmentEntry} entry
 * @param {ChainVerifier} verifier
 * @param {{ bytes: number, sha256: string }} read
 * @param {((message: Uint8Array, signature: Uint8Array) => Promise<boolean>) | null} verifySignature
 * @returns {Promise<Failure | null>}
 */
export async function checkSegmentEnd(entry, verifier, read, verifySignature) {
  const name = segmentName(entry);
  if (verifier.seq < entry.last_seq) {
    return { seq: verifier.seq + 1, reason: `${name} ends at seq ${verifier.seq} (truncated)` };
  }
  if (read.bytes !== entry.bytes || read.sha256 !== entry.sha256) {
    return {
      seq: entry.first_seq,
      reason: `${name}: its object's length or SHA-256 differ from its manifest (edited)`,
    };
  }
  if (verifier.hash !== entry.last_hash) {
    return { seq: entry.last_seq, reason: `${name}: its last hash differs from its manifest` };
  }
  if (verifySignature === null) return null;
  const signed = entry.checkpoint;
  if (signed?.checkpoint?.seq !== entry.last_seq) {
    return { seq: entry.last_seq, reason: `${name}: its checkpoint is not at its last seq` };
  }
  const failure = await checkCheckpoint(verifier, signed, verifySignature);
  return failure === null ? null : { seq: failure.seq, reason: `${name}: ${failure.reason}` };
}

/**
 * A line of a segment past its manifest's last seq is an extra line.
 * @param {SegmentEntry} entry
 * @param {ChainVerifier} verifier
 * @returns {Failure | null}
 */
export function checkWithinSegment(entry, verifier) {
  if (verifier.seq < entry.last_seq) return null;
  return { seq: verifier.seq + 1, reason: `${segmentName(entry)} has lines past its last seq ${entry.last_seq}` };
}
