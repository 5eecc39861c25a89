/**
 * Group commit (src/app/command-groups.ts): an account's commands that arrive while a call to it
 * is in flight go to its object together, each with its own answer. First the line against a
 * fake object whose calls the test releases one by one; then over HTTP against the real object,
 * where requests are concurrent for real inside workerd.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  COMMAND_GROUP_ANSWER_WAIT_MS_MAX,
  COMMAND_GROUP_LEADER_STALE_MS,
  COMMAND_GROUP_SIZE_MAX,
  CommandGroups,
  commandGroups,
  GroupCallLost,
  type GroupLimits,
  type GroupTarget,
} from "../../src/app/command-groups";
import type { BatchResult, ExecuteResult } from "../../src/contract";
import type { Command } from "../../src/domain/commands";
import { AssertionError } from "../../src/domain/money";
import { account, api, expectEveryAccountConsistent, openAccount, useManualClock } from "../helpers";

const reserve = (id: string): Command => ({
  type: "ReserveFunds",
  reservation_id: id,
  amount: 1,
  ttl_seconds: 60,
  on_expiry: "release",
  context: {},
  metadata: {},
});
const idOf = (command: Command) => (command as { reservation_id: string }).reservation_id;
const answer = (command: Command): ExecuteResult => ({ ok: true, replayed: false, body: { id: idOf(command) } });

/** Resolves once `done()` holds, looking after each turn of the event loop (no time margin). */
async function until(done: () => boolean): Promise<void> {
  while (!done()) await new Promise((resolve) => setTimeout(resolve, 0));
}

/** An object whose calls wait until the test releases them, in the order they were made. */
function fakeObject(fail: { batch?: boolean; ids?: string[] } = {}) {
  const calls: { kind: "alone" | "group"; ids: string[] }[] = [];
  const pending: (() => void)[] = [];
  const held = () => new Promise<void>((resolve) => pending.push(resolve));
  const target: GroupTarget = {
    async execute(command) {
      calls.push({ kind: "alone", ids: [idOf(command)] });
      await held();
      if (fail.ids?.includes(idOf(command))) throw new Error(`cannot run ${idOf(command)}`);
      return answer(command);
    },
    async executeBatch(commands, atomic): Promise<BatchResult> {
      expect(atomic).toBe(false);
      calls.push({ kind: "group", ids: commands.map(idOf) });
      await held();
      if (fail.batch === true) throw new Error("the group's call failed");
      return { committed: true, results: commands.map(answer) };
    },
  };
  /** Lets the oldest held call answer, once one is held. */
  const release = async () => {
    await until(() => pending.length > 0);
    (pending.shift() as () => void)();
  };
  return { target, calls, pending, release };
}

const keepAll = () => {
  const kept: Promise<unknown>[] = [];
  return { keep: (work: Promise<unknown>) => kept.push(work), settled: () => Promise.all(kept) };
};

/** Fresh lines, a fake object, and a `keep` that holds every leader's work until `settled`. */
function setup(limits: Partial<GroupLimits> = {}, fail: Parameters<typeof fakeObject>[0] = {}) {
  return { groups: new CommandGroups(limits), object: fakeObject(fail), ...keepAll() };
}

describe("an account's line", () => {
  it("sends a lone command at once, alone, and forgets the line after it", async () => {
    const { groups, object, keep, settled } = setup();
    const done = groups.execute("a", object.target, reserve("r1"), keep);
    await object.release();
    expect(await done).toEqual(answer(reserve("r1")));
    await settled();
    expect(object.calls).toEqual([{ kind: "alone", ids: ["r1"] }]);
    expect(groups.busyAccounts).toBe(0);
  });

  it("sends the commands that arrive during a call as one group, in arrival order, each with its own answer", async () => {
    const { groups, object, keep, settled } = setup();
    const first = groups.execute("a", object.target, reserve("r0"), keep);
    await until(() => object.calls.length === 1);
    const rest = ["r1", "r2", "r3", "r4", "r5"].map((id) => groups.execute("a", object.target, reserve(id), keep));
    await object.release(); // r0's own call
    await object.release(); // the group
    expect(await first).toEqual(answer(reserve("r0")));
    expect(await Promise.all(rest)).toEqual(["r1", "r2", "r3", "r4", "r5"].map((id) => answer(reserve(id))));
    await settled();
    expect(object.calls).toEqual([
      { kind: "alone", ids: ["r0"] },
      { kind: "group", ids: ["r1", "r2", "r3", "r4", "r5"] },
    ]);
    expect(groups.counts).toMatchObject({ groups: 1, grouped: 5, resent: 0 });
    expect(groups.busyAccounts).toBe(0);
  });

  it("sends at most sizeMax commands per group", async () => {
    const { groups, object, keep, settled } = setup({ sizeMax: 2 });
    const all = [groups.execute("a", object.target, reserve("r0"), keep)];
    await until(() => object.calls.length === 1);
    for (const id of ["r1", "r2", "r3", "r4", "r5"]) all.push(groups.execute("a", object.target, reserve(id), keep));
    for (let i = 0; i < 4; i++) await object.release();
    expect((await Promise.all(all)).map((r) => (r as { body: { id: string } }).body.id)).toEqual([
      "r0",
      "r1",
      "r2",
      "r3",
      "r4",
      "r5",
    ]);
    await settled();
    expect(object.calls.map((c) => c.ids)).toEqual([["r0"], ["r1", "r2"], ["r3", "r4"], ["r5"]]);
    expect(COMMAND_GROUP_SIZE_MAX).toBeGreaterThan(1);
  });

  it("leaves the line after leaderTurnsMax groups; a waiting request takes it over and nothing runs twice or is lost", async () => {
    const { groups, object, keep, settled } = setup({ sizeMax: 1, leaderTurnsMax: 1 });
    const ids = ["r0", "r1", "r2", "r3", "r4"];
    const all = [groups.execute("a", object.target, reserve("r0"), keep)];
    await until(() => object.calls.length === 1);
    for (const id of ids.slice(1)) all.push(groups.execute("a", object.target, reserve(id), keep));
    for (let i = 0; i < ids.length; i++) await object.release();
    expect((await Promise.all(all)).map((r) => (r as { body: { id: string } }).body.id)).toEqual(ids);
    await settled();
    // Each command was sent exactly once, whoever drove the line when it went.
    expect(object.calls.flatMap((c) => c.ids).sort()).toEqual(ids);
    expect(groups.busyAccounts).toBe(0);
  });

  it("sends each command of a failed group again alone: the one the object cannot run fails alone", async () => {
    const { groups, object, keep, settled } = setup({}, { batch: true, ids: ["r2"] });
    const first = groups.execute("a", object.target, reserve("r0"), keep);
    await until(() => object.calls.length === 1);
    const rest = ["r1", "r2", "r3"].map((id) =>
      groups.execute("a", object.target, reserve(id), keep).then(
        (result) => ({ ok: true, result }),
        (error: Error) => ({ ok: false, error: error.message }),
      ),
    );
    await object.release(); // r0
    await object.release(); // the group, which fails
    for (let i = 0; i < 3; i++) await object.release(); // each again alone
    expect(await first).toEqual(answer(reserve("r0")));
    expect(await Promise.all(rest)).toEqual([
      { ok: true, result: answer(reserve("r1")) },
      { ok: false, error: "cannot run r2" },
      { ok: true, result: answer(reserve("r3")) },
    ]);
    await settled();
    expect(groups.counts).toMatchObject({ groups: 1, resent: 3 });
    expect(groups.busyAccounts).toBe(0);
  });

  it("lets a waiting request lead once the leader has not moved for the stale limit, and the old leader then stands aside", async () => {
    const manual = useManualClock();
    const { groups, object, keep, settled } = setup();
    const first = groups.execute("a", object.target, reserve("r0"), keep); // its call hangs
    await until(() => object.calls.length === 1);
    const second = groups.execute("a", object.target, reserve("r1"), keep);
    for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setTimeout(resolve, 0));
    expect(object.calls).toHaveLength(1); // waiting while the leader is not stale
    manual.advance(COMMAND_GROUP_LEADER_STALE_MS + 1);
    await until(() => object.calls.length === 2);
    expect(object.calls[1]).toEqual({ kind: "alone", ids: ["r1"] });
    await object.release(); // the hung call answers at last
    await object.release();
    expect(await first).toEqual(answer(reserve("r0")));
    expect(await second).toEqual(answer(reserve("r1")));
    await settled();
    expect(object.calls).toHaveLength(2);
    expect(groups.busyAccounts).toBe(0);
  });

  it("fails a grouped command whose call never answers, after the answer wait, instead of waiting forever", async () => {
    const manual = useManualClock();
    const { groups, object, keep } = setup();
    void groups.execute("a", object.target, reserve("r0"), keep).catch(() => undefined);
    await until(() => object.calls.length === 1);
    const lost = groups.execute("a", object.target, reserve("r1"), keep);
    const outcome = lost.then(
      () => "answered",
      (error: unknown) => error,
    );
    await object.release(); // r0 answers; the leader sends r1 in a call that never answers
    await until(() => object.calls.length === 2);
    for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setTimeout(resolve, 0));
    manual.advance(COMMAND_GROUP_ANSWER_WAIT_MS_MAX + 1);
    expect(await outcome).toBeInstanceOf(GroupCallLost);
    expect(object.calls).toEqual([
      { kind: "alone", ids: ["r0"] },
      { kind: "alone", ids: ["r1"] },
    ]);
  });

  it("never makes one account wait for another's call", async () => {
    const { groups, object, keep, settled } = setup();
    const a = groups.execute("a", object.target, reserve("a0"), keep);
    await until(() => object.calls.length === 1);
    const b = groups.execute("b", object.target, reserve("b0"), keep);
    // b's call is made while a's is still held.
    await until(() => object.calls.length === 2);
    expect(object.calls).toEqual([
      { kind: "alone", ids: ["a0"] },
      { kind: "alone", ids: ["b0"] },
    ]);
    await object.release();
    await object.release();
    await Promise.all([a, b, settled()]);
    expect(groups.busyAccounts).toBe(0);
  });

  it("refuses a command without a key (sending it again would not be safe)", async () => {
    const groups = new CommandGroups();
    const update: Command = { type: "UpdateAccount", credit_limit: 10 };
    await expect(groups.execute("a", fakeObject().target, update, () => undefined)).rejects.toThrow(AssertionError);
  });
});

describe("over HTTP, inside workerd", () => {
  afterEach(expectEveryAccountConsistent);

  it("groups one account's concurrent requests, each answered as if it had come alone", async () => {
    const id = await openAccount(250);
    const before = { ...commandGroups.counts };
    // 30 distinct holds of 10 on 250 (25 fit), and 5 retries of r0 with its very body.
    const bodies = [
      ...Array.from({ length: 30 }, (_, i) => ({ reservation_id: `r${i}`, amount: 10 })),
      ...Array.from({ length: 5 }, () => ({ reservation_id: "r0", amount: 10 })),
    ];
    const responses = await Promise.all(bodies.map((b) => api("POST", `/v1/accounts/${id}/reservations`, b)));
    expect(commandGroups.counts.groups).toBeGreaterThan(before.groups);
    const r0 = responses.filter((_, i) => bodies[i]?.reservation_id === "r0");
    expect(r0.every((r) => r.status === 201)).toBe(true);
    expect(r0.filter((r) => r.headers.get("idempotent-replayed") !== "true")).toHaveLength(1);
    for (const r of r0) expect(r.body).toEqual(r0[0]?.body);
    const held = responses.filter((r, i) => r.status === 201 && bodies[i]?.reservation_id !== "r0");
    const refused = responses.filter((r) => r.status === 402);
    expect(held.length + 1).toBe(25);
    expect(refused).toHaveLength(5);
    for (const r of refused) expect(r.body).toMatchObject({ code: "insufficient_funds" });
    // Every answer names its own reservation.
    responses.forEach((r, i) => {
      if (r.status === 201)
        expect(r.body).toMatchObject({ reservation: { reservation_id: bodies[i]?.reservation_id } });
    });
    expect(await account(id)).toMatchObject({ balance: 250, reserved: 250, available: 0, open_reservations: 25 });
    expect(commandGroups.busyAccounts).toBe(0);
  });
});
