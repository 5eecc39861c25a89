/**
 * The account Durable Object: a thin shell around the pure decider in src/domain.
 *
 * Every command runs synchronously from reading state to committing events, with no `await`
 * in between, so the runtime's input gate makes it atomic with respect to every other request
 * to this account. The shell's jobs are only: load the state slice a command needs, call
 * `decide`, stamp and `evolve` the events, write them and the touched rows in one
 * `transactionSync`, assert the invariants, and keep the alarm at or before the earliest open
 * expiry.
 */
import { DurableObject } from "cloudflare:workers";
import { createHash } from "node:crypto";
import { monotonicFactory } from "ulid";
import { ChainVerifier } from "../bin/audit-core.mjs";
import { clock } from "../src/clock";
import type { Command } from "../src/domain/commands";
import { decide, lookupsOf, stamp } from "../src/domain/decide";
import type { LedgerEvent } from "../src/domain/events";
import { BATCH_OPERATIONS_MAX, EVENTS_PAGE_LIMIT_MAX, EXPIRY_BATCH_MAX } from "../src/domain/limits";
import { assert } from "../src/domain/money";
import type { Rejection } from "../src/domain/rejections";
import {
  type AccountState,
  type ChargeState,
  evolve,
  initialState,
  type LedgerState,
  operationKeyOfEvent,
  type ReservationState,
} from "../src/domain/state";
import {
  type AccountView,
  accountView,
  operationResult,
  type ReservationView,
  reservationView,
} from "../src/domain/views";
import type { Env } from "../src/env";
import { writeLog } from "../src/observability/log";
import { type ProjectionStatus, Projector } from "./projector";
import { migrate } from "./schema";

/**
 * Logs up to this length are verified by the full fold and compared row by row; longer ones by
 * the streaming verifier in bounded memory (VERIFY_FULL_FOLD_EVENTS_MAX in the env overrides).
 */
export const VERIFY_FULL_FOLD_EVENTS_MAX = 100_000;
/** Coalescing window of the projection when PROJECTION_COALESCE_MS is not set. */
export const PROJECTION_COALESCE_MS_DEFAULT = 50;
/** Retries the runtime grants a throwing alarm before we stop throwing and back off instead. */
export const ALARM_RETRIES_MAX = 5;
/** When the alarm keeps failing past its retry budget, try again this much later. */
export const ALARM_BACKOFF_AFTER_BUDGET_MS = 60_000;

export type ExecuteResult = { ok: true; replayed: boolean; body: unknown } | { ok: false; rejection: Rejection };

export type ReadResult<T> = { ok: true; body: T } | { ok: false; rejection: Rejection };

export interface BatchResult {
  /** False when an atomic batch was rolled back by a rejection. */
  committed: boolean;
  /** One result per command, in order, up to the rejection that aborted an atomic batch. */
  results: ExecuteResult[];
}

class AtomicBatchRejected extends Error {}

export interface VerifyReport {
  ok: boolean;
  /** Events replayed successfully. */
  events: number;
  head_seq: number;
  head_hash: string | null;
  balance: number;
  reserved: number;
  /** The first event that breaks the chain or a rule, or null. */
  first_bad_seq: number | null;
  problems: string[];
}

/** Placeholder kept for a verified operation key (the fold only asks whether a key exists). */
const VERIFIED = {} as LedgerEvent;

const NOT_FOUND: { ok: false; rejection: Rejection } = {
  ok: false,
  rejection: { code: "account_not_found", detail: "The account does not exist." },
};

interface AccountRow extends Record<string, SqlStorageValue> {
  account_id: string;
  currency: string;
  credit_limit: number;
  status: string;
  created_at: string;
  metadata: string;
}

export class AccountDurableObject extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly nextEventId = monotonicFactory();
  /** The balance snapshot: account row + the head event's after-balances. */
  private account: AccountState | null = null;
  /** Sum and count of open holds, kept from the reservation rows; must equal account.reserved. */
  private openHoldsTotal = 0;
  private openHoldsCount = 0;
  /** Never later than the earliest open expiry (it may be earlier: a spurious wake re-arms). */
  private nextExpiryMs: number | null = null;
  /** The alarm we believe is scheduled. */
  private alarmAtMs: number | null = null;
  /** SQLite rows written by commits since the object started (the runtime's own counter). */
  private rowsWritten = 0;
  private commits = 0;
  /** True while a batch's outer transaction is open: projection must wait for its commit. */
  private inBatch = false;
  /** A flush is scheduled (coalescing window open). */
  private flushScheduled = false;
  /** Projects committed events into D1 behind a durable cursor (durable-objects/projector.ts). */
  readonly projector: Projector;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    migrate(this.sql);
    this.loadSnapshot();
    this.projector = new Projector(this.sql, env.DB, {
      account: () => this.account,
      eventsAfter: (seq, limit) => this.readEvents(seq, limit),
      wake: () => this.ensureAlarm(),
      log: (line) => writeLog(env, "warn", line),
    });
    this.projector.resume(clock.now());
    void ctx.blockConcurrencyWhile(async () => {
      this.alarmAtMs = await ctx.storage.getAlarm();
      this.ensureAlarm();
    });
  }

  // ---------------------------------------------------------------- commands

  async execute(command: Command): Promise<ExecuteResult> {
    return this.executeAt(command, clock.now());
  }

  /**
   * Up to BATCH_OPERATIONS_MAX commands for this account, decided in order (each against the
   * state the previous left) and committed in one transaction. Each item is its own savepoint,
   * so a rejected item writes nothing; with `atomic`, the first rejection rolls the whole batch
   * back. In-memory state is restored with it, and the projection only sees committed events.
   */
  async executeBatch(commands: Command[], atomic: boolean): Promise<BatchResult> {
    assert(commands.length >= 1 && commands.length <= BATCH_OPERATIONS_MAX, "batch size");
    const now = clock.now();
    const saved = this.memory();
    const results: ExecuteResult[] = [];
    let committed = true;
    this.inBatch = true;
    try {
      this.ctx.storage.transactionSync(() => {
        for (const command of commands) {
          assert(command.type !== "OpenAccount" && command.type !== "ExpireReservations", "batchable command");
          const result = this.executeAt(command, now);
          results.push(result);
          if (atomic && !result.ok) throw new AtomicBatchRejected();
        }
      });
    } catch (error) {
      this.restore(saved);
      if (!(error instanceof AtomicBatchRejected)) throw error;
      committed = false;
    } finally {
      this.inBatch = false;
    }
    if (committed) this.scheduleFlush();
    this.ensureAlarm();
    return { committed, results };
  }

  private memory() {
    return {
      account: this.account,
      openHoldsTotal: this.openHoldsTotal,
      openHoldsCount: this.openHoldsCount,
      nextExpiryMs: this.nextExpiryMs,
      alarmAtMs: this.alarmAtMs,
      rowsWritten: this.rowsWritten,
      commits: this.commits,
    };
  }

  private restore(saved: ReturnType<AccountDurableObject["memory"]>): void {
    this.account = saved.account;
    this.openHoldsTotal = saved.openHoldsTotal;
    this.openHoldsCount = saved.openHoldsCount;
    this.nextExpiryMs = saved.nextExpiryMs;
    // A rolled-back setAlarm may or may not have happened: believing the earlier time is safe
    // (a spurious wake re-arms), believing a later one is not.
    this.alarmAtMs =
      saved.alarmAtMs === null || this.alarmAtMs === null ? null : Math.min(saved.alarmAtMs, this.alarmAtMs);
    this.rowsWritten = saved.rowsWritten;
    this.commits = saved.commits;
  }

  private executeAt(command: Command, now: number): ExecuteResult {
    const named = "reservation_id" in command && command.type !== "ReserveFunds" ? command.reservation_id : null;
    this.expireDue(now, named);
    const state = this.loadSlice(command);
    const decision = decide(command, state, now);
    switch (decision.outcome) {
      case "rejected":
        return { ok: false, rejection: decision.rejection };
      case "replayed":
        return { ok: true, replayed: true, body: this.render(command, decision.event, state) };
      case "accepted": {
        const events = stamp(decision.events, this.account, now, () => this.nextEventId(now));
        this.commit(state, events);
        const last = events.at(-1);
        // An update that changed nothing has no event: its answer is the account as it is.
        const body = last === undefined ? accountView(this.requireAccount()) : this.render(command, last, state);
        return { ok: true, replayed: false, body };
      }
    }
  }

  private render(command: Command, event: LedgerEvent, state: LedgerState): unknown {
    if (command.type === "UpdateAccount") return accountView(this.requireAccount());
    const reservationId = "reservation_id" in event ? event.reservation_id : undefined;
    const reservation = reservationId === undefined ? undefined : state.reservations.get(reservationId);
    return operationResult(event, this.requireAccount(), reservation);
  }

  /**
   * Time is an input: before a command at `now`, every reservation due by `now` is settled by
   * its own rule (one bounded batch; the alarm takes the rest), and so is the reservation the
   * command names if it is due, so a late capture can never beat the clock.
   */
  private expireDue(now: number, namedReservationId: string | null): void {
    if (this.account === null) return;
    const due = new Set<string>();
    // nextExpiryMs is never later than the earliest open expiry: past it, nothing (not even the
    // named reservation) can be due, and the common path reads no row at all.
    if (this.nextExpiryMs !== null && this.nextExpiryMs <= now) {
      for (const row of this.sql.exec<{ reservation_id: string }>(
        "SELECT reservation_id FROM reservations WHERE status = 'open' AND expires_at_ms <= ? ORDER BY expires_at_ms LIMIT ?",
        now,
        EXPIRY_BATCH_MAX,
      )) {
        due.add(row.reservation_id);
      }
      if (namedReservationId !== null && !due.has(namedReservationId)) {
        const row = this.sql
          .exec<{ status: string; expires_at_ms: number }>(
            "SELECT status, expires_at_ms FROM reservations WHERE reservation_id = ?",
            namedReservationId,
          )
          .toArray()[0];
        if (row?.status === "open" && row.expires_at_ms <= now) due.add(namedReservationId);
      }
    }
    if (due.size > 0) {
      const expire: Command = { type: "ExpireReservations", reservation_ids: [...due] };
      const state = this.loadSlice(expire);
      const decision = decide(expire, state, now);
      assert(decision.outcome === "accepted", "expiry of due reservations is always accepted");
      this.commit(
        state,
        stamp(decision.events, this.account, now, () => this.nextEventId(now)),
      );
    }
    if (this.nextExpiryMs !== null && this.nextExpiryMs <= now) this.nextExpiryMs = this.earliestOpenExpiry();
    this.ensureAlarm();
  }

  /** Loads exactly the part of the state that `decide` reads for this command. */
  private loadSlice(command: Command): LedgerState {
    const state = initialState();
    state.account = this.account;
    const { reservation_ids, charge_ids, operation_key } = lookupsOf(command);
    for (const id of reservation_ids) {
      const row = this.sql
        .exec<{ state: string }>("SELECT state FROM reservations WHERE reservation_id = ?", id)
        .toArray()[0];
      if (row !== undefined) state.reservations.set(id, JSON.parse(row.state) as ReservationState);
    }
    for (const id of charge_ids) {
      const row = this.sql.exec<{ state: string }>("SELECT state FROM charges WHERE charge_id = ?", id).toArray()[0];
      if (row !== undefined) state.charges.set(id, JSON.parse(row.state) as ChargeState);
    }
    if (operation_key !== null) {
      const seq = this.operationSeq(command, operation_key, state);
      if (seq !== null) state.operations.set(operation_key, this.readEvent(seq));
    }
    return state;
  }

  /** Where each kind of idempotency key is recorded (entity rows double as key records). */
  private operationSeq(command: Command, key: string, state: LedgerState): number | null {
    switch (command.type) {
      case "OpenAccount":
        return this.account === null ? null : 1;
      case "ReserveFunds":
        return state.reservations.get(command.reservation_id)?.reserve_seq ?? null;
      case "CaptureReservation":
      case "ReleaseReservation": {
        const r = state.reservations.get(command.reservation_id);
        const status = command.type === "CaptureReservation" ? "captured" : "released";
        return r?.status === status ? r.end_seq : null;
      }
      case "ChargeAccount": {
        const charge = state.charges.get(command.charge_id);
        return charge?.kind === "direct" ? charge.seq : null;
      }
      default: {
        const row = this.sql.exec<{ seq: number }>("SELECT seq FROM operations WHERE key = ?", key).toArray()[0];
        return row?.seq ?? null;
      }
    }
  }

  /**
   * The commit point: evolve the slice through the events and write the log rows and the rows
   * they touched in one transaction. Any assertion failure rolls everything back and surfaces
   * as a crash; in-memory state is replaced only after the transaction committed.
   */
  private commit(state: LedgerState, events: LedgerEvent[]): void {
    if (events.length === 0) return;
    const before = new Map([...state.reservations].map(([id, r]) => [id, r.status] as const));
    const chargesBefore = new Set(state.charges.keys());
    let holdsTotal = this.openHoldsTotal;
    let holdsCount = this.openHoldsCount;
    let nextExpiry = this.nextExpiryMs;

    let rows = 0;
    const write = (query: string, ...bindings: SqlStorageValue[]) => {
      rows += this.sql.exec(query, ...bindings).rowsWritten;
    };
    // Inside a batch the batch's own transaction holds every item: a failure anywhere (a broken
    // invariant) rolls the whole batch back, so an item needs no savepoint of its own.
    const inTransaction = (work: () => void) => (this.inBatch ? work() : this.ctx.storage.transactionSync(work));
    inTransaction(() => {
      const touchedReservations = new Set<string>();
      const touchedCharges = new Set<string>();
      for (const event of events) {
        evolve(state, event);
        write(
          "INSERT INTO events (seq, type, at, balance_after, reserved_after, hash, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
          event.seq,
          event.type,
          event.at,
          event.balance_after,
          event.reserved_after,
          event.hash,
          JSON.stringify(event),
        );
        if ("reservation_id" in event) touchedReservations.add(event.reservation_id);
        if (event.type === "AccountCharged" || event.type === "ChargeRefunded") touchedCharges.add(event.charge_id);
        if (event.type === "ReservationCaptured" || event.type === "ReservationExpired") {
          touchedCharges.add(event.reservation_id);
        }
        const key = operationKeyOfEvent(event);
        if (
          key !== null &&
          (event.type === "FundsCredited" ||
            event.type === "ChargeRefunded" ||
            event.type === "BalanceAdjusted" ||
            event.type === "ReservationExtended")
        ) {
          write("INSERT INTO operations (key, seq) VALUES (?, ?)", key, event.seq);
        }
        if (event.type === "AccountOpened") {
          write(
            "INSERT INTO account (id, account_id, currency, credit_limit, status, created_at, metadata) VALUES (1, ?, ?, ?, 'active', ?, ?)",
            event.account_id,
            event.currency,
            event.credit_limit,
            event.at,
            JSON.stringify(event.metadata),
          );
        } else if (event.type === "AccountUpdated") {
          write("UPDATE account SET credit_limit = ?, status = ? WHERE id = 1", event.credit_limit, event.status);
        }
      }
      for (const id of touchedReservations) {
        const r = state.reservations.get(id);
        assert(r !== undefined, `touched reservation ${id} is in the slice`);
        const expiresAtMs = Date.parse(r.expires_at);
        const wasOpen = before.get(id) === "open";
        const isOpen = r.status === "open";
        holdsTotal += (isOpen ? r.amount : 0) - (wasOpen ? r.amount : 0);
        holdsCount += (isOpen ? 1 : 0) - (wasOpen ? 1 : 0);
        if (isOpen && (nextExpiry === null || expiresAtMs < nextExpiry)) nextExpiry = expiresAtMs;
        if (before.has(id)) {
          write(
            "UPDATE reservations SET status = ?, expires_at_ms = ?, state = ? WHERE reservation_id = ?",
            r.status,
            expiresAtMs,
            JSON.stringify(r),
            id,
          );
        } else {
          write(
            "INSERT INTO reservations (reservation_id, status, amount, expires_at_ms, state) VALUES (?, ?, ?, ?, ?)",
            id,
            r.status,
            r.amount,
            expiresAtMs,
            JSON.stringify(r),
          );
        }
      }
      for (const id of touchedCharges) {
        const charge = state.charges.get(id);
        if (charge === undefined) continue; // an expiry that released: no charge
        const sql = chargesBefore.has(id)
          ? "UPDATE charges SET state = ?2 WHERE charge_id = ?1"
          : "INSERT INTO charges (charge_id, state) VALUES (?1, ?2)";
        write(sql, id, JSON.stringify(charge));
      }
      const account = state.account;
      assert(account !== null, "a committed command leaves an account");
      assertSnapshot(account, holdsTotal, holdsCount, events);
    });

    this.rowsWritten += rows;
    this.commits += 1;
    this.account = state.account;
    this.openHoldsTotal = holdsTotal;
    this.openHoldsCount = holdsCount;
    this.nextExpiryMs = holdsCount === 0 ? null : nextExpiry;
    this.ensureAlarm();
    // Project without making the caller wait: the flush runs after the response. Inside a batch
    // the events are not committed yet: the batch flushes once it is.
    if (!this.inBatch) this.scheduleFlush();
  }

  /**
   * Starts a projection flush after a short coalescing window (PROJECTION_COALESCE_MS), so that
   * the commands of a busy account share D1 batches (and one account row per batch) instead of
   * each paying for its own. Never delays a response: it runs after it.
   */
  private scheduleFlush(): void {
    const delay = Number(this.env.PROJECTION_COALESCE_MS ?? PROJECTION_COALESCE_MS_DEFAULT);
    if (!(delay > 0)) {
      this.ctx.waitUntil(this.projector.flush());
      return;
    }
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.ctx.waitUntil(
      new Promise((resolve) => setTimeout(resolve, delay)).then(() => {
        this.flushScheduled = false;
        return this.projector.flush();
      }),
    );
  }

  // ---------------------------------------------------------------- alarm

  /**
   * Settles due reservations in bounded batches. At-least-once delivery makes it run twice or
   * late: expiring is keyed on the rows' current status, so a second run finds nothing to do.
   */
  override async alarm(info?: AlarmInvocationInfo): Promise<void> {
    this.alarmAtMs = null; // the runtime consumed the alarm that woke us
    try {
      const now = clock.now();
      this.nextExpiryMs = this.account === null ? null : this.earliestOpenExpiry();
      this.expireDue(now, null);
      if (this.projector.behind()) await this.projector.flush();
      this.ensureAlarm();
    } catch (error) {
      const retries = info?.retryCount ?? 0;
      if (retries < ALARM_RETRIES_MAX) throw error;
      // Past the retry budget, stop throwing (the runtime would give up on the alarm) and come
      // back later; the error is logged without any request data.
      writeLog(this.env, "error", { msg: "alarm_failed", retries, error: String(error) });
      this.alarmAtMs = clock.now() + ALARM_BACKOFF_AFTER_BUDGET_MS;
      await this.ctx.storage.setAlarm(this.alarmAtMs);
    }
  }

  private ensureAlarm(): void {
    const expiry = this.nextExpiryMs;
    const projection = this.projector.wakeAtMs();
    const next = expiry === null ? projection : projection === null ? expiry : Math.min(expiry, projection);
    if (next === null) return;
    if (this.alarmAtMs !== null && this.alarmAtMs <= next) return;
    this.alarmAtMs = next;
    // Not awaited: the output gate holds every response until this write is durable.
    void this.ctx.storage.setAlarm(next);
  }

  private earliestOpenExpiry(): number | null {
    const row = this.sql
      .exec<{ next: number | null }>("SELECT MIN(expires_at_ms) AS next FROM reservations WHERE status = 'open'")
      .one();
    return row.next;
  }

  // ---------------------------------------------------------------- reads

  /**
   * Settles what is due, re-arms the alarm and brings the projection up to date. The scheduled
   * sweep calls it for accounts whose alarm may have been lost; safe to call any time.
   */
  async nudge(): Promise<ProjectionStatus> {
    this.expireDue(clock.now(), null);
    if (this.projector.behind()) await this.projector.flush();
    this.ensureAlarm();
    return this.projector.status(clock.now());
  }

  async projectionStatus(): Promise<ProjectionStatus> {
    return this.projector.status(clock.now());
  }

  /** Rebuilds this account's D1 rows from its log (admin). */
  async reproject(): Promise<ReadResult<ProjectionStatus>> {
    if (this.account === null) return NOT_FOUND;
    return { ok: true, body: await this.projector.reproject() };
  }

  /** The head of the chain and the balances there (what a checkpoint signs). */
  async head(): Promise<
    ReadResult<{ account_id: string; seq: number; head_hash: string; balance: number; reserved: number }>
  > {
    this.expireDue(clock.now(), null);
    const account = this.account;
    if (account === null) return NOT_FOUND;
    return {
      ok: true,
      body: {
        account_id: account.account_id,
        seq: account.last_seq,
        head_hash: account.head_hash,
        balance: account.balance,
        reserved: account.reserved,
      },
    };
  }

  /**
   * Balances as of a point in the log: after event `seq`, or after the last event at or before
   * time `at`. Event times never go backwards, so `at` is found by binary search over seq with
   * primary-key reads (about 20 for a million events), never by replaying the log.
   */
  async balanceAsOf(
    point: { seq: number } | { at: string },
  ): Promise<ReadResult<{ seq: number; at: string | null; balance: number; reserved: number; available: number }>> {
    const account = this.account;
    if (account === null) return NOT_FOUND;
    let seq: number;
    if ("seq" in point) {
      seq = Math.min(point.seq, account.last_seq);
    } else {
      let low = 0; // the answer is in [low, high]; seq 0 means "before the account existed"
      let high = account.last_seq;
      while (low < high) {
        const mid = Math.ceil((low + high) / 2);
        const row = this.sql.exec<{ at: string }>("SELECT at FROM events WHERE seq = ?", mid).one();
        if (row.at <= point.at) low = mid;
        else high = mid - 1;
      }
      seq = low;
    }
    if (seq === 0) return { ok: true, body: { seq: 0, at: null, balance: 0, reserved: 0, available: 0 } };
    const row = this.sql
      .exec<{ at: string; balance_after: number; reserved_after: number }>(
        "SELECT at, balance_after, reserved_after FROM events WHERE seq = ?",
        seq,
      )
      .one();
    return {
      ok: true,
      body: {
        seq,
        at: row.at,
        balance: row.balance_after,
        reserved: row.reserved_after,
        available: row.balance_after - row.reserved_after,
      },
    };
  }

  /** The balances recorded by event `seq` (for reconciliation against a D1 snapshot). */
  async balancesAt(seq: number): Promise<{ seq: number; balance: number; reserved: number } | null> {
    const row = this.sql
      .exec<{ balance_after: number; reserved_after: number }>(
        "SELECT balance_after, reserved_after FROM events WHERE seq = ?",
        seq,
      )
      .toArray()[0];
    return row === undefined ? null : { seq, balance: row.balance_after, reserved: row.reserved_after };
  }

  /** Cost counters for benchmarks and operators: commits and the SQLite rows they wrote. */
  async stats(): Promise<{
    commits: number;
    rows_written: number;
    projection_rows_written: number;
    d1_rows_written: number;
    events_projected: number;
  }> {
    return {
      commits: this.commits,
      rows_written: this.rowsWritten,
      projection_rows_written: this.projector.rowsWritten,
      d1_rows_written: this.projector.d1RowsWritten,
      events_projected: this.projector.eventsProjected,
    };
  }

  /** Does nothing: the benchmark's ceiling for a call into a Durable Object. */
  async ping(): Promise<number> {
    return this.account?.last_seq ?? 0;
  }

  async getAccount(): Promise<ReadResult<AccountView>> {
    this.expireDue(clock.now(), null);
    return this.account === null ? NOT_FOUND : { ok: true, body: accountView(this.account) };
  }

  async getReservation(reservationId: string): Promise<ReadResult<ReservationView>> {
    if (this.account === null) return NOT_FOUND;
    this.expireDue(clock.now(), reservationId);
    const row = this.sql
      .exec<{ state: string }>("SELECT state FROM reservations WHERE reservation_id = ?", reservationId)
      .toArray()[0];
    if (row === undefined) {
      return {
        ok: false,
        rejection: { code: "reservation_not_found", detail: "The account has no reservation with this id." },
      };
    }
    return { ok: true, body: reservationView(JSON.parse(row.state) as ReservationState) };
  }

  async listEvents(
    afterSeq: number,
    limit: number,
  ): Promise<ReadResult<{ events: LedgerEvent[]; next_after_seq: number | null }>> {
    if (this.account === null) return NOT_FOUND;
    assert(Number.isSafeInteger(afterSeq) && afterSeq >= 0, "after_seq");
    assert(Number.isSafeInteger(limit) && limit >= 1 && limit <= EVENTS_PAGE_LIMIT_MAX, "limit");
    const events = this.readEvents(afterSeq, limit);
    const last = events.at(-1);
    const more = last !== undefined && last.seq < this.account.last_seq;
    return { ok: true, body: { events, next_after_seq: more ? last.seq : null } };
  }

  /**
   * Replays the log up to the head as it was when called, in pages of EVENTS_PAGE_LIMIT_MAX
   * that yield between them (other requests go on meanwhile). The replay is `evolve`, which
   * checks every hash link and every rule; the first event that fails is reported by seq. If
   * no command came in meanwhile, the fold is also compared with the snapshot and with every
   * reservation, charge and key row. The tests call it after every scenario.
   */
  async verify(): Promise<VerifyReport> {
    const head = this.account?.last_seq ?? 0;
    const fullFoldMax = Number(this.env.VERIFY_FULL_FOLD_EVENTS_MAX ?? VERIFY_FULL_FOLD_EVENTS_MAX);
    if (head > fullFoldMax) return this.verifyStreaming(head);
    const problems: string[] = [];
    let state = initialState();
    let count = 0;
    for (let after = 0; after < head; ) {
      const page = this.readEvents(after, Math.min(EVENTS_PAGE_LIMIT_MAX, head - after));
      for (const event of page) {
        try {
          state = evolve(state, event);
        } catch (error) {
          return this.report(count, state, [`seq ${event.seq}: ${String(error)}`], event.seq);
        }
        count += 1;
        // Keep the keys (for "applied twice"), not whole events: memory stays small.
        const key = operationKeyOfEvent(event);
        if (key !== null) state.operations.set(key, VERIFIED);
      }
      const last = page.at(-1);
      if (last === undefined)
        return this.report(count, state, [`the log ends at seq ${after}, before ${head}`], after + 1);
      after = last.seq;
      if (after < head) await new Promise((resolve) => setTimeout(resolve, 0));
    }
    if (this.account !== null && this.account.last_seq === head) this.compareRows(state, problems);
    return this.report(count, state, problems, null);
  }

  /**
   * Verification of a long log in bounded memory: the auditors' own streaming verifier
   * (bin/audit-core.mjs, which keeps ids as compact fingerprints, not states) checks every hash
   * link and rule; then its final fold is compared with the snapshot and with the open holds
   * in SQLite. The row-by-row comparison of the full fold is kept for logs up to
   * VERIFY_FULL_FOLD_EVENTS_MAX, whose state fits easily in an isolate's memory.
   */
  private async verifyStreaming(head: number): Promise<VerifyReport> {
    const verifier = new ChainVerifier({
      sha256Hex: (text: string) => createHash("sha256").update(text).digest("hex"),
    });
    for (let after = 0; after < head; ) {
      const page = this.readEvents(after, Math.min(EVENTS_PAGE_LIMIT_MAX, head - after));
      for (const event of page) {
        const failure = verifier.push(event);
        if (failure !== null)
          return this.streamingReport(verifier, [`seq ${failure.seq}: ${failure.reason}`], failure.seq);
      }
      const last = page.at(-1);
      if (last === undefined) {
        return this.streamingReport(verifier, [`the log ends at seq ${after}, before ${head}`], after + 1);
      }
      after = last.seq;
      if (after < head) await new Promise((resolve) => setTimeout(resolve, 0));
    }
    const summary = verifier.summary();
    const problems: string[] = [];
    const account = this.account;
    if (account !== null && account.last_seq === head) {
      if (summary.balance !== account.balance || summary.reserved !== account.reserved) {
        problems.push(
          `the fold gives ${summary.balance}/${summary.reserved}, the snapshot ${account.balance}/${account.reserved}`,
        );
      }
      if (summary.open_reservations !== this.openHoldsCount || summary.reserved !== this.openHoldsTotal) {
        problems.push("the open holds in SQLite differ from the fold's");
      }
    }
    return this.streamingReport(verifier, problems, null);
  }

  private streamingReport(verifier: ChainVerifier, problems: string[], firstBadSeq: number | null): VerifyReport {
    const summary = verifier.summary();
    return {
      ok: problems.length === 0,
      events: summary.events,
      head_seq: summary.head_seq,
      head_hash: summary.head_seq === 0 ? null : summary.head_hash,
      balance: summary.balance,
      reserved: summary.reserved,
      first_bad_seq: firstBadSeq,
      problems,
    };
  }

  private report(count: number, state: LedgerState, problems: string[], firstBadSeq: number | null): VerifyReport {
    return {
      ok: problems.length === 0,
      events: count,
      head_seq: state.account?.last_seq ?? 0,
      head_hash: state.account?.head_hash ?? null,
      balance: state.account?.balance ?? 0,
      reserved: state.account?.reserved ?? 0,
      first_bad_seq: firstBadSeq,
      problems,
    };
  }

  private compareRows(state: LedgerState, problems: string[]): void {
    const same = (what: string, a: unknown, b: unknown) => {
      if (JSON.stringify(a) !== JSON.stringify(b)) {
        problems.push(`${what}: log says ${JSON.stringify(a)}, snapshot says ${JSON.stringify(b)}`);
      }
    };
    same("account", state.account, this.account);
    const reservations = this.sql.exec<{ reservation_id: string; state: string; status: string; amount: number }>(
      "SELECT reservation_id, state, status, amount FROM reservations",
    );
    let rows = 0;
    for (const row of reservations) {
      rows += 1;
      const folded = state.reservations.get(row.reservation_id);
      same(`reservation ${row.reservation_id}`, folded, JSON.parse(row.state));
      same(`reservation ${row.reservation_id} columns`, [folded?.status, folded?.amount], [row.status, row.amount]);
    }
    same("reservation count", state.reservations.size, rows);
    rows = 0;
    for (const row of this.sql.exec<{ charge_id: string; state: string }>("SELECT charge_id, state FROM charges")) {
      rows += 1;
      same(`charge ${row.charge_id}`, state.charges.get(row.charge_id), JSON.parse(row.state));
    }
    same("charge count", state.charges.size, rows);
    for (const row of this.sql.exec<{ key: string; seq: number }>("SELECT key, seq FROM operations")) {
      same(`operation ${row.key}`, state.operations.has(row.key), true);
    }
    const open = [...state.reservations.values()].filter((r) => r.status === "open");
    same(
      "open holds",
      [open.reduce((sum, r) => sum + r.amount, 0), open.length],
      [this.openHoldsTotal, this.openHoldsCount],
    );
    if (open.length > 0) {
      const earliest = Math.min(...open.map((r) => Date.parse(r.expires_at)));
      if (this.alarmAtMs === null || this.alarmAtMs > earliest) {
        problems.push(`alarm ${this.alarmAtMs} is later than the earliest open expiry ${earliest}`);
      }
    }
  }

  // ---------------------------------------------------------------- storage helpers

  private loadSnapshot(): void {
    const row = this.sql
      .exec<AccountRow>(
        "SELECT account_id, currency, credit_limit, status, created_at, metadata FROM account WHERE id = 1",
      )
      .toArray()[0];
    if (row === undefined) return;
    const head = this.sql
      .exec<{ seq: number; at: string; balance_after: number; reserved_after: number; hash: string }>(
        "SELECT seq, at, balance_after, reserved_after, hash FROM events ORDER BY seq DESC LIMIT 1",
      )
      .one();
    const holds = this.sql
      .exec<{ n: number; total: number; next: number | null }>(
        "SELECT COUNT(*) AS n, COALESCE(SUM(amount), 0) AS total, MIN(expires_at_ms) AS next FROM reservations WHERE status = 'open'",
      )
      .one();
    this.account = {
      account_id: row.account_id,
      currency: row.currency,
      credit_limit: row.credit_limit,
      status: row.status === "frozen" ? "frozen" : "active",
      balance: head.balance_after,
      reserved: head.reserved_after,
      open_reservations: holds.n,
      last_seq: head.seq,
      head_hash: head.hash,
      created_at: row.created_at,
      updated_at: head.at,
      metadata: JSON.parse(row.metadata) as AccountState["metadata"],
    };
    this.openHoldsTotal = holds.total;
    this.openHoldsCount = holds.n;
    this.nextExpiryMs = holds.next;
    assert(this.account.reserved === holds.total, "on load: reserved equals the sum of open holds");
  }

  private readEvent(seq: number): LedgerEvent {
    const row = this.sql.exec<{ body: string }>("SELECT body FROM events WHERE seq = ?", seq).one();
    return JSON.parse(row.body) as LedgerEvent;
  }

  private readEvents(afterSeq: number, limit: number): LedgerEvent[] {
    return this.sql
      .exec<{ body: string }>("SELECT body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", afterSeq, limit)
      .toArray()
      .map((row) => JSON.parse(row.body) as LedgerEvent);
  }

  private requireAccount(): AccountState {
    assert(this.account !== null, "account is open");
    return this.account;
  }
}

/** Invariants asserted on every append, inside the transaction (a failure rolls it back). */
function assertSnapshot(account: AccountState, holdsTotal: number, holdsCount: number, events: LedgerEvent[]): void {
  const last = events.at(-1);
  assert(last !== undefined && account.last_seq === last.seq, "snapshot seq is the head seq");
  assert(account.balance === last.balance_after && account.reserved === last.reserved_after, "snapshot is the head");
  assert(account.reserved >= 0, "reserved >= 0");
  assert(account.reserved === holdsTotal, `reserved ${account.reserved} equals open holds ${holdsTotal}`);
  assert(account.open_reservations === holdsCount, "open_reservations equals the open rows");
  assert(Number.isSafeInteger(account.balance - account.reserved + account.credit_limit), "available stays exact");
}
