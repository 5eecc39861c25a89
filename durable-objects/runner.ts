/**
 * Runs commands against the account's store: expire what is due, load the slice, decide,
 * stamp, append, render. Every step is synchronous, so the runtime's input gate makes a
 * command atomic with respect to every other request to this account. It reads the command
 * table for everything command-specific and names no event type.
 */

import type { BatchResult, ExecuteResult } from "../src/contract";
import type { Command } from "../src/domain/commands";
import { decide, eventTime, stamp } from "../src/domain/decide";
import type { LedgerEvent } from "../src/domain/events";
import { BATCH_OPERATIONS_MAX } from "../src/domain/limits";
import { lotsOpenedBody } from "../src/domain/lot-events";
import { nextExpiryMs } from "../src/domain/lots";
import { assert } from "../src/domain/money";
import { limitsView } from "../src/domain/spend-limits";
import type { LedgerState } from "../src/domain/state";
import { specOf } from "../src/domain/table";
import { accountView, operationResult } from "../src/domain/views";
import { monotonicUlids } from "../src/ids";
import type { ExpiryScheduler } from "./scheduler";
import type { AccountStore } from "./store";

export type { BatchResult, ExecuteResult };

class AtomicBatchRejected extends Error {}

export class CommandRunner {
  private readonly nextEventId = monotonicUlids();

  constructor(
    private readonly store: AccountStore,
    private readonly scheduler: ExpiryScheduler,
    /** Called after events are committed (outside a batch) or after a batch commits. */
    private readonly committed: () => void,
    /** Called after a batch rolled back: other memory that followed its writes is read afresh. */
    private readonly rolledBack: () => void = () => undefined,
  ) {}

  run(command: Command, clockMs: number): ExecuteResult {
    const nowMs = this.effectiveNow(clockMs);
    // Reservation and charge ids share one namespace (a capture is the charge `reservation_id`):
    // a refund of a capture-on-expiry hold that is due must find the hold settled first.
    const reads = specOf(command).reads(command);
    this.expireDue(nowMs, [...reads.reservation_ids, ...reads.charge_ids]);
    const state = this.store.loadSlice(command);
    const decision = decide(command, state, nowMs);
    switch (decision.outcome) {
      case "rejected":
        return { ok: false, rejection: decision.rejection };
      case "replayed":
        return { ok: true, replayed: true, body: this.render(command, decision.event, state) };
      case "accepted": {
        // The command's own event comes first (what a hold's end lapsed follows it as LotExpired).
        const own = this.append(state, decision.events, nowMs)[0];
        // An update that changed nothing has no event: its answer is the account (or limits) as they are.
        const body =
          own === undefined
            ? specOf(command).view === "limits"
              ? this.limitsBody(nowMs)
              : this.accountBody()
            : this.render(command, own, state);
        return { ok: true, replayed: false, body };
      }
    }
  }

  /**
   * Up to BATCH_OPERATIONS_MAX commands, decided in order (each against the state the previous
   * left) and committed in one transaction. A rejected item writes nothing; with `atomic` the
   * first rejection rolls the whole batch back, memory included.
   */
  runBatch(commands: readonly Command[], atomic: boolean, nowMs: number): BatchResult {
    assert(commands.length >= 1 && commands.length <= BATCH_OPERATIONS_MAX, "batch size");
    const saved = { store: this.store.memory(), scheduler: this.scheduler.memory() };
    const results: ExecuteResult[] = [];
    let committed = true;
    try {
      this.store.batch(() => {
        for (const command of commands) {
          assert(specOf(command).batchable, `${command.type} is not batchable`);
          const result = this.run(command, nowMs);
          results.push(result);
          if (atomic && !result.ok) throw new AtomicBatchRejected();
        }
      });
    } catch (error) {
      this.store.restore(saved.store);
      this.scheduler.restore(saved.scheduler);
      this.rolledBack();
      if (!(error instanceof AtomicBatchRejected)) throw error;
      committed = false;
    }
    // Inside the batch the events were not committed yet: the batch reports its commit once.
    if (committed) this.committed();
    this.scheduler.ensureAlarm();
    return { committed, results };
  }

  /** The time a command decides at: the time its events are stamped with (`eventTime`). */
  private effectiveNow(clockMs: number): number {
    return eventTime(this.store.account, clockMs);
  }

  /**
   * Settles every reservation due at `nowMs` (and `named` ones if due), by their own rule, and
   * expires every lot due; first, once, an account opened before lots starts keeping them.
   */
  expireDue(clockMs: number, named: readonly string[] = []): void {
    const nowMs = this.effectiveNow(clockMs);
    this.openLots(nowMs);
    const due = this.scheduler.due(nowMs, named);
    const book = this.store.lots.book;
    const lotDue = book !== null && (nextExpiryMs(book) ?? Number.POSITIVE_INFINITY) <= nowMs;
    if (due.length > 0 || lotDue) {
      const expire: Command = { type: "ExpireReservations", reservation_ids: due };
      const state = this.store.loadSlice(expire);
      const decision = decide(expire, state, nowMs);
      assert(decision.outcome === "accepted", "expiry of due reservations is always accepted");
      this.append(state, decision.events, nowMs);
    }
    this.scheduler.expiredThrough(nowMs);
  }

  /** An account opened before lots existed: its `LotsOpened` event (decision 0006), once. */
  private openLots(nowMs: number): void {
    if (this.store.account === null || this.store.lots.book !== null) return;
    const state = this.store.openHoldsSlice();
    this.append(state, [lotsOpenedBody(state)], nowMs);
  }

  private append(state: LedgerState, bodies: Parameters<typeof stamp>[0], nowMs: number): LedgerEvent[] {
    if (bodies.length === 0) return [];
    const events = stamp(bodies, this.store.account, nowMs, () => this.nextEventId(nowMs));
    this.scheduler.appended(this.store.append(state, events));
    if (!this.store.inBatch) this.committed();
    return events;
  }

  private render(command: Command, event: LedgerEvent, state: LedgerState): unknown {
    if (specOf(command).view === "account") return this.accountBody();
    if (specOf(command).view === "limits") return this.limitsBody(Date.parse(event.at));
    const reservationId = "reservation_id" in event ? event.reservation_id : undefined;
    const reservation = reservationId === undefined ? undefined : state.reservations.get(reservationId);
    const account = this.store.account;
    assert(account !== null, "a rendered operation has an account");
    return operationResult(event, account, reservation);
  }

  /** Every spend limit with its current window's figures at `nowMs` (issue 28). */
  private limitsBody(nowMs: number): unknown {
    return limitsView(this.store.limits.book, nowMs);
  }

  private accountBody(): unknown {
    assert(this.store.account !== null, "account is open");
    return accountView(this.store.account, this.store.lots.book);
  }
}
