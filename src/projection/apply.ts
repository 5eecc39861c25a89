/**
 * Applies projection messages (./message.ts) of many accounts to the read side in bulk: the
 * queue consumer's work (src/projection/consumer.ts), also run by an account object that has no
 * queue binding.
 *
 * Per shard, one D1 batch (one transaction) of at most 9 statements (usually two: the sealed
 * pages and the accounts), whatever the number of accounts: each statement reads ONE JSON parameter (the batch's entries) through json_each, so
 * it stays far below D1's 100 bound parameters.
 *
 * Exactly-once effect under at-least-once delivery. Every statement applies an account's entry
 * only if the read side is at a position the entry continues:
 * - same generation and `from_seq <= last_seq + 1 < to_seq + 1`: applied (its state is absolute
 *   as of `to_seq`, so an overlap is harmless);
 * - `to_seq <= last_seq`: a duplicate, nothing to do;
 * - `from_seq > last_seq + 1`: a gap (an earlier message is late): nothing is written and the
 *   consumer retries the message later;
 * - an older generation: superseded by a rebuild, dropped; a newer one applies only through its
 *   reset message, which first deletes the account's rows.
 * The guard is evaluated in SQL inside the transaction, before the batch's last statement moves
 * the account's position, so two consumers racing on one account can never both apply, and a
 * redelivered, late or reordered message never moves a row backwards or counts twice. The read
 * side of an account is therefore always the fold of a prefix of its log.
 */
import { clock } from "../clock";
import type { EventCells, HoldChange, ProjectionMessage, RollupCells, SealedPage } from "./message";
import { PAGE_EVENT_COLUMNS, PROJECTION_MESSAGE_VERSION } from "./message";
import { ROLLUP_COLUMNS, ROLLUP_DIMENSIONS } from "./rollups";
import { type Shard, shardFor } from "./shards";

/** Bytes of entries per D1 batch: the JSON parameter is bound to each statement of the batch. */
export const APPLY_BATCH_BYTES_MAX = 1_000_000;
/**
 * Bytes of messages one account's entry merges at most (its sealed pages are a union): the rest
 * waits for the next round, so that no single entry passes APPLY_BATCH_BYTES_MAX.
 */
export const APPLY_ENTRY_BYTES_MAX = 500_000;
/** Rounds one batch makes per shard (each applies every account's next run). */
export const APPLY_ROUNDS_MAX = 4;

/**
 * What happened to a message. `gap` (an earlier message of its account is not applied yet) and
 * `failed` (its shard's write failed) ask for a retry; every other outcome is final.
 */
export type Outcome = "applied" | "duplicate" | "superseded" | "gap" | "failed" | "invalid";

/** The runtime's own counters of the read side's writes, per isolate (bench, tests). */
export const applyStats = {
  batches: 0,
  statements: 0,
  rowsWritten: 0,
  eventsApplied: 0,
  /** Commit-to-visible lag of each applied entry, in ms (bounded ring). */
  lags: [] as number[],
  reset(): void {
    this.batches = 0;
    this.statements = 0;
    this.rowsWritten = 0;
    this.eventsApplied = 0;
    this.lags = [];
  },
};
const LAGS_KEPT_MAX = 100_000;

/** One account's contiguous run of messages, merged: what a batch applies for it. */
interface Entry {
  a: string;
  g: number;
  f: number;
  t: number;
  r: 0 | 1;
  lag: number;
  acct: ProjectionMessage["account"];
  tf: number;
  tail: EventCells[];
  ro: RollupCells[];
  /** Bytes of the messages merged into this entry (their pages and tails): what it weighs in a batch. */
  bytes: number;
  pages: SealedPage[];
  rc: RollupCells[];
  holds: HoldChange[];
  /** 1 when a day bucket closed in the run: the open buckets' day moved. */
  day: 0 | 1;
  /** Indexes of the messages merged into this entry. */
  members: number[];
}

/**
 * A queued body as a message: the JSON text the objects send (./delivery.ts), parsed; an object
 * (a body queued as "json" before the text format, or a dead letter stored then) as it is. Text
 * that is not JSON stays text, which `isProjectionMessage` refuses.
 */
export function projectionBody(body: unknown): unknown {
  if (typeof body !== "string") return body;
  try {
    return JSON.parse(body) as unknown;
  } catch {
    return body;
  }
}

/** Checks the shape a consumer relies on; anything else is dead-lettered, never retried. */
export function isProjectionMessage(body: unknown): body is ProjectionMessage {
  const m = body as Partial<ProjectionMessage> | null;
  return (
    typeof m === "object" &&
    m !== null &&
    m.v === PROJECTION_MESSAGE_VERSION &&
    typeof m.account_id === "string" &&
    Number.isSafeInteger(m.generation) &&
    Number.isSafeInteger(m.from_seq) &&
    Number.isSafeInteger(m.to_seq) &&
    (m.from_seq ?? 0) >= 1 &&
    (m.to_seq ?? 0) >= (m.from_seq ?? 1) &&
    typeof m.account === "object" &&
    Array.isArray(m.tail) &&
    Array.isArray(m.pages) &&
    Array.isArray(m.rollups_open) &&
    Array.isArray(m.rollups_closed) &&
    Array.isArray(m.holds)
  );
}

/**
 * Applies messages to their shards: each as its JSON text (a queued body, a dead letter) or as an
 * object (`projectionBody`). Returns each message's outcome, by index; a shard whose D1 batch
 * fails rejects (the consumer retries those messages; nothing of that batch was written).
 */
export async function applyMessages(shards: readonly Shard[], bodies: readonly unknown[]): Promise<Outcome[]> {
  const outcomes: Outcome[] = bodies.map(() => "invalid");
  const byShard = new Map<Shard, { message: ProjectionMessage; index: number }[]>();
  bodies.forEach((body, index) => {
    const message = projectionBody(body);
    if (!isProjectionMessage(message)) return;
    const shard = shardFor(shards, message.account_id);
    const list = byShard.get(shard) ?? [];
    list.push({ message, index });
    byShard.set(shard, list);
  });
  const failures: unknown[] = [];
  await Promise.all(
    [...byShard].map(async ([shard, list]) => {
      try {
        await applyToShard(shards, shard, list, outcomes);
      } catch (error) {
        failures.push(error);
        for (const { index } of list) outcomes[index] = "failed";
      }
    }),
  );
  if (failures.length > 0) throw new ApplyError(outcomes, failures[0]);
  return outcomes;
}

/** Some shard failed: `outcomes` holds the other shards' outcomes, and "failed" for its messages. */
export class ApplyError extends Error {
  constructor(
    readonly outcomes: Outcome[],
    override readonly cause: unknown,
  ) {
    super(`read side write failed: ${String(cause)}`);
  }
}

async function applyToShard(
  shards: readonly Shard[],
  shard: Shard,
  list: { message: ProjectionMessage; index: number }[],
  outcomes: Outcome[],
): Promise<void> {
  const now = clock.now();
  // Rounds: each applies every account's first run; what a run left out (after a gap in the
  // batch, past the entry's size bound, or of a later generation) may continue the read side
  // once that round is applied, so it is tried again while a round makes progress.
  let pending = list;
  for (let round = 0; round < APPLY_ROUNDS_MAX && pending.length > 0; round++) {
    const entries: Entry[] = [];
    for (const [, messages] of groupByAccount(pending)) {
      const { entry, superseded } = chain(messages, now);
      for (const index of superseded) outcomes[index] = "superseded";
      entries.push(entry);
    }
    let progress = false;
    for (const chunk of chunks(entries)) {
      if (await applyChunk(shards, shard, chunk, outcomes, now)) progress = true;
    }
    pending = pending.filter(({ index }) => outcomes[index] === "invalid");
    if (!progress) break;
  }
  // Messages of an account that no run took: duplicates of what the read side holds now, or gaps that wait.
  if (pending.length > 0) {
    const positions = await readPositions(
      shard.db,
      pending.map(({ message }) => message.account_id),
    );
    for (const { message, index } of pending) {
      outcomes[index] = judge({ g: message.generation, t: message.to_seq }, positions.get(message.account_id));
    }
  }
}

/** Applies one chunk of entries; records their outcomes; true if any entry was settled. */
async function applyChunk(
  shards: readonly Shard[],
  shard: Shard,
  chunk: Entry[],
  outcomes: Outcome[],
  now: number,
): Promise<boolean> {
  const resets = chunk.filter((e) => e.r === 1).map((e) => e.a);
  if (resets.length > 0) await deleteElsewhere(shards, shard, resets);
  const applied = await writeBatch(shard.db, chunk, now);
  const missed = chunk.filter((e) => !applied.has(e.a));
  // Not applied: a duplicate, superseded, or a gap. The positions read now may be newer than the
  // batch's (another consumer ran since), which only turns a gap into a duplicate when that
  // consumer applied everything up to this entry's end: the same read side either way.
  const positions =
    missed.length === 0
      ? new Map<string, Position>()
      : await readPositions(
          shard.db,
          missed.map((e) => e.a),
        );
  for (const entry of chunk) {
    const verdict = applied.has(entry.a) ? "applied" : judge(entry, positions.get(entry.a));
    for (const index of entry.members) outcomes[index] = verdict;
    if (verdict === "applied") {
      applyStats.eventsApplied += entry.t - entry.f + 1;
      // Commit to visible, from the oldest event this batch made visible (an overlapping
      // message also carries events that were visible already).
      const firstNew = eventTime(entry, (applied.get(entry.a) ?? 0) + 1);
      const lag = firstNew === null ? entry.lag : Math.max(0, now - Date.parse(firstNew));
      if (applyStats.lags.length < LAGS_KEPT_MAX) applyStats.lags.push(lag);
    }
  }
  // Progress: some entry is settled (applied, duplicate, superseded), so what it held back may now continue.
  return chunk.some((entry) => entry.members.some((index) => outcomes[index] !== "gap"));
}

function groupByAccount(
  list: { message: ProjectionMessage; index: number }[],
): Map<string, { message: ProjectionMessage; index: number }[]> {
  const groups = new Map<string, { message: ProjectionMessage; index: number }[]>();
  for (const item of list) {
    const group = groups.get(item.message.account_id) ?? [];
    group.push(item);
    groups.set(item.message.account_id, group);
  }
  return groups;
}

/**
 * One account's messages as one entry: the newest reset's generation (older ones are
 * superseded), then the first contiguous run from the lowest `from_seq`. The run's absolute
 * parts come from its newest message; its finals (pages, closed rollups) are the union; holds
 * keep the newest change of each.
 */
function chain(
  messages: { message: ProjectionMessage; index: number }[],
  now: number,
): { entry: Entry; superseded: number[] } {
  const resetGeneration = Math.max(-1, ...messages.filter((m) => m.message.reset).map((m) => m.message.generation));
  const superseded = messages.filter((m) => m.message.generation < resetGeneration).map((m) => m.index);
  const generation = Math.min(
    ...messages.filter((m) => m.message.generation >= resetGeneration).map((m) => m.message.generation),
  );
  const run = messages
    .filter((m) => m.message.generation === generation)
    .sort((x, y) => x.message.from_seq - y.message.from_seq || y.message.to_seq - x.message.to_seq);
  const [head, ...rest] = run;
  if (head === undefined) throw new Error("an account entry without messages");
  const pages = new Map<number, SealedPage>();
  const closed = new Map<string, RollupCells>();
  const holds = new Map<string, HoldChange>();
  const members: number[] = [];
  let newest = head.message;
  let reset = head.message.reset;
  const take = (m: ProjectionMessage, index: number) => {
    members.push(index);
    for (const page of m.pages) pages.set(page.first_seq, page);
    for (const row of m.rollups_closed) {
      const key = JSON.stringify(row.slice(0, 2 + ROLLUP_DIMENSIONS.length));
      const kept = closed.get(key);
      if (kept === undefined || Number(kept[6]) < Number(row[6])) closed.set(key, row);
    }
    for (const change of m.holds) {
      const kept = holds.get(change.reservation_id);
      if (kept === undefined || kept.seq <= change.seq) holds.set(change.reservation_id, mergeHold(kept, change));
    }
    if (m.to_seq > newest.to_seq) newest = m;
    reset ||= m.reset && m.from_seq === 1;
  };
  take(head.message, head.index);
  let bytes = messageBytes(head.message);
  for (const { message, index } of rest) {
    if (message.to_seq <= newest.to_seq) {
      // Inside the run already: a duplicate, applied (or not) with it.
      members.push(index);
      continue;
    }
    if (message.from_seq > newest.to_seq + 1) break;
    const size = messageBytes(message);
    if (bytes + size > APPLY_ENTRY_BYTES_MAX) break;
    bytes += size;
    take(message, index);
  }
  return {
    superseded,
    entry: {
      a: head.message.account_id,
      g: generation,
      f: head.message.from_seq,
      t: newest.to_seq,
      r: reset ? 1 : 0,
      lag: Math.max(0, now - Date.parse(head.message.oldest_at)),
      acct: newest.account,
      tf: newest.tail_first_seq,
      tail: newest.tail,
      ro: newest.rollups_open,
      bytes,
      pages: [...pages.values()],
      rc: [...closed.values()],
      // A hold opened and closed within the run is still deleted: the run may overlap rows
      // already applied (a redelivered message merged with its successor), which inserted it.
      holds: [...holds.values()],
      members,
      day: [...closed.values()].some((row) => row[0] === "day") ? 1 : 0,
    },
  };
}

/** A hold's newer change over an older one: an extension of a hold opened in the run stays an open row. */
function mergeHold(older: HoldChange | undefined, newer: HoldChange): HoldChange {
  if (older?.op === "open" && newer.op === "extend") {
    const { expires_at, ttl_seconds, on_expiry } = newer;
    return {
      ...older,
      seq: newer.seq,
      row: { ...older.row, expires_at, ttl_seconds, on_expiry, updated_seq: newer.seq },
    };
  }
  return newer;
}

/** A message's size as the entry carries it (its pages and tail dominate). */
function messageBytes(message: ProjectionMessage): number {
  return JSON.stringify(message.pages).length + JSON.stringify(message.tail).length;
}

function* chunks(entries: Entry[]): Generator<Entry[]> {
  let chunk: Entry[] = [];
  let bytes = 0;
  for (const entry of entries) {
    const size = entry.bytes;
    if (chunk.length > 0 && bytes + size > APPLY_BATCH_BYTES_MAX) {
      yield chunk;
      chunk = [];
      bytes = 0;
    }
    chunk.push(entry);
    bytes += size;
  }
  if (chunk.length > 0) yield chunk;
}

interface Position {
  generation: number;
  last_seq: number;
}

/** The time of event `seq` among the entry's pages and tail, or null. */
function eventTime(entry: Entry, seq: number): string | null {
  const events: EventCells[] = [...entry.pages.flatMap((p) => p.events), ...entry.tail];
  const event = events.find((cells) => cells[0] === seq);
  return event === undefined ? null : (event[PAGE_EVENT_COLUMNS.indexOf("created_at")] as string);
}

/** Why an entry the guard (`GUARD`) refused was refused, from the read side's position. */
function judge(entry: Pick<Entry, "g" | "t">, position: Position | undefined): Outcome {
  if (position === undefined) return "gap";
  if (entry.g < position.generation) return "superseded";
  if (entry.g === position.generation && entry.t <= position.last_seq) return "duplicate";
  return "gap";
}

async function readPositions(db: D1Database, accountIds: string[]): Promise<Map<string, Position>> {
  const rows = await db
    .prepare(
      "SELECT account_id, generation, last_seq FROM accounts WHERE account_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(JSON.stringify([...new Set(accountIds)]))
    .all<Position & { account_id: string }>();
  return new Map(rows.results.map((r) => [r.account_id, { generation: r.generation, last_seq: r.last_seq }]));
}

// The entries' positions (?1: `[{a, g, f, t, r}]`, a few bytes per account) and the guard, as
// every statement sees them. Evaluated against the accounts row as it was before the batch: the
// row moves only in the batch's last statement. Each statement reads its own rows from ?2 (an
// array of arrays, account id first), so D1 parses each part of the batch once, instead of every
// statement parsing every account's whole entry (pages, tail, rollups) again.
const ENTRIES = `m AS (
  SELECT j.value ->> '$.a' AS a, j.value ->> '$.g' AS g, j.value ->> '$.f' AS f,
         j.value ->> '$.t' AS t, j.value ->> '$.r' AS r
  FROM json_each(?1) j
)`;
const GUARD = `CASE
    WHEN s.account_id IS NULL THEN m.f = 1
    WHEN m.g > s.generation THEN m.r = 1
    WHEN m.g = s.generation THEN m.t > s.last_seq AND m.f <= s.last_seq + 1
    ELSE 0 END`;
// Each row of ?2 is read out of the parameter once, as JSONB (`d`, materialized), and its cells are
// looked up in that. A cell read as `json_each(...).value ->> '$[i]'` costs SQLite a rewrite of the
// whole row as JSON text per reference (the row: up to 18 cells, a tail of 16 events among them):
// measured under callgrind, that was 6% of all the work of a reserve+capture on 100 accounts.
const OK = `WITH ${ENTRIES}, ok AS (SELECT m.a, m.g FROM m LEFT JOIN accounts s ON s.account_id = m.a WHERE ${GUARD}),
  d AS MATERIALIZED (SELECT jsonb(value) AS v FROM json_each(?2))`;
const RESETS = `WITH ${ENTRIES} SELECT m.a FROM m LEFT JOIN accounts s ON s.account_id = m.a
  WHERE m.r = 1 AND (s.account_id IS NULL OR m.g > s.generation)`;
/** Rows of ?2 (alias `d`) whose account passes the guard. */
const ROWS = "FROM d WHERE (d.v ->> '$[0]') IN (SELECT a FROM ok)";
/** Cell `i` of a row of ?2: `->>` for a value, `->` for JSON kept as JSON text. */
const cell = (i: number, json = false) => `d.v ${json ? "->" : "->>"} '$[${i}]'`;

const HOLD_COLUMNS = [
  "account_id",
  "reservation_id",
  "status",
  "amount",
  "captured_amount",
  "released_amount",
  "overage",
  "on_expiry",
  "ttl_seconds",
  "expires_at",
  "created_at",
  "settled_at",
  "request_id",
  "service_id",
  "provider",
  "model",
  "reserve_seq",
  "updated_seq",
] as const;
const ACCOUNT_COLUMNS = [
  "account_id",
  "currency",
  "balance",
  "reserved",
  "available",
  "credit_limit",
  "status",
  "open_reservations",
  "last_seq",
  "created_at",
  "updated_at",
] as const;
const ROLLUP_KEY_COLUMNS = ["account_id", "grain", "bucket", ...ROLLUP_DIMENSIONS];
/** The accounts row's cells in ?2, after ACCOUNT_COLUMNS: generation, tail_first_seq, tail, open_rollups, open_day, lag, projected_at. */
const A = ACCOUNT_COLUMNS.length;

/** Each statement, and the rows of ?2 it reads (account id first), built from the batch's entries at `at`. */
interface Part {
  sql: string;
  rows(entries: readonly Entry[], at: string): unknown[][];
}

/** The tables holding an account's read side: a rebuild's reset empties them. */
const ACCOUNT_TABLES = ["event_pages", "open_holds", "rollup_rows", "accounts"] as const;

const PART = {
  pages: {
    sql: `INSERT OR IGNORE INTO event_pages (account_id, first_seq, last_seq, first_at, last_at, events)
      ${OK} SELECT ${[0, 1, 2, 3, 4].map((i) => cell(i)).join(", ")}, ${cell(5, true)} ${ROWS}`,
    rows: (entries) =>
      entries.flatMap((e) => e.pages.map((p) => [e.a, p.first_seq, p.last_seq, p.first_at, p.last_at, p.events])),
  },
  // Closed buckets are final; `seq` still guards them (a rebuild writes the same values).
  rollups: {
    sql: `INSERT INTO rollup_rows (${ROLLUP_COLUMNS.join(", ")})
      ${OK} SELECT ${ROLLUP_COLUMNS.map((_, i) => (i < 7 ? cell(i) : `CAST(${cell(i)} AS INTEGER)`)).join(", ")} ${ROWS}
      ON CONFLICT (${ROLLUP_KEY_COLUMNS.join(", ")}) DO UPDATE SET ${ROLLUP_COLUMNS.slice(ROLLUP_KEY_COLUMNS.length)
        .map((c) => `${c} = excluded.${c}`)
        .join(", ")} WHERE excluded.seq > rollup_rows.seq`,
    rows: (entries) => entries.flatMap((e) => e.rc.map((row) => [e.a, ...row])),
  },
  closeHolds: {
    sql: `DELETE FROM open_holds WHERE (account_id, reservation_id) IN (${OK} SELECT ${cell(0)}, ${cell(1)} ${ROWS})`,
    rows: (entries) =>
      entries.flatMap((e) => e.holds.flatMap((h) => (h.op === "close" ? [[e.a, h.reservation_id]] : []))),
  },
  openHolds: {
    sql: `INSERT INTO open_holds (${HOLD_COLUMNS.join(", ")})
      ${OK} SELECT ${HOLD_COLUMNS.map((_, i) => cell(i)).join(", ")} ${ROWS}
      ON CONFLICT (account_id, reservation_id) DO UPDATE SET ${HOLD_COLUMNS.slice(2)
        .map((c) => `${c} = excluded.${c}`)
        .join(", ")}`,
    rows: (entries) =>
      entries.flatMap((e) =>
        e.holds.flatMap((h) => (h.op === "open" ? [[e.a, ...HOLD_COLUMNS.slice(1).map((c) => h.row[c])]] : [])),
      ),
  },
  extendHolds: {
    sql: `UPDATE open_holds SET expires_at = x.expires_at, ttl_seconds = x.ttl_seconds,
        on_expiry = x.on_expiry, updated_seq = x.seq
      FROM (${OK} SELECT ${cell(0)} AS account_id, ${cell(1)} AS reservation_id, ${cell(2)} AS expires_at,
        ${cell(3)} AS ttl_seconds, ${cell(4)} AS on_expiry, ${cell(5)} AS seq ${ROWS}) x
      WHERE open_holds.account_id = x.account_id AND open_holds.reservation_id = x.reservation_id`,
    rows: (entries) =>
      entries.flatMap((e) =>
        e.holds.flatMap((h) =>
          h.op === "extend" ? [[e.a, h.reservation_id, h.expires_at, h.ttl_seconds, h.on_expiry, h.seq]] : [],
        ),
      ),
  },
  // The open buckets' day moves when a day bucket closes (or the row is new): a separate, rare
  // write, so that the accounts upsert never touches the open_day index.
  openDay: {
    sql: `UPDATE accounts SET open_day = x.day
      FROM (${OK} SELECT ${cell(0)} AS account_id, ${cell(1)} AS day ${ROWS}) x
      WHERE accounts.account_id = x.account_id AND accounts.open_day != x.day`,
    rows: (entries) => entries.flatMap((e) => (e.day === 1 ? [[e.a, e.acct.open_day]] : [])),
  },
  accounts: {
    sql: `INSERT INTO accounts (${ACCOUNT_COLUMNS.join(", ")}, generation, tail_first_seq, tail, open_rollups,
        open_day, projected_at, projection_lag_ms)
      ${OK} SELECT ${ACCOUNT_COLUMNS.map((_, i) => cell(i)).join(", ")}, ${cell(A)}, ${cell(A + 1)},
        ${cell(A + 2, true)}, ${cell(A + 3, true)}, ${cell(A + 4)}, ${cell(A + 6)}, ${cell(A + 5)} ${ROWS}
      ON CONFLICT (account_id) DO UPDATE SET previous_seq = accounts.last_seq, ${[
        ...ACCOUNT_COLUMNS.slice(1),
        "generation",
        "tail_first_seq",
        "tail",
        "open_rollups",
        "projected_at",
        "projection_lag_ms",
      ]
        .map((c) => `${c} = excluded.${c}`)
        .join(", ")}
      RETURNING account_id, previous_seq`,
    rows: (entries, at) =>
      entries.map((e) => [
        ...ACCOUNT_COLUMNS.map((c) => e.acct[c]),
        e.g,
        e.tf,
        e.tail,
        e.ro,
        e.acct.open_day,
        e.lag,
        at,
      ]),
  },
} satisfies Record<string, Part>;

/** In batch order; the accounts upsert, which moves the positions the guard reads, comes last. */
const PARTS: readonly Part[] = [
  PART.pages,
  PART.rollups,
  PART.closeHolds,
  PART.openHolds,
  PART.extendHolds,
  PART.openDay,
  PART.accounts,
];

/**
 * One transaction: applies the entries that continue the read side. Returns the accounts applied,
 * each with the seq the read side was at before (0 for a new row).
 */
async function writeBatch(db: D1Database, entries: Entry[], now: number): Promise<Map<string, number>> {
  const positions = JSON.stringify(entries.map(({ a, g, f, t, r }) => ({ a, g, f, t, r })));
  const at = new Date(now).toISOString();
  const statements: D1PreparedStatement[] = [];
  if (entries.some((e) => e.r === 1)) {
    for (const table of ACCOUNT_TABLES) {
      statements.push(db.prepare(`DELETE FROM ${table} WHERE account_id IN (${RESETS})`).bind(positions));
    }
  }
  for (const part of PARTS) {
    const rows = part.rows(entries, at);
    if (rows.length > 0) statements.push(db.prepare(part.sql).bind(positions, JSON.stringify(rows)));
  }
  const results = await db.batch(statements);
  applyStats.batches += 1;
  applyStats.statements += statements.length;
  for (const result of results) applyStats.rowsWritten += result.meta?.rows_written ?? 0;
  const applied = (results.at(-1)?.results ?? []) as { account_id: string; previous_seq: number }[];
  return new Map(applied.map((r) => [r.account_id, r.previous_seq]));
}

/** A rebuild's reset also removes the account's rows from every other shard (after N changed). */
async function deleteElsewhere(shards: readonly Shard[], home: Shard, accountIds: string[]): Promise<void> {
  const param = JSON.stringify(accountIds);
  await Promise.all(
    shards
      .filter((s) => s !== home)
      .map((s) =>
        s.db.batch(
          ACCOUNT_TABLES.map((table) =>
            s.db.prepare(`DELETE FROM ${table} WHERE account_id IN (SELECT value FROM json_each(?1))`).bind(param),
          ),
        ),
      ),
  );
}
