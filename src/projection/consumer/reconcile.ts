/**
 * Reconciliation: compares each account's D1 rows with its Durable Object, the source of
 * truth, and reports (or repairs) drift. Lag is not drift: a D1 snapshot behind the object is
 * checked against the balances the object recorded at that same seq. Raw events are a window
 * (./retention.ts), so the whole history is checked through the daily rollups, and the window
 * for its own consistency.
 */
import { clock } from "../../clock";
import type { Env } from "../../env";
import { BadCursor, decodeCursor, encodeCursor } from "../../read-side/cursor";
import { type Shard, shardFor, shardsOf } from "../../read-side/shards";

/**
 * `misplaced`: the account's rows are in a shard that is not its home (the number of shards
 * changed); repairing reprojects it, which writes its home shard and deletes the others.
 */
export type ReconcileState = "ok" | "lagging" | "drift" | "missing_in_d1" | "unknown_account" | "misplaced";

/**
 * A lagging account whose object has delivered everything D1 lacks, with D1's row unchanged for
 * this long, lost its messages (the queue retries a gap for about five minutes before the dead
 * letters): repairing it reprojects it instead of catching it up.
 */
export const RECONCILE_LOST_AFTER_MS = 15 * 60_000;

export interface ReconcileEntry {
  account_id: string;
  state: ReconcileState;
  detail: string;
  repaired: boolean;
}

export interface ReconcileOptions {
  account_ids?: string[];
  /** Only this shard's accounts (by index); all shards in turn when absent. */
  shard?: number;
  repair: boolean;
  limit: number;
  cursor?: string;
}

export async function reconcile(env: Env, options: ReconcileOptions) {
  const shards = shardsOf(env);
  let targets: { id: string; listedIn: Shard | null }[];
  let next_cursor: string | null = null;
  if (options.account_ids !== undefined) {
    targets = options.account_ids.map((id) => ({ id, listedIn: null }));
  } else {
    // The cursor is [shard index, last account id]: shards in order, each by account id.
    const key = options.cursor === undefined ? [options.shard ?? 0, ""] : decodeCursor(options.cursor, 2);
    const [index, afterId] = key ?? [];
    const shard = typeof index === "number" ? shards[index] : undefined;
    if (shard === undefined || typeof afterId !== "string") throw new BadCursor("cursor");
    const rows = await shard.db
      .prepare("SELECT account_id FROM accounts WHERE account_id > ? ORDER BY account_id LIMIT ?")
      .bind(afterId, options.limit + 1)
      .all<{ account_id: string }>();
    const ids = rows.results.slice(0, options.limit).map((r) => r.account_id);
    targets = ids.map((id) => ({ id, listedIn: shard }));
    const last = ids.at(-1);
    if (rows.results.length > options.limit && last !== undefined) next_cursor = encodeCursor([shard.index, last]);
    else if (options.shard === undefined && shard.index + 1 < shards.length) {
      next_cursor = encodeCursor([shard.index + 1, ""]);
    }
  }
  const results: ReconcileEntry[] = [];
  for (const { id, listedIn } of targets) {
    const home = shardFor(shards, id);
    if (listedIn !== null && listedIn !== home) results.push(await misplaced(env, id, listedIn, options.repair));
    else results.push(await reconcileOne(env, home.db, id, options.repair));
  }
  return { checked: results.length, results, next_cursor };
}

async function misplaced(env: Env, accountId: string, shard: Shard, repair: boolean): Promise<ReconcileEntry> {
  const entry: ReconcileEntry = {
    account_id: accountId,
    state: "misplaced",
    detail: `The account's rows are in shard ${shard.index}, which is not its home shard.`,
    repaired: false,
  };
  if (repair) {
    const result = await env.ACCOUNTS.getByName(accountId).reproject();
    entry.repaired = result.ok;
  }
  return entry;
}

async function reconcileOne(env: Env, db: D1Database, accountId: string, repair: boolean): Promise<ReconcileEntry> {
  const stub = env.ACCOUNTS.getByName(accountId);
  const [snapshot, live] = await Promise.all([
    db
      .prepare("SELECT last_seq, balance, reserved, projected_at FROM accounts WHERE account_id = ?")
      .bind(accountId)
      .first<{ last_seq: number; balance: number; reserved: number; projected_at: string }>(),
    stub.getAccount(),
  ]);
  const entry = (state: ReconcileState, detail: string): ReconcileEntry => ({
    account_id: accountId,
    state,
    detail,
    repaired: false,
  });
  let result: ReconcileEntry;
  if (!live.ok) {
    result = entry("unknown_account", "D1 has rows for an account the ledger does not have.");
  } else if (snapshot === null) {
    result = entry("missing_in_d1", "The account has no D1 snapshot.");
  } else if (snapshot.last_seq > live.body.last_seq) {
    result = entry("drift", `D1 is at seq ${snapshot.last_seq}, past the ledger's head ${live.body.last_seq}.`);
  } else {
    const recorded = await stub.balancesAt(snapshot.last_seq);
    const facts = `D1 seq ${snapshot.last_seq}: balance ${snapshot.balance}, reserved ${snapshot.reserved}`;
    const drift =
      recorded === null || recorded.balance !== snapshot.balance || recorded.reserved !== snapshot.reserved
        ? `${facts}; the ledger recorded ${JSON.stringify(recorded)} at that seq.`
        : ((await rollupDrift(env, db, accountId, snapshot.last_seq)) ?? (await windowDrift(env, db, accountId)));
    if (drift !== null) result = entry("drift", drift);
    else if (snapshot.last_seq < live.body.last_seq) {
      result = entry("lagging", `${facts}; the ledger is at seq ${live.body.last_seq}.`);
    } else result = entry("ok", facts);
  }
  if (repair && result.state !== "ok" && result.state !== "unknown_account") {
    if (result.state === "lagging") {
      const status = await stub.catchUp();
      // The object delivered what D1 lacks, and D1 has not moved for longer than the queue's
      // retries take: those messages were lost or dead-lettered. Rebuild from the log.
      const stale = clock.now() - Date.parse(snapshot?.projected_at ?? "") > RECONCILE_LOST_AFTER_MS;
      if (snapshot !== null && status.projected_seq > snapshot.last_seq && stale) {
        await stub.reproject();
        result.detail += " Its messages were delivered long ago and never applied: reprojected.";
      }
    } else await stub.reproject();
    result.repaired = true;
  }
  return result;
}

/**
 * The daily rollups against the log. They travel in the same batches as the events, so they
 * hold the fold of the log up to their newest seq (at or past the snapshot's): one event each,
 * money movements that add up to the balance recorded there.
 */
async function rollupDrift(env: Env, db: D1Database, accountId: string, snapshotSeq: number): Promise<string | null> {
  const row = await db
    .prepare(
      `SELECT MAX(seq) AS seq, COALESCE(SUM(events), 0) AS events,
            COALESCE(SUM(credit_amount - direct_charge_amount - capture_amount - expiry_capture_amount
              + refund_amount + adjustment_up_amount - adjustment_down_amount - lot_expired_amount), 0) AS net,
            (SELECT balance_after FROM rollups WHERE account_id = ?1 AND grain = 'day' ORDER BY seq DESC LIMIT 1) AS balance,
            (SELECT reserved_after FROM rollups WHERE account_id = ?1 AND grain = 'day' ORDER BY seq DESC LIMIT 1) AS reserved
     FROM rollups WHERE account_id = ?1 AND grain = 'day'`,
    )
    .bind(accountId)
    .first<{ seq: number | null; events: number; net: number; balance: number | null; reserved: number | null }>();
  const seq = row?.seq ?? 0;
  const facts = `rollups at seq ${seq}: ${JSON.stringify(row)}`;
  if (seq < snapshotSeq) return `${facts}, behind the snapshot's seq ${snapshotSeq}.`;
  const recorded = await env.ACCOUNTS.getByName(accountId).balancesAt(seq);
  if (row?.events !== seq || recorded === null || row.net !== recorded.balance) {
    return `${facts}; the ledger recorded ${JSON.stringify(recorded)} there.`;
  }
  if (row.balance !== recorded.balance || row.reserved !== recorded.reserved) {
    return `${facts}; the ledger recorded ${JSON.stringify(recorded)} there.`;
  }
  return null;
}

/**
 * The window of raw events against the log: a contiguous run of seqs (the prune removes the
 * oldest first), each event's balance_after minus its delta equal to the one before it, and
 * the newest one's balances equal to what the ledger recorded there.
 */
async function windowDrift(env: Env, db: D1Database, accountId: string): Promise<string | null> {
  const row = await db
    .prepare(
      `SELECT COUNT(*) AS n, MIN(e.seq) AS first, MAX(e.seq) AS last,
            SUM(CASE WHEN e.balance_after - e.balance_delta != COALESCE(p.balance_after, CASE WHEN e.seq = 1 THEN 0 END)
                       OR e.reserved_after - e.reserved_delta != COALESCE(p.reserved_after, CASE WHEN e.seq = 1 THEN 0 END)
                     THEN 1 ELSE 0 END) AS broken
     FROM ledger_events e LEFT JOIN ledger_events p ON p.account_id = e.account_id AND p.seq = e.seq - 1
     WHERE e.account_id = ?`,
    )
    .bind(accountId)
    .first<{ n: number; first: number | null; last: number | null; broken: number | null }>();
  if (row === null || row.n === 0 || row.last === null || row.first === null) return null;
  const facts = `events ${row.first}..${row.last} (${row.n} rows, ${row.broken ?? 0} not chained)`;
  // The window's oldest event may have no predecessor in D1 (pruned): its comparison is NULL,
  // not counted; the next event checks it.
  if (row.n !== row.last - row.first + 1 || (row.broken ?? 0) > 0) return `${facts}.`;
  const recorded = await env.ACCOUNTS.getByName(accountId).balancesAt(row.last);
  const newest = await db
    .prepare("SELECT balance_after, reserved_after FROM ledger_events WHERE account_id = ? AND seq = ?")
    .bind(accountId, row.last)
    .first<{ balance_after: number; reserved_after: number }>();
  if (recorded === null || newest?.balance_after !== recorded.balance || newest.reserved_after !== recorded.reserved) {
    return `${facts}; the newest is ${JSON.stringify(newest)}, the ledger recorded ${JSON.stringify(recorded)}.`;
  }
  return null;
}
