/**
 * Audit end to end inside workerd: random histories exported as NDJSON verify offline (with
 * the independent verifier core of bin/ledger-audit.mjs) against a signed checkpoint; every kind
 * of tampering is caught and named by seq; point-in-time balances equal the fold of the log's
 * prefix; the in-object verifier finds a corrupted stored event.
 *
 * Budgets (test/budget.ts): canonical JSON runs a fixed 300 cases (PROPERTY_RUNS=<n> for more),
 * the export of random histories a fixed 20 (HISTORY_RUNS=<n> for more).
 */
import { runInDurableObject } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { verifyAccount } from "../../durable-objects/verify";
import { AuditKeyUnavailable, auditKey } from "../../src/audit/signing";
import { base64UrlDecode, ChainVerifier, canonicalize, checkCheckpoint } from "../../src/audit/verifier.mjs";
import { canonicalJson, canonicalJsonByParts } from "../../src/domain/canonical";
import type { LedgerEvent } from "../../src/domain/events";
import { fold } from "../../src/domain/state";
import { budget } from "../budget";
import { AUTH, api, expectEveryAccountConsistent, openAccount, stub, textOf } from "../helpers";
import { commandArb, logOf, runHistory } from "../projection/support";
import { rechain, sha256Hex } from "./forge";

afterEach(expectEveryAccountConsistent);

type Signed = { checkpoint: Record<string, unknown> & { seq: number }; signature: string };

async function exportOf(accountId: string): Promise<Record<string, unknown>[]> {
  const response = await exports.default.fetch(`http://ledger.test/v1/accounts/${accountId}/events/export`, {
    headers: AUTH,
  });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("application/x-ndjson");
  const text = await textOf(response);
  return text
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function ed25519Verify(): Promise<(message: Uint8Array, signature: Uint8Array) => Promise<boolean>> {
  const published = await api("GET", "/v1/audit/public-key");
  expect(published.status).toBe(200);
  expect(published.body.algorithm).toBe("Ed25519");
  const key = await crypto.subtle.importKey(
    "raw",
    base64UrlDecode(published.body.public_key),
    { name: "Ed25519" },
    false,
    ["verify"],
  );
  return (message, signature) => crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
}

/** Verifies an export offline the way ledger-audit does; returns the failure or the summary. */
async function audit(events: Record<string, unknown>[], signed?: Signed) {
  const verifier = new ChainVerifier({ sha256Hex });
  if (signed !== undefined) verifier.watch(signed.checkpoint.seq);
  for (const event of events) {
    const failure = verifier.push(event);
    if (failure !== null) return { failure, summary: verifier.summary() };
  }
  const failure = signed === undefined ? null : await checkCheckpoint(verifier, signed, await ed25519Verify());
  return { failure, summary: verifier.summary() };
}

/** Rewrites a stored event's body in the object's storage (as a disk or an operator might); returns the old body. */
function setStoredEvent(id: string, seq: number, rewrite: (body: string) => string): Promise<string> {
  return runInDurableObject(stub(id), (_i: AccountDurableObject, state) => {
    const row = state.storage.sql.exec<{ body: string }>("SELECT body FROM events WHERE seq = ?", seq).one();
    state.storage.sql.exec("UPDATE events SET body = ? WHERE seq = ?", rewrite(row.body), seq);
    return row.body;
  });
}

async function busyAccount(): Promise<string> {
  const id = await openAccount(1_000, 100);
  const post = (path: string, body: unknown) => api("POST", `/v1/accounts/${id}${path}`, body);
  await post("/reservations", { reservation_id: "r1", amount: 300 });
  await post("/reservations/r1/capture", { amount: 200 });
  await post("/charges", { charge_id: "c1", amount: 100 });
  await post("/refunds", { refund_id: "f1", charge_id: "c1", amount: 40 });
  await post("/reservations", { reservation_id: "r2", amount: 50 });
  await post("/adjustments", { adjustment_id: "a1", amount: -10, reason: "fee" });
  return id;
}

describe("canonical JSON", () => {
  // Pure and fast (well under a second alone); 60 s is room for a slow machine under the full suite.
  const CANONICAL = budget("PROPERTY_RUNS", 300, 60_000);
  it("is the same in the ledger and in the independent verifier", { timeout: CANONICAL.timeout }, () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(canonicalize(value)).toBe(canonicalJson(value));
      }),
      { numRuns: CANONICAL.numRuns },
    );
    expect(canonicalJson({ b: 1, a: { d: [2, { f: 1, e: "é\n" }], c: null } })).toBe(
      '{"a":{"c":null,"d":[2,{"e":"é\\n","f":1}]},"b":1}',
    );
  });

  // The engine puts array-index-like names first in numeric order, and a plain object cannot hold
  // `__proto__` as a member: values with such names, at any depth, take the member-by-member path.
  it("orders names the engine would reorder by their code units", { timeout: CANONICAL.timeout }, () => {
    const name = fc.oneof(fc.constantFrom("0", "1", "9", "10", "01", "4294967295", "__proto__", "!", "a"), fc.string());
    const record = fc.dictionary(name, fc.jsonValue({ maxDepth: 2 }));
    fc.assert(
      fc.property(record, fc.array(record, { maxLength: 3 }), (top, nested) => {
        const value = { ...top, nested };
        expect(canonicalJson(value)).toBe(canonicalize(value));
        expect(canonicalJson(value)).toBe(canonicalJsonByParts(value));
      }),
      { numRuns: CANONICAL.numRuns },
    );
    const tricky = JSON.parse('{"10":1,"9":2,"!":3,"__proto__":{"0":4,"b":5}}') as unknown;
    expect(canonicalJson(tricky)).toBe('{"!":3,"10":1,"9":2,"__proto__":{"0":4,"b":5}}');
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(/non-finite/);
  });
});

describe("export and offline verification", () => {
  // Each case drives a real account object through up to 40 commands, then exports and audits it:
  // a few seconds for all 20 alone, several times that under the full suite on 2 cores. 120 s.
  const HISTORIES = budget("HISTORY_RUNS", 20, 120_000);
  it("verifies random histories against a signed checkpoint; the summary equals the live account", {
    timeout: HISTORIES.timeout,
  }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(commandArb, { minLength: 1, maxLength: 40 }), async (commands) => {
        const id = await runHistory(commands);
        const signed = (await api("GET", `/v1/accounts/${id}/checkpoint`)).body as Signed;
        const events = await exportOf(id);
        const { failure, summary } = await audit(events, signed);
        expect(failure).toBeNull();
        const live = (await api("GET", `/v1/accounts/${id}`)).body;
        expect(summary).toMatchObject({
          account_id: id,
          head_seq: live.last_seq,
          head_hash: live.head_hash,
          balance: live.balance,
          reserved: live.reserved,
          available: live.available,
          open_reservations: live.open_reservations,
        });
      }),
      { numRuns: HISTORIES.numRuns },
    );
  });

  it("streams a long log in seq order across pages", async () => {
    const id = await openAccount();
    await runInDurableObject(stub(id), async (instance: AccountDurableObject) => {
      // One lot, then charges: an account holds at most LOTS_ACTIVE_MAX lots with credit in them.
      await instance.execute({ type: "CreditFunds", credit_id: "c", amount: 5_000, reason: null, metadata: {} });
      for (let i = 1; i < 2_500; i++) {
        await instance.execute({ type: "ChargeAccount", charge_id: `ch${i}`, amount: 1, context: {}, metadata: {} });
      }
    });
    const events = await exportOf(id);
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 2_501 }, (_, i) => i + 1));
    expect((await audit(events)).summary).toMatchObject({ balance: 2_501, head_seq: 2_501 });
  });

  it("answers 404 for an unknown account", async () => {
    expect((await api("GET", "/v1/accounts/nobody/events/export")).status).toBe(404);
    expect((await api("GET", "/v1/accounts/nobody/checkpoint")).status).toBe(404);
  });
});

describe("tampering", () => {
  type Tamper = (
    events: Record<string, unknown>[],
    signed: Signed,
  ) => { events: Record<string, unknown>[]; signed: Signed };
  const at = (events: Record<string, unknown>[], i: number, change: Record<string, unknown>) =>
    events.map((e, j) => (j === i ? { ...e, ...change } : e));
  const cases: [string, Tamper, number, RegExp][] = [
    ["changed amount", (e, s) => ({ events: at(e, 3, { amount: 1 }), signed: s }), 4, /hash/],
    ["changed balance_after", (e, s) => ({ events: at(e, 4, { balance_after: 1 }), signed: s }), 5, /hash/],
    [
      "changed amount, chain recomputed",
      (e, s) => ({ events: rechain(at(e, 4, { amount: 99 }), 4), signed: s }),
      5,
      /balance_after/,
    ],
    ["deleted event", (e, s) => ({ events: e.filter((_, i) => i !== 2), signed: s }), 3, /expected seq 3/],
    [
      "inserted event",
      (e, s) => ({ events: [...e.slice(0, 2), { ...e[2], seq: 3 }, ...e.slice(2)], signed: s }),
      4,
      /expected seq 4/,
    ],
    [
      "swapped order",
      (e, s) => ({ events: [e[0], e[2], e[1], ...e.slice(3)] as Record<string, unknown>[], signed: s }),
      2,
      /expected seq 2/,
    ],
    ["edited hash", (e, s) => ({ events: at(e, 5, { hash: "f".repeat(64) }), signed: s }), 6, /hash/],
    ["truncated tail", (e, s) => ({ events: e.slice(0, 5), signed: s }), 8, /truncated/],
    [
      "rewritten history, chain recomputed",
      (e, s) => ({
        events: rechain(at(e, 1, { amount: 2_000, balance_after: 2_000 }), 1).map((x, i) => (i > 1 ? { ...x } : x)),
        signed: s,
      }),
      // The forged credit itself is consistent; the next event's recorded balance is not.
      3,
      /balance_after/,
    ],
    [
      "forged checkpoint signature",
      (e, s) => ({ events: e, signed: { ...s, checkpoint: { ...s.checkpoint, balance: 1_000_000 } } }),
      8,
      /signature/,
    ],
  ];

  it.each(cases)("catches %s at the right seq", async (_name, tamper, seq, reason) => {
    const id = await busyAccount();
    const signed = (await api("GET", `/v1/accounts/${id}/checkpoint`)).body as Signed;
    const events = await exportOf(id);
    expect(events).toHaveLength(8);
    expect((await audit(events, signed)).failure).toBeNull();
    const forged = tamper(events, signed);
    const { failure } = await audit(forged.events, forged.signed);
    expect(failure).not.toBeNull();
    expect(failure?.seq).toBe(seq);
    expect(failure?.reason).toMatch(reason);
  });

  it("catches a rewritten history whose chain was recomputed, by the checkpoint alone", async () => {
    const id = await busyAccount();
    const signed = (await api("GET", `/v1/accounts/${id}/checkpoint`)).body as Signed;
    const events = await exportOf(id);
    // A consistent forgery: an extra credit's worth everywhere, every hash and balance redone.
    const forged = rechain(
      events.map((e) =>
        e.seq === 2
          ? { ...e, amount: 1_001, balance_after: (e.balance_after as number) + 1 }
          : (e.seq as number) > 2
            ? { ...e, balance_after: (e.balance_after as number) + 1 }
            : e,
      ),
      1,
    );
    const offline = await audit(forged);
    expect(offline.failure).toBeNull(); // without a checkpoint, a full re-forgery is self-consistent
    const { failure } = await audit(forged, signed);
    expect(failure).toMatchObject({ seq: 8 });
    expect(failure?.reason).toMatch(/rewritten/);
  });
});

describe("point-in-time balances", () => {
  it("equal the fold of the log's prefix, by seq and by time", async () => {
    const id = await runHistory(fc.sample(fc.array(commandArb, { minLength: 30, maxLength: 40 }), 1)[0] ?? []);
    const log: LedgerEvent[] = await logOf(id);
    for (const seq of fc.sample(fc.integer({ min: 0, max: log.length + 3 }), 25)) {
      const expected = seq === 0 ? null : fold(log.slice(0, Math.min(seq, log.length))).account;
      const response = await api("GET", `/v1/accounts/${id}/balance?seq=${seq}`);
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({
        seq: Math.min(seq, log.length),
        balance: expected?.balance ?? 0,
        reserved: expected?.reserved ?? 0,
        available: (expected?.balance ?? 0) - (expected?.reserved ?? 0),
      });
    }
    for (const event of fc.sample(fc.constantFrom(...log), 15)) {
      // Events in the same millisecond share a time: the answer is the last of them.
      const lastAtSameTime = log.filter((e) => e.at <= event.at).at(-1) as LedgerEvent;
      const response = await api("GET", `/v1/accounts/${id}/balance?at=${encodeURIComponent(event.at)}`);
      expect(response.body).toMatchObject({
        seq: lastAtSameTime.seq,
        balance: lastAtSameTime.balance_after,
        reserved: lastAtSameTime.reserved_after,
      });
    }
    const before = await api("GET", `/v1/accounts/${id}/balance?at=2000-01-01T00:00:00Z`);
    expect(before.body).toMatchObject({ seq: 0, balance: 0, reserved: 0, at: null });
  });

  it("needs exactly one of at and seq", async () => {
    const id = await openAccount(5);
    expect((await api("GET", `/v1/accounts/${id}/balance`)).status).toBe(400);
    expect((await api("GET", `/v1/accounts/${id}/balance?seq=1&at=2026-01-01T00:00:00Z`)).status).toBe(400);
    expect((await api("GET", "/v1/accounts/nobody/balance?seq=1")).status).toBe(404);
  });
});

describe("in-ledger verification", () => {
  it("reports ok with the head, and the first bad seq of a corrupted stored event", async () => {
    const id = await busyAccount();
    const good = await api("GET", `/v1/accounts/${id}/verify`);
    const live = (await api("GET", `/v1/accounts/${id}`)).body;
    expect(good.body).toMatchObject({
      ok: true,
      events: 8,
      head_seq: 8,
      head_hash: live.head_hash,
      first_bad_seq: null,
    });
    // Corrupt seq 4 in storage, as a disk or an operator might.
    const original = await setStoredEvent(id, 4, (body) => JSON.stringify({ ...JSON.parse(body), amount: 1 }));
    const bad = await api("GET", `/v1/accounts/${id}/verify`);
    expect(bad.body).toMatchObject({ ok: false, events: 3, first_bad_seq: 4 });
    expect(bad.body.problems[0]).toMatch(/seq 4/);
    // Put it back so the suite's own consistency check passes.
    await setStoredEvent(id, 4, () => original);
    expect((await api("GET", `/v1/accounts/${id}/verify`)).body.ok).toBe(true);
  });
});

describe("audit key", () => {
  it("refuses to sign without a valid key, and never echoes the secret", async () => {
    await expect(auditKey(undefined)).rejects.toBeInstanceOf(AuditKeyUnavailable);
    const error = await auditKey("not-a-key-SECRETVALUE").catch((e: Error) => e);
    expect(error).toBeInstanceOf(AuditKeyUnavailable);
    expect((error as Error).message).not.toContain("SECRETVALUE");
  });
});

describe("priced charges", () => {
  it("are recomputed by the offline verifier from the pinned rules, and a forged price is caught", async () => {
    await api("POST", "/v1/admin/prices", {
      service_id: "audit",
      provider: "p",
      model: "m",
      rules: [
        { unit: "input_token", price_minor: 1, per_units: 3 },
        { unit: "output_token", price_minor: 2, per_units: 3 },
      ],
    });
    const id = await openAccount(1_000);
    await api("POST", `/v1/accounts/${id}/reservations`, {
      reservation_id: "r",
      price: { service_id: "audit", provider: "p", model: "m" },
      estimate: { max_input_tokens: 100, max_output_tokens: 50 },
    });
    await api("POST", `/v1/accounts/${id}/reservations/r/capture`, { usage: { input_tokens: 10, output_tokens: 7 } });
    const events = await exportOf(id);
    expect((await audit(events)).failure).toBeNull();
    // A forger who lowers a priced capture and re-chains everything is caught by the recomputation.
    const capture = events.findIndex((e) => e.type === "ReservationCaptured");
    const forged = rechain(
      events.map((e, i) =>
        i === capture
          ? { ...e, amount: 1, released_amount: 66, balance_after: 999 }
          : i > capture
            ? { ...e, balance_after: 999 }
            : e,
      ),
      capture,
    );
    const { failure } = await audit(forged);
    expect(failure?.seq).toBe(capture + 1);
    expect(failure?.reason).toMatch(/not the usage at the pinned price/);
  });
});

describe("export line form", () => {
  it("is the canonical JSON the hash covers, with hash last, and verifies over its own bytes", async () => {
    const id = await busyAccount();
    const response = await exports.default.fetch(`http://ledger.test/v1/accounts/${id}/events/export`, {
      headers: AUTH,
    });
    const lines = (await textOf(response)).split("\n").filter((l) => l !== "");
    const verifier = new ChainVerifier({ sha256Hex });
    for (const line of lines) {
      const event = JSON.parse(line) as Record<string, unknown>;
      const { hash, ...rest } = event;
      expect(line).toBe(`${canonicalJson(rest).slice(0, -1)},"hash":"${hash}"}`);
      expect(verifier.push(event, line)).toBeNull();
    }
    expect(verifier.summary().head_seq).toBe(8);
  });
});

describe("in-ledger verification of long logs", () => {
  /** The bounded-memory path that logs longer than VERIFY_FULL_FOLD_EVENTS_MAX take. */
  const streaming = (id: string) =>
    runInDurableObject(stub(id), (instance: AccountDurableObject) => {
      // biome-ignore lint/suspicious/noExplicitAny: reaching the object's parts to force the long-log path
      const parts = instance as any;
      return verifyAccount(parts.store, parts.history, parts.scheduler, 0);
    });

  it("agrees with the full fold, and finds the same first bad seq", async () => {
    const id = await busyAccount();
    const live = (await api("GET", `/v1/accounts/${id}`)).body;
    expect(await streaming(id)).toMatchObject({
      ok: true,
      events: 8,
      head_hash: live.head_hash,
      balance: live.balance,
      reserved: live.reserved,
      first_bad_seq: null,
    });
    const original = await setStoredEvent(id, 4, (body) => JSON.stringify({ ...JSON.parse(body), amount: 1 }));
    expect(await streaming(id)).toMatchObject({ ok: false, events: 3, first_bad_seq: 4 });
    await setStoredEvent(id, 4, () => original);
    expect((await streaming(id)).ok).toBe(true);
  });
});
