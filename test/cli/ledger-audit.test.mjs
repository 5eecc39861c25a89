// @ts-check
/**
 * The offline verifier as auditors run it: plain Node, a real process, files on disk.
 * Histories are written here by hand (not by the ledger), chained with the published
 * algorithm, and signed with a key made for the test.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, generateKeyPairSync, sign } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { canonicalize } from "../../src/audit/verifier.mjs";

const run = promisify(execFile);
const CLI = new URL("../../bin/ledger-audit.mjs", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "ledger-audit-"));

/** @param {string[]} args @param {Record<string, string>} [env] added to this process's environment */
async function audit(args, env = {}) {
  try {
    const { stdout } = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout };
  } catch (error) {
    const e = /** @type {{ code: number, stdout: string, stderr: string }} */ (error);
    return { code: e.code, stdout: e.stdout + e.stderr };
  }
}

/** Builds a chained history: open, credit, reserve, capture, charge, refund, `credits` more credits; `edit` may change the bodies before they are chained. */
function history(credits = 0, edit = (/** @type {Record<string, unknown>[]} */ _bodies) => {}) {
  /** @type {Record<string, unknown>[]} */
  const bodies = [
    { type: "AccountOpened", account_id: "acct_cli", currency: "USD", credit_limit: 0, metadata: {} },
    { type: "FundsCredited", credit_id: "c0", amount: 1000, reason: null, metadata: {}, d: [1000, 0] },
    {
      type: "FundsReserved",
      reservation_id: "r1",
      amount: 300,
      ttl_seconds: 900,
      expires_at: "2026-11-28T12:15:00.000Z",
      on_expiry: "release",
      context: {},
      metadata: {},
      d: [0, 300],
    },
    {
      type: "ReservationCaptured",
      reservation_id: "r1",
      reserved_amount: 300,
      amount: 120,
      released_amount: 180,
      overage: 0,
      allow_overage: false,
      context: {},
      usage: {},
      metadata: {},
      d: [-120, -300],
    },
    { type: "AccountCharged", charge_id: "ch1", amount: 50, context: {}, metadata: {}, d: [-50, 0] },
    {
      type: "ChargeRefunded",
      refund_id: "f1",
      charge_id: "r1",
      amount: 20,
      reason: null,
      charge_amount: 120,
      charge_refunded_total: 20,
      d: [20, 0],
    },
  ];
  for (let i = 1; i <= credits; i++) {
    bodies.push({ type: "FundsCredited", credit_id: `c${i}`, amount: 1, reason: null, metadata: {}, d: [1, 0] });
  }
  edit(bodies);
  let prev = "0".repeat(64);
  let balance = 0;
  let reserved = 0;
  return bodies.map((b, i) => {
    const { d, ...body } = b;
    const [db, dr] = /** @type {[number, number]} */ (d ?? [0, 0]);
    balance += db;
    reserved += dr;
    const event = {
      ...body,
      seq: i + 1,
      event_id: `ev${i + 1}`,
      at: "2026-11-28T12:00:00.000Z",
      balance_after: balance,
      reserved_after: reserved,
    };
    prev = createHash("sha256")
      .update(prev + canonicalize(event))
      .digest("hex");
    return { ...event, hash: prev };
  });
}

/** @param {string} name @param {Record<string, unknown>[]} events */
function writeNdjson(name, events) {
  const file = join(dir, name);
  writeFileSync(file, events.map((e) => `${JSON.stringify(e)}\n`).join(""));
  return file;
}

const keys = generateKeyPairSync("ed25519");
const publicKey = /** @type {string} */ (keys.publicKey.export({ format: "jwk" }).x);

/** @param {Record<string, unknown>[]} events @param {number} seq */
function checkpointFile(events, seq, tamper = {}) {
  const e = /** @type {Record<string, any>} */ (events[seq - 1]);
  const checkpoint = {
    account_id: "acct_cli",
    seq,
    head_hash: e.hash,
    balance: e.balance_after,
    reserved: e.reserved_after,
    at: "2026-11-28T13:00:00.000Z",
  };
  const signature = sign(null, Buffer.from(canonicalize(checkpoint)), keys.privateKey).toString("base64url");
  const file = join(dir, `checkpoint-${seq}-${Object.keys(tamper).length}.json`);
  writeFileSync(file, JSON.stringify({ checkpoint: { ...checkpoint, ...tamper }, algorithm: "Ed25519", signature }));
  return file;
}

test("verifies a good export and prints its summary", async () => {
  const result = await audit(["verify", writeNdjson("good.ndjson", history())]);
  assert.equal(result.code, 0, result.stdout);
  assert.match(result.stdout, /^OK 6 events, account acct_cli \(USD\)/);
  assert.match(result.stdout, /balance 850 {2}reserved 0 {2}available 850/);
});

test("prints a JSON verdict on request", async () => {
  const result = await audit(["verify", writeNdjson("good-json.ndjson", history()), "--json"]);
  const verdict = JSON.parse(result.stdout);
  assert.equal(verdict.ok, true);
  assert.equal(verdict.summary.head_seq, 6);
});

test("fails naming the first bad seq and why", async () => {
  const events = history();
  const tampered = events.map((e) => (e.seq === 4 ? { ...e, amount: 119 } : e));
  const result = await audit(["verify", writeNdjson("tampered.ndjson", tampered)]);
  assert.equal(result.code, 1);
  assert.match(result.stdout, /FAIL at seq 4: hash does not chain/);
  const gap = await audit([
    "verify",
    writeNdjson(
      "gap.ndjson",
      events.filter((e) => e.seq !== 3),
    ),
  ]);
  assert.equal(gap.code, 1);
  assert.match(gap.stdout, /FAIL at seq 3: expected seq 3, found seq 4/);
});

test("checks a signed checkpoint: valid, truncated, forged, wrong key", async () => {
  const events = history();
  const file = writeNdjson("cp.ndjson", events);
  const ok = await audit(["verify", file, "--checkpoint", checkpointFile(events, 6), "--public-key", publicKey]);
  assert.equal(ok.code, 0, ok.stdout);
  assert.match(ok.stdout, /checkpoint at seq 6: signature valid/);

  const truncated = writeNdjson("cp-truncated.ndjson", events.slice(0, 4));
  const cut = await audit(["verify", truncated, "--checkpoint", checkpointFile(events, 6), "--public-key", publicKey]);
  assert.equal(cut.code, 1);
  assert.match(cut.stdout, /FAIL at seq 6: .*truncated/);

  const forged = checkpointFile(events, 6, { balance: 999999 });
  const bad = await audit(["verify", file, "--checkpoint", forged, "--public-key", publicKey]);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /signature is not valid/);

  const other = /** @type {string} */ (generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" }).x);
  const wrong = await audit(["verify", file, "--checkpoint", checkpointFile(events, 6), "--public-key", other]);
  assert.equal(wrong.code, 1);
});

test("streams a long export", async () => {
  const events = history(20_000);
  const result = await audit(["verify", writeNdjson("long.ndjson", events)]);
  assert.equal(result.code, 0, result.stdout);
  assert.match(result.stdout, /^OK 20006 events/);
  assert.match(result.stdout, /balance 20850/);
});

test("answers usage errors with exit code 2", async () => {
  assert.equal((await audit([])).code, 2);
  assert.equal((await audit(["verify"])).code, 2);
  const needsKey = await audit(["verify", writeNdjson("k.ndjson", history()), "--checkpoint", "x.json"]);
  assert.equal(needsKey.code, 2);
});

/**
 * Serves the ledger's audit endpoints for `events` on a local port while `body` runs. With
 * `cutExport`, the export stream sends its first lines and then the connection drops.
 * @param {Record<string, unknown>[]} events
 * @param {{ cutExport?: boolean }} options
 * @param {(url: string, seen: string[]) => Promise<void>} body
 */
async function withLedgerServer(events, options, body) {
  const checkpoint = JSON.parse(readFileSync(checkpointFile(events, events.length), "utf8"));
  /** @type {string[]} */
  const seen = [];
  const server = createServer((req, res) => {
    seen.push(`${req.url} ${req.headers.authorization}`);
    if (req.headers.authorization !== "Bearer k-123") return void res.writeHead(401).end();
    if (req.url === "/v1/accounts/acct_cli/checkpoint") return void res.end(JSON.stringify(checkpoint));
    if (req.url === "/v1/audit/public-key") {
      return void res.end(JSON.stringify({ algorithm: "Ed25519", key_id: "k", public_key: publicKey }));
    }
    if (req.url === "/v1/accounts/acct_cli/events/export") {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      if (options.cutExport) {
        // The first lines reach the client before the connection drops, so a partial file would exist.
        return void res.write(`${JSON.stringify(events[0])}\n`, () => setTimeout(() => res.socket?.destroy(), 50));
      }
      for (const e of events) res.write(`${JSON.stringify(e)}\n`);
      return void res.end();
    }
    res.writeHead(404).end();
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  const address = /** @type {import("node:net").AddressInfo} */ (server.address());
  try {
    await body(`http://127.0.0.1:${address.port}`, seen);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

/** The export command's arguments, writing every output into `into`. @param {string} url @param {string} into */
function exportArgs(url, into) {
  return [
    "export",
    "--url",
    url,
    "--account",
    "acct_cli",
    "--out",
    join(into, "exported.ndjson"),
    "--checkpoint-out",
    join(into, "exported.checkpoint.json"),
    "--public-key-out",
    join(into, "exported.public-key.json"),
  ];
}

test("exports through the API, then verifies what it downloaded", async () => {
  const events = history(3);
  const into = mkdtempSync(join(dir, "export-"));
  await withLedgerServer(events, {}, async (url, seen) => {
    const exported = await audit(exportArgs(url, into), { LEDGER_API_KEY: "k-123" });
    assert.equal(exported.code, 0, exported.stdout);
    const out = join(into, "exported.ndjson");
    const cp = join(into, "exported.checkpoint.json");
    const pk = join(into, "exported.public-key.json");
    const verified = await audit(["verify", out, "--checkpoint", cp, "--public-key", pk]);
    assert.equal(verified.code, 0, verified.stdout);
    assert.match(verified.stdout, /OK 9 events/);
    assert.ok(seen.every((line) => line.endsWith("Bearer k-123")));
    // Only the final names remain: the temporary files were renamed, not copied.
    assert.deepEqual(readdirSync(into).sort(), [
      "exported.checkpoint.json",
      "exported.ndjson",
      "exported.public-key.json",
    ]);
  });
});

test("a failed export leaves no file under the final names, and no temporary file", async () => {
  const into = mkdtempSync(join(dir, "export-cut-"));
  await withLedgerServer(history(3), { cutExport: true }, async (url) => {
    const exported = await audit(exportArgs(url, into), { LEDGER_API_KEY: "k-123" });
    assert.equal(exported.code, 2, exported.stdout);
    assert.match(exported.stdout, /^error: /m);
    assert.deepEqual(readdirSync(into), []);
  });
});

test("checks exports in the ledger's own line form (canonical, hash last) over the lines' bytes", async () => {
  const events = history(50);
  /** @param {Record<string, unknown>} e */
  const canonicalLine = (e) => {
    const { hash, ...rest } = e;
    return `${canonicalize(rest).slice(0, -1)},"hash":"${hash}"}`;
  };
  const lines = events.map(canonicalLine);
  const good = join(dir, "canonical.ndjson");
  writeFileSync(good, `${lines.join("\n")}\n`);
  const ok = await audit(["verify", good]);
  assert.equal(ok.code, 0, ok.stdout);
  assert.match(ok.stdout, /^OK 56 events/);
  // The same bytes with one amount changed: the fast path must not let it through.
  const tampered = join(dir, "canonical-tampered.ndjson");
  writeFileSync(
    tampered,
    `${lines.map((l, i) => (i === 9 ? l.replace('"amount":1,', '"amount":2,') : l)).join("\n")}\n`,
  );
  const bad = await audit(["verify", tampered]);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /FAIL at seq 10: hash does not chain/);
});

test("catches a reused id (remembered as a fingerprint, not as the string)", async () => {
  // A correctly chained history whose last credit reuses the id of the first.
  const reused = history(3, (bodies) => {
    const last = bodies.at(-1);
    if (last) last.credit_id = "c0";
  });
  const result = await audit(["verify", writeNdjson("reused.ndjson", reused)]);
  assert.equal(result.code, 1);
  assert.match(result.stdout, /FAIL at seq 9: credit_id c0 applied twice/);
});

test("--help and -h print the usage and exit 0, alone or after a command", async () => {
  for (const args of [["--help"], ["-h"], ["verify", "--help"], ["export", "-h"]]) {
    const result = await audit(args);
    assert.equal(result.code, 0, `${args.join(" ")}: ${result.stdout}`);
    assert.match(result.stdout, /^usage:\n {2}ledger-audit export /);
  }
});

test("refuses an unknown or misspelt option instead of ignoring it", async () => {
  const events = history();
  const file = writeNdjson("strict.ndjson", events);
  // Misspelt: the checkpoint would silently go unchecked and the run would print OK.
  const misspelt = await audit(["verify", file, "--checkpont", checkpointFile(events, 6), "--public-key", publicKey]);
  assert.equal(misspelt.code, 2, misspelt.stdout);
  assert.match(misspelt.stdout, /--checkpont/);
  assert.doesNotMatch(misspelt.stdout, /^OK/m);
  // Another command's option, a value given to a flag, a second file: each is a usage error too.
  for (const args of [
    ["verify", file, "--url", "http://example.test"],
    ["verify", file, "--json=yes"],
    ["verify", file, file],
    ["verify", file, "--checkpoint"],
  ]) {
    const result = await audit(args);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stdout}`);
    assert.match(result.stdout, /usage:/);
  }
});

test("an empty file, or one without events, fails instead of verifying", async () => {
  for (const [name, text] of [
    ["empty.ndjson", ""],
    ["blank.ndjson", "\n  \n\n"],
  ]) {
    const file = join(dir, name);
    writeFileSync(file, text);
    const result = await audit(["verify", file]);
    assert.equal(result.code, 1, `${name}: ${result.stdout}`);
    assert.match(result.stdout, /^FAIL at seq 1: the file holds no events/);
    const verdict = JSON.parse((await audit(["verify", file, "--json"])).stdout);
    assert.equal(verdict.ok, false);
  }
});

test("--public-key without --checkpoint is a usage error", async () => {
  const result = await audit(["verify", writeNdjson("key-only.ndjson", history()), "--public-key", publicKey]);
  assert.equal(result.code, 2, result.stdout);
  assert.match(result.stdout, /--public-key needs --checkpoint/);
});

test("takes a base64url public key that starts with '-' as the option's value", async () => {
  // Strict option parsing would otherwise read such a key as an unknown option; about 1 key in 64 starts so.
  let pair = generateKeyPairSync("ed25519");
  while (!String(pair.publicKey.export({ format: "jwk" }).x).startsWith("-")) pair = generateKeyPairSync("ed25519");
  const key = String(pair.publicKey.export({ format: "jwk" }).x);
  const events = history();
  const e = /** @type {Record<string, any>} */ (events[5]);
  const checkpoint = {
    account_id: "acct_cli",
    seq: 6,
    head_hash: e.hash,
    balance: e.balance_after,
    reserved: e.reserved_after,
    at: "2026-11-28T13:00:00.000Z",
  };
  const signature = sign(null, Buffer.from(canonicalize(checkpoint)), pair.privateKey).toString("base64url");
  const cp = join(dir, "checkpoint-dash-key.json");
  writeFileSync(cp, JSON.stringify({ checkpoint, algorithm: "Ed25519", signature }));
  const result = await audit([
    "verify",
    writeNdjson("dash-key.ndjson", events),
    "--checkpoint",
    cp,
    "--public-key",
    key,
  ]);
  assert.equal(result.code, 0, result.stdout);
  assert.match(result.stdout, /checkpoint at seq 6: signature valid/);
});

// Archived histories (docs/archive.md): sealed segments, each an object of export lines with a
// signed manifest entry, as the bucket holds them, then the tail.

const pad16 = (/** @type {number} */ n) => String(n).padStart(16, "0");

/**
 * Writes the first `sealed` events of `events` as segments of `size` events, with their signed
 * manifest entries, into a fresh directory named `name`; returns the directory and the files.
 * @param {string} name
 * @param {Record<string, any>[]} events
 * @param {number} size
 * @param {number} sealed
 */
function writeArchive(name, events, size, sealed, signer = keys.privateKey) {
  const out = join(dir, name);
  mkdirSync(out);
  /** @type {{ stem: string, entry: Record<string, any> }[]} */
  const segments = [];
  let prev = "0".repeat(64);
  for (let first = 1; first <= sealed; first += size) {
    const part = events.slice(first - 1, Math.min(first - 1 + size, sealed));
    const last = part[part.length - 1];
    const text = part.map((e) => `${JSON.stringify(e)}\n`).join("");
    const stem = `${pad16(first)}-${pad16(last.seq)}`;
    writeFileSync(join(out, `${stem}.ndjson`), text);
    const checkpoint = {
      account_id: "acct_cli",
      seq: last.seq,
      head_hash: last.hash,
      balance: last.balance_after,
      reserved: last.reserved_after,
      at: "2026-11-28T13:00:00.000Z",
    };
    const signature = sign(null, Buffer.from(canonicalize(checkpoint)), signer).toString("base64url");
    const entry = {
      format: "openedge-ledger-segment/1",
      account_id: "acct_cli",
      segment: segments.length + 1,
      first_seq: first,
      last_seq: last.seq,
      prev_hash: prev,
      first_hash: part[0].hash,
      last_hash: last.hash,
      first_at: part[0].at,
      last_at: last.at,
      balance: last.balance_after,
      reserved: last.reserved_after,
      object: `accounts/acct_cli/segments/${stem}.ndjson`,
      bytes: Buffer.byteLength(text),
      sha256: createHash("sha256").update(text).digest("hex"),
      checkpoint: { checkpoint, algorithm: "Ed25519", key_id: "test", signature },
    };
    writeFileSync(join(out, `${stem}.manifest.json`), JSON.stringify(entry, null, 2));
    segments.push({ stem, entry });
    prev = last.hash;
  }
  return { out, segments };
}

test("verifies an archive: segments from the bucket alone, with the tail, or through a manifest file", async () => {
  const events = history(40); // 46 events: segments 1-10 .. 31-40, the tail 41-46
  const { out, segments } = writeArchive("archive-good", events, 10, 40);
  const alone = await audit(["verify", out, "--public-key", publicKey]);
  assert.equal(alone.code, 0, alone.stdout);
  assert.match(alone.stdout, /^OK 40 events/);
  assert.match(alone.stdout, /4 segments through seq 40, their checkpoints signed and valid/);
  const tail = writeNdjson("archive-tail.ndjson", events.slice(40));
  const withTail = await audit(["verify", out, tail, "--public-key", publicKey, "--json"]);
  const verdict = JSON.parse(withTail.stdout);
  assert.equal(verdict.ok, true, withTail.stdout);
  assert.equal(verdict.summary.head_seq, 46);
  assert.equal(verdict.summary.balance, events[45]?.balance_after);
  // The whole export as the tail: what the archive holds is skipped, linked by its last hash.
  const whole = await audit(["verify", out, writeNdjson("archive-whole.ndjson", events), "--public-key", publicKey]);
  assert.equal(whole.code, 0, whole.stdout);
  const manifest = join(dir, "archive-good", "manifest.json");
  writeFileSync(manifest, JSON.stringify(segments.map((s) => s.entry)));
  const listed = await audit(["verify", manifest, tail]);
  assert.equal(listed.code, 0, listed.stdout);
  assert.match(listed.stdout, /checkpoints not checked \(no --public-key\)/);
});

test("names the segment and the seq of a missing, reordered, truncated or edited segment", async () => {
  const events = history(40);
  /** @type {[string, (out: string, stems: string[]) => void, RegExp][]} */
  const cases = [
    [
      "missing",
      (out, s) => {
        rmSync(join(out, `${s[1]}.ndjson`));
        rmSync(join(out, `${s[1]}.manifest.json`));
      },
      /FAIL at seq 11: segment 3 \(seqs 21-30\) starts at seq 21: seqs 11-20 are missing/,
    ],
    [
      "missing object",
      (out, s) => rmSync(join(out, `${s[1]}.ndjson`)),
      /FAIL at seq 11: segment 2 \(seqs 11-20\): its object .* is missing/,
    ],
    [
      "reordered",
      (out, s) => {
        const second = readFileSync(join(out, `${s[1]}.ndjson`));
        writeFileSync(join(out, `${s[1]}.ndjson`), readFileSync(join(out, `${s[2]}.ndjson`)));
        writeFileSync(join(out, `${s[2]}.ndjson`), second);
      },
      /FAIL at seq 11: segment 2 \(seqs 11-20\): expected seq 11, found seq 21/,
    ],
    [
      "truncated",
      (out, s) => {
        const lines = readFileSync(join(out, `${s[1]}.ndjson`), "utf8").split("\n");
        writeFileSync(join(out, `${s[1]}.ndjson`), `${lines.slice(0, 4).join("\n")}\n`);
      },
      /FAIL at seq 15: segment 2 \(seqs 11-20\) ends at seq 14 \(truncated\)/,
    ],
    [
      "edited",
      (out, s) => {
        const file = join(out, `${s[2]}.ndjson`);
        writeFileSync(
          file,
          readFileSync(file, "utf8").replace('"credit_id":"c19","amount":1', '"credit_id":"c19","amount":2'),
        );
      },
      /FAIL at seq 25: segment 3 \(seqs 21-30\): hash does not chain/,
    ],
    [
      // The events intact, the bytes not: only the object's length and digest tell.
      "bytes added",
      (out, s) => writeFileSync(join(out, `${s[1]}.ndjson`), `\n${readFileSync(join(out, `${s[1]}.ndjson`), "utf8")}`),
      /FAIL at seq 11: segment 2 \(seqs 11-20\): its object's length or SHA-256 differ from its manifest/,
    ],
    [
      "digest",
      (out, s) => {
        const file = join(out, `${s[2]}.manifest.json`);
        const entry = JSON.parse(readFileSync(file, "utf8"));
        writeFileSync(file, JSON.stringify({ ...entry, sha256: "0".repeat(64) }));
      },
      /FAIL at seq 21: segment 3 \(seqs 21-30\): its object's length or SHA-256 differ from its manifest/,
    ],
  ];
  for (const [name, tamper, expected] of cases) {
    const { out, segments } = writeArchive(`archive-${name.replace(" ", "-")}`, events, 10, 40);
    tamper(
      out,
      segments.map((s) => s.stem),
    );
    const result = await audit(["verify", out, "--public-key", publicKey]);
    assert.equal(result.code, 1, `${name}: ${result.stdout}`);
    assert.match(result.stdout, expected, name);
  }
});

test("checks every segment's signed checkpoint", async () => {
  const events = history(40);
  const other = generateKeyPairSync("ed25519").privateKey;
  const { out } = writeArchive("archive-forged", events, 10, 40, other);
  const forged = await audit(["verify", out, "--public-key", publicKey]);
  assert.equal(forged.code, 1);
  assert.match(forged.stdout, /FAIL at seq 10: segment 1 \(seqs 1-10\): the checkpoint's signature is not valid/);
  const tail = writeNdjson("archive-bad-tail.ndjson", history(40, (b) => b.push({ ...b[6] })).slice(40));
  const { out: good } = writeArchive("archive-good-2", events, 10, 40);
  const broken = await audit(["verify", good, tail, "--public-key", publicKey]);
  assert.equal(broken.code, 1, broken.stdout);
});
