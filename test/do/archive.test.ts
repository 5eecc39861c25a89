/**
 * Sealed segments (durable-objects/archive.ts, docs/archive.md): the account object seals its
 * log into R2 through the alarm, deletes what R2 holds only after reading it back, resumes
 * after a crash at any step, backs off while R2 fails, and reads the sealed segments and the
 * tail as one history, equal to the history before it was sealed.
 *
 * Segments are made small per object (the archiver's `limits` seam), so a test's history
 * crosses many of them; R2 is Miniflare's local bucket, wrapped where a test makes it fail.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, onTestFinished } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { ARCHIVE_BACKOFF_MS_MIN, type SealStep } from "../../durable-objects/archive";
import type { History } from "../../durable-objects/history";
import type { ArchiveBucket } from "../../durable-objects/segments";
import type { ManualClock } from "../../src/clock";
import { api, expectEveryAccountConsistent, openAccount, stub, textOf, useManualClock } from "../helpers";
import { dbOf } from "../projection/support";

afterEach(expectEveryAccountConsistent);

/** Events per segment in these tests, and rows deleted per transaction. */
const SEGMENT_EVENTS = 10;
const DELETE_CHUNK_ROWS = 3;

const bucket = () => env.ARCHIVE as R2Bucket;

/** Small segments for this object (set again after an eviction: limits live in memory). */
function smallSegments(id: string, extra: (instance: AccountDurableObject) => void = () => {}) {
  return runInDurableObject(stub(id), (instance: AccountDurableObject) => {
    instance.archiver.limits = {
      ...instance.archiver.limits,
      eventsMax: SEGMENT_EVENTS,
      deleteChunkRows: DELETE_CHUNK_ROWS,
    };
    extra(instance);
  });
}

/** Runs the object's alarm until it has nothing more to do (each run seals a few segments). */
async function runAlarms(id: string): Promise<number> {
  let runs = 0;
  while (runs < 100 && (await runDurableObjectAlarm(stub(id)))) runs += 1;
  return runs;
}

const rowsIn = (id: string, table: string) =>
  runInDurableObject(
    stub(id),
    (_i: AccountDurableObject, state) =>
      state.storage.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`).one().n,
  );

/**
 * A history of `rounds` rounds, one second apart: credit, reserve, capture, charge and refund
 * (5 events a round, after the opening and its top-up).
 */
async function busyAccount(clock: ManualClock, rounds: number): Promise<string> {
  const id = await openAccount(1_000);
  await smallSegments(id);
  for (let i = 0; i < rounds; i++) {
    clock.advance(1_000);
    const batch = await api("POST", `/v1/accounts/${id}/batch`, {
      operations: [
        // Members out of canonical order: reads from segments and from the tail must still agree.
        { op: "credit", credit_id: `c${i}`, amount: 100 + i, metadata: { note: `n${i}`, batch: "b" } },
        { op: "reserve", reservation_id: `r${i}`, amount: 50, context: { service_id: "chat", model: "m" } },
        { op: "capture", reservation_id: `r${i}`, amount: 20 + (i % 7) },
        { op: "charge", charge_id: `ch${i}`, amount: 9 },
        { op: "refund", refund_id: `f${i}`, charge_id: `ch${i}`, amount: 4 },
      ],
      atomic: true,
    });
    expect(batch.body.committed).toBe(true);
  }
  return id;
}

/** Four rounds of ten credits, a second apart: enough for sealing to take what came before. */
async function creditRounds(clock: ManualClock, id: string): Promise<void> {
  for (let i = 0; i < 4; i++) {
    clock.advance(1_000);
    await api("POST", `/v1/accounts/${id}/batch`, {
      operations: Array.from({ length: 10 }, (_, j) => ({ op: "credit", credit_id: `c${i}_${j}`, amount: 1 })),
    });
  }
}

/** Everything a caller can read of the history: the export, every page, balances at every seq and time. */
async function snapshotOf(id: string) {
  const exported = await exports(id);
  const events = exported
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as { seq: number; at: string });
  const listed: unknown[] = [];
  for (let after: number | null = 0; after !== null; ) {
    const page = await api("GET", `/v1/accounts/${id}/events?after_seq=${after}&limit=7`);
    expect(page.status).toBe(200);
    listed.push(...page.body.events);
    after = page.body.next_after_seq;
  }
  const bySeq: unknown[] = [];
  for (const e of events) bySeq.push((await api("GET", `/v1/accounts/${id}/balance?seq=${e.seq}`)).body);
  const times = [...new Set(events.map((e) => e.at))];
  const before = new Date(Date.parse(events[0]?.at ?? "") - 1).toISOString();
  const byTime: unknown[] = [];
  for (const at of [before, ...times]) byTime.push((await api("GET", `/v1/accounts/${id}/balance?at=${at}`)).body);
  const verify = (await api("GET", `/v1/accounts/${id}/verify`)).body;
  return { exported, listed, bySeq, byTime, verify };
}

async function exports(id: string): Promise<string> {
  const response = await api("GET", `/v1/accounts/${id}/events/export`);
  expect(response.status).toBe(200);
  return response.body as string;
}

/** The segment objects and manifest entries of an account in the bucket, in seq order. */
async function objectsOf(id: string): Promise<string[]> {
  const listed = await bucket().list({ prefix: `accounts/${id}/segments/` });
  return listed.objects.map((o) => o.key.slice(`accounts/${id}/segments/`.length));
}

describe("sealing segments to R2", () => {
  it("seals full segments through the alarm, never the undelivered page nor the head, and keeps a bounded tail", async () => {
    const clock = useManualClock();
    const id = await busyAccount(clock, 20); // 102 events
    const reference = await snapshotOf(id);
    expect(await rowsIn(id, "events")).toBe(102);
    // The commands asked for the alarm; it seals four segments a run and re-arms at once.
    expect(await runAlarms(id)).toBeGreaterThanOrEqual(3);
    const status = await stub(id).archiveStatus();
    // Delivered through 102: the page 97..112 may be re-read by the projection, so 96 is the bound.
    expect(status).toMatchObject({ segments: 9, archived_through: 90, sealing: null, failures: 0 });
    expect(await rowsIn(id, "events")).toBe(12);
    expect(await rowsIn(id, "segments")).toBe(9);
    const objects = await objectsOf(id);
    expect(objects).toHaveLength(18);
    expect(objects[0]).toBe("0000000000000001-0000000000000010.manifest.json");
    expect(objects[1]).toBe("0000000000000001-0000000000000010.ndjson");
    // Every read equals the unsealed history, byte for byte.
    expect(await snapshotOf(id)).toEqual(reference);
  });

  it("writes each segment as the export's lines, with a manifest entry that chains and is signed", async () => {
    const clock = useManualClock();
    const id = await busyAccount(clock, 6); // 32 events
    const exported = (await exports(id)).split("\n");
    await runAlarms(id);
    const first = await bucket().get(`accounts/${id}/segments/0000000000000001-0000000000000010.ndjson`);
    expect(await textOf(first as unknown as Body)).toBe(`${exported.slice(0, 10).join("\n")}\n`);
    const entry1 = await entryOf(id, 1, 10);
    const entry2 = await entryOf(id, 11, 20);
    expect(entry1).toMatchObject({ segment: 1, first_seq: 1, last_seq: 10, prev_hash: "0".repeat(64) });
    expect(entry2).toMatchObject({ segment: 2, first_seq: 11, prev_hash: entry1.last_hash });
    expect(entry2.checkpoint.checkpoint).toMatchObject({ account_id: id, seq: 20, head_hash: entry2.last_hash });
    const digest = await crypto.subtle.digest(
      "SHA-256",
      new TextEncoder().encode(`${exported.slice(0, 10).join("\n")}\n`),
    );
    expect(entry1.sha256).toBe([...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join(""));
    const key = (await api("GET", "/v1/audit/public-key")).body.public_key as string;
    expect(await signatureValid(entry2.checkpoint, key)).toBe(true);
  });

  it("never seals what the projection has not delivered", async () => {
    const clock = useManualClock();
    const id = await openAccount(1_000);
    await smallSegments(id, (instance) => {
      instance.projector.deliver = () => Promise.reject(new Error("D1 is down"));
    });
    await creditRounds(clock, id);
    clock.advance(60_000);
    await runDurableObjectAlarm(stub(id));
    expect(await stub(id).archiveStatus()).toMatchObject({ segments: 0 });
    expect(await rowsIn(id, "events")).toBe(42);
  });
});

async function entryOf(id: string, first: number, last: number) {
  const pad = (n: number) => String(n).padStart(16, "0");
  const object = await bucket().get(`accounts/${id}/segments/${pad(first)}-${pad(last)}.manifest.json`);
  expect(object).not.toBeNull();
  return JSON.parse(await textOf(object as unknown as Body));
}

async function signatureValid(signed: { checkpoint: object; signature: string }, publicKey: string) {
  const { canonicalJson } = await import("../../src/domain/canonical");
  const { base64urlToBytes } = await import("../../src/encoding");
  const key = await crypto.subtle.importKey("raw", base64urlToBytes(publicKey), { name: "Ed25519" }, false, ["verify"]);
  const message = new TextEncoder().encode(canonicalJson(signed.checkpoint));
  return crypto.subtle.verify({ name: "Ed25519" }, key, base64urlToBytes(signed.signature), message);
}

describe("when segments are sealed", () => {
  it("seals a quiet account's delivered events once the oldest is SEGMENT_AGE_MS_MAX old", async () => {
    const clock = useManualClock();
    const id = await openAccount(1_000);
    await smallSegments(id, (instance) => {
      instance.archiver.limits = { ...instance.archiver.limits, eventsMax: 1_000, ageMsMax: 3_600_000 };
    });
    await api("POST", `/v1/accounts/${id}/batch`, {
      operations: Array.from({ length: 18 }, (_, j) => ({ op: "credit", credit_id: `c${j}`, amount: 1 })),
    });
    const reference = await snapshotOf(id);
    await stub(id).catchUp();
    expect((await stub(id).archiveStatus()).segments).toBe(0);
    clock.advance(3_600_000);
    await stub(id).catchUp();
    // 20 events delivered: the page 17..32 stays for the projection, the rest is one segment.
    expect(await stub(id).archiveStatus()).toMatchObject({ segments: 1, archived_through: 16 });
    expect(await snapshotOf(id)).toEqual(reference);
  });
});

describe("the read side rebuilt after sealing", () => {
  it("reprojects from the sealed segments exactly what was projected from the events table", async () => {
    const clock = useManualClock();
    const id = await busyAccount(clock, 8);
    const before = await d1Rows(id);
    expect(before.events).toHaveLength(42);
    await runAlarms(id);
    expect((await stub(id).archiveStatus()).segments).toBe(3);
    const rebuilt = await api("POST", `/v1/admin/accounts/${id}/reproject`);
    expect(rebuilt.body).toMatchObject({ last_seq: 42, projected_seq: 42 });
    expect(await d1Rows(id)).toEqual(before);
  });
});

describe("a hold whose opening is sealed", () => {
  it("is extended, read and captured after its FundsReserved event went to R2", async () => {
    const clock = useManualClock();
    const id = await openAccount(1_000);
    await smallSegments(id);
    const hold = { reservation_id: "long", amount: 300, ttl_seconds: 86_400, context: { model: "m" } };
    expect((await api("POST", `/v1/accounts/${id}/reservations`, hold)).status).toBe(201);
    await creditRounds(clock, id);
    await runAlarms(id);
    expect((await stub(id).archiveStatus()).archived_through).toBeGreaterThanOrEqual(10);
    const extended = await api("POST", `/v1/accounts/${id}/reservations/long/extend`, { ttl_seconds: 172_800 });
    expect(extended.status).toBe(200);
    // The read side gets the extension without the sealed opening (its row is already in D1).
    const row = await dbOf(id)
      .prepare("SELECT status, amount, expires_at FROM reservations WHERE account_id = ? AND reservation_id = 'long'")
      .bind(id)
      .first();
    expect(row).toEqual({ status: "open", amount: 300, expires_at: extended.body.reservation.expires_at });
    expect((await api("GET", `/v1/accounts/${id}/reservations/long`)).body.status).toBe("open");
    const captured = await api("POST", `/v1/accounts/${id}/reservations/long/capture`, { amount: 100 });
    expect(captured.body.reservation).toMatchObject({ status: "captured", captured_amount: 100 });
  });
});

/** The account's read-side rows, but for the columns that record when and how it was projected. */
async function d1Rows(id: string) {
  const db = dbOf(id);
  const events = await db.prepare("SELECT * FROM ledger_events WHERE account_id = ? ORDER BY seq").bind(id).all();
  const account = await db.prepare("SELECT * FROM accounts WHERE account_id = ?").bind(id).first();
  const { projected_at: _a, projection_lag_ms: _l, generation: _g, previous_seq: _p, ...snapshot } = account ?? {};
  return { events: events.results, snapshot };
}

describe("a crash at each step of sealing resumes where it stopped", () => {
  const steps: SealStep[] = ["planned", "put", "checked", "entry", "recorded", "deleted_chunk"];
  for (const step of steps) {
    it(`after ${step}`, async () => {
      const clock = useManualClock();
      const id = await busyAccount(clock, 6); // 32 events: segments 1-10, 11-20 and 21-30
      const reference = await snapshotOf(id);
      let crashed = false;
      await smallSegments(id, (instance) => {
        instance.archiver.onStep = (at) => {
          if (at === step && !crashed) {
            crashed = true;
            throw new Error(`crash after ${step}`);
          }
        };
      });
      await runDurableObjectAlarm(stub(id));
      expect(crashed).toBe(true);
      // The crash loses the object's memory; only what reached SQLite and R2 remains.
      await evictDurableObject(stub(id));
      await smallSegments(id);
      clock.advance(ARCHIVE_BACKOFF_MS_MIN);
      await runAlarms(id);
      expect(await stub(id).archiveStatus()).toMatchObject({
        segments: 3,
        archived_through: 30,
        sealing: null,
        failures: 0,
      });
      expect(await rowsIn(id, "events")).toBe(2);
      // One object and one entry per segment: a retried put wrote the same key again.
      expect(await objectsOf(id)).toHaveLength(6);
      expect(await snapshotOf(id)).toEqual(reference);
    });
  }
});

describe("an R2 outage", () => {
  it("deletes nothing, backs off through the alarm, and seals once R2 is back", async () => {
    const clock = useManualClock();
    const id = await busyAccount(clock, 4); // 22 events: one segment 1-10
    const reference = await snapshotOf(id);
    let calls = 0;
    const down: ArchiveBucket = {
      put: () => {
        calls += 1;
        return Promise.reject(new Error("R2 unavailable"));
      },
      get: () => Promise.reject(new Error("R2 unavailable")),
    };
    await smallSegments(id, (instance) => {
      instance.archiver.bucket = down;
    });
    await runDurableObjectAlarm(stub(id));
    const failed = await stub(id).archiveStatus();
    expect(failed).toMatchObject({ segments: 0, failures: 1, sealing: { first_seq: 1, last_seq: 10 } });
    expect(Date.parse(failed.retry_at as string)).toBe(clock.now() + ARCHIVE_BACKOFF_MS_MIN);
    expect(await rowsIn(id, "events")).toBe(22);
    const alarm = await runInDurableObject(stub(id), (_i: AccountDurableObject, state) => state.storage.getAlarm());
    expect(alarm).toBe(clock.now() + ARCHIVE_BACKOFF_MS_MIN);
    // Before the backoff is over, the alarm does not touch R2; after it, the next failure doubles it.
    await runDurableObjectAlarm(stub(id));
    expect(calls).toBe(1);
    clock.advance(ARCHIVE_BACKOFF_MS_MIN);
    await runDurableObjectAlarm(stub(id));
    const again = await stub(id).archiveStatus();
    expect(again.failures).toBe(2);
    expect(Date.parse(again.retry_at as string)).toBe(clock.now() + 2 * ARCHIVE_BACKOFF_MS_MIN);
    // Reads stay whole meanwhile (nothing was sealed), and R2 comes back.
    expect(await snapshotOf(id)).toEqual(reference);
    await smallSegments(id, (instance) => {
      instance.archiver.bucket = env.ARCHIVE as R2Bucket;
    });
    clock.advance(2 * ARCHIVE_BACKOFF_MS_MIN);
    await runAlarms(id);
    expect(await stub(id).archiveStatus()).toMatchObject({ segments: 1, failures: 0, retry_at: null });
    expect(await rowsIn(id, "events")).toBe(12);
    expect(await snapshotOf(id)).toEqual(reference);
  });

  it("refuses a read-back that differs from what was put, and deletes nothing", async () => {
    const clock = useManualClock();
    const id = await busyAccount(clock, 4);
    const real = env.ARCHIVE as R2Bucket;
    const lying: ArchiveBucket = {
      put: (key, value, options) => real.put(key, value, options),
      get: async (key) => {
        const object = await real.get(key);
        if (object === null) return null;
        const text = (await textOf(object as unknown as Body)).replace('"amount":100', '"amount":900');
        return { body: new Response(text).body } as R2ObjectBody;
      },
    };
    await smallSegments(id, (instance) => {
      instance.archiver.bucket = lying;
    });
    await runDurableObjectAlarm(stub(id));
    expect(await stub(id).archiveStatus()).toMatchObject({ segments: 0, failures: 1 });
    expect(await rowsIn(id, "events")).toBe(22);
  });
});

describe("tampering with a sealed segment", () => {
  const put = (key: string, text: string) => bucket().put(key, text);
  const segmentKey = (id: string, first: number, last: number) =>
    `accounts/${id}/segments/${String(first).padStart(16, "0")}-${String(last).padStart(16, "0")}.ndjson`;

  async function sealed(clock: ManualClock) {
    const id = await busyAccount(clock, 8); // 42 events: segments 1-10, 11-20, 21-30
    await runAlarms(id);
    expect(await stub(id).archiveStatus()).toMatchObject({ segments: 3 });
    return id;
  }

  const cases: { name: string; seq: number; tamper: (lines: string[]) => string | null }[] = [
    { name: "an edited amount", seq: 25, tamper: (l) => withLine(l, 4, l[4]?.replace(/"amount":\d+/, '"amount":1')) },
    { name: "a truncated segment", seq: 26, tamper: (l) => `${l.slice(0, 5).join("\n")}\n` },
    { name: "reordered lines", seq: 23, tamper: (l) => withLine(withLine(l, 2, l[3]).trimEnd().split("\n"), 3, l[2]) },
    { name: "a missing segment", seq: 21, tamper: () => null },
  ];
  for (const c of cases) {
    it(`is caught at the right seq: ${c.name}`, async () => {
      const clock = useManualClock();
      const id = await sealed(clock);
      const key = segmentKey(id, 21, 30);
      const original = await textOf((await bucket().get(key)) as unknown as Body);
      const tampered = c.tamper(original.trimEnd().split("\n"));
      if (tampered === null) await bucket().delete(key);
      else await put(key, tampered);
      const report = await stub(id).verify();
      expect(report.ok).toBe(false);
      expect(report.first_bad_seq).toBe(c.seq);
      // Restored, the account verifies again (the afterEach check).
      await put(key, original);
    });
  }
});

function withLine(lines: string[], index: number, line: string | undefined): string {
  const copy = [...lines];
  copy[index] = line ?? "";
  return `${copy.join("\n")}\n`;
}

describe("idempotent replay of an operation sealed long ago", () => {
  it("answers the original response, and still refuses a different body", async () => {
    const clock = useManualClock();
    const id = await openAccount();
    await smallSegments(id);
    const credit = await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "early", amount: 700 });
    const reserve = await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r_early", amount: 70 });
    const capture = await api("POST", `/v1/accounts/${id}/reservations/r_early/capture`, { amount: 30 });
    await creditRounds(clock, id);
    await runAlarms(id);
    expect((await stub(id).archiveStatus()).archived_through).toBeGreaterThanOrEqual(10);
    expect(await rowsIn(id, "events")).toBeLessThan(44 - 10);
    const now = await api("GET", `/v1/accounts/${id}`);
    const retried = await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "early", amount: 700 });
    expect(retried.status).toBe(201);
    expect(retried.headers.get("idempotent-replayed")).toBe("true");
    expect(retried.body).toEqual(credit.body);
    const reserveAgain = await api("POST", `/v1/accounts/${id}/reservations`, {
      reservation_id: "r_early",
      amount: 70,
    });
    expect([reserve.status, reserveAgain.status, reserveAgain.headers.get("idempotent-replayed")]).toEqual([
      201,
      201,
      "true",
    ]);
    const captureAgain = await api("POST", `/v1/accounts/${id}/reservations/r_early/capture`, { amount: 30 });
    expect(captureAgain.body.charge).toEqual(capture.body.charge);
    const opened = await api("POST", "/v1/accounts", { account_id: id, currency: "USD", credit_limit: 0 });
    expect(opened.status).toBe(200);
    const conflict = await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "early", amount: 701 });
    expect(conflict.status).toBe(409);
    expect(conflict.body.code).toBe("idempotency_conflict");
    // Nothing moved.
    expect((await api("GET", `/v1/accounts/${id}`)).body.balance).toBe(now.body.balance);
  });

  it("reads an ended reservation from R2 while other commands finish between its two reads (issue 29)", async () => {
    const clock = useManualClock();
    const id = await openAccount();
    await smallSegments(id);
    // Its hold in the first segment (seqs 1-10), its capture in the second.
    for (let i = 0; i < 7; i++) await api("POST", `/v1/accounts/${id}/credits`, { credit_id: `c${i}`, amount: 100 });
    await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "r_early", amount: 70 });
    for (let i = 0; i < 3; i++) await api("POST", `/v1/accounts/${id}/credits`, { credit_id: `d${i}`, amount: 1 });
    const captured = await api("POST", `/v1/accounts/${id}/reservations/r_early/capture`, { amount: 30 });
    await creditRounds(clock, id);
    await runAlarms(id);
    expect((await stub(id).archiveStatus()).archived_through).toBeGreaterThanOrEqual(20);
    // R2 answers each read only when the test lets it: the read waits on R2 twice, and a command
    // finishes while it waits the second time. Each call keeps its own fetched events.
    const waiting: (() => void)[] = [];
    await runInDurableObject(stub(id), (instance: AccountDurableObject) => {
      const real = instance.archiver.bucket as R2Bucket;
      // The first two reads wait; later ones (the consistency check's) go straight through.
      const get = async (...args: Parameters<R2Bucket["get"]>) => {
        if (waiting.length < 2) await new Promise<void>((release) => waiting.push(release));
        return real.get(...args);
      };
      instance.archiver.bucket = new Proxy(real, {
        get: (target, key) => (key === "get" ? get : Reflect.get(target, key)),
      }) as unknown as R2Bucket;
    });
    onTestFinished(() =>
      runInDurableObject(stub(id), (instance: AccountDurableObject) => {
        instance.archiver.bucket = env.ARCHIVE as R2Bucket;
      }),
    );
    const gets = async (n: number) => {
      while (waiting.length < n) await new Promise((resolve) => setTimeout(resolve, 0));
    };
    // A waiting read is let go from inside the object: its promise belongs to the object's context.
    const release = (n: number) => runInDurableObject(stub(id), () => waiting[n]?.());
    const read = api("GET", `/v1/accounts/${id}/reservations/r_early`);
    await gets(1);
    await release(0);
    await gets(2);
    expect((await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "between", amount: 1 })).status).toBe(201);
    await release(1);
    const answered = await read;
    expect(answered.status).toBe(200);
    expect(answered.body).toEqual(captured.body.reservation);
  });

  it("pages the history on past a segment recorded while it read the tail (issue 29)", async () => {
    const clock = useManualClock();
    const id = await openAccount();
    // Segments of 7 end off the pages' boundary (1,000 events): one straddles it.
    await smallSegments(id, (instance) => {
      instance.archiver.limits = { ...instance.archiver.limits, eventsMax: 7 };
      instance.archiver.bucket = null;
    });
    for (let b = 0; b < 3; b++) {
      clock.advance(1_000);
      const operations = Array.from({ length: 400 }, (_, i) => ({ op: "credit", credit_id: `c${b}_${i}`, amount: 1 }));
      expect((await api("POST", `/v1/accounts/${id}/batch`, { operations })).body.committed).toBe(true);
    }
    await runAlarms(id); // delivered to the read side; nothing sealed without a bucket
    const seqs = await runInDurableObject(stub(id), async (instance: AccountDurableObject) => {
      const history = (instance as unknown as { history: History }).history;
      const head = instance.store.account?.last_seq ?? 0;
      const pages = history.pages(head);
      const read: number[] = [];
      const first = await pages.next();
      if (!first.done && "events" in first.value) read.push(...first.value.events.map((e) => e.seq));
      // Between two pages the alarm seals past what was read.
      instance.archiver.bucket = env.ARCHIVE as R2Bucket;
      for (let runs = 0; runs < 500 && (await instance.archiver.status()).archived_through <= 1_001; runs++) {
        await instance.archiver.run();
      }
      for await (const page of pages) {
        if ("failure" in page) throw new Error(page.failure.reason);
        read.push(...page.events.map((e) => e.seq));
      }
      return { read, head };
    });
    expect(seqs.read).toEqual(Array.from({ length: seqs.head }, (_, i) => i + 1));
    expect((await api("GET", `/v1/accounts/${id}/verify`)).body).toMatchObject({ ok: true });
  });

  it("replays archived operations inside a batch", async () => {
    const clock = useManualClock();
    const id = await busyAccount(clock, 4);
    await runAlarms(id);
    const batch = await api("POST", `/v1/accounts/${id}/batch`, {
      operations: [
        // The same metadata in another member order is the same request.
        { op: "credit", credit_id: "c0", amount: 100, metadata: { batch: "b", note: "n0" } },
        { op: "charge", charge_id: "ch0", amount: 9 },
        { op: "credit", credit_id: "fresh", amount: 5 },
      ],
    });
    expect(batch.body.results.map((r: { status: number; replayed?: boolean }) => [r.status, r.replayed])).toEqual([
      [201, true],
      [201, true],
      [201, undefined],
    ]);
  });
});

/** The reservation rows as stored: which ones keep their state, and the columns of the others. */
const reservationRows = (id: string) =>
  runInDurableObject(stub(id), (_i: AccountDurableObject, state) =>
    state.storage.sql
      .exec<{ reservation_id: string; status: string; state: string | null; end_seq: number | null }>(
        "SELECT reservation_id, status, end_seq, state FROM reservations ORDER BY reservation_id",
      )
      .toArray()
      .map((r) => ({ id: r.reservation_id, status: r.status, stateless: r.state === null, ended: r.end_seq !== null })),
  );

/** Every call whose answer must not change once an entity's events are sealed: replays and refusals. */
const ENDED_CALLS: [string, string, Record<string, unknown>][] = [
  ["POST", "/reservations", { reservation_id: "r_cap", amount: 300, ttl_seconds: 600, context: { model: "m" } }],
  ["POST", "/reservations/r_cap/capture", { amount: 120, usage: { input_tokens: 7 }, metadata: { z: "1", y: "2" } }],
  ["POST", "/reservations", { reservation_id: "r_rel", amount: 50, metadata: { b: "2", a: "1" } }],
  ["POST", "/reservations/r_rel/release", {}],
  ["POST", "/charges", { charge_id: "ch", amount: 40 }],
  ["POST", "/refunds", { refund_id: "f1", charge_id: "r_cap", amount: 20 }],
  ["POST", "/refunds", { refund_id: "f2", charge_id: "ch", amount: 15 }],
  // Refused the same way before and after: a settlement of an ended hold, an extension of one,
  // a refund past what was charged, a reused id with another body.
  ["POST", "/reservations/r_rel/capture", { amount: 10 }],
  ["POST", "/reservations/r_cap/release", {}],
  ["POST", "/reservations/r_exp/capture", { amount: 10 }],
  ["POST", "/reservations/r_cap/extend", { ttl_seconds: 900, extension_id: "x2" }],
  ["POST", "/refunds", { refund_id: "f3", charge_id: "r_cap", amount: 101 }],
  ["POST", "/refunds", { refund_id: "f4", charge_id: "ch", amount: 26 }],
  ["POST", "/reservations", { reservation_id: "r_cap", amount: 301 }],
  ["POST", "/charges", { charge_id: "ch", amount: 41 }],
];

describe("ended reservations and charges kept as their records", () => {
  it("answer every replay, read and refusal as before their events were sealed, and refunds stay within the charge", async () => {
    const clock = useManualClock();
    const id = await openAccount(1_000);
    await smallSegments(id);
    const call = ([method, path, body]: (typeof ENDED_CALLS)[number]) => api(method, `/v1/accounts/${id}${path}`, body);
    const answers = async () => {
      const out: unknown[] = [];
      for (const c of ENDED_CALLS) {
        const response = await call(c);
        out.push([response.status, response.body]);
      }
      for (const r of ["r_cap", "r_rel", "r_exp"])
        out.push((await api("GET", `/v1/accounts/${id}/reservations/${r}`)).body);
      return out;
    };
    // The original answers, rendered from the fold's own state (before any row was rebuilt).
    const originals: unknown[] = [];
    const accepted = async (c: (typeof ENDED_CALLS)[number]) => {
      const response = await call(c);
      expect([response.status < 300, c[1], response.body]).toEqual([true, c[1], response.body]);
      originals.push([response.status, response.body]);
    };
    await accepted(ENDED_CALLS[0] as (typeof ENDED_CALLS)[number]);
    // r_cap was extended before its capture: its terms are not its FundsReserved event's.
    clock.advance(1_000);
    const extend = { ttl_seconds: 7_200, extension_id: "x1", on_expiry: "capture" };
    expect((await api("POST", `/v1/accounts/${id}/reservations/r_cap/extend`, extend)).status).toBe(200);
    for (const c of ENDED_CALLS.slice(1, 7)) await accepted(c);
    const expiring = { reservation_id: "r_exp", amount: 80, ttl_seconds: 60, on_expiry: "capture" };
    expect((await api("POST", `/v1/accounts/${id}/reservations`, expiring)).status).toBe(201);
    clock.advance(61_000);
    await runDurableObjectAlarm(stub(id));
    const before = await answers();
    expect(await reservationRows(id)).toEqual([
      { id: "r_cap", status: "captured", stateless: true, ended: true },
      { id: "r_exp", status: "expired", stateless: true, ended: true },
      { id: "r_rel", status: "released", stateless: true, ended: true },
    ]);
    await creditRounds(clock, id);
    await runAlarms(id);
    expect((await stub(id).archiveStatus()).archived_through).toBeGreaterThanOrEqual(20);
    const kept = await runInDurableObject(
      stub(id),
      (_i: AccountDurableObject, state) =>
        state.storage.sql.exec<{ first: number }>("SELECT MIN(seq) AS first FROM events").one().first,
    );
    expect(kept).toBeGreaterThan(20); // every event of these holds and charges is in R2 only
    const balance = (await api("GET", `/v1/accounts/${id}`)).body.balance;
    // Read back from the segments: the same JSON, the same statuses, nothing applied twice; a
    // replay answers what the original answered (its reservation rebuilt from two sealed events).
    const after = await answers();
    expect(after).toEqual(before);
    expect(after.slice(0, 7)).toEqual(originals);
    const [, captured] = originals[1] as [number, { reservation: unknown }];
    expect(after.at(-3)).toEqual(captured.reservation);
    expect((await api("GET", `/v1/accounts/${id}`)).body.balance).toBe(balance);
    // What is left of each charge can still be refunded, to the unit and no further.
    const rest = (refund_id: string, charge_id: string, amount: number) =>
      api("POST", `/v1/accounts/${id}/refunds`, { refund_id, charge_id, amount });
    expect((await rest("f5", "r_cap", 100)).status).toBe(201);
    expect((await rest("f6", "ch", 25)).status).toBe(201);
    expect((await rest("f7", "r_exp", 80)).status).toBe(201);
    for (const [charge, n] of [
      ["r_cap", 8],
      ["ch", 9],
      ["r_exp", 10],
    ] as const) {
      const over = await rest(`f${n}`, charge, 1);
      expect([over.status, over.body.code]).toEqual([422, "refund_exceeds_charge"]);
    }
    expect((await api("GET", `/v1/accounts/${id}`)).body.balance).toBe(balance + 100 + 25 + 80);
  });
});
