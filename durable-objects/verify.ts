/**
 * Verification inside the account object: replay the whole history (the sealed segments in R2,
 * each checked against its manifest's length and SHA-256, then the tail) up to the head as it
 * was when called, in pages that yield between them (other requests go on meanwhile), and
 * report the first event that breaks the chain or a rule, by seq.
 * - Logs up to VERIFY_FULL_FOLD_EVENTS_MAX events (src/config.ts) are replayed with `evolve` (every hash link
 *   and every rule), and the fold is compared with the snapshot and every row.
 * - Longer logs run the auditors' own streaming verifier (src/audit, ids kept as compact
 *   fingerprints, not states) in bounded memory, and its fold is compared with the snapshot and
 *   the open holds.
 * The tests call it after every scenario.
 */
import { ChainVerifier } from "../src/audit/verifier.mjs";
import { clock } from "../src/clock";
import type { VerifyReport } from "../src/contract";
import { canonicalJson } from "../src/domain/canonical";
import { sha256Hex } from "../src/domain/chain";
import type { LedgerEvent } from "../src/domain/events";
import { eventKeyString } from "../src/domain/keys";
import { evolve, initialState, type LedgerState, type ReservationState } from "../src/domain/state";
import type { History } from "./history";
import type { ExpiryScheduler } from "./scheduler";
import { type AccountStore, openState, type ReservationRow, reservationRow, SealedEventNeeded } from "./store";

export type { VerifyReport };

/** Placeholder kept for a verified operation key (the fold only asks whether a key exists). */
const VERIFIED = {} as LedgerEvent;

interface Failure {
  seq: number;
  problem: string;
}

/**
 * Pages through the whole history up to `head` (sealed segments, then the tail: history.ts),
 * calling `visit` per event; returns the first failure.
 */
async function pages(
  history: History,
  head: number,
  visit: (event: LedgerEvent) => { seq: number; reason: string } | null,
): Promise<Failure | null> {
  let reached = 0;
  try {
    for await (const page of history.pages(head)) {
      if ("failure" in page)
        return { seq: page.failure.seq, problem: `seq ${page.failure.seq}: ${page.failure.reason}` };
      for (const event of page.events) {
        const failure = visit(event);
        if (failure !== null) return { seq: failure.seq, problem: `seq ${failure.seq}: ${failure.reason}` };
        reached = event.seq;
      }
    }
  } catch (error) {
    // A segment could not be read at all (R2 unavailable): nothing past what was verified is known.
    return { seq: reached + 1, problem: `seq ${reached + 1}: the history could not be read: ${String(error)}` };
  }
  return null;
}

export async function verifyAccount(
  store: AccountStore,
  history: History,
  scheduler: ExpiryScheduler,
  fullFoldMax: number,
): Promise<VerifyReport> {
  const head = store.account?.last_seq ?? 0;
  if (head > fullFoldMax) return verifyStreaming(store, history, head);
  let state = initialState();
  let count = 0;
  const failure = await pages(history, head, (event) => {
    // A failure is reported at the seq the history should have had next (a missing or
    // reordered event is found where the history departs, not at the seq it carries).
    const expected = (state.account?.last_seq ?? 0) + 1;
    try {
      state = evolve(state, event);
    } catch (error) {
      return { seq: expected, reason: String(error) };
    }
    count += 1;
    // Keep the keys (for "applied twice"), not whole events: memory stays small.
    const key = eventKeyString(event);
    if (key !== null) state.operations.set(key, VERIFIED);
    return null;
  });
  const problems = failure === null ? [] : [failure.problem];
  if (failure === null && store.account !== null && store.account.last_seq === head) {
    const open = compareRows(store, state, problems);
    await checkAlarm(scheduler, open, problems);
  }
  return {
    ok: problems.length === 0,
    events: count,
    head_seq: state.account?.last_seq ?? 0,
    head_hash: state.account?.head_hash ?? null,
    balance: state.account?.balance ?? 0,
    reserved: state.account?.reserved ?? 0,
    first_bad_seq: failure?.seq ?? null,
    problems,
  };
}

async function verifyStreaming(store: AccountStore, history: History, head: number): Promise<VerifyReport> {
  // Inside the object's memory: no per-charge sources (they grow with the log); the offline
  // verifier keeps them and checks every refund source by source.
  const verifier = new ChainVerifier({ sha256Hex, chargeSources: false });
  const failure = await pages(history, head, (event) => verifier.push(event));
  const summary = verifier.summary();
  const problems: string[] = [];
  if (failure !== null) {
    problems.push(failure.problem);
  } else if (store.account !== null && store.account.last_seq === head) {
    const account = store.account;
    if (summary.balance !== account.balance || summary.reserved !== account.reserved) {
      problems.push(
        `the fold gives ${summary.balance}/${summary.reserved}, the snapshot ${account.balance}/${account.reserved}`,
      );
    }
    if (summary.open_reservations !== store.holds.count || summary.reserved !== store.holds.total) {
      problems.push("the open holds in SQLite differ from the fold's");
    }
  }
  return {
    ok: problems.length === 0,
    events: summary.events,
    head_seq: summary.head_seq,
    head_hash: summary.head_seq === 0 ? null : summary.head_hash,
    balance: summary.balance,
    reserved: summary.reserved,
    first_bad_seq: failure?.seq ?? null,
    problems,
  };
}

function compareRows(store: AccountStore, state: LedgerState, problems: string[]): LedgerState["reservations"] {
  // Compared in canonical form: events read back from a sealed segment carry their members in
  // canonical order, the rows in the order they were first written.
  const same = (what: string, a: unknown, b: unknown) => {
    if (canonicalJson(a) !== canonicalJson(b)) {
      problems.push(`${what}: log says ${JSON.stringify(a)}, snapshot says ${JSON.stringify(b)}`);
    }
  };
  same("account", state.account, store.account);
  let rows = 0;
  for (const { state: json, ...columns } of store.sql.exec<ReservationRow>("SELECT * FROM reservations").toArray()) {
    rows += 1;
    const id = columns.reservation_id;
    const folded = state.reservations.get(id);
    const { state: _json, ...expected } = folded === undefined ? { state: null } : reservationRow(folded);
    same(`reservation ${id} columns`, expected, columns);
    if (json !== null) same(`reservation ${id}`, folded, openState(json));
    else same(`reservation ${id} rebuilt from its events`, folded, rebuiltIfKept(store, id) ?? folded);
  }
  same("reservation count", state.reservations.size, rows);
  rows = 0;
  for (const { charge_id: id } of store.sql.exec<{ charge_id: string }>("SELECT charge_id FROM charges").toArray()) {
    rows += 1;
    same(`charge ${id}`, state.charges.get(id), store.charge(id));
  }
  same("charge count", state.charges.size, rows);
  for (const row of store.sql.exec<{ key: string; seq: number }>("SELECT key, seq FROM operations")) {
    same(`operation ${row.key}`, state.operations.has(row.key), true);
  }
  compareLots(store, state, same);
  // Spend limits (issue 28): the fold's against the object's memory, by id.
  const byId = (book: LedgerState["limits"]) =>
    [...book.values()].sort((a, b) => (a.limit.limit_id < b.limit.limit_id ? -1 : 1));
  same("spend limits", byId(state.limits), byId(store.limits.book));
  const open = [...state.reservations.values()].filter((r) => r.status === "open");
  same("open holds", [open.reduce((sum, r) => sum + r.amount, 0), open.length], [store.holds.total, store.holds.count]);
  return new Map(open.map((r) => [r.reservation_id, r]));
}

/** The fold's book against the object's: every lot (from memory where it holds it, else its row) and the debt. */
function compareLots(store: AccountStore, state: LedgerState, same: (what: string, a: unknown, b: unknown) => void) {
  const book = state.book;
  const kept = store.lots.book;
  same("lots kept", book !== null, kept !== null);
  if (book === null || kept === null) return;
  same("debt", [book.debt, book.debt_paid_by], [kept.debt, kept.debt_paid_by]);
  const ids = new Set([...book.lots.keys(), ...store.lots.rowIds()]);
  for (const id of ids) same(`lot ${id}`, book.lots.get(id) ?? null, store.lots.current(id));
  // Spends draw on the book: every lot with credit in the fold is there.
  for (const [id, lot] of book.lots) if (lot.remaining > 0) same(`lot ${id} in the book`, true, kept.lots.has(id));
}

/** An ended reservation rebuilt from its events if the tail keeps both (else null: its columns were compared). */
function rebuiltIfKept(store: AccountStore, id: string): ReservationState | null {
  try {
    return store.reservation(id);
  } catch (error) {
    if (error instanceof SealedEventNeeded) return null;
    throw error;
  }
}

/** The alarm the runtime holds must be at or before the earliest open expiry. */
async function checkAlarm(
  scheduler: ExpiryScheduler,
  open: LedgerState["reservations"],
  problems: string[],
): Promise<void> {
  if (open.size === 0) return;
  const earliest = Math.min(...[...open.values()].map((r) => Date.parse(r.expires_at)));
  const alarm = await scheduler.alarmCovers(earliest, clock.now());
  if (!alarm.ok) problems.push(`alarm ${alarm.alarmAtMs} is later than the earliest open expiry ${earliest}`);
}
