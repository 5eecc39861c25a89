/**
 * Applies projection messages (../wire.ts, built by ../producer/message.ts) of many accounts to the read side in bulk: the
 * queue consumer's work (./queue.ts), also run by an account object that has no
 * queue binding.
 *
 * Per shard, one D1 batch (one transaction) of at most 9 statements (usually two: the sealed
 * pages and the accounts), whatever the number of accounts: each statement binds two JSON
 * parameters (the entries' positions, ?1, and its own rows, ?2) read through json_each, so it
 * stays far below D1's 100 bound parameters.
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
import { clock } from "../../clock";
import { D1Failure } from "../../errors";
import { type Shard, shardFor } from "../../read-side/shards";
import { ROLLUP_CALLER_DIMENSIONS, ROLLUP_COLUMNS, ROLLUP_DIMENSIONS } from "../rollups";
import {
  EVENT_CELL_CREATED_AT,
  type EventCells,
  type HoldChange,
  PROJECTION_MESSAGE_VERSION,
  type ProjectionMessage,
  type RollupCells,
  type SealedPage,
} from "../wire";

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

/**
 * Where an entry starts and ends: what the guard (`GUARD`) compares with the read side's row. Sent
 * to every statement as ?1, a JSON array of these, by name.
 */
interface EntryPosition {
  account_id: string;
  generation: number;
  from_seq: number;
  to_seq: number;
  /** 1 for a rebuild's first message: the account's rows are deleted first. */
  reset: 0 | 1;
}
const POSITION_FIELDS = [
  "account_id",
  "generation",
  "from_seq",
  "to_seq",
  "reset",
] as const satisfies readonly (keyof EntryPosition)[];
/** One account's contiguous run of messages, merged: what a batch applies for it. */
interface Entry extends EntryPosition {
  lag: number;
  account: ProjectionMessage["account"];
  tail_first_seq: number;
  tail: EventCells[];
  rollups_open: RollupCells[];
  /** Bytes of the messages merged into this entry (their pages and tails): what it weighs in a batch. */
  bytes: number;
  pages: SealedPage[];
  rollups_closed: RollupCells[];
  holds: HoldChange[];
  /** 1 when a day bucket closed in the run: the open buckets' day moved. */
  day: 0 | 1;
  /** Indexes of the messages merged into this entry. */
  members: number[];
}

/**
 * A queued body as a message: the JSON text the objects send (../producer/delivery.ts), parsed; an object
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
export class ApplyError extends D1Failure {
  override name = "ApplyError";
  constructor(
    readonly outcomes: Outcome[],
    cause: unknown,
  ) {
    super(cause);
    this.message = `read side write failed: ${String(cause)}`;
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
      outcomes[index] = judge(
        { generation: message.generation, to_seq: message.to_seq },
        positions.get(message.account_id),
      );
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
  const resets = chunk.filter((e) => e.reset === 1).map((e) => e.account_id);
  if (resets.length > 0) await deleteElsewhere(shards, shard, resets);
  const applied = await writeBatch(shard.db, chunk, now);
  const missed = chunk.filter((e) => !applied.has(e.account_id));
  // Not applied: a duplicate, superseded, or a gap. The positions read now may be newer than the
  // batch's (another consumer ran since), which only turns a gap into a duplicate when that
  // consumer applied everything up to this entry's end: the same read side either way.
  const positions =
    missed.length === 0
      ? new Map<string, ReadPosition>()
      : await readPositions(
          shard.db,
          missed.map((e) => e.account_id),
        );
  for (const entry of chunk) {
    const verdict = applied.has(entry.account_id) ? "applied" : judge(entry, positions.get(entry.account_id));
    for (const index of entry.members) outcomes[index] = verdict;
    if (verdict === "applied") {
      applyStats.eventsApplied += entry.to_seq - entry.from_seq + 1;
      // Commit to visible, from the oldest event this batch made visible (an overlapping
      // message also carries events that were visible already).
      const firstNew = eventTime(entry, (applied.get(entry.account_id) ?? 0) + 1);
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
  const { pages, closed, holds, members, newest, reset, bytes } = mergeRun(head, rest);
  return {
    superseded,
    entry: {
      account_id: head.message.account_id,
      generation,
      from_seq: head.message.from_seq,
      to_seq: newest.to_seq,
      reset: reset ? 1 : 0,
      lag: Math.max(0, now - Date.parse(head.message.oldest_at)),
      account: newest.account,
      tail_first_seq: newest.tail_first_seq,
      tail: newest.tail,
      rollups_open: newest.rollups_open,
      bytes,
      pages: [...pages.values()],
      rollups_closed: [...closed.values()],
      // A hold opened and closed within the run is still deleted: the run may overlap rows
      // already applied (a redelivered message merged with its successor), which inserted it.
      holds: [...holds.values()],
      members,
      day: [...closed.values()].some((row) => row[0] === "day") ? 1 : 0,
    },
  };
}

type Queued = { message: ProjectionMessage; index: number };

/** The contiguous run from `head`: its finals unioned, its newest message, its size in bytes. */
function mergeRun(head: Queued, rest: readonly Queued[]) {
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
      // Its key: the cells before seq, and the caller's dimensions after the sums.
      const key = JSON.stringify([...row.slice(0, ROLLUP_CELL_SEQ), ...row.slice(ROLLUP_CELL_CALLER)]);
      const kept = closed.get(key);
      if (kept === undefined || Number(kept[ROLLUP_CELL_SEQ]) < Number(row[ROLLUP_CELL_SEQ])) closed.set(key, row);
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
  return { pages, closed, holds, members, newest, reset, bytes };
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

interface ReadPosition {
  generation: number;
  last_seq: number;
}

/** The time of event `seq` among the entry's pages and tail, or null. */
function eventTime(entry: Entry, seq: number): string | null {
  const events: EventCells[] = [...entry.pages.flatMap((p) => p.events), ...entry.tail];
  const event = events.find((cells) => cells[0] === seq);
  return event === undefined ? null : (event[EVENT_CELL_CREATED_AT] as string);
}

/** Why an entry the guard (`GUARD`) refused was refused, from the read side's position. */
function judge(entry: Pick<Entry, "generation" | "to_seq">, position: ReadPosition | undefined): Outcome {
  if (position === undefined) return "gap";
  if (entry.generation < position.generation) return "superseded";
  if (entry.generation === position.generation && entry.to_seq <= position.last_seq) return "duplicate";
  return "gap";
}

async function readPositions(db: D1Database, accountIds: string[]): Promise<Map<string, ReadPosition>> {
  const rows = await db
    .prepare(
      "SELECT account_id, generation, last_seq FROM accounts WHERE account_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(JSON.stringify([...new Set(accountIds)]))
    .all<ReadPosition & { account_id: string }>();
  return new Map(rows.results.map((r) => [r.account_id, { generation: r.generation, last_seq: r.last_seq }]));
}

// The entries' positions (?1: `[EntryPosition]`, a few dozen bytes per account) and the guard, as
// every statement sees them. Evaluated against the accounts row as it was before the batch: the
// row moves only in the batch's last statement. Each statement reads its own rows from ?2 (an
// array of arrays, account id first), so D1 parses each part of the batch once, instead of every
// statement parsing every account's whole entry (pages, tail, rollups) again.
const ENTRIES = `m AS (
  SELECT ${POSITION_FIELDS.map((f) => `j.value ->> '$.${f}' AS ${f}`).join(", ")}
  FROM json_each(?1) j
)`;
const GUARD = `CASE
    WHEN s.account_id IS NULL THEN m.from_seq = 1
    WHEN m.generation > s.generation THEN m.reset = 1
    WHEN m.generation = s.generation THEN m.to_seq > s.last_seq AND m.from_seq <= s.last_seq + 1
    ELSE 0 END`;
// Each row of ?2 is read out of the parameter once, as JSONB (`d`, materialized), and its cells are
// looked up in that. A cell read as `json_each(...).value ->> '$[i]'` costs SQLite a rewrite of the
// whole row as JSON text per reference (the row: up to 18 cells, a tail of 16 events among them):
// measured under callgrind, that was 6% of all the work of a reserve+capture on 100 accounts.
const OK = `WITH ${ENTRIES}, ok AS (SELECT m.account_id FROM m LEFT JOIN accounts s ON s.account_id = m.account_id
    WHERE ${GUARD}),
  d AS MATERIALIZED (SELECT jsonb(value) AS v FROM json_each(?2))`;
const RESETS = `WITH ${ENTRIES} SELECT m.account_id FROM m LEFT JOIN accounts s ON s.account_id = m.account_id
  WHERE m.reset = 1 AND (s.account_id IS NULL OR m.generation > s.generation)`;
/** Rows of ?2 (alias `d`) whose account passes the guard. */
const ROWS = "FROM d WHERE (d.v ->> '$[0]') IN (SELECT account_id FROM ok)";
/**
 * The rows a statement reads from ?2, declared once by name: each row is sent as an array in
 * this order (D1 parses an array of cells faster than an object per row), and the statement's
 * SELECT list is generated from the same list, so the two can never disagree. `json` columns
 * stay JSON text; `integer` ones are cast (64-bit sums travel as decimal strings).
 */
function rowsOf<const C extends string>(
  columns: readonly C[],
  kinds: { json?: readonly C[]; integer?: readonly C[]; orEmpty?: readonly string[] } = {},
) {
  const select = columns
    .map((column, i) => {
      const read = `d.v ${kinds.json?.includes(column) ? "->" : "->>"} '$[${i}]'`;
      // A cell a message from before the column lacks reads as '' (a dimension it did not have).
      if (kinds.orEmpty?.includes(column)) return `COALESCE(${read}, '') AS ${column}`;
      return `${kinds.integer?.includes(column) ? `CAST(${read} AS INTEGER)` : read} AS ${column}`;
    })
    .join(", ");
  return { columns, select, row: (values: Readonly<Record<C, unknown>>): unknown[] => columns.map((c) => values[c]) };
}

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
/** A rollup's cells on the wire are ROLLUP_COLUMNS without account_id: where `seq` stands. */
const ROLLUP_CELL_SEQ = ROLLUP_COLUMNS.indexOf("seq") - 1;
/** Where the caller's dimensions start in a rollup's cells (they stand last: issue 28). */
const ROLLUP_CELL_CALLER = ROLLUP_COLUMNS.indexOf(ROLLUP_CALLER_DIMENSIONS[0]) - 1;

const PAGE_ROWS = rowsOf(["account_id", "first_seq", "last_seq", "first_at", "last_at", "events"], {
  json: ["events"],
});
/** seq, the balances and the sums: the rollup columns besides its key (all integers). */
const ROLLUP_VALUE_COLUMNS = ROLLUP_COLUMNS.filter((c) => !(ROLLUP_KEY_COLUMNS as readonly string[]).includes(c));
// The values are integers (the sums arrive as decimal strings).
const ROLLUP_ROWS = rowsOf(ROLLUP_COLUMNS, { integer: ROLLUP_VALUE_COLUMNS, orEmpty: ROLLUP_CALLER_DIMENSIONS });
const CLOSE_ROWS = rowsOf(["account_id", "reservation_id"]);
const HOLD_ROWS = rowsOf(HOLD_COLUMNS);
const EXTEND_ROWS = rowsOf(["account_id", "reservation_id", "expires_at", "ttl_seconds", "on_expiry", "seq"]);
const OPEN_DAY_ROWS = rowsOf(["account_id", "day"]);
const ACCOUNT_ROWS = rowsOf(
  [
    ...ACCOUNT_COLUMNS,
    "generation",
    "tail_first_seq",
    "tail",
    "open_rollups",
    "open_day",
    "projected_at",
    "projection_lag_ms",
  ],
  { json: ["tail", "open_rollups"] },
);

/** Each statement, and the rows of ?2 it reads (account id first), built from the batch's entries at `at`. */
interface Part {
  sql: string;
  rows(entries: readonly Entry[], at: string): unknown[][];
}

/** The tables holding an account's read side: a rebuild's reset empties them. */
const ACCOUNT_TABLES = ["event_pages", "open_holds", "rollup_rows", "accounts"] as const;

const PART = {
  pages: {
    sql: `INSERT OR IGNORE INTO event_pages (${PAGE_ROWS.columns.join(", ")}) ${OK} SELECT ${PAGE_ROWS.select} ${ROWS}`,
    rows: (entries) => entries.flatMap((e) => e.pages.map((p) => PAGE_ROWS.row({ ...p, account_id: e.account_id }))),
  },
  // Closed buckets are final; `seq` still guards them (a rebuild writes the same values).
  rollups: {
    sql: `INSERT INTO rollup_rows (${ROLLUP_COLUMNS.join(", ")}) ${OK} SELECT ${ROLLUP_ROWS.select} ${ROWS}
      ON CONFLICT (${ROLLUP_KEY_COLUMNS.join(", ")}) DO UPDATE SET ${ROLLUP_VALUE_COLUMNS.map(
        (c) => `${c} = excluded.${c}`,
      ).join(", ")} WHERE excluded.seq > rollup_rows.seq`,
    // The wire's rollup cells are already in ROLLUP_COLUMNS order (src/projection/rollups.ts).
    rows: (entries) => entries.flatMap((e) => e.rollups_closed.map((cells) => [e.account_id, ...cells])),
  },
  closeHolds: {
    sql: `DELETE FROM open_holds WHERE (account_id, reservation_id) IN (${OK} SELECT ${CLOSE_ROWS.select} ${ROWS})`,
    rows: (entries) =>
      entries.flatMap((e) =>
        e.holds.flatMap((h) => (h.op === "close" ? [CLOSE_ROWS.row({ ...h, account_id: e.account_id })] : [])),
      ),
  },
  openHolds: {
    sql: `INSERT INTO open_holds (${HOLD_COLUMNS.join(", ")}) ${OK} SELECT ${HOLD_ROWS.select} ${ROWS}
      ON CONFLICT (account_id, reservation_id) DO UPDATE SET ${HOLD_COLUMNS.slice(2)
        .map((c) => `${c} = excluded.${c}`)
        .join(", ")}`,
    rows: (entries) =>
      entries.flatMap((e) =>
        e.holds.flatMap((h) =>
          h.op === "open"
            ? [HOLD_ROWS.row({ ...h.row, account_id: e.account_id } as Record<(typeof HOLD_COLUMNS)[number], unknown>)]
            : [],
        ),
      ),
  },
  extendHolds: {
    sql: `UPDATE open_holds SET expires_at = x.expires_at, ttl_seconds = x.ttl_seconds,
        on_expiry = x.on_expiry, updated_seq = x.seq
      FROM (${OK} SELECT ${EXTEND_ROWS.select} ${ROWS}) x
      WHERE open_holds.account_id = x.account_id AND open_holds.reservation_id = x.reservation_id`,
    rows: (entries) =>
      entries.flatMap((e) =>
        e.holds.flatMap((h) => (h.op === "extend" ? [EXTEND_ROWS.row({ ...h, account_id: e.account_id })] : [])),
      ),
  },
  // The open buckets' day moves when a day bucket closes (or the row is new): a separate, rare
  // write, so that the accounts upsert never touches the open_day index.
  openDay: {
    sql: `UPDATE accounts SET open_day = x.day
      FROM (${OK} SELECT ${OPEN_DAY_ROWS.select} ${ROWS}) x
      WHERE accounts.account_id = x.account_id AND accounts.open_day != x.day`,
    rows: (entries) =>
      entries.flatMap((e) =>
        e.day === 1 ? [OPEN_DAY_ROWS.row({ account_id: e.account_id, day: e.account.open_day })] : [],
      ),
  },
  accounts: {
    sql: `INSERT INTO accounts (${ACCOUNT_ROWS.columns.join(", ")}) ${OK} SELECT ${ACCOUNT_ROWS.select} ${ROWS}
      ON CONFLICT (account_id) DO UPDATE SET previous_seq = accounts.last_seq, ${ACCOUNT_ROWS.columns
        .filter((c) => c !== "account_id" && c !== "open_day")
        .map((c) => `${c} = excluded.${c}`)
        .join(", ")}
      RETURNING account_id, previous_seq`,
    rows: (entries, at) =>
      entries.map((e) =>
        ACCOUNT_ROWS.row({
          ...e.account,
          generation: e.generation,
          tail_first_seq: e.tail_first_seq,
          tail: e.tail,
          open_rollups: e.rollups_open,
          projected_at: at,
          projection_lag_ms: e.lag,
        }),
      ),
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
  const positions = JSON.stringify(
    entries.map(({ account_id, generation, from_seq, to_seq, reset }) => ({
      account_id,
      generation,
      from_seq,
      to_seq,
      reset,
    })),
  );
  const at = new Date(now).toISOString();
  const statements: D1PreparedStatement[] = [];
  if (entries.some((e) => e.reset === 1)) {
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
