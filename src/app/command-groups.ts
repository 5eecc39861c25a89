/**
 * Group commit: the commands that reach one isolate for one account while a call to that account
 * is in flight go to its object together, as one call (TigerBeetle batches every request).
 *
 * An account's object decides its commands one at a time whatever happens, so a busy account is
 * as fast as one command's turn inside its object, and much of that turn is not the decision: it
 * is the call itself (its arguments and answer cloned across, the dispatch) and the transaction.
 * Each busy account has a line in the isolate:
 * - a command for an account with no line goes at once, alone: its request becomes the line's
 *   leader, so a quiet account waits for nothing;
 * - a command that finds a leader takes a slot; after the leader's own call, the leader sends the
 *   waiting slots in groups of up to COMMAND_GROUP_SIZE_MAX, in arrival order (`executeBatch`, not
 *   atomic: one call, one transaction), until none is left or it has sent COMMAND_GROUP_LEADER_TURNS_MAX
 *   groups; then the line has no leader, and the next request to arrive, or the first waiting one
 *   to look, leads it.
 *
 * In a group each command is decided alone against the state the one before it left, exactly as
 * if it had arrived alone in that order: its own answer, its own rejection, its own replay (two
 * requests with one key in one group: the second replays the first). Only commands with an
 * idempotency key join a line (`groupable`): if a group's call fails, each of its commands is sent
 * again alone, so a command the object cannot run fails alone, and one the failed call did commit
 * answers as a replay of itself instead of applying twice.
 *
 * The platform keeps requests apart: a request may not use another's I/O, nor wait on a promise
 * another request settles (workerd cancels it as hung). So the leader makes every call from its own
 * context, under its `waitUntil`, and writes each answer into its slot as plain data; a
 * waiting request looks at its slot every COMMAND_GROUP_POLL_MS on a timer of its own. The leader's
 * turn is bounded so its `waitUntil` stays short. Should the leader vanish mid-turn (its
 * `waitUntil` cut off, say after a call hung), a waiting request whose command is still in its slot
 * takes the line over once the leader has not moved for COMMAND_GROUP_LEADER_STALE_MS; each
 * command still goes at most once, since a slot leaves the line in one step. A command whose call
 * went with the leader fails after COMMAND_GROUP_ANSWER_WAIT_MS_MAX (`GroupCallLost`), so its
 * caller can send it again with its key instead of waiting forever. A line is forgotten
 * when it has no leader and no slot: the map holds only the accounts busy right now.
 */

import { clock } from "../clock";
import type { BatchResult, ExecuteResult } from "../contract";
import type { Command } from "../domain/commands";
import { assert } from "../domain/money";
import { specOf } from "../domain/table";
import { LedgerError } from "../errors";

/** Commands in one group's call (the object's batch limit, BATCH_OPERATIONS_MAX, is higher). */
export const COMMAND_GROUP_SIZE_MAX = 100;
/** Groups one leader sends before it leaves the line to the next request. */
export const COMMAND_GROUP_LEADER_TURNS_MAX = 16;
/** How often a waiting request looks at its slot, in milliseconds. */
export const COMMAND_GROUP_POLL_MS = 1;
/**
 * A leader that has not started a call for this long is taken to be gone (past
 * the platform's 30 s for `waitUntil` after a response), and a waiting request leads instead.
 */
export const COMMAND_GROUP_LEADER_STALE_MS = 35_000;
/**
 * A command sent in a group whose call has not answered for this long (its leader gone with the
 * call) fails to its caller, who may send it again with its key, rather than waiting forever.
 */
export const COMMAND_GROUP_ANSWER_WAIT_MS_MAX = 60_000;

/** A grouped command's call never answered (COMMAND_GROUP_ANSWER_WAIT_MS_MAX). */
export class GroupCallLost extends LedgerError {
  override name = "GroupCallLost";
  readonly code = "service_unavailable";
  readonly publicDetail = "The account did not answer in time; retry with the same idempotency key.";
  override readonly retryAfterSeconds = 1;
  override readonly log = "group_call_lost";
}

/** What a line calls: the account object's stub (or a test's fake). */
export interface GroupTarget {
  execute(command: Command): Promise<ExecuteResult>;
  executeBatch(commands: Command[], atomic: boolean): Promise<BatchResult>;
}

/** Keeps work running after the response of the request that started it (`ctx.waitUntil`). */
export type WaitUntil = (work: Promise<unknown>) => void;

type Answer = { ok: true; result: ExecuteResult } | { ok: false; error: unknown };

interface Slot {
  readonly command: Command;
  answer: Answer | null;
  /** When a leader took it into a call (the clock seam), or null while it waits in the line. */
  sentAtMs: number | null;
}

class Line {
  /** The leading request's token, or null: only the leader that holds it may clear it. */
  leader: object | null = null;
  /** When the leader last started a call (the clock seam). */
  movedAtMs = 0;
  readonly slots: Slot[] = [];
}

export interface GroupLimits {
  sizeMax: number;
  leaderTurnsMax: number;
}

const DEFAULT_LIMITS: GroupLimits = { sizeMax: COMMAND_GROUP_SIZE_MAX, leaderTurnsMax: COMMAND_GROUP_LEADER_TURNS_MAX };

/** A turn on the waiting request's own timer: its own I/O, so the runtime never takes it for hung. */
const poll = () => new Promise((resolve) => setTimeout(resolve, COMMAND_GROUP_POLL_MS));

/** Whether a command may join a line: batchable, and keyed (so that sending it again is safe). */
export function groupable(command: Command): boolean {
  const spec = specOf(command);
  return spec.batchable && spec.key(command) !== null;
}

export class CommandGroups {
  private readonly lines = new Map<string, Line>();
  /** Calls made, groups among them, and commands sent again alone after a failed group. */
  readonly counts = { calls: 0, groups: 0, grouped: 0, resent: 0 };
  private readonly limits: GroupLimits;

  constructor(limits: Partial<GroupLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    const { sizeMax, leaderTurnsMax } = this.limits;
    assert(Number.isSafeInteger(sizeMax) && sizeMax >= 1, "commands per group");
    assert(Number.isSafeInteger(leaderTurnsMax) && leaderTurnsMax >= 1, "groups per leader");
  }

  /** Accounts with a line (none once every call has ended and every answer was taken). */
  get busyAccounts(): number {
    return this.lines.size;
  }

  /** Runs `command` on `accountId`'s object, alone or in a group; its own answer either way. */
  async execute(
    accountId: string,
    target: GroupTarget,
    command: Command,
    waitUntil: WaitUntil,
  ): Promise<ExecuteResult> {
    assert(groupable(command), `${command.type} without a key does not join a line`);
    let line = this.lines.get(accountId);
    if (line === undefined) {
      line = new Line();
      this.lines.set(accountId, line);
    }
    if (line.leader === null) return this.lead(accountId, line, target, command, waitUntil);
    const slot: Slot = { command, answer: null, sentAtMs: null };
    line.slots.push(slot);
    for (;;) {
      await poll();
      if (slot.answer !== null) return answerOf(slot.answer);
      if (slot.sentAtMs !== null && clock.now() - slot.sentAtMs > COMMAND_GROUP_ANSWER_WAIT_MS_MAX) {
        throw new GroupCallLost(`the call carrying ${command.type} did not answer`);
      }
      const gone = line.leader === null || clock.now() - line.movedAtMs > COMMAND_GROUP_LEADER_STALE_MS;
      const at = gone ? line.slots.indexOf(slot) : -1;
      if (at >= 0) {
        // The leader left (or vanished) with this command still in its slot: this request leads.
        line.slots.splice(at, 1);
        return this.lead(accountId, line, target, command, waitUntil);
      }
    }
  }

  /** Sends `command` alone from this request, then the waiting slots, under its `waitUntil`. */
  private lead(accountId: string, line: Line, target: GroupTarget, command: Command, waitUntil: WaitUntil) {
    const token = {};
    line.leader = token;
    line.movedAtMs = clock.now();
    this.counts.calls += 1;
    const own = target.execute(command);
    waitUntil(this.drain(accountId, line, token, target, own));
    return own;
  }

  private async drain(accountId: string, line: Line, token: object, target: GroupTarget, own: Promise<unknown>) {
    try {
      await own.catch(() => undefined); // its failure is its own caller's
      for (let turns = 0; turns < this.limits.leaderTurnsMax; turns++) {
        // A leader taken for gone that comes back leaves the line to the one that took it over.
        if (line.leader !== token || line.slots.length === 0) break;
        line.movedAtMs = clock.now();
        const slots = line.slots.splice(0, this.limits.sizeMax);
        for (const slot of slots) slot.sentAtMs = line.movedAtMs;
        await this.send(target, slots);
      }
    } finally {
      if (line.leader === token) {
        line.leader = null;
        if (line.slots.length === 0) this.lines.delete(accountId);
      }
    }
  }

  /** One call for the slots; every slot gets an answer, whatever happens. */
  private async send(target: GroupTarget, slots: readonly Slot[]): Promise<void> {
    this.counts.calls += 1;
    try {
      if (slots.length === 1) {
        await this.alone(target, slots[0] as Slot);
        return;
      }
      this.counts.groups += 1;
      this.counts.grouped += slots.length;
      let batch: BatchResult;
      try {
        batch = await target.executeBatch(
          slots.map((s) => s.command),
          false,
        );
      } catch {
        // Nothing says which command failed, nor whether the call committed before it failed:
        // each goes again alone (a committed one answers as its own replay).
        this.counts.resent += slots.length;
        await Promise.all(slots.map((s) => this.alone(target, s)));
        return;
      }
      assert(batch.committed && batch.results.length === slots.length, "a group answers every command");
      slots.forEach((s, i) => {
        s.answer = { ok: true, result: batch.results[i] as ExecuteResult };
      });
    } catch (error) {
      for (const s of slots) s.answer ??= { ok: false, error };
    }
  }

  private async alone(target: GroupTarget, slot: Slot): Promise<void> {
    try {
      slot.answer = { ok: true, result: await target.execute(slot.command) };
    } catch (error) {
      slot.answer = { ok: false, error };
    }
  }
}

function answerOf(answer: Answer): ExecuteResult {
  if (!answer.ok) throw answer.error;
  return answer.result;
}

/** This isolate's lines: every request of the isolate that runs a keyed command shares them. */
export const commandGroups = new CommandGroups();
