/**
 * Reconciliation: compares each account's D1 rows with its Durable Object, the source of
 * truth, and reports (or repairs) drift. Lag is not drift: a D1 snapshot behind the object is
 * checked against the balances the object recorded at that same seq.
 */
import type { Env } from "../env";
import { BadCursor, decodeCursor, encodeCursor } from "../reports/cursor";

export type ReconcileState = "ok" | "lagging" | "drift" | "missing_in_d1" | "unknown_account";

export interface ReconcileEntry {
  account_id: string;
  state: ReconcileState;
  detail: string;
  repaired: boolean;
}

export interface ReconcileOptions {
  account_ids?: string[];
  repair: boolean;
  limit: number;
  cursor?: string;
}

export async function reconcile(env: Env, options: ReconcileOptions) {
  let ids = options.account_ids;
  let next_cursor: string | null = null;
  if (ids === undefined) {
    const afterId = options.cursor === undefined ? "" : decodeCursor(options.cursor, 1)?.[0];
    if (typeof afterId !== "string") throw new BadCursor("cursor");
    const rows = await env.DB.prepare(
      "SELECT account_id FROM accounts WHERE account_id > ? ORDER BY account_id LIMIT ?",
    )
      .bind(afterId, options.limit + 1)
      .all<{ account_id: string }>();
    ids = rows.results.slice(0, options.limit).map((r) => r.account_id);
    const last = ids.at(-1);
    if (rows.results.length > options.limit && last !== undefined) next_cursor = encodeCursor([last]);
  }
  const results: ReconcileEntry[] = [];
  for (const id of ids) results.push(await reconcileOne(env, id, options.repair));
  return { checked: results.length, results, next_cursor };
}

async function reconcileOne(env: Env, accountId: string, repair: boolean): Promise<ReconcileEntry> {
  const stub = env.ACCOUNTS.getByName(accountId);
  const [snapshot, live] = await Promise.all([
    env.DB.prepare("SELECT last_seq, balance, reserved FROM accounts WHERE account_id = ?")
      .bind(accountId)
      .first<{ last_seq: number; balance: number; reserved: number }>(),
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
    const [recorded, events] = await Promise.all([
      stub.balancesAt(snapshot.last_seq),
      env.DB.prepare(
        "SELECT COUNT(*) AS n, COALESCE(SUM(balance_delta), 0) AS balance, COALESCE(SUM(reserved_delta), 0) AS reserved FROM ledger_events WHERE account_id = ? AND seq <= ?",
      )
        .bind(accountId, snapshot.last_seq)
        .first<{ n: number; balance: number; reserved: number }>(),
    ]);
    const facts = `D1 seq ${snapshot.last_seq}: balance ${snapshot.balance}, reserved ${snapshot.reserved}`;
    if (recorded === null || recorded.balance !== snapshot.balance || recorded.reserved !== snapshot.reserved) {
      result = entry("drift", `${facts}; the ledger recorded ${JSON.stringify(recorded)} at that seq.`);
    } else if (
      events === null ||
      events.n !== snapshot.last_seq ||
      events.balance !== snapshot.balance ||
      events.reserved !== snapshot.reserved
    ) {
      result = entry("drift", `${facts}; its events sum to ${JSON.stringify(events)}.`);
    } else if (snapshot.last_seq < live.body.last_seq) {
      result = entry("lagging", `${facts}; the ledger is at seq ${live.body.last_seq}.`);
    } else {
      result = entry("ok", facts);
    }
  }
  if (repair && result.state !== "ok" && result.state !== "unknown_account") {
    if (result.state === "lagging") await stub.nudge();
    else await stub.reproject();
    result.repaired = true;
  }
  return result;
}
