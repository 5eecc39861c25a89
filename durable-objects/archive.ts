/**
 * Sealing an account's log into segments archived to R2 (docs/archive.md), so that the
 * object's SQLite keeps a bounded tail while the whole history stays provable.
 *
 * A state machine driven by the alarm (and the sweep's catch-up), never by a command. Each step is
 * idempotent and its progress is durable, so a crash between any two steps resumes correctly:
 * 1. plan: choose the next segment's seq range and record it (`archive_plan`), so a retry
 *    seals exactly the same range (the object's key names it);
 * 2. put: build the segment's lines from the events table and put them to R2 (R2 checks the
 *    SHA-256 we send);
 * 3. check: read the object back and compare its length and SHA-256;
 * 4. entry: sign a checkpoint of the segment's last event and put the manifest entry next to it;
 * 5. record: in one transaction, the segment's index row in, the plan out; from here on reads
 *    of its seqs go to R2;
 * 6. delete: the archived events leave the events table in bounded chunks, one transaction
 *    each, yielding between them; a restart finds the segment not yet marked deleted and goes on.
 * Any R2 or signing failure deletes nothing: the run stops, and the alarm retries with
 * exponential backoff (ARCHIVE_BACKOFF_MS_MIN up to ARCHIVE_BACKOFF_MS_MAX).
 *
 * Events are sealed only when the projection has delivered them (and the page it may re-read),
 * and never the head: the snapshot is read from the head row on start.
 */
import { createHash } from "node:crypto";
import { exportLine } from "../src/audit/export-line";
import { type AuditKey, signCheckpoint } from "../src/audit/signing";
import { clock } from "../src/clock";
import type { ArchiveLimits } from "../src/config";
import { GENESIS_HASH } from "../src/domain/chain";
import type { LedgerEvent } from "../src/domain/events";
import { assert } from "../src/domain/money";
import type { AccountState } from "../src/domain/state";
import {
  type ArchiveBucket,
  ArchiveUnavailable,
  SEGMENT_FORMAT,
  SEGMENT_OFFSET_STRIDE_EVENTS,
  type SegmentEntry,
  type SegmentIndex,
  segmentKeys,
} from "./segments";

/** Segments sealed (or deleted) per alarm run; the alarm re-arms at once for the rest. */
export const ARCHIVE_SEGMENTS_PER_RUN = 4;
/** Backoff of a failed sealing: doubles from the minimum up to the maximum. */
export const ARCHIVE_BACKOFF_MS_MIN = 2_000;
export const ARCHIVE_BACKOFF_MS_MAX = 3_600_000;

export type { ArchiveLimits };

/** The steps of sealing, in order; `onStep` is called after each (a crash-injection seam). */
export type SealStep = "planned" | "put" | "checked" | "entry" | "recorded" | "deleted_chunk" | "deleted";

export interface ArchiveHost {
  account(): AccountState | null;
  /** The highest seq sealing may take: the projection has delivered it and will not re-read it. */
  sealableThrough(): number;
  /** Events through `lastSeq` are about to leave the table: what the object folds on start must not need them. */
  beforeDeleting(lastSeq: number): void;
  signingKey(): Promise<AuditKey>;
  /** Asks the object to (re)arm its alarm. */
  wake(): void;
  log(line: Record<string, unknown>): void;
}

interface Plan {
  first_seq: number;
  last_seq: number;
}

interface Built {
  bytes: Uint8Array;
  sha256: string;
  offsets: number[];
  first: LedgerEvent;
  last: LedgerEvent;
}

const yieldTurn = () => new Promise((resolve) => setTimeout(resolve, 0));

export class Archiver {
  /** Test seams: the bucket (to make R2 fail), the limits (small segments), a step hook (crashes). */
  bucket: ArchiveBucket | null;
  limits: ArchiveLimits;
  onStep: ((step: SealStep) => void) | null = null;
  private plan: Plan | null = null;
  private failures = 0;
  private retryAtMs: number | null = null;
  private running: Promise<void> | null = null;
  private runDue = false;
  /** Bytes and segments archived by this object since it started (for the bench). */
  sealed = { segments: 0, bytes: 0 };

  constructor(
    private readonly storage: DurableObjectStorage,
    readonly index: SegmentIndex,
    private readonly host: ArchiveHost,
    bucket: ArchiveBucket | null,
    limits: ArchiveLimits,
  ) {
    this.bucket = bucket;
    this.limits = limits;
    const row = storage.sql
      .exec<{ first_seq: number | null; last_seq: number | null; failures: number; retry_at_ms: number | null }>(
        "SELECT first_seq, last_seq, failures, retry_at_ms FROM archive_plan WHERE id = 1",
      )
      .toArray()[0];
    if (row !== undefined) {
      this.plan =
        row.first_seq === null || row.last_seq === null ? null : { first_seq: row.first_seq, last_seq: row.last_seq };
      this.failures = row.failures;
      this.retryAtMs = row.retry_at_ms;
    }
  }

  /**
   * When the alarm must wake for sealing: work in progress, a retry, or a full segment waiting.
   * Nothing while a run is due or running: the run re-arms when it ends, at its retry time if it
   * failed (an alarm armed "now" meanwhile would only wake to find the backoff not over).
   */
  wakeAtMs(nowMs: number): number | null {
    if (this.bucket === null || this.host.account() === null || this.runDue) return null;
    if (this.retryAtMs !== null) return this.retryAtMs;
    if (this.plan !== null || this.index.deleting) return nowMs;
    return this.sealableEnd() - this.index.archivedThrough >= this.limits.eventsMax ? nowMs : null;
  }

  /** Status for operators and the bench. */
  status() {
    return {
      segments: this.index.count,
      archived_through: this.index.archivedThrough,
      sealing: this.plan,
      failures: this.failures,
      retry_at: this.retryAtMs === null ? null : new Date(this.retryAtMs).toISOString(),
    };
  }

  /** A run is about to start (the alarm or a catch-up): the alarm is re-armed by the run itself. */
  willRun(): void {
    this.runDue = true;
  }

  /** Seals and deletes what is due, a few segments per run. Never rejects: failures back off. */
  run(): Promise<void> {
    this.runDue = true;
    if (this.running === null) {
      this.running = this.advance().finally(() => {
        this.running = null;
        this.runDue = false;
        this.host.wake();
      });
    }
    return this.running;
  }

  private async advance(): Promise<void> {
    const nowMs = clock.now();
    if (this.bucket === null || this.host.account() === null) return;
    if (this.retryAtMs !== null && this.retryAtMs > nowMs) return;
    try {
      for (let done = 0; done < ARCHIVE_SEGMENTS_PER_RUN; done++) {
        if (!(await this.step(this.bucket, nowMs))) break;
      }
      if (this.failures > 0 || this.retryAtMs !== null) this.persistPlan(this.plan, 0, null);
    } catch (error) {
      const failures = this.failures + 1;
      const backoff = Math.min(ARCHIVE_BACKOFF_MS_MIN * 2 ** (failures - 1), ARCHIVE_BACKOFF_MS_MAX);
      this.persistPlan(this.plan, failures, clock.now() + backoff);
      // The error text only: it names an object key at most, never event contents.
      this.host.log({ msg: "archive_failed", failures, error: String(error) });
    }
  }

  /** One step forward (delete what is archived, else seal the planned or next segment). */
  private async step(bucket: ArchiveBucket, nowMs: number): Promise<boolean> {
    const undeleted = this.index.undeleted();
    if (undeleted !== null) {
      await this.deleteArchived(undeleted);
      return true;
    }
    if (this.plan === null) {
      const plan = this.nextPlan(nowMs);
      if (plan === null) return false;
      this.persistPlan(plan, this.failures, this.retryAtMs);
      this.onStep?.("planned");
    }
    await this.seal(bucket, this.plan as Plan);
    return true;
  }

  /** The highest seq a segment may end at now. */
  private sealableEnd(): number {
    const account = this.host.account();
    if (account === null) return 0;
    return Math.min(account.last_seq - 1, this.host.sealableThrough());
  }

  /** The next segment: SEGMENT_EVENTS_MAX events, or what is older than SEGMENT_AGE_MS_MAX. */
  private nextPlan(nowMs: number): Plan | null {
    const first = this.index.archivedThrough + 1;
    const bound = this.sealableEnd();
    if (bound < first) return null;
    let last = first + this.limits.eventsMax - 1;
    if (bound < last) {
      const oldest = this.storage.sql.exec<{ at: string }>("SELECT at FROM events WHERE seq = ?", first).one();
      if (Date.parse(oldest.at) + this.limits.ageMsMax > nowMs) return null;
      last = bound;
    }
    // End before the lines pass SEGMENT_BYTES_MAX (a body's length is its line's, within a few bytes).
    const fits = this.storage.sql
      .exec<{ last: number | null }>(
        `SELECT MAX(seq) AS last FROM (SELECT seq, SUM(length(body) + 1) OVER (ORDER BY seq) AS total
           FROM events WHERE seq BETWEEN ? AND ?) WHERE total <= ?`,
        first,
        last,
        this.limits.bytesMax,
      )
      .one().last;
    return { first_seq: first, last_seq: Math.max(first, fits ?? first) };
  }

  private persistPlan(plan: Plan | null, failures: number, retryAtMs: number | null): void {
    this.storage.sql.exec(
      `INSERT INTO archive_plan (id, first_seq, last_seq, failures, retry_at_ms) VALUES (1, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET first_seq = excluded.first_seq, last_seq = excluded.last_seq,
         failures = excluded.failures, retry_at_ms = excluded.retry_at_ms`,
      plan?.first_seq ?? null,
      plan?.last_seq ?? null,
      failures,
      retryAtMs,
    );
    this.plan = plan;
    this.failures = failures;
    this.retryAtMs = retryAtMs;
  }

  /** Steps 2 to 5 for the planned range. */
  private async seal(bucket: ArchiveBucket, plan: Plan): Promise<void> {
    const account = this.host.account();
    assert(account !== null, "an archived account exists");
    const built = this.build(plan);
    const keys = segmentKeys(account.account_id, plan.first_seq, plan.last_seq);
    await bucket.put(keys.object, built.bytes, {
      sha256: built.sha256,
      httpMetadata: { contentType: "application/x-ndjson" },
    });
    this.onStep?.("put");
    await readBack(bucket, keys.object, built);
    this.onStep?.("checked");
    const entry = await this.entry(account.account_id, keys.object, built);
    await bucket.put(keys.entry, `${JSON.stringify(entry, null, 2)}\n`, {
      httpMetadata: { contentType: "application/json" },
    });
    this.onStep?.("entry");
    this.storage.transactionSync(() => {
      this.index.record(entry, built.offsets);
      this.persistPlan(null, this.failures, this.retryAtMs);
    });
    this.sealed.segments += 1;
    this.sealed.bytes += entry.bytes;
    this.onStep?.("recorded");
  }

  /** The segment's lines, exactly as the export writes them, with their digest and offsets. */
  private build(plan: Plan): Built {
    const encoder = new TextEncoder();
    const hash = createHash("sha256");
    const parts: Uint8Array[] = [];
    const offsets: number[] = [];
    let total = 0;
    let first: LedgerEvent | null = null;
    let last: LedgerEvent | null = null;
    const rows = this.storage.sql.exec<{ body: string }>(
      "SELECT body FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq",
      plan.first_seq,
      plan.last_seq,
    );
    for (const row of rows) {
      const event = JSON.parse(row.body) as LedgerEvent;
      assert(event.seq === (last?.seq ?? plan.first_seq - 1) + 1, `the events to seal are contiguous at ${event.seq}`);
      if ((event.seq - plan.first_seq) % SEGMENT_OFFSET_STRIDE_EVENTS === 0) offsets.push(total);
      const line = encoder.encode(exportLine(event));
      hash.update(line);
      parts.push(line);
      total += line.length;
      first ??= event;
      last = event;
    }
    assert(first !== null && last !== null && last.seq === plan.last_seq, "the planned events are all in the tail");
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const part of parts) {
      bytes.set(part, at);
      at += part.length;
    }
    return { bytes, sha256: hash.digest("hex"), offsets, first, last };
  }

  private async entry(accountId: string, object: string, built: Built): Promise<SegmentEntry> {
    const { first, last } = built;
    const previous = this.index.newest();
    const prevHash = previous?.last_hash ?? GENESIS_HASH;
    assert(previous === null || previous.last_seq + 1 === first.seq, "segments are contiguous");
    const checkpoint = await signCheckpoint(await this.host.signingKey(), {
      account_id: accountId,
      seq: last.seq,
      head_hash: last.hash,
      balance: last.balance_after,
      reserved: last.reserved_after,
      at: new Date(clock.now()).toISOString(),
    });
    return {
      format: SEGMENT_FORMAT,
      account_id: accountId,
      segment: this.index.count + 1,
      first_seq: first.seq,
      last_seq: last.seq,
      prev_hash: prevHash,
      first_hash: first.hash,
      last_hash: last.hash,
      first_at: first.at,
      last_at: last.at,
      balance: last.balance_after,
      reserved: last.reserved_after,
      object,
      bytes: built.bytes.length,
      sha256: built.sha256,
      checkpoint,
    };
  }

  /** Step 6: the archived events leave the events table, a bounded chunk per transaction. */
  private async deleteArchived(segment: { first_seq: number; last_seq: number }): Promise<void> {
    this.host.beforeDeleting(segment.last_seq);
    for (;;) {
      const deleted = this.storage.transactionSync(
        () =>
          this.storage.sql.exec(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq LIMIT ?)",
            segment.first_seq,
            segment.last_seq,
            this.limits.deleteChunkRows,
          ).rowsWritten,
      );
      if (deleted === 0) break;
      this.onStep?.("deleted_chunk");
      await yieldTurn();
    }
    this.index.markDeleted(segment.first_seq);
    this.onStep?.("deleted");
  }
}

/** Step 3: the object in R2 has exactly the bytes we built (length and SHA-256). */
async function readBack(bucket: ArchiveBucket, key: string, built: Built): Promise<void> {
  const object = await bucket.get(key);
  if (object === null) throw new ArchiveUnavailable(`segment ${key} is missing after its put`);
  const hash = createHash("sha256");
  let length = 0;
  const reader = object.body.getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) {
    hash.update(next.value);
    length += next.value.length;
  }
  const digest = hash.digest("hex");
  if (length !== built.bytes.length || digest !== built.sha256) {
    throw new ArchiveUnavailable(`segment ${key} read back ${length} bytes with digest ${digest}, not what was put`);
  }
}
