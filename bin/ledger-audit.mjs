#!/usr/bin/env node
// @ts-check
/**
 * ledger-audit: take an account's history out of OpenEdge Ledger and verify it without trusting
 * the running service. Plain Node (>= 20), no dependencies.
 *
 *   ledger-audit export --url URL --account ID [--out FILE] [--checkpoint-out FILE] [--public-key-out FILE]
 *       (the API key comes from $LEDGER_API_KEY)
 *   ledger-audit verify FILE [--checkpoint FILE --public-key KEY|FILE] [--json]
 *   ledger-audit verify DIR|MANIFEST [TAIL] [--public-key KEY|FILE] [--checkpoint FILE] [--json]
 *       (an archived history: sealed segments with their manifest entries, then the tail export;
 *       docs/archive.md)
 *   ledger-audit --help
 *
 * Exit codes: 0 verified, 1 verification failed (the first failing seq and why are printed),
 * 2 usage or I/O error.
 */
import * as nodeCrypto from "node:crypto";
import { createHash, createPublicKey, randomBytes, verify as verifySignature } from "node:crypto";
import {
  createReadStream,
  createWriteStream,
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import { checkSegmentEnd, checkSegmentStart, checkWithinSegment, segmentName } from "../src/audit/segments.mjs";
import { base64UrlDecode, ChainVerifier, checkCheckpoint } from "../src/audit/verifier.mjs";

const USAGE = `usage:
  ledger-audit export --url URL --account ID [--out FILE] [--checkpoint-out FILE] [--public-key-out FILE]
      (API key from the LEDGER_API_KEY environment variable)
  ledger-audit verify FILE [--checkpoint FILE --public-key KEY|FILE] [--json]
  ledger-audit verify DIR|MANIFEST [TAIL] [--public-key KEY|FILE] [--checkpoint FILE] [--json]
      (sealed segments: a directory of *.ndjson objects and *.manifest.json entries, or a
      manifest listing the entries; TAIL is an export holding the events after them, or all)
  ledger-audit --help

exit codes: 0 verified (or exported), 1 verification failed, 2 usage or I/O error`;

class UsageError extends Error {}

/** Bytes read from the export at a time: memory stays flat whatever the file's size. */
const LINE_CHUNK_BYTES = 1 << 16;
/** A segment up to this size is read whole (hashed off this thread); a larger one streams. */
const SEGMENT_READ_BYTES_MAX = 64 * 1024 * 1024;

/** @typedef {import("node:util").ParseArgsOptionsConfig} Options */
/** @typedef {Record<string, string | boolean | undefined>} Values */

/** -h and --help are accepted everywhere. */
const HELP = /** @type {const} */ ({ help: { type: "boolean", short: "h" } });

/** Each command's options: anything else, misspelt flags included, is a usage error. */
const COMMANDS = /** @type {const} */ ({
  export: {
    positionals: false,
    options: {
      url: { type: "string" },
      account: { type: "string" },
      out: { type: "string" },
      "checkpoint-out": { type: "string" },
      "public-key-out": { type: "string" },
    },
  },
  verify: {
    positionals: true,
    options: {
      checkpoint: { type: "string" },
      "public-key": { type: "string" },
      json: { type: "boolean" },
    },
  },
});

/**
 * Parses a command's arguments strictly: unknown or misspelt options, a missing value and an
 * unexpected positional are usage errors.
 * @param {string[]} args
 * @param {Options} options
 * @param {boolean} allowPositionals
 * @returns {{ values: Values, positionals: string[] }}
 */
function parseCommandLine(args, options, allowPositionals) {
  const all = { ...options, ...HELP };
  try {
    const parsed = parseArgs({ args: joinOptionValues(args, all), options: all, strict: true, allowPositionals });
    return { values: /** @type {Values} */ (parsed.values), positionals: parsed.positionals };
  } catch (error) {
    // parseArgs reports bad command lines as errors whose code starts with ERR_PARSE_ARGS_.
    const code = /** @type {{ code?: unknown }} */ (error).code;
    if (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS_")) {
      throw new UsageError(/** @type {Error} */ (error).message);
    }
    throw error;
  }
}

/**
 * Joins a string option and the argument after it (`--public-key X` becomes `--public-key=X`)
 * so that a value starting with "-" is taken as the value, as getopt does: a base64url public
 * key may start with "-", which strict parseArgs would refuse as ambiguous. An argument that is
 * itself one of the options is not joined, so that `--checkpoint --json` is still refused.
 * @param {string[]} args
 * @param {Options} options
 */
function joinOptionValues(args, options) {
  /** @type {string[]} */
  const joined = [];
  for (let i = 0; i < args.length; i++) {
    const arg = /** @type {string} */ (args[i]);
    if (arg === "--") return joined.concat(args.slice(i));
    const next = args[i + 1];
    const isString = arg.startsWith("--") && options[arg.slice(2)]?.type === "string";
    if (isString && next !== undefined && !isOption(next, options)) {
      joined.push(`${arg}=${next}`);
      i++;
    } else joined.push(arg);
  }
  return joined;
}

/** @param {string} arg @param {Options} options */
function isOption(arg, options) {
  if (arg.startsWith("--")) return Object.hasOwn(options, arg.slice(2).split("=", 1)[0] ?? "");
  return arg.length === 2 && arg[0] === "-" && Object.values(options).some((o) => o.short === arg[1]);
}

/** One-shot hashing where Node has it (>= 20.12), else a Hash object per event. */
const oneShot = /** @type {{ hash?: (algorithm: string, data: string, encoding: string) => string }} */ (nodeCrypto)
  .hash;
/** @type {(text: string) => string} */
const sha256Hex = oneShot
  ? (text) => oneShot("sha256", text, "hex")
  : (text) => createHash("sha256").update(text).digest("hex");

/**
 * Accepts the public key as base64url raw Ed25519 bytes, as the JSON that GET /v1/audit/public-key
 * returns, or as a file holding either.
 * @param {string} value
 */
function publicKeyBytes(value) {
  let text = value.trim();
  if (existsSync(text)) text = readFileSync(text, "utf8").trim();
  if (text.startsWith("{")) text = String(JSON.parse(text).public_key ?? "");
  const raw = base64UrlDecode(text);
  if (raw.length !== 32) throw new UsageError("the public key must be 32 bytes of Ed25519, base64url");
  return raw;
}

/** @param {Uint8Array} raw */
function ed25519Verifier(raw) {
  const key = createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw).toString("base64url") },
    format: "jwk",
  });
  return async (/** @type {Uint8Array} */ message, /** @type {Uint8Array} */ signature) =>
    verifySignature(null, message, key, signature);
}

/** @param {Values} values @param {string[]} positionals */
async function verifyCommand(values, positionals) {
  const file = positionals[0];
  if (file === undefined) throw new UsageError("verify needs a file");
  if (isArchive(file)) return verifyArchiveCommand(values, file, positionals.slice(1));
  if (positionals.length > 1) throw new UsageError(`verify takes one file, not ${positionals.length}`);
  const checkpointFile = typeof values.checkpoint === "string" ? values.checkpoint : undefined;
  const publicKey = typeof values["public-key"] === "string" ? values["public-key"] : undefined;
  if (checkpointFile !== undefined && publicKey === undefined) {
    throw new UsageError("--checkpoint needs --public-key (get it from GET /v1/audit/public-key, out of band)");
  }
  if (publicKey !== undefined && checkpointFile === undefined) {
    throw new UsageError("--public-key needs --checkpoint (the key checks a checkpoint's signature)");
  }
  const signed = checkpointFile === undefined ? null : JSON.parse(readFileSync(checkpointFile, "utf8"));
  const verifier = new ChainVerifier({ sha256Hex });
  if (signed !== null) verifier.watch(Number(signed.checkpoint?.seq));

  let failure = await verifyFile(file, verifier);
  if (failure === null && verifier.summary().events === 0) {
    // An empty file would otherwise "verify": it proves nothing about any account.
    failure = { seq: 1, reason: "the file holds no events (an empty export verifies nothing)" };
  }
  if (failure === null && signed !== null && publicKey !== undefined) {
    failure = await checkCheckpoint(verifier, signed, ed25519Verifier(publicKeyBytes(publicKey)));
  }
  printVerdict(failure, verifier.summary(), signed, values.json === true);
  return failure === null ? 0 : 1;
}

/**
 * Streams a file's lines to `consume` (split by hand in large chunks: readline costs a third of
 * the time) until it returns a failure; `onChunk` sees the raw bytes (to hash a segment).
 * @param {string} file
 * @param {(line: string, lineNo: number) => Failure | null} consume
 * @param {(chunk: Buffer) => void} [onChunk]
 * @returns {Promise<Failure | null>}
 */
function streamFile(file, consume, onChunk) {
  return streamLines(createReadStream(file, { highWaterMark: LINE_CHUNK_BYTES }), consume, onChunk);
}

/**
 * The lines of a sequence of chunks, to `consume`, until it returns a failure.
 * @param {AsyncIterable<any> | Iterable<Uint8Array>} chunks
 * @param {(line: string, lineNo: number) => Failure | null} consume
 * @param {(chunk: Buffer) => void} [onChunk]
 * @returns {Promise<Failure | null>}
 */
async function streamLines(chunks, consume, onChunk) {
  let lineNo = 0;
  /** @type {Failure | null} */
  let failure = null;
  let pending = "";
  const decoder = new TextDecoder();
  for await (const chunk of chunks) {
    onChunk?.(/** @type {Buffer} */ (chunk));
    pending += decoder.decode(/** @type {Buffer} */ (chunk), { stream: true });
    let start = 0;
    for (let end = pending.indexOf("\n"); end !== -1 && failure === null; end = pending.indexOf("\n", start)) {
      failure = consume(pending.slice(start, end), ++lineNo);
      start = end + 1;
    }
    pending = pending.slice(start);
    if (failure !== null) return failure;
  }
  pending += decoder.decode();
  return pending.length > 0 ? consume(pending, ++lineNo) : null;
}

/** @param {Uint8Array} bytes */
function* chunksOf(bytes) {
  for (let at = 0; at < bytes.length; at += LINE_CHUNK_BYTES) yield bytes.subarray(at, at + LINE_CHUNK_BYTES);
}

/** @typedef {import("../src/audit/verifier.mjs").Failure} Failure */

/**
 * One line into the verifier (blank lines are skipped); `skipThrough` skips the events an
 * archive already verified, the last of which must carry `linkHash`.
 * @param {ChainVerifier} verifier
 * @param {string} line
 * @param {number} lineNo
 * @returns {Failure | null}
 */
function pushLine(verifier, line, lineNo, skipThrough = 0, linkHash = "") {
  if (line.length === 0 || (line.charCodeAt(0) <= 32 && line.trim() === "")) return null;
  let event;
  try {
    event = JSON.parse(line);
  } catch {
    return { seq: verifier.summary().head_seq + 1, reason: `line ${lineNo} is not valid JSON` };
  }
  if (skipThrough > 0 && typeof event?.seq === "number" && event.seq <= skipThrough) {
    if (event.seq !== skipThrough || event.hash === linkHash) return null;
    return { seq: event.seq, reason: "the tail's event at the last archived seq differs from the archive's" };
  }
  return verifier.push(event, line);
}

/**
 * Streams the file through the verifier; returns the first failure, or null.
 * @param {string} file
 * @param {ChainVerifier} verifier
 * @returns {Promise<Failure | null>}
 */
function verifyFile(file, verifier, skipThrough = 0, linkHash = "") {
  return streamFile(file, (line, lineNo) => pushLine(verifier, line, lineNo, skipThrough, linkHash));
}

/** A directory of segments, or a manifest (JSON), rather than one export. @param {string} path */
function isArchive(path) {
  return (existsSync(path) && statSync(path).isDirectory()) || path.endsWith(".json");
}

/**
 * The manifest entries of an archived history, in seq order, each with its object's file: the
 * `*.manifest.json` files of a directory (as the bucket holds them), or a manifest file (a JSON
 * array of entries, or one entry per line). Objects are found by their key's last part, next to
 * the entries.
 * @param {string} target
 * @returns {{ entry: import("../src/audit/segments.mjs").SegmentEntry, file: string }[]}
 */
function loadSegments(target) {
  /** @type {any[]} */
  let entries;
  let base = target;
  if (statSync(target).isDirectory()) {
    entries = readdirSync(target)
      .filter((name) => name.endsWith(".manifest.json"))
      .map((name) => JSON.parse(readFileSync(join(target, name), "utf8")));
  } else {
    base = dirname(target);
    const text = readFileSync(target, "utf8").trim();
    entries = text.startsWith("[")
      ? JSON.parse(text)
      : text
          .split("\n")
          .filter((l) => l.trim() !== "")
          .map((l) => JSON.parse(l));
  }
  entries.sort((a, b) => Number(a?.first_seq) - Number(b?.first_seq));
  return entries.map((entry) => ({ entry, file: join(base, basename(String(entry?.object ?? ""))) }));
}

/**
 * Verifies one segment's object against its entry, continuing the chain of the ones before it.
 * @param {{ entry: import("../src/audit/segments.mjs").SegmentEntry, file: string }} segment
 * @param {ChainVerifier} verifier
 * @param {((message: Uint8Array, signature: Uint8Array) => Promise<boolean>) | null} keyCheck
 * @returns {Promise<Failure | null>}
 */
async function verifySegment({ entry, file }, verifier, keyCheck) {
  const start = checkSegmentStart(entry, verifier);
  if (start !== null) return start;
  if (!existsSync(file)) {
    return { seq: entry.first_seq, reason: `${segmentName(entry)}: its object ${basename(file)} is missing` };
  }
  verifier.watch(entry.last_seq);
  const consume = (/** @type {string} */ line, /** @type {number} */ lineNo) =>
    checkWithinSegment(entry, verifier) ?? pushLine(verifier, line, lineNo);
  const read = await readSegment(file, consume);
  if (read.failure !== null) {
    const failure = read.failure;
    const named = failure.reason.startsWith("segment ") ? failure.reason : `${segmentName(entry)}: ${failure.reason}`;
    return { seq: failure.seq, reason: named };
  }
  return checkSegmentEnd(entry, verifier, { bytes: read.bytes, sha256: read.sha256 }, keyCheck);
}

/**
 * A segment's lines to `consume`, and its length and SHA-256, from one read of its bytes. A
 * segment up to SEGMENT_READ_BYTES_MAX is read whole and its digest computed on the thread pool
 * (WebCrypto) while this thread parses the same bytes, so the hash costs no time here; a larger
 * file (no segment the ledger writes is: SEGMENT_BYTES_MAX is 8 MiB) streams, hashed as it goes.
 * @param {string} file
 * @param {(line: string, lineNo: number) => Failure | null} consume
 * @returns {Promise<{ failure: Failure | null, bytes: number, sha256: string }>}
 */
async function readSegment(file, consume) {
  if (statSync(file).size > SEGMENT_READ_BYTES_MAX) {
    const hash = createHash("sha256");
    let bytes = 0;
    const failure = await streamFile(file, consume, (chunk) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    return { failure, bytes, sha256: hash.digest("hex") };
  }
  const data = await readFile(file);
  const digest = globalThis.crypto.subtle.digest("SHA-256", data);
  const failure = await streamLines(chunksOf(data), consume);
  const sha256 = Buffer.from(await digest).toString("hex");
  return { failure, bytes: data.length, sha256 };
}

/**
 * `verify DIR|MANIFEST [TAIL]`: every segment in seq order through one verifier (the chain
 * proves continuity across them), each checked against its entry and its signed checkpoint,
 * then the tail, then an optional final checkpoint.
 * @param {Values} values
 * @param {string} target
 * @param {string[]} rest
 */
async function verifyArchiveCommand(values, target, rest) {
  if (rest.length > 1) throw new UsageError("verify takes a directory or manifest and at most one tail export");
  const tail = rest[0];
  const publicKey = typeof values["public-key"] === "string" ? values["public-key"] : undefined;
  const checkpointFile = typeof values.checkpoint === "string" ? values.checkpoint : undefined;
  if (checkpointFile !== undefined && publicKey === undefined) throw new UsageError("--checkpoint needs --public-key");
  const keyCheck = publicKey === undefined ? null : ed25519Verifier(publicKeyBytes(publicKey));
  const signed = checkpointFile === undefined ? null : JSON.parse(readFileSync(checkpointFile, "utf8"));
  const segments = loadSegments(target);
  const verifier = new ChainVerifier({ sha256Hex });
  if (signed !== null) verifier.watch(Number(signed.checkpoint?.seq));
  /** @type {Failure | null} */
  let failure = segments.length === 0 ? { seq: 1, reason: `no manifest entries in ${target}` } : null;
  for (const segment of segments) {
    failure = await verifySegment(segment, verifier, keyCheck);
    if (failure !== null) break;
  }
  const last = segments.at(-1)?.entry;
  if (failure === null && tail !== undefined && last !== undefined) {
    failure = await verifyFile(tail, verifier, last.last_seq, last.last_hash);
  }
  if (failure === null && signed !== null && keyCheck !== null)
    failure = await checkCheckpoint(verifier, signed, keyCheck);
  const archive = {
    segments: segments.length,
    archived_through: last?.last_seq ?? 0,
    checkpoints: keyCheck === null ? "not checked (no --public-key)" : "signed and valid",
    tail: tail ?? null,
  };
  printVerdict(failure, verifier.summary(), signed, values.json === true, archive);
  return failure === null ? 0 : 1;
}

/**
 * @param {import("../src/audit/verifier.mjs").Failure | null} failure
 * @param {import("../src/audit/verifier.mjs").Summary} summary
 * @param {{ checkpoint?: Record<string, any> } | null} signed
 * @param {boolean} json
 * @param {{ segments: number, archived_through: number, checkpoints: string, tail: string | null } | null} [archive]
 */
function printVerdict(failure, summary, signed, json, archive = null) {
  if (json) {
    const verdict = { ok: failure === null, failure, summary, checkpoint: signed?.checkpoint ?? null };
    console.log(JSON.stringify(archive === null ? verdict : { ...verdict, archive }));
  } else if (failure === null) {
    console.log(`OK ${summary.events} events, account ${summary.account_id} (${summary.currency})`);
    console.log(`balance ${summary.balance}  reserved ${summary.reserved}  available ${summary.available}`);
    console.log(`head seq ${summary.head_seq}  head hash ${summary.head_hash}`);
    if (archive !== null) {
      const through = `${archive.segments} segments through seq ${archive.archived_through}`;
      console.log(`${through}, their checkpoints ${archive.checkpoints}; tail ${archive.tail ?? "not given"}`);
    }
    if (signed !== null) console.log(`checkpoint at seq ${signed.checkpoint?.seq}: signature valid, history matches`);
  } else {
    console.log(`FAIL at seq ${failure.seq}: ${failure.reason}`);
    console.log(`verified ${summary.events} events before it (head hash ${summary.head_hash})`);
  }
}

/**
 * Files written under temporary names in their final directories (so that a rename is atomic),
 * and renamed into place only once every one of them is complete: a failed export leaves no
 * partial file, nor a checkpoint without its export, under the final names.
 */
class StagedFiles {
  constructor() {
    /** Final name -> temporary name, in the order they are renamed. @type {Map<string, string>} */
    this.files = new Map();
  }

  /** @param {string} path @returns {string} the temporary name to write instead */
  add(path) {
    const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
    this.files.set(path, temporary);
    return temporary;
  }

  commit() {
    for (const [path, temporary] of this.files) renameSync(temporary, path);
    this.files.clear();
  }

  /** Removes whatever was not committed; a no-op after commit. */
  discard() {
    for (const temporary of this.files.values()) rmSync(temporary, { force: true });
    this.files.clear();
  }
}

/** @param {Values} values */
async function exportCommand(values) {
  const base = typeof values.url === "string" ? values.url.replace(/\/+$/, "") : undefined;
  const account = typeof values.account === "string" ? values.account : undefined;
  const key = process.env.LEDGER_API_KEY;
  if (base === undefined || account === undefined) throw new UsageError("export needs --url and --account");
  if (key === undefined || key === "") throw new UsageError("set LEDGER_API_KEY to an API key with audit access");
  const headers = { authorization: `Bearer ${key}` };
  const id = encodeURIComponent(account);
  const get = async (/** @type {string} */ path) => {
    const response = await fetch(`${base}${path}`, { headers });
    if (!response.ok) throw new Error(`GET ${path} answered ${response.status}: ${await response.text()}`);
    return response;
  };
  const out = typeof values.out === "string" ? values.out : `${account}.ndjson`;
  const checkpointOut =
    typeof values["checkpoint-out"] === "string" ? values["checkpoint-out"] : `${account}.checkpoint.json`;
  const publicKeyOut = typeof values["public-key-out"] === "string" ? values["public-key-out"] : undefined;
  const staged = new StagedFiles();
  // The export is renamed first: should the checkpoint's rename then fail, an older checkpoint
  // next to a newer export still verifies, while the reverse would look truncated.
  const outTemporary = staged.add(out);
  const checkpointTemporary = staged.add(checkpointOut);
  const publicKeyTemporary = publicKeyOut === undefined ? undefined : staged.add(publicKeyOut);
  try {
    // The checkpoint first: the export then covers at least everything it signs.
    const checkpoint = await (await get(`/v1/accounts/${id}/checkpoint`)).json();
    writeFileSync(checkpointTemporary, `${JSON.stringify(checkpoint, null, 2)}\n`, { flag: "wx" });
    if (publicKeyTemporary !== undefined) {
      const publicKey = await (await get("/v1/audit/public-key")).json();
      writeFileSync(publicKeyTemporary, `${JSON.stringify(publicKey, null, 2)}\n`, { flag: "wx" });
    }
    const exported = await get(`/v1/accounts/${id}/events/export`);
    if (exported.body === null) throw new Error("the export has no body");
    await pipeline(
      Readable.fromWeb(/** @type {any} */ (exported.body)),
      createWriteStream(outTemporary, { flags: "wx" }),
    );
    staged.commit();
    console.log(`exported ${out} and ${checkpointOut} (checkpoint seq ${checkpoint.checkpoint?.seq})`);
  } finally {
    staged.discard();
  }
  return 0;
}

/** @param {string[]} argv the arguments after the script's name */
async function main(argv) {
  const [command, ...rest] = argv;
  if (command === "--help" || command === "-h") {
    console.log(USAGE);
    return 0;
  }
  if (command === undefined) throw new UsageError("no command");
  if (command !== "verify" && command !== "export") throw new UsageError(`unknown command ${command}`);
  const spec = COMMANDS[command];
  const { values, positionals } = parseCommandLine(rest, spec.options, spec.positionals);
  if (values.help === true) {
    console.log(USAGE);
    return 0;
  }
  return command === "verify" ? verifyCommand(values, positionals) : exportCommand(values);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(error instanceof UsageError ? `${error.message}\n${USAGE}` : `error: ${error.message}`);
    process.exitCode = 2;
  },
);
