/**
 * The projection queue inside workerd: the object's producer (its cursor moves when the queue
 * accepts), the consumer's acks and retries under redelivery, reordering and D1 failure, the
 * dead-letter queue, and an operator's replay; nothing lost, nothing doubled.
 *
 * The object sends to a recording queue and the test hands the recorded messages to the
 * Worker's `queue()` handler as batches (createMessageBatch), so every delivery order is chosen
 * by the test, not by the runtime's timers.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import worker from "../../src/index";
import {
  gapDelaySeconds,
  PROJECTION_DLQ,
  PROJECTION_QUEUE,
  retryDelaySeconds,
} from "../../src/projection/consumer/queue";
import { directDelivery, QUEUE_MESSAGE_BYTES_MAX, queueDelivery } from "../../src/projection/producer/delivery";
import type { ProjectionMessage } from "../../src/projection/wire";
import { shardsOf } from "../../src/read-side/shards";
import { api, expectEveryAccountConsistent, stub, useManualClock } from "../helpers";
import { dbOf, drain, expectD1EqualsLog } from "./support";

afterEach(expectEveryAccountConsistent);

/** A queue that records what it accepted (and by which call), and can refuse. */
class RecordingQueue {
  sent: ProjectionMessage[] = [];
  /** Messages per call, in order: `send` for a lone message, `sendBatch` for more. */
  calls: { call: "send" | "sendBatch"; messages: number }[] = [];
  down = false;
  async send(body: string, options?: QueueSendOptions): Promise<void> {
    if (this.down) throw new Error("queue unavailable");
    this.calls.push({ call: "send", messages: 1 });
    this.record(body, options?.contentType);
  }
  async sendBatch(messages: Iterable<MessageSendRequest<string>>): Promise<void> {
    if (this.down) throw new Error("queue unavailable");
    const all = [...messages];
    this.calls.push({ call: "sendBatch", messages: all.length });
    for (const m of all) this.record(m.body, m.contentType);
  }
  private record(body: string, contentType: string | undefined): void {
    // What the platform carries: the message's JSON text, as text.
    expect(contentType).toBe("text");
    expect(typeof body).toBe("string");
    this.sent.push(JSON.parse(body) as ProjectionMessage);
  }
  take(): ProjectionMessage[] {
    const out = this.sent;
    this.sent = [];
    return out;
  }
}

/** Makes the account's object deliver to `queue` (lives until the object is evicted). */
async function produceTo(accountId: string, queue: RecordingQueue): Promise<void> {
  await runInDurableObject(stub(accountId), (instance: AccountDurableObject) => {
    instance.projector.deliver = queueDelivery(queue as unknown as Queue<string>, directDelivery(shardsOf(env)));
  });
}

let ids = 0;
/**
 * Runs the Worker's queue handler on `bodies` as one batch, each as the JSON text the objects
 * send (`asText: false`: as objects, the format queued before it); returns what it acked and
 * retried (with the delay asked: the test runtime's own batch does not record delays).
 */
async function consume(
  bodies: unknown[],
  queue = PROJECTION_QUEUE,
  attempts = 1,
  environment: object = env,
  asText = true,
) {
  const acked: string[] = [];
  const retried = new Map<string, number | undefined>();
  const messages = bodies.map((body) => {
    const id = `msg-${++ids}`;
    return {
      id,
      timestamp: new Date(),
      attempts,
      body: asText ? JSON.stringify(body) : body,
      ack: () => acked.push(id),
      retry: (options?: { delaySeconds?: number }) => retried.set(id, options?.delaySeconds),
    };
  });
  const batch = { queue, messages, ackAll: () => undefined, retryAll: () => undefined } as unknown as MessageBatch;
  await worker.queue(batch, environment as typeof env);
  return { ids: messages.map((m) => m.id), acked, retried };
}

async function eventCount(accountId: string): Promise<number> {
  const row = await dbOf(accountId)
    .prepare("SELECT COUNT(*) AS n FROM ledger_events WHERE account_id = ?")
    .bind(accountId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

/** An account whose events went to `queue` only (D1 has nothing of it yet). */
async function queuedAccount(queue: RecordingQueue, commands: number): Promise<string> {
  const id = `q_${crypto.randomUUID().slice(0, 8)}`;
  await produceTo(id, queue);
  expect((await api("POST", "/v1/accounts", { account_id: id, currency: "USD" })).status).toBe(201);
  for (let i = 0; i < commands; i++) {
    const path = i % 2 === 0 ? "credits" : "charges";
    const key = i % 2 === 0 ? "credit_id" : "charge_id";
    expect((await api("POST", `/v1/accounts/${id}/${path}`, { [key]: `k${i}`, amount: 5 })).status).toBe(201);
  }
  await drain(id);
  return id;
}

describe("the producer", () => {
  it("moves the cursor when the queue accepts, and keeps it while the queue refuses", async () => {
    useManualClock();
    const queue = new RecordingQueue();
    const id = await queuedAccount(queue, 3);
    const status = await stub(id).projectionStatus();
    expect(status.projected_seq).toBe(status.last_seq);
    // Nothing reached D1: the queue holds it.
    expect(await eventCount(id)).toBe(0);
    const sent = queue.take();
    expect(sent.map((m) => [m.from_seq, m.to_seq])).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 4],
    ]);
    // Each flush had one message, and a lone message goes by `send`.
    expect(queue.calls).toEqual(sent.map(() => ({ call: "send", messages: 1 })));
    queue.down = true;
    expect((await api("POST", `/v1/accounts/${id}/credits`, { credit_id: "late", amount: 1 })).status).toBe(201);
    await stub(id).catchUp();
    const refused = await stub(id).projectionStatus();
    expect(refused.projected_seq).toBe(4);
    expect(refused.failures).toBeGreaterThan(0);
    queue.down = false;
    await drain(id);
    const resent = queue.take();
    expect(resent.map((m) => [m.from_seq, m.to_seq])).toEqual([[5, 5]]);
    // Delivered by the consumer, in order: D1 is the log.
    const { acked } = await consume([...sent, ...resent]);
    expect(acked).toHaveLength(5);
    await expectD1EqualsLog(id);
  });

  it("keeps every message within the platform's size limit, a page of events at most", async () => {
    useManualClock();
    const queue = new RecordingQueue();
    const id = `q_${crypto.randomUUID().slice(0, 8)}`;
    await produceTo(id, queue);
    await api("POST", "/v1/accounts", { account_id: id, currency: "USD" });
    const big = "x".repeat(3_000);
    const operations = Array.from({ length: 80 }, (_, i) => ({
      op: "credit",
      credit_id: `c${i}`,
      amount: 1,
      metadata: { note: big },
    }));
    // The queue is down while 80 events commit, so they go out together.
    queue.down = true;
    expect((await api("POST", `/v1/accounts/${id}/batch`, { operations })).status).toBe(200);
    queue.down = false;
    await drain(id);
    const sent = queue.take();
    for (const m of sent) {
      expect(new TextEncoder().encode(JSON.stringify(m)).length).toBeLessThanOrEqual(QUEUE_MESSAGE_BYTES_MAX);
      expect(m.tail.length + m.pages.reduce((n, p) => n + p.events.length, 0)).toBeLessThanOrEqual(16);
    }
    expect(sent.at(-1)?.to_seq).toBe(81);
    // Several messages in one flush go as one `sendBatch`; only a lone one goes by `send`.
    expect(queue.calls.some((c) => c.call === "sendBatch" && c.messages > 1)).toBe(true);
    for (const c of queue.calls) expect(c.call === "send").toBe(c.messages === 1);
    expect(queue.calls.reduce((n, c) => n + c.messages, 0)).toBe(sent.length);
    await consume(sent);
    await expectD1EqualsLog(id);
  });
});

describe("the consumer", () => {
  it("applies many accounts' messages in one batch, and acks duplicates without doubling", async () => {
    useManualClock();
    const queue = new RecordingQueue();
    const a = await queuedAccount(queue, 4);
    const b = await queuedAccount(queue, 6);
    const sent = queue.take();
    const first = await consume(sent);
    expect(first.acked).toEqual(first.ids);
    // Redelivered, twice, in one batch with a reversed copy: all acked, nothing changes.
    const again = await consume([...sent, ...[...sent].reverse()]);
    expect(again.acked).toEqual(again.ids);
    expect(await eventCount(a)).toBe(5);
    expect(await eventCount(b)).toBe(7);
    await expectD1EqualsLog(a);
    await expectD1EqualsLog(b);
  });

  it("applies bodies queued as objects, the format before JSON text, and their text redelivered once", async () => {
    useManualClock();
    const queue = new RecordingQueue();
    const id = await queuedAccount(queue, 4);
    const sent = queue.take();
    const before = await consume(sent.slice(0, 3), PROJECTION_QUEUE, 1, env, false);
    expect(before.acked).toEqual(before.ids);
    const after = await consume(sent);
    expect(after.acked).toEqual(after.ids);
    expect(await eventCount(id)).toBe(5);
    await expectD1EqualsLog(id);
  });

  it("retries a message whose predecessor is late, with backoff, and applies it after", async () => {
    useManualClock();
    const queue = new RecordingQueue();
    const id = await queuedAccount(queue, 5);
    const sent = queue.take();
    const late = sent.slice(0, 2);
    const early = sent.slice(2);
    const out = await consume(early, PROJECTION_QUEUE, 3);
    expect(out.acked).toEqual([]);
    expect([...out.retried.values()]).toEqual(early.map(() => gapDelaySeconds(3)));
    // A gap is retried after 1 s at first (its predecessor is usually moments behind), then backs off.
    expect([1, 2, 3, 4, 5, 6, 10].map(gapDelaySeconds)).toEqual([1, 1, 1, 2, 4, 8, 60]);
    expect([1, 2, 3, 7, 8].map(retryDelaySeconds)).toEqual([1, 2, 4, 60, 60]);
    expect(await eventCount(id)).toBe(0);
    expect((await consume(late)).acked).toHaveLength(2);
    expect((await consume(early)).acked).toHaveLength(early.length);
    await expectD1EqualsLog(id);
  });

  it("retries the whole batch when D1 fails, then dead-letters, and an operator's replay loses and doubles nothing", async () => {
    useManualClock();
    const queue = new RecordingQueue();
    const id = await queuedAccount(queue, 6);
    const sent = queue.take();
    const failing = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async () => {
        throw new Error("D1_ERROR: injected outage");
      },
    };
    const down = { ...env, DB: failing, DB_1: failing };
    const failed = await consume(sent, PROJECTION_QUEUE, 10, down);
    expect(failed.acked).toEqual([]);
    expect(failed.retried.size).toBe(sent.length);
    expect([...failed.retried.values()].every((d) => d === retryDelaySeconds(10))).toBe(true);
    // Out of retries, the queue moves them to the dead-letter queue, whose consumer keeps them.
    const dead = await consume(sent, PROJECTION_DLQ, 11);
    expect(dead.acked).toEqual(dead.ids);
    const listed = await api("GET", "/v1/admin/projection/dead-letters?limit=2");
    expect(listed.status).toBe(200);
    expect(listed.body.total).toBe(sent.length);
    expect(listed.body.data[0]).toMatchObject({ account_id: id, from_seq: 1, to_seq: 1, attempts: 11 });
    expect(listed.body.data[0]).not.toHaveProperty("body");
    expect(listed.body.next_cursor).not.toBeNull();
    const next = await api("GET", `/v1/admin/projection/dead-letters?limit=100&cursor=${listed.body.next_cursor}`);
    expect(next.body.data).toHaveLength(sent.length - 2);

    // A partial replay first: the later ones find a gap and stay.
    const tail = listed.body.data.map((d: { id: string }) => d.id);
    const allIds = [...tail, ...next.body.data.map((d: { id: string }) => d.id)];
    const partial = await api("POST", "/v1/admin/projection/dead-letters/replay", { ids: allIds.slice(3) });
    expect(partial.body).toMatchObject({ replayed: sent.length - 3, remaining: sent.length });
    expect(partial.body.outcomes.gap).toBe(sent.length - 3);
    const replay = await api("POST", "/v1/admin/projection/dead-letters/replay");
    expect(replay.status).toBe(200);
    expect(replay.body).toMatchObject({ replayed: sent.length, remaining: 0 });
    expect(replay.body.outcomes.applied).toBe(sent.length);
    await expectD1EqualsLog(id);
    // Replaying the same messages again (a second DLQ delivery) doubles nothing.
    await consume(sent, PROJECTION_DLQ, 11);
    const twice = await api("POST", "/v1/admin/projection/dead-letters/replay");
    expect(twice.body.outcomes.duplicate).toBe(sent.length);
    expect(await eventCount(id)).toBe(7);
    await expectD1EqualsLog(id);
  });

  it("dead-letters a message no version can read, and drops one superseded by a rebuild", async () => {
    useManualClock();
    const out = await consume([{ v: 99, nonsense: true }]);
    expect(out.acked).toEqual(out.ids);
    // Text that is not JSON at all: kept as it came, and a replay leaves it where it is.
    const garbled = await consume(['{"v":1,"account_id":'], PROJECTION_QUEUE, 1, env, false);
    expect(garbled.acked).toEqual(garbled.ids);
    const listed = await api("GET", "/v1/admin/projection/dead-letters?limit=100");
    const listedIds = listed.body.data.map((d: { id: string }) => d.id);
    expect(listedIds).toEqual(expect.arrayContaining([out.ids[0], garbled.ids[0]]));
    const replay = await api("POST", "/v1/admin/projection/dead-letters/replay", { ids: garbled.ids });
    expect(replay.status).toBe(200);
    expect(replay.body).toMatchObject({ replayed: 1, outcomes: { invalid: 1 } });

    const queue = new RecordingQueue();
    const id = await queuedAccount(queue, 2);
    const old = queue.take();
    await consume(old);
    // A rebuild (generation 1) supersedes generation 0: its late messages are acked and dropped.
    expect((await api("POST", `/v1/admin/accounts/${id}/reproject`)).status).toBe(200);
    const rebuilt = queue.take();
    expect(rebuilt[0]).toMatchObject({ reset: true, generation: 1, from_seq: 1 });
    expect((await consume(rebuilt)).acked).toHaveLength(rebuilt.length);
    const stale = await consume(old);
    expect(stale.acked).toEqual(stale.ids);
    await expectD1EqualsLog(id);
  });
});

describe("the consumer, after the review", () => {
  it("applies in one invocation a run that follows a stale redelivery in the same batch", async () => {
    useManualClock();
    const queue = new RecordingQueue();
    const id = await queuedAccount(queue, 5);
    const sent = queue.take();
    expect((await consume(sent.slice(0, 3))).acked).toHaveLength(3);
    // The first message again (stale), then the rest, which continues the read side.
    const out = await consume([sent[0], ...sent.slice(3)]);
    expect(out.acked).toEqual(out.ids);
    await expectD1EqualsLog(id);
  });

  it("keeps dead letters in their queue while D1 refuses them", async () => {
    useManualClock();
    const failing = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async () => {
        throw new Error("D1_ERROR: injected outage");
      },
    };
    const out = await consume([{ v: 99 }], PROJECTION_DLQ, 1, { ...env, DB: failing });
    expect(out.acked).toEqual([]);
    expect([...out.retried.values()]).toEqual([60]);
  });

  it("reprojects, on repair, an account whose delivered messages were lost", async () => {
    const time = useManualClock();
    const queue = new RecordingQueue();
    const id = await queuedAccount(queue, 4);
    const sent = queue.take();
    // The second message is lost: the later ones find a gap.
    await consume([sent[0]]);
    expect((await consume(sent.slice(2))).retried.size).toBe(sent.length - 2);
    const check = () => api("POST", "/v1/admin/reconcile", { account_ids: [id], repair: true });
    // Recently projected: a catch-up may be all it needs (the messages may still be in the queue).
    expect((await check()).body.results[0]).toMatchObject({ state: "lagging", repaired: true });
    expect(queue.take()).toEqual([]);
    // Long after: the object delivered everything and D1 never moved: rebuilt from the log.
    time.advance(16 * 60_000);
    const repaired = (await check()).body.results[0];
    expect(repaired).toMatchObject({ state: "lagging", repaired: true });
    expect(repaired.detail).toContain("reprojected");
    const rebuilt = queue.take();
    expect(rebuilt[0]).toMatchObject({ reset: true, from_seq: 1 });
    await consume(rebuilt);
    await expectD1EqualsLog(id);
  });
});
