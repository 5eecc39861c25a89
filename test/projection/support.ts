/**
 * Helpers for projection tests: drive random histories into account objects, drain their
 * projections, and compare D1 with the fold of each account's own log.
 */
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { expect } from "vitest";
import type { Command } from "../../src/domain/commands";
import type { LedgerEvent } from "../../src/domain/events";
import { fold } from "../../src/domain/state";
import { rollupCellsOf } from "../../src/projection/producer/message";
import { ROLLUP_CALLER_DIMENSIONS, ROLLUP_COLUMNS, rollupsOfLog } from "../../src/projection/rollups";
import { EVENT_CELL_COLUMNS } from "../../src/projection/wire";
import { shardFor, shardsOf } from "../../src/read-side/shards";
import { stub } from "../helpers";

/** The read-side database (shard) holding an account. */
export function dbOf(accountId: string): D1Database {
  return shardFor(shardsOf(env), accountId).db;
}

/** Reads an account's whole log through the object's API. */
export async function logOf(accountId: string): Promise<LedgerEvent[]> {
  const events: LedgerEvent[] = [];
  for (let after = 0; ; ) {
    const page = await stub(accountId).listEvents(after, 1_000);
    if (!page.ok) throw new Error(page.rejection.code);
    events.push(...page.body.events);
    if (page.body.next_after_seq === null) return events;
    after = page.body.next_after_seq;
  }
}

/** Catches up until the projection has every event (bounded). */
export async function drain(accountId: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const status = await stub(accountId).catchUp();
    if (status.projected_seq === status.last_seq) return;
  }
  throw new Error(`projection of ${accountId} did not catch up`);
}

const ROLLUP_ORDER = [
  "grain",
  "bucket",
  "service_id",
  "provider",
  "model",
  "alias",
  "api_key_id",
  "project_id",
] as const;

/** The account's rollup rows in D1, in key order. */
export async function d1Rollups(accountId: string): Promise<Record<string, unknown>[]> {
  const rows = await dbOf(accountId)
    .prepare(`SELECT * FROM rollups WHERE account_id = ? ORDER BY ${ROLLUP_ORDER.join(", ")}`)
    .bind(accountId)
    .all();
  return rows.results;
}

/** The rollup rows a fold of the log gives, as D1 answers them (small test sums as numbers), in key order. */
export function rollupsOfLogAsRows(accountId: string, log: readonly LedgerEvent[]): Record<string, unknown>[] {
  const rows = rollupsOfLog(log).map((rollup) => {
    const cells = [accountId, ...rollupCellsOf(rollup)];
    return Object.fromEntries(
      ROLLUP_COLUMNS.map((column, i) => {
        const cell = cells[i];
        // Values (seq, balances, sums) are integers in D1; the fold writes sums as decimal strings.
        const value =
          i >= ROLLUP_COLUMNS.indexOf("seq") && !(ROLLUP_CALLER_DIMENSIONS as readonly string[]).includes(column);
        return [column, value ? Number(cell) : cell];
      }),
    );
  });
  const key = (row: Record<string, unknown>) => ROLLUP_ORDER.map((c) => String(row[c]));
  return rows.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    for (let i = 0; i < ka.length; i++) {
      if (ka[i] !== kb[i]) return (ka[i] as string) < (kb[i] as string) ? -1 : 1;
    }
    return 0;
  });
}

/** Asserts that D1's rollups are exactly the fold of the account's log. */
export async function expectRollupsEqualLog(accountId: string, log?: readonly LedgerEvent[]): Promise<void> {
  const events = log ?? (await logOf(accountId));
  expect(await d1Rollups(accountId)).toEqual(rollupsOfLogAsRows(accountId, events));
}

/** Asserts that D1 holds exactly the fold of the account's log: snapshot, events, reservations, charges, refunds, usage, rollups. */
export async function expectD1EqualsLog(accountId: string): Promise<void> {
  const log = await logOf(accountId);
  await expectRollupsEqualLog(accountId, log);
  const state = fold(log);
  const account = state.account;
  if (account === null) throw new Error("no account");
  const db = dbOf(accountId);

  const row = await db.prepare("SELECT * FROM accounts WHERE account_id = ?").bind(accountId).first();
  expect(row).toMatchObject({
    balance: account.balance,
    reserved: account.reserved,
    available: account.balance - account.reserved,
    credit_limit: account.credit_limit,
    status: account.status,
    open_reservations: account.open_reservations,
    last_seq: account.last_seq,
    updated_at: account.updated_at,
    currency: account.currency,
  });

  const events = await db
    .prepare(
      "SELECT seq, type, balance_after, reserved_after, event_id FROM ledger_events WHERE account_id = ? ORDER BY seq",
    )
    .bind(accountId)
    .all();
  expect(events.results).toEqual(
    log.map((e) => ({
      seq: e.seq,
      type: e.type,
      balance_after: e.balance_after,
      reserved_after: e.reserved_after,
      event_id: e.event_id,
    })),
  );

  const reservations = await db
    .prepare(
      "SELECT reservation_id, status, amount, captured_amount, released_amount, expires_at, on_expiry FROM reservations WHERE account_id = ? ORDER BY reservation_id",
    )
    .bind(accountId)
    .all();
  expect(reservations.results).toEqual(
    [...state.reservations.values()]
      .sort((a, b) => (a.reservation_id < b.reservation_id ? -1 : 1))
      .map((r) => ({
        reservation_id: r.reservation_id,
        status: r.status,
        amount: r.amount,
        captured_amount: r.captured_amount,
        released_amount: r.released_amount,
        expires_at: r.expires_at,
        on_expiry: r.on_expiry,
      })),
  );

  const charges = await db
    .prepare("SELECT charge_id, amount, refunded FROM charges WHERE account_id = ? ORDER BY charge_id")
    .bind(accountId)
    .all();
  expect(charges.results).toEqual(
    [...state.charges.values()]
      .sort((a, b) => (a.charge_id < b.charge_id ? -1 : 1))
      .map((c) => ({ charge_id: c.charge_id, amount: c.amount, refunded: c.refunded })),
  );

  const refunds = await db
    .prepare("SELECT refund_id, charge_id, amount FROM refunds WHERE account_id = ? ORDER BY seq")
    .bind(accountId)
    .all();
  expect(refunds.results).toEqual(
    log.flatMap((e) =>
      e.type === "ChargeRefunded" ? [{ refund_id: e.refund_id, charge_id: e.charge_id, amount: e.amount }] : [],
    ),
  );

  const usage = await db
    .prepare("SELECT charge_id, cost, model FROM usage_log WHERE account_id = ? ORDER BY seq")
    .bind(accountId)
    .all();
  expect(usage.results).toEqual(
    log.flatMap((e) => {
      if (e.type === "AccountCharged")
        return [{ charge_id: e.charge_id, cost: e.amount, model: e.context.model ?? null }];
      if (e.type === "ReservationCaptured")
        return [{ charge_id: e.reservation_id, cost: e.amount, model: e.context.model ?? null }];
      if (e.type === "ReservationExpired" && e.on_expiry === "capture")
        return [{ charge_id: e.reservation_id, cost: e.captured_amount, model: e.context.model ?? null }];
      return [];
    }),
  );
}

/** The trial balance over all of D1 must balance, and the customer position must equal the sum of balances. */
export async function expectJournalBalanced(): Promise<void> {
  const perShard = await Promise.all(
    shardsOf(env).map((shard) =>
      shard.db
        .prepare(
          "SELECT ledger_account, SUM(debit) AS debit, SUM(credit) AS credit FROM journal_entries GROUP BY ledger_account",
        )
        .all<{ ledger_account: string; debit: number; credit: number }>(),
    ),
  );
  const lines = { results: perShard.flatMap((r) => r.results) };
  const totals = lines.results.reduce((t, l) => ({ d: t.d + l.debit, c: t.c + l.credit }), { d: 0, c: 0 });
  expect(totals.d).toBe(totals.c);
  const net = (name: string) => {
    const mine = lines.results.filter((l) => l.ledger_account === name);
    return mine.reduce((n, l) => n + l.credit - l.debit, 0);
  };
  let total = 0;
  for (const shard of shardsOf(env)) {
    const row = await shard.db
      .prepare("SELECT COALESCE(SUM(balance), 0) AS total FROM accounts")
      .first<{ total: number }>();
    total += row?.total ?? 0;
  }
  expect(net("customer_balances") + net("overage_receivable")).toBe(total);
}

const ids = ["a", "b", "c"];
/** Random commands over a few colliding ids, small amounts, with context and usage. */
export const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record({
    type: fc.constant("CreditFunds" as const),
    credit_id: fc.constantFrom(...ids),
    amount: fc.integer({ min: 1, max: 500 }),
    reason: fc.constant(null),
    metadata: fc.constant({}),
  }),
  fc.record({
    type: fc.constant("ReserveFunds" as const),
    reservation_id: fc.constantFrom(...ids),
    amount: fc.integer({ min: 1, max: 300 }),
    ttl_seconds: fc.constant(600),
    on_expiry: fc.constantFrom("release" as const, "capture" as const),
    context: fc.record({ model: fc.constantFrom("m1", "m2"), service_id: fc.constant("svc") }),
    metadata: fc.constant({}),
  }),
  fc.record({
    type: fc.constant("CaptureReservation" as const),
    reservation_id: fc.constantFrom(...ids),
    amount: fc.integer({ min: 0, max: 400 }),
    allow_overage: fc.boolean(),
    usage: fc.record({
      input_tokens: fc.integer({ min: 0, max: 1000 }),
      output_tokens: fc.integer({ min: 0, max: 1000 }),
    }),
    metadata: fc.constant({}),
  }),
  fc.record({
    type: fc.constant("ReleaseReservation" as const),
    reservation_id: fc.constantFrom(...ids),
    reason: fc.constant(null),
  }),
  fc.record({
    type: fc.constant("ChargeAccount" as const),
    charge_id: fc.constantFrom("x", "y", "a"),
    amount: fc.integer({ min: 1, max: 200 }),
    context: fc.record({ model: fc.constantFrom("m1", "m3") }),
    metadata: fc.constant({}),
  }),
  fc.record({
    type: fc.constant("RefundCharge" as const),
    refund_id: fc.constantFrom("f1", "f2", "f3"),
    charge_id: fc.constantFrom("x", "y", "a", "b"),
    amount: fc.integer({ min: 1, max: 150 }),
    reason: fc.constant(null),
  }),
  fc.record({
    type: fc.constant("AdjustBalance" as const),
    adjustment_id: fc.constantFrom("j1", "j2"),
    amount: fc.integer({ min: -300, max: 300 }).filter((n) => n !== 0),
    reason: fc.constant("fix"),
  }),
  fc.record({
    type: fc.constant("UpdateAccount" as const),
    status: fc.constantFrom("active" as const, "frozen" as const),
  }),
);

let opened = 0;
/** Opens a fresh account through the object and applies the commands; returns its id. */
export async function runHistory(commands: Command[]): Promise<string> {
  opened += 1;
  const accountId = `hist_${opened}_${crypto.randomUUID().slice(0, 6)}`;
  const s = stub(accountId);
  const open = await s.execute({
    type: "OpenAccount",
    account_id: accountId,
    currency: "USD",
    credit_limit: 100,
    metadata: {},
  });
  expect(open.ok).toBe(true);
  // Plain JSON: generated values may carry prototypes that RPC cannot serialise.
  for (const command of commands) await s.execute(JSON.parse(JSON.stringify(command)) as Command);
  return accountId;
}

/** A promise and the function that resolves it, for tests that wait on an event, not on time. */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

/**
 * Tampers with one stored raw event of an account (in its tail or its sealed page): the test's
 * way of drifting the read side, since `ledger_events` is a view.
 */
export async function tamperEvent(accountId: string, seq: number, column: string, value: number | string) {
  const i = (EVENT_CELL_COLUMNS as readonly string[]).indexOf(column);
  if (i < 0) throw new Error(`no event column ${column}`);
  const edit = (source: string) =>
    `(SELECT json_group_array(CASE WHEN value ->> '$[0]' = ?2 THEN json_replace(value, '$[${i}]', ?3) ELSE json(value) END)
      FROM json_each(${source}))`;
  const db = dbOf(accountId);
  await db.batch([
    db.prepare(`UPDATE accounts SET tail = ${edit("tail")} WHERE account_id = ?1`).bind(accountId, seq, value),
    db
      .prepare(
        `UPDATE event_pages SET events = ${edit("events")} WHERE account_id = ?1 AND ?2 BETWEEN first_seq AND last_seq`,
      )
      .bind(accountId, seq, value),
  ]);
}

type RollupRow = Record<(typeof ROLLUP_COLUMNS)[number], string | number>;

/**
 * Rewrites an account's stored rollup rows (the open ones in its accounts row and the closed
 * ones): `edit` returns the row to keep (changed or not), or null to drop it.
 */
export async function editRollups(accountId: string, edit: (row: RollupRow) => RollupRow | null): Promise<void> {
  const db = dbOf(accountId);
  const columns = ROLLUP_COLUMNS.slice(1);
  const account = await db
    .prepare("SELECT open_rollups FROM accounts WHERE account_id = ?")
    .bind(accountId)
    .first<{ open_rollups: string }>();
  const open = (JSON.parse(account?.open_rollups ?? "[]") as (string | number)[][]).flatMap((cells) => {
    const row = edit(
      Object.fromEntries([["account_id", accountId], ...columns.map((c, i) => [c, cells[i]])]) as RollupRow,
    );
    return row === null ? [] : [columns.map((c) => row[c])];
  });
  const closed = await db.prepare("SELECT * FROM rollup_rows WHERE account_id = ?").bind(accountId).all<RollupRow>();
  const kept = closed.results.flatMap((row) => {
    const edited = edit(row);
    return edited === null ? [] : [ROLLUP_COLUMNS.map((c) => edited[c])];
  });
  await db.batch([
    db.prepare("UPDATE accounts SET open_rollups = ? WHERE account_id = ?").bind(JSON.stringify(open), accountId),
    db.prepare("DELETE FROM rollup_rows WHERE account_id = ?").bind(accountId),
    db
      .prepare(
        `INSERT INTO rollup_rows (${ROLLUP_COLUMNS.join(", ")})
         SELECT ${ROLLUP_COLUMNS.map((_, i) => `value ->> '$[${i}]'`).join(", ")} FROM json_each(?)`,
      )
      .bind(JSON.stringify(kept)),
  ]);
}
