/**
 * The example gateway (examples/gateway) against the real ledger through its service binding
 * (RPC to the LedgerService entrypoint) and a fake OpenAI-compatible provider that can stream,
 * stall, break, fail, hang, omit usage or misreport it. Each scenario is checked against the
 * ledger's balances and events. Nothing waits on the wall clock: the gateway's idle timeout and
 * settle backoff are timers the test fires, and holds expire by advancing a ManualClock and
 * running the alarm.
 *
 * The first block is the eight billing scenarios; the blocks after it are issue 11 ("the
 * example gateway is the integration people copy: make it safe"), one per hole it names. Each
 * hole's tests failed against the gateway as it was before the fix; the three that did not
 * (an unreadable key list, one request id in two accounts, usage sent before a stall) pin down
 * behaviour the fix keeps.
 */
import {
  createExecutionContext,
  runDurableObjectAlarm,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { createGateway, type Ledger, REQUEST_BODY_BYTES_MAX } from "../../examples/gateway/src/gateway";
import { type GatewayKeyEntry, keyStoreFromConfig, newGatewayKey } from "../../examples/gateway/src/keys";
import { clock } from "../../src/clock";
import type { LedgerEvent } from "../../src/domain/events";
import { flushMetricsIfDue } from "../../src/observability/flush";
import { account, api, expectEveryAccountConsistent, openAccount, stub, useManualClock } from "../helpers";
import { logOf } from "../projection/support";

afterEach(expectEveryAccountConsistent);

const ledger = (exports as unknown as { LedgerService: Ledger }).LedgerService;
const encoder = new TextEncoder();

type Mode =
  | "stream"
  | "stream_no_usage"
  | "stream_break"
  | "stall"
  | "fail"
  | "hang"
  | "json"
  | "json_stall"
  | "json_empty"
  | "json_not_json"
  | "silent"
  | "break_first"
  | "stream_not_sse"
  | "stall_no_usage"
  | "usage_then_stall"
  | "crlf"
  | "cr";

const STALL = Symbol("stall");
const BREAK = Symbol("break");
type Part = Uint8Array | typeof STALL | typeof BREAK;

const event = (data: unknown, eol = "\n") => encoder.encode(`data: ${JSON.stringify(data)}${eol}${eol}`);
const delta = (text: string) => event({ choices: [{ delta: { content: text } }] });
const DONE = encoder.encode("data: [DONE]\n\n");

/** Where a fake provider waits when it stalls, and how it says that it does. */
interface Stall {
  gate: Promise<void>;
  markStalled: () => void;
}

/** A body that yields one part per read: pulled only when the reader asks for more. */
function scripted(parts: Part[], stall: Stall): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let part = parts.shift();
        if (part === STALL) {
          stall.markStalled();
          await stall.gate;
          part = parts.shift();
        }
        if (part === undefined) controller.close();
        else if (part === BREAK) controller.error(new Error("upstream connection reset"));
        else if (part !== STALL) controller.enqueue(part);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * A fake provider; `calls` counts requests and `bodies` keeps what each was sent, `called`
 * resolves at the first one (the gateway has reserved by then), `finish` releases a stall, and
 * `stalled` resolves when the gateway has read everything before a scripted stall and asks for
 * more (so the gateway is then waiting on the provider, under its idle timer).
 */
function fakeProvider(mode: Mode, usage = { prompt_tokens: 40, completion_tokens: 25 }) {
  let finish: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let markCalled: () => void = () => undefined;
  const called = new Promise<void>((resolve) => {
    markCalled = resolve;
  });
  let markStalled: () => void = () => undefined;
  const stalled = new Promise<void>((resolve) => {
    markStalled = resolve;
  });
  const state = { calls: 0, bodies: [] as Record<string, unknown>[], called, stalled, finish };
  const fetch = async (request: Request): Promise<Response> => {
    state.calls += 1;
    state.bodies.push((await request.clone().json()) as Record<string, unknown>);
    markCalled();
    return answer(mode, request, usage, { gate, markStalled });
  };
  return Object.assign(state, { fetch });
}

/** What the fake provider answers in each mode. */
function answer(mode: Mode, request: Request, usage: unknown, stall: Stall): Promise<Response> | Response {
  const sse = (parts: Part[]) =>
    new Response(scripted(parts, stall), { headers: { "content-type": "text/event-stream" } });
  switch (mode) {
    case "fail":
      return new Response("upstream exploded", { status: 500 });
    case "hang":
      return new Promise<Response>((_resolve, reject) => {
        request.signal.addEventListener("abort", () => reject(new Error("aborted")));
      });
    case "json":
      return Response.json({ choices: [{ message: { content: "hi" } }], usage });
    case "json_stall": {
      const [head, tail] = ['{"choices":[{"message":{"content":"hi"}}],', `"usage":${JSON.stringify(usage)}}`];
      return new Response(scripted([encoder.encode(head), STALL, encoder.encode(tail)], stall));
    }
    case "json_empty":
      return new Response("", { headers: { "content-type": "application/json" } });
    case "json_not_json":
    case "stream_not_sse":
      return new Response("<html>upstream maintenance</html>", { headers: { "content-type": "text/html" } });
    case "silent":
      return sse([STALL, delta("Hel"), event({ choices: [], usage }), DONE]);
    case "stream_break":
      // Breaks after delivering: erroring a stream drops what it still queues, so the break
      // comes only once the gateway has read the chunks before it.
      return sse([delta("Hel"), delta("lo"), BREAK]);
    case "break_first":
      return sse([BREAK]);
    case "stall_no_usage":
      return sse([delta("Hel"), STALL, delta("lo"), DONE]);
    case "usage_then_stall":
      return sse([delta("Hel"), delta("lo"), event({ choices: [], usage }), STALL, DONE]);
    case "crlf":
    case "cr": {
      const eol = mode === "crlf" ? "\r\n" : "\r";
      const parts = [{ choices: [{ delta: { content: "Hel" } }] }, { choices: [], usage }];
      return sse([...parts.map((p) => event(p, eol)), encoder.encode(`data: [DONE]${eol}${eol}`)]);
    }
    default:
      return classicStream(mode, usage, stall.gate);
  }
}

/** The original fake streams: everything enqueued at once, a "stall" waiting on `gate`. */
function classicStream(mode: Mode, usage: unknown, gate: Promise<void>): Response {
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(delta("Hel"));
      if (mode === "stall") {
        await gate;
        controller.enqueue(delta("lo"));
        controller.enqueue(event({ choices: [], usage }));
        controller.close();
        return;
      }
      controller.enqueue(delta("lo"));
      if (mode === "stream") controller.enqueue(event({ choices: [], usage }));
      controller.enqueue(DONE);
      controller.close();
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

/**
 * Timers the test fires itself (`fire`); a gateway that "dies" simply never sees one. Delays in
 * `autoFireMs` (the settle backoff) fire on their own at once, so retries never wait.
 */
function manualTimers(autoFireMs: number[] = []) {
  const armed = new Set<{ ms: number; onTimeout: () => void }>();
  const history: number[] = [];
  return {
    setTimer(ms: number, onTimeout: () => void) {
      history.push(ms);
      if (autoFireMs.includes(ms)) {
        queueMicrotask(onTimeout);
        return () => undefined;
      }
      const timer = { ms, onTimeout };
      armed.add(timer);
      return () => {
        armed.delete(timer);
      };
    },
    /** The delays of the timers armed and not cancelled. */
    armed: () => [...armed].map((t) => t.ms),
    /** Every delay ever asked for, in order. */
    history,
    /** Fires every armed timer now, as if their time had come. */
    fire() {
      for (const timer of [...armed]) {
        armed.delete(timer);
        timer.onTimeout();
      }
    },
  };
}

/** Gateway keys issued by this file; every gateway reads them from configuration, as deployed. */
const keyEntries: GatewayKeyEntry[] = [];
const accountOfKey = new Map<string, string>();

async function issueKey(accountId: string, role: "caller" | "operator"): Promise<string> {
  const { secret, entry } = await newGatewayKey(accountId, role);
  keyEntries.push(entry);
  accountOfKey.set(secret, accountId);
  return secret;
}

/** An account with a caller key and an operator key. */
async function customer(balance: number, creditLimit = 0) {
  const id = await openAccount(balance, creditLimit);
  return { id, key: await issueKey(id, "caller"), operatorKey: await issueKey(id, "operator") };
}

/** The headers that authenticate a request with `key`. */
function authed(key: string, headers: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${key}`, ...headers };
}

/** The gateway's hold for a request, and for an order. */
const holdId = (accountId: string, requestId: string) => `gw:${accountId}:${requestId}`;
const orderHoldId = (accountId: string, orderId: string) => `order:${accountId}:${orderId}`;

function gatewayWith(
  provider: { fetch: (r: Request) => Promise<Response> },
  options: {
    ttl?: number;
    timeoutMs?: number;
    timers?: ReturnType<typeof manualTimers>;
    ledger?: Ledger;
    backoffMs?: number;
    log?: (line: Record<string, string | number>) => void;
  } = {},
) {
  return createGateway({
    ledger: options.ledger ?? ledger,
    keys: keyStoreFromConfig(JSON.stringify(keyEntries)),
    provider: provider.fetch,
    providerName: "acme",
    serviceId: "chat",
    reservationTtlSeconds: options.ttl ?? 300,
    providerIdleTimeoutMs: options.timeoutMs ?? 200,
    // The ledger's clock seam (a test's ManualClock when one is installed), and timeouts that
    // fire only when the test fires them: no scenario depends on how fast the machine is.
    now: () => clock.now(),
    setTimer: (options.timers ?? manualTimers()).setTimer,
    settleBackoffMs: options.backoffMs ?? 0,
    log: options.log ?? (() => undefined),
  });
}

/** Prices for (chat, acme, model): 1 per 10 input tokens, 3 per 10 output tokens, 5 per request. */
async function publish(model: string, prices = { input: 1, output: 3, request: 5 }) {
  const published = await api("POST", "/v1/admin/prices", {
    service_id: "chat",
    provider: "acme",
    model,
    rules: [
      { unit: "input_token", price_minor: prices.input, per_units: 10 },
      { unit: "output_token", price_minor: prices.output, per_units: 10 },
      { unit: "request", price_minor: prices.request, per_units: 1 },
    ],
  });
  expect(published.status).toBe(201);
  return published.body.rules as { rule_id: string }[];
}

/** A published model, a customer with `balance`, and a gateway over a provider that streams. */
async function streamingSetup(model: string, balance: number) {
  await publish(model);
  const c = await customer(balance);
  const provider = fakeProvider("stream");
  return { c, provider, gateway: gatewayWith(provider) };
}

function chatRequest(
  key: string,
  requestId: string,
  model: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
) {
  return chatRequestWith(authed(key, headers), requestId, model, extra);
}

/** A chat request with exactly these headers (besides its type and id). */
function chatRequestWith(headers: Record<string, string>, requestId: string, model: string, extra = {}) {
  return new Request("https://gateway.test/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": requestId, ...headers },
    body: JSON.stringify({
      model,
      messages: [{ role: "user", content: "x".repeat(30) }],
      max_tokens: 100,
      stream: true,
      ...extra,
    }),
  });
}

/** A POST to an operator route (orders, refunds) with `key`. */
function operatorRequest(key: string, path: string, body: Record<string, unknown>) {
  return new Request(`https://gateway.test${path}`, {
    method: "POST",
    headers: authed(key, { "content-type": "application/json" }),
    body: JSON.stringify(body),
  });
}

type GatewayUnderTest = ReturnType<typeof gatewayWith>;

/** Runs a chat through the gateway, reads the whole answer, and waits for settlement. */
async function chat(gateway: GatewayUnderTest, request: Request) {
  const ctx = createExecutionContext();
  const response = await gateway.fetch(request, ctx);
  // A broken upstream breaks the client's stream too: that is what the client would see.
  const text = await response.text().catch(() => "<stream broken>");
  await waitOnExecutionContext(ctx);
  return { status: response.status, text };
}

const reservationOf = async (accountId: string, requestId: string) =>
  (await api("GET", `/v1/accounts/${accountId}/reservations/${holdId(accountId, requestId)}`)).body;

const errorCode = (text: string) => (JSON.parse(text) as { error: { code: string } }).error.code;

// The hold for the requests above: ceil((30/3 + 16) input × 1/10 + 100 output × 3/10 + 5) = 38.
const HOLD = 38;
// The cost of the fake provider's usage: 40 × 1/10 + 25 × 3/10 + 5 = 16.5 -> 17, rounded up once.
const COST = 17;

describe("gateway billing", () => {
  it("1. never calls the provider when the funds cover no output token", async () => {
    await publish("m1");
    // The input and the request alone cost ceil(26 × 1/10 + 5) = 8: the hold of 5 covers no output.
    const c = await customer(5);
    const provider = fakeProvider("stream");
    const { status, text } = await chat(gatewayWith(provider), chatRequest(c.key, "q1", "m1"));
    expect(status).toBe(402);
    expect(errorCode(text)).toBe("insufficient_funds");
    expect(provider.calls).toBe(0);
    // The sized hold was made and released at once: nothing is held or spent.
    expect(await account(c.id)).toMatchObject({ balance: 5, reserved: 0, last_seq: 4 });
    expect(await reservationOf(c.id, "q1")).toMatchObject({ status: "released", amount: 5 });
  });

  it("1a. stops reading a chunked body past its bound, without reading it whole (issue 31, defect 7)", async () => {
    await publish("m1a");
    const c = await customer(1_000);
    const provider = fakeProvider("stream");
    const chunk = new Uint8Array(REQUEST_BODY_BYTES_MAX / 2).fill(0x20);
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += 1;
        if (pulled > 8) controller.close();
        else controller.enqueue(chunk);
      },
    });
    // A streamed body: no Content-Length.
    const request = new Request("https://gateway.test/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "big", ...authed(c.key) },
      body,
      duplex: "half",
    } as RequestInit);
    expect(request.headers.get("content-length")).toBeNull();
    const { status, text } = await chat(gatewayWith(provider), request);
    expect(status).toBe(413);
    expect(errorCode(text)).toBe("payload_too_large");
    // Three halves pass the bound: the rest is never pulled.
    expect(pulled).toBeLessThanOrEqual(4);
    expect(provider.calls).toBe(0);
  });

  it("1b. holds what the funds allow and asks the provider for only the tokens that covers (issue 28)", async () => {
    await publish("m1b");
    const c = await customer(20);
    const provider = fakeProvider("stream", { prompt_tokens: 26, completion_tokens: 41 });
    const { status } = await chat(gatewayWith(provider), chatRequest(c.key, "q1b", "m1b"));
    expect(status).toBe(200);
    // 20 - ceil(2.6 + 5) leaves 12.4: 41 output tokens at 3/10 (2.6 + 12.3 + 5 = 19.9, charged 20).
    expect(provider.bodies[0]?.max_tokens).toBe(41);
    expect(await reservationOf(c.id, "q1b")).toMatchObject({ status: "captured", amount: 20, captured_amount: 20 });
    expect(await account(c.id)).toMatchObject({ balance: 0, reserved: 0 });
  });

  it("2. captures a completed stream from its usage at the pinned price and releases the rest", async () => {
    await publish("m2");
    const c = await customer(1_000);
    const { status, text } = await chat(gatewayWith(fakeProvider("stream")), chatRequest(c.key, "q2", "m2"));
    expect(status).toBe(200);
    expect(text).toContain("Hel");
    expect(text).toContain("[DONE]");
    const r = await reservationOf(c.id, "q2");
    expect(r).toMatchObject({ status: "captured", amount: HOLD, captured_amount: COST, released_amount: HOLD - COST });
    expect(await account(c.id)).toMatchObject({ balance: 1_000 - COST, reserved: 0 });
    const captured = (await logOf(c.id)).find((e) => e.type === "ReservationCaptured") as Extract<
      LedgerEvent,
      { type: "ReservationCaptured" }
    >;
    // The event carries every line of the computation, so an auditor can redo it.
    expect(captured.pricing?.lines.map((l) => [l.unit, l.quantity])).toEqual([
      ["input_token", 40],
      ["output_token", 25],
      ["request", 1],
    ]);
    expect(captured.pricing).toMatchObject({ exact_numerator: "33", exact_denominator: "2", amount: COST });
    expect(captured.usage).toMatchObject({ input_tokens: 40, output_tokens: 25, status: "ok" });
  });

  it("2b. captures a non-streaming answer from its usage", async () => {
    await publish("m2b");
    const c = await customer(1_000);
    const request = chatRequest(c.key, "q2b", "m2b", { stream: false });
    const { status } = await chat(gatewayWith(fakeProvider("json")), request);
    expect(status).toBe(200);
    expect(await account(c.id)).toMatchObject({ balance: 1_000 - COST, reserved: 0 });
  });

  it("3. settles from the reserved estimate when the stream ends without usage, or breaks", async () => {
    await publish("m3");
    const c = await customer(1_000);
    await chat(gatewayWith(fakeProvider("stream_no_usage")), chatRequest(c.key, "q3a", "m3"));
    expect(await reservationOf(c.id, "q3a")).toMatchObject({ status: "captured", captured_amount: HOLD });
    await chat(gatewayWith(fakeProvider("stream_break")), chatRequest(c.key, "q3b", "m3"));
    expect(await reservationOf(c.id, "q3b")).toMatchObject({ status: "captured", captured_amount: HOLD });
    expect(await account(c.id)).toMatchObject({ balance: 1_000 - 2 * HOLD, reserved: 0 });
  });

  it("3c. settles from the estimate when the client disconnects mid-stream", async () => {
    await publish("m3c");
    const c = await customer(1_000);
    const provider = fakeProvider("stall");
    const ctx = createExecutionContext();
    const response = await gatewayWith(provider).fetch(chatRequest(c.key, "q3c", "m3c"), ctx);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain("Hel");
    await reader.cancel("client went away");
    provider.finish();
    await waitOnExecutionContext(ctx);
    expect(await reservationOf(c.id, "q3c")).toMatchObject({ status: "captured", captured_amount: HOLD });
  });

  it("4. releases when the provider fails or times out before delivering: the customer pays nothing", async () => {
    await publish("m4");
    const c = await customer(1_000);
    const failed = await chat(gatewayWith(fakeProvider("fail")), chatRequest(c.key, "q4a", "m4"));
    expect(failed.status).toBe(502);
    // The provider hangs until the gateway's timeout aborts it; the test fires the timeout.
    const hanging = fakeProvider("hang");
    const timers = manualTimers();
    const timingOut = chat(gatewayWith(hanging, { timers }), chatRequest(c.key, "q4b", "m4"));
    await hanging.called;
    expect(timers.armed()).toEqual([200]);
    timers.fire();
    const timedOut = await timingOut;
    expect(timedOut.status).toBe(504);
    for (const q of ["q4a", "q4b"]) expect(await reservationOf(c.id, q)).toMatchObject({ status: "released" });
    expect(await account(c.id)).toMatchObject({ balance: 1_000, reserved: 0 });
  });

  it("5. expires an unfulfilled asynchronous order by the alarm; a late fulfilment cannot charge", async () => {
    const time = useManualClock();
    const c = await customer(1_000);
    const gateway = gatewayWith(fakeProvider("stream"));
    const ctx = createExecutionContext();
    const order = (path: string, body: Record<string, unknown>) =>
      gateway.fetch(operatorRequest(c.operatorKey, path, body), ctx);
    const placed = await order("/v1/orders", { order_id: "o1", amount: 300, fulfil_within_seconds: 1 });
    expect(placed.status).toBe(201);
    expect(await account(c.id)).toMatchObject({ available: 700 });
    // The order's second passes; its alarm runs (the ManualClock is a day ahead of the wall
    // clock, so only this call runs it) and storage shows it settled the order.
    time.advance(1_000);
    expect(await runDurableObjectAlarm(stub(c.id))).toBe(true);
    const stored = await runInDurableObject(stub(c.id), (_i: AccountDurableObject, state) =>
      state.storage.sql
        .exec<{ status: string }>("SELECT status FROM reservations WHERE reservation_id = ?", orderHoldId(c.id, "o1"))
        .one(),
    );
    expect(stored.status).toBe("expired");
    const late = await order("/v1/orders/o1/fulfil", { amount: 300 });
    expect(late.status).toBe(409);
    expect(((await late.json()) as { error: { code: string } }).error.code).toBe("reservation_not_open");
    expect(await account(c.id)).toMatchObject({ balance: 1_000, reserved: 0 });
  });

  it("6. refunds once under concurrent and sequential retries", async () => {
    await publish("m6");
    const c = await customer(1_000);
    await chat(gatewayWith(fakeProvider("stream")), chatRequest(c.key, "q6", "m6"));
    const gateway = gatewayWith(fakeProvider("stream"));
    const ctx = createExecutionContext();
    const body = { refund_id: "rf_q6", charge_id: holdId(c.id, "q6"), amount: 10, reason: "bad answer" };
    const refund = () => gateway.fetch(operatorRequest(c.operatorKey, "/v1/refunds", body), ctx);
    const concurrent = await Promise.all(Array.from({ length: 20 }, refund));
    const sequential = [];
    for (let i = 0; i < 5; i++) sequential.push(await refund());
    expect([...concurrent, ...sequential].every((r) => r.status === 201)).toBe(true);
    const refunds = (await logOf(c.id)).filter((e) => e.type === "ChargeRefunded");
    expect(refunds).toHaveLength(1);
    expect(await account(c.id)).toMatchObject({ balance: 1_000 - COST + 10 });
  });

  it("7. charges the pinned price when the price changes mid-call; new calls pay the new price", async () => {
    const oldRules = await publish("m7");
    const c = await customer(1_000);
    const provider = fakeProvider("stall");
    const ctx = createExecutionContext();
    const response = await gatewayWith(provider).fetch(chatRequest(c.key, "q7", "m7"), ctx);
    const reading = response.text();
    // Prices double while the call is streaming.
    const newRules = await publish("m7", { input: 2, output: 6, request: 10 });
    provider.finish();
    await reading;
    await waitOnExecutionContext(ctx);
    const first = await reservationOf(c.id, "q7");
    expect(first).toMatchObject({ status: "captured", amount: HOLD, captured_amount: COST });
    expect(first.pricing.rules.map((r: { rule_id: string }) => r.rule_id).sort()).toEqual(
      oldRules.map((r) => r.rule_id).sort(),
    );
    await chat(gatewayWith(fakeProvider("stream")), chatRequest(c.key, "q7b", "m7"));
    const second = await reservationOf(c.id, "q7b");
    expect(second.pricing.rules.map((r: { rule_id: string }) => r.rule_id).sort()).toEqual(
      newRules.map((r) => r.rule_id).sort(),
    );
    // 40 × 2/10 + 25 × 6/10 + 10 = 33 exactly; the hold doubles too (76).
    expect(second).toMatchObject({ amount: 2 * HOLD, captured_amount: 33 });
    const prices = await api("GET", "/v1/prices?service_id=chat&model=m7");
    expect(prices.body.data[0].rules.map((r: { rule_id: string }) => r.rule_id).sort()).toEqual(
      newRules.map((r) => r.rule_id).sort(),
    );
  });

  it("8. when the gateway dies mid-request, the alarm settles by the hold's on_expiry rule", async () => {
    // Installed before publishing: the price is in effect from the clock's time on.
    const time = useManualClock();
    await publish("m8");
    const c = await customer(1_000);
    // Dies after delivery started: the hold was switched to capture, so the estimate is charged.
    const delivering = fakeProvider("stall");
    const dead = { waitUntil: () => undefined, passThroughOnException: () => undefined } as unknown as ExecutionContext;
    await gatewayWith(delivering, { ttl: 1 }).fetch(chatRequest(c.key, "q8a", "m8"), dead);
    // Dies before the provider answered (its timeout never fires): the hold is still release-on-expiry.
    const hanging = fakeProvider("hang");
    void gatewayWith(hanging, { ttl: 1, timeoutMs: 3_000 })
      .fetch(chatRequest(c.key, "q8b", "m8"), dead)
      .catch(() => undefined);
    await hanging.called;
    expect(await account(c.id)).toMatchObject({ reserved: 2 * HOLD });
    time.advance(1_000);
    expect(await runDurableObjectAlarm(stub(c.id))).toBe(true);
    expect(await reservationOf(c.id, "q8a")).toMatchObject({
      status: "expired",
      on_expiry: "capture",
      captured_amount: HOLD,
    });
    expect(await reservationOf(c.id, "q8b")).toMatchObject({
      status: "expired",
      on_expiry: "release",
      captured_amount: null,
    });
    expect(await account(c.id)).toMatchObject({ balance: 1_000 - HOLD, reserved: 0 });
    delivering.finish();
  });
});

/** A ledger whose calls are counted, and whose settle calls fail as scripted before passing through. */
function instrumented(faults: Partial<Record<"extend" | "capture" | "release", ("throw" | "503")[] | "always">> = {}) {
  const calls: Record<string, number> = {};
  const injected = { ok: false, status: 503, code: "internal_error", detail: "injected by the test" };
  const fault = (op: "extend" | "capture" | "release"): "throw" | "503" | null => {
    const plan = faults[op];
    if (plan === "always") return "503";
    return plan?.shift() ?? null;
  };
  const counted =
    <A extends unknown[], R>(op: string, run: (...args: A) => Promise<R>, faultOf?: "extend" | "capture" | "release") =>
    async (...args: A): Promise<R> => {
      calls[op] = (calls[op] ?? 0) + 1;
      const planned = faultOf === undefined ? null : fault(faultOf);
      if (planned === "throw") throw new Error("injected: the binding broke");
      if (planned === "503") return injected as R;
      return run(...args);
    };
  type Args<K extends keyof Ledger> = Parameters<NonNullable<Ledger[K]>>;
  const wrapped: Ledger = {
    reserve: counted("reserve", (...a: Args<"reserve">) => ledger.reserve(...a)),
    capture: counted("capture", (...a: Args<"capture">) => ledger.capture(...a), "capture"),
    release: counted("release", (...a: Args<"release">) => ledger.release(...a), "release"),
    extend: counted("extend", (...a: Args<"extend">) => ledger.extend(...a), "extend"),
    refund: counted("refund", (...a: Args<"refund">) => ledger.refund(...a)),
    getAccount: counted("getAccount", (...a: Args<"getAccount">) => ledger.getAccount(...a)),
    getReservation: counted("getReservation", (...a: Args<"getReservation">) => ledger.getReservation(...a)),
  } as Ledger;
  const total = () => Object.values(calls).reduce((n, c) => n + c, 0);
  return { ledger: wrapped, calls, total };
}

describe("issue 11, hole 1: callers authenticate; the account comes from the key", () => {
  it("answers 401 without calling the ledger for a missing, malformed or unknown key, and never echoes it", async () => {
    await publish("a1");
    const victim = await customer(1_000);
    const spy = instrumented();
    const provider = fakeProvider("stream");
    const gateway = gatewayWith(provider, { ledger: spy.ledger });
    const unknown = "gwk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const attempts: Record<string, string>[] = [
      { "x-account-id": victim.id },
      { "x-account-id": victim.id, authorization: "Bearer not-a-key" },
      { "x-account-id": victim.id, authorization: `Bearer ${unknown}` },
      { "x-account-id": victim.id, authorization: `Basic ${btoa(`${victim.id}:x`)}` },
    ];
    for (const [i, headers] of attempts.entries()) {
      const { status, text } = await chat(gateway, chatRequestWith(headers, `a1_${i}`, "a1"));
      expect(status).toBe(401);
      expect(errorCode(text)).toBe("unauthorized");
      expect(text).not.toContain(unknown);
      expect(text).not.toContain("not-a-key");
    }
    expect(spy.total()).toBe(0);
    expect(provider.calls).toBe(0);
    expect(await account(victim.id)).toMatchObject({ balance: 1_000, reserved: 0 });
  });

  it("bills the key's account only: a header naming another account is ignored", async () => {
    await publish("a2");
    const victim = await customer(1_000);
    const attacker = await customer(1_000);
    const request = chatRequest(attacker.key, "a2", "a2", {}, { "x-account-id": victim.id });
    const { status } = await chat(gatewayWith(fakeProvider("stream")), request);
    expect(status).toBe(200);
    expect(await account(victim.id)).toMatchObject({ balance: 1_000, reserved: 0, last_seq: 2 });
    expect(await account(attacker.id)).toMatchObject({ balance: 1_000 - COST, reserved: 0 });
  });

  it("keeps refunds and orders for operator keys: a caller key gets 403 and moves nothing", async () => {
    await publish("a3");
    const c = await customer(1_000);
    const gateway = gatewayWith(fakeProvider("stream"));
    await chat(gateway, chatRequest(c.key, "a3", "a3"));
    const ctx = createExecutionContext();
    const asCaller = (path: string, body: Record<string, unknown>) =>
      gateway.fetch(operatorRequest(c.key, path, body), ctx);
    // Refunding one's own past usage.
    const refund = await asCaller("/v1/refunds", { refund_id: "rf_a3", charge_id: holdId(c.id, "a3"), amount: COST });
    expect(refund.status).toBe(403);
    // Locking one's balance with a week-long hold, and settling an order for nothing.
    const order = await asCaller("/v1/orders", { order_id: "o_a3", amount: 500, fulfil_within_seconds: 604_800 });
    expect(order.status).toBe(403);
    const fulfil = await asCaller("/v1/orders/o_a3/fulfil", { amount: 0 });
    expect(fulfil.status).toBe(403);
    await waitOnExecutionContext(ctx);
    expect((await logOf(c.id)).filter((e) => e.type === "ChargeRefunded")).toHaveLength(0);
    expect(await account(c.id)).toMatchObject({ balance: 1_000 - COST, reserved: 0 });
  });

  it("bounds an order's amount and window, and settles one for 0 only when the operator says so", async () => {
    const c = await customer(1_000_000);
    const gateway = gatewayWith(fakeProvider("stream"));
    const ctx = createExecutionContext();
    const post = (path: string, body: Record<string, unknown>) =>
      gateway.fetch(operatorRequest(c.operatorKey, path, body), ctx);
    // ORDER_AMOUNT_MINOR_MAX is 100_000 and ORDER_FULFIL_SECONDS_MAX one day.
    expect((await post("/v1/orders", { order_id: "big", amount: 100_001, fulfil_within_seconds: 60 })).status).toBe(
      400,
    );
    expect((await post("/v1/orders", { order_id: "long", amount: 300, fulfil_within_seconds: 604_800 })).status).toBe(
      400,
    );
    expect(await account(c.id)).toMatchObject({ reserved: 0 });
    expect((await post("/v1/orders", { order_id: "o2", amount: 300, fulfil_within_seconds: 60 })).status).toBe(201);
    const zero = await post("/v1/orders/o2/fulfil", { amount: 0 });
    expect(zero.status).toBe(400);
    expect(((await zero.json()) as { error: { code: string } }).error.code).toBe("zero_amount_refused");
    expect(await account(c.id)).toMatchObject({ reserved: 300 });
    const said = await post("/v1/orders/o2/fulfil", { amount: 0, allow_zero: true });
    expect(said.status).toBe(200);
    expect(await said.json()).toMatchObject({ status: "fulfilled", charged: 0 });
    await waitOnExecutionContext(ctx);
    expect(await account(c.id)).toMatchObject({ balance: 1_000_000, reserved: 0 });
  });

  it("refuses a key list that cannot be read, rather than serving without keys", async () => {
    const { entry } = await newGatewayKey("acct_x", "caller");
    expect(() => keyStoreFromConfig(undefined)).toThrow(/not JSON/);
    expect(() => keyStoreFromConfig("{}")).toThrow(/not a list/);
    expect(() => keyStoreFromConfig(JSON.stringify([{ ...entry, role: "admin" }]))).toThrow(/role/);
    expect(() => keyStoreFromConfig(JSON.stringify([{ ...entry, account_id: "a".repeat(61) }]))).toThrow();
    expect(() => keyStoreFromConfig(JSON.stringify([entry, entry]))).toThrow(/twice/);
    const store = keyStoreFromConfig(JSON.stringify([entry]));
    expect(await store.lookup(`${entry.sha256_hex}`)).toBeNull();
  });
});

describe("issue 11, hole 2: a request id is served once", () => {
  it("answers a repeated x-request-id as a duplicate and never calls the provider twice", async () => {
    const { c, provider, gateway } = await streamingSetup("d1", 1_000);
    expect((await chat(gateway, chatRequest(c.key, "d1", "d1"))).status).toBe(200);
    const again = await chat(gateway, chatRequest(c.key, "d1", "d1"));
    expect(again.status).toBe(409);
    expect(errorCode(again.text)).toBe("duplicate_request");
    // The same id with another body is the same duplicate, not a new call.
    const changed = await chat(gateway, chatRequest(c.key, "d1", "d1", { max_tokens: 50 }));
    expect(changed.status).toBe(409);
    expect(provider.calls).toBe(1);
    expect(await account(c.id)).toMatchObject({ balance: 1_000 - COST, reserved: 0 });
  });

  it("serves one of two concurrent requests with one id; the other is a 409", async () => {
    const { c, provider, gateway } = await streamingSetup("d2", 1_000);
    const both = await Promise.all([1, 2].map(() => chat(gateway, chatRequest(c.key, "d2", "d2"))));
    expect(both.map((r) => r.status).sort()).toEqual([200, 409]);
    expect(provider.calls).toBe(1);
    expect(await reservationOf(c.id, "d2")).toMatchObject({ status: "captured", captured_amount: COST });
    expect(await account(c.id)).toMatchObject({ balance: 1_000 - COST, reserved: 0 });
  });

  it("keeps request ids per account: two accounts may use the same one", async () => {
    await publish("d3");
    const [a, b] = [await customer(1_000), await customer(1_000)];
    for (const c of [a, b]) {
      expect((await chat(gatewayWith(fakeProvider("stream")), chatRequest(c.key, "same", "d3"))).status).toBe(200);
      expect(await reservationOf(c.id, "same")).toMatchObject({ reservation_id: holdId(c.id, "same") });
    }
  });
});

describe("issue 11, hole 3: holds cover the call, and every settle result is checked", () => {
  it("forwards max_tokens clamped to what the hold covers: the default when none is asked, the cap above it", async () => {
    const { c, provider, gateway } = await streamingSetup("h1", 10_000);
    expect((await chat(gateway, chatRequest(c.key, "h1a", "h1", { max_tokens: undefined }))).status).toBe(200);
    expect((await chat(gateway, chatRequest(c.key, "h1b", "h1", { max_tokens: 1_000_000 }))).status).toBe(200);
    // OUTPUT_TOKENS_DEFAULT (1,024) and OUTPUT_TOKENS_MAX (4,096) are what is sent and held.
    expect(provider.bodies.map((b) => b.max_tokens)).toEqual([1_024, 4_096]);
    // ceil(26 × 1/10 + 1,024 × 3/10 + 5) = 315 and ceil(26 × 1/10 + 4,096 × 3/10 + 5) = 1,237.
    expect(await reservationOf(c.id, "h1a")).toMatchObject({ amount: 315, captured_amount: COST });
    expect(await reservationOf(c.id, "h1b")).toMatchObject({ amount: 1_237, captured_amount: COST });
    // n choices would each produce up to max_tokens: more than the hold prices.
    expect((await chat(gateway, chatRequest(c.key, "h1c", "h1", { n: 3 }))).status).toBe(400);
    expect(provider.calls).toBe(2);
  });

  it("captures a provider's usage above the hold with allow_overage, and counts it", async () => {
    await publish("h2");
    const c = await customer(1_000);
    // The provider was sent max_tokens 100 and reports 1,000: 40/10 + 1,000 × 3/10 + 5 = 309.
    const gateway = gatewayWith(fakeProvider("stream", { prompt_tokens: 40, completion_tokens: 1_000 }));
    expect((await chat(gateway, chatRequest(c.key, "h2", "h2"))).status).toBe(200);
    expect(await reservationOf(c.id, "h2")).toMatchObject({ status: "captured", amount: HOLD, captured_amount: 309 });
    const captured = (await logOf(c.id)).find((e) => e.type === "ReservationCaptured");
    expect(captured).toMatchObject({ allow_overage: true, overage: 309 - HOLD });
    expect(gateway.stats()).toMatchObject({ overage_captures: 1, settle_failures: 0 });
    expect(await account(c.id)).toMatchObject({ balance: 1_000 - 309, reserved: 0 });
  });

  it("keeps a delivering hold alive while a stream outlasts half its TTL", async () => {
    const time = useManualClock();
    await publish("h7");
    const c = await customer(1_000);
    const provider = fakeProvider("stall");
    const ctx = createExecutionContext();
    const response = await gatewayWith(provider, { ttl: 10 }).fetch(chatRequest(c.key, "h7", "h7"), ctx);
    const reading = response.text();
    // Six of the hold's ten seconds pass while the provider thinks; then it goes on.
    time.advance(6_000);
    provider.finish();
    await reading;
    await waitOnExecutionContext(ctx);
    const extended = (await logOf(c.id)).filter((e) => e.type === "ReservationExtended");
    expect(extended.map((e) => e.extension_id)).toEqual(["delivering", "delivering-2"]);
    expect(await reservationOf(c.id, "h7")).toMatchObject({ status: "captured", captured_amount: COST });
  });

  it("retries a capture that fails, with backoff through the timer seam, and counts the retries", async () => {
    await publish("h3");
    const c = await customer(1_000);
    const spy = instrumented({ capture: ["throw", "503"] });
    const timers = manualTimers([50, 100]);
    const gateway = gatewayWith(fakeProvider("stream"), { ledger: spy.ledger, timers, backoffMs: 50 });
    expect((await chat(gateway, chatRequest(c.key, "h3", "h3"))).status).toBe(200);
    expect(await reservationOf(c.id, "h3")).toMatchObject({ status: "captured", captured_amount: COST });
    expect(spy.calls.capture).toBe(3);
    expect(timers.history.filter((ms) => ms !== 200)).toEqual([50, 100]);
    expect(gateway.stats()).toEqual({ settle_failures: 0, settle_retries: 2, overage_captures: 0 });
  });

  it("counts and logs a capture that still fails, without secrets, and leaves it to the hold's capture rule", async () => {
    const time = useManualClock();
    await publish("h4");
    const c = await customer(1_000);
    const lines: Record<string, string | number>[] = [];
    const spy = instrumented({ capture: "always" });
    const gateway = gatewayWith(fakeProvider("stream"), { ledger: spy.ledger, ttl: 1, log: (l) => lines.push(l) });
    expect((await chat(gateway, chatRequest(c.key, "h4", "h4"))).status).toBe(200);
    expect(spy.calls.capture).toBe(3); // SETTLE_ATTEMPTS_MAX
    expect(gateway.stats()).toEqual({ settle_failures: 1, settle_retries: 2, overage_captures: 0 });
    expect(lines).toEqual([
      expect.objectContaining({ event: "gateway_settle_failed", op: "capture", reservation_id: holdId(c.id, "h4") }),
    ]);
    expect(JSON.stringify(lines)).not.toContain(c.key);
    expect(JSON.stringify(lines)).not.toContain(c.key.slice(4, 20));
    // The hold was switched to capture when delivery started: its expiry charges the estimate.
    expect(await reservationOf(c.id, "h4")).toMatchObject({ status: "open", on_expiry: "capture" });
    time.advance(1_000);
    expect(await runDurableObjectAlarm(stub(c.id))).toBe(true);
    expect(await reservationOf(c.id, "h4")).toMatchObject({ status: "expired", captured_amount: HOLD });
  });

  it("withholds the answer and releases the hold when it cannot be switched to capture", async () => {
    await publish("h5");
    const c = await customer(1_000);
    const spy = instrumented({ extend: "always" });
    const gateway = gatewayWith(fakeProvider("stream"), { ledger: spy.ledger });
    const { status, text } = await chat(gateway, chatRequest(c.key, "h5", "h5"));
    expect(status).toBe(503);
    expect(errorCode(text)).toBe("billing_unavailable");
    expect(text).not.toContain("Hel");
    expect(spy.calls.extend).toBe(3);
    expect(gateway.stats()).toMatchObject({ settle_failures: 1, settle_retries: 2 });
    expect(await reservationOf(c.id, "h5")).toMatchObject({ status: "released" });
    expect(await account(c.id)).toMatchObject({ balance: 1_000, reserved: 0 });
  });

  it("retries an extend and a release that fail once", async () => {
    await publish("h6");
    const c = await customer(1_000);
    const spy = instrumented({ extend: ["503"], release: ["throw"] });
    const delivered = await chat(
      gatewayWith(fakeProvider("stream"), { ledger: spy.ledger }),
      chatRequest(c.key, "h6a", "h6"),
    );
    expect(delivered.status).toBe(200);
    expect(await reservationOf(c.id, "h6a")).toMatchObject({ status: "captured", on_expiry: "capture" });
    const gateway = gatewayWith(fakeProvider("fail"), { ledger: spy.ledger });
    expect((await chat(gateway, chatRequest(c.key, "h6b", "h6"))).status).toBe(502);
    expect(await reservationOf(c.id, "h6b")).toMatchObject({ status: "released" });
    expect(gateway.stats()).toEqual({ settle_failures: 0, settle_retries: 1, overage_captures: 0 });
    expect(await account(c.id)).toMatchObject({ balance: 1_000 - COST, reserved: 0 });
  });
});

describe("issue 11, hole 4: an idle timeout covers the whole body", () => {
  /** Starts a chat, fires the idle timeout once the provider has stalled, then lets it go on. */
  async function stalledChat(provider: ReturnType<typeof fakeProvider>, key: string, requestId: string, extra = {}) {
    await publish(requestId);
    const timers = manualTimers();
    const result = chat(gatewayWith(provider, { timers }), chatRequest(key, requestId, requestId, extra));
    await provider.stalled;
    timers.fire();
    provider.finish();
    return result;
  }

  it("releases a 200 whose JSON body stalls past the idle timeout", async () => {
    const c = await customer(1_000);
    const { status, text } = await stalledChat(fakeProvider("json_stall"), c.key, "i1", { stream: false });
    expect(status).toBe(504);
    expect(errorCode(text)).toBe("provider_timeout");
    expect(await reservationOf(c.id, "i1")).toMatchObject({ status: "released" });
    expect(await account(c.id)).toMatchObject({ balance: 1_000, reserved: 0 });
  });

  it("releases a 200 whose body is empty, not JSON, or not the event stream asked for", async () => {
    await publish("i2");
    const c = await customer(1_000);
    for (const mode of ["json_empty", "json_not_json", "stream_not_sse"] as const) {
      const request = chatRequest(c.key, mode, "i2", { stream: mode === "stream_not_sse" });
      const { status } = await chat(gatewayWith(fakeProvider(mode)), request);
      expect(status).toBe(502);
      expect(await reservationOf(c.id, mode)).toMatchObject({ status: "released" });
    }
    expect(await account(c.id)).toMatchObject({ balance: 1_000, reserved: 0 });
  });

  it("releases a stream that stalls or breaks before its first byte", async () => {
    const c = await customer(1_000);
    const { status } = await stalledChat(fakeProvider("silent"), c.key, "i3");
    expect(status).toBe(504);
    expect(await reservationOf(c.id, "i3")).toMatchObject({ status: "released", on_expiry: "release" });
    const broken = await chat(gatewayWith(fakeProvider("break_first")), chatRequest(c.key, "i3b", "i3"));
    expect(broken.status).toBe(502);
    expect(await reservationOf(c.id, "i3b")).toMatchObject({ status: "released" });
    expect(await account(c.id)).toMatchObject({ balance: 1_000, reserved: 0 });
  });

  it("captures what a stream delivered before it stalled, not the estimate", async () => {
    const c = await customer(1_000);
    const { status, text } = await stalledChat(fakeProvider("stall_no_usage"), c.key, "i4");
    expect(status).toBe(200);
    expect(text).toBe("<stream broken>");
    // "Hel" was relayed: 26 held input tokens and ceil(3/3) = 1 output token: ceil(2.6 + 0.3 + 5) = 8.
    expect(await reservationOf(c.id, "i4")).toMatchObject({
      status: "captured",
      captured_amount: 8,
      usage: { input_tokens: 26, output_tokens: 1, status: "stalled", error_code: "idle_timeout" },
    });
  });

  it("captures a stream that stalls after sending its usage from that usage", async () => {
    const c = await customer(1_000);
    await stalledChat(fakeProvider("usage_then_stall"), c.key, "i5");
    expect(await reservationOf(c.id, "i5")).toMatchObject({ status: "captured", captured_amount: COST });
  });

  it("reads usage from streams with \\r\\n and \\r line endings", async () => {
    await publish("i6");
    const c = await customer(1_000);
    for (const mode of ["crlf", "cr"] as const) {
      const { status, text } = await chat(gatewayWith(fakeProvider(mode)), chatRequest(c.key, mode, "i6"));
      expect(status).toBe(200);
      expect(text).toContain("Hel");
      expect(await reservationOf(c.id, mode)).toMatchObject({ status: "captured", captured_amount: COST });
    }
  });
});

describe("issue 14: the gateway reports provider results to the ledger's monitoring", () => {
  const acme = async () => {
    const work: Promise<unknown>[] = [];
    flushMetricsIfDue(env, (p) => work.push(p), true);
    await Promise.all(work);
    const view = await api("GET", "/v1/admin/monitoring");
    return (
      view.body.providers.find((p: { provider: string }) => p.provider === "acme") ?? {
        requests: 0,
        failures: 0,
        statuses: {},
      }
    );
  };

  it("counts an answered call as ok and a provider 500 as a 5xx failure, after the response", async () => {
    // A clock that stands still: no flush comes due on its own, so the test's flushes see every count.
    useManualClock(Date.now());
    await publish("m14");
    const c = await customer(1_000);
    const before = await acme();
    expect(
      (await chat(gatewayWith(fakeProvider("json")), chatRequest(c.key, "q14a", "m14", { stream: false }))).status,
    ).toBe(200);
    expect((await chat(gatewayWith(fakeProvider("fail")), chatRequest(c.key, "q14b", "m14"))).status).toBe(502);
    const after = await acme();
    expect(after.requests - before.requests).toBe(2);
    expect(after.failures - before.failures).toBe(1);
    expect((after.statuses["5xx"] ?? 0) - (before.statuses["5xx"] ?? 0)).toBe(1);
    expect((after.statuses.ok ?? 0) - (before.statuses.ok ?? 0)).toBe(1);
  });

  it("refuses a malformed report and counts nothing", async () => {
    const refused = await ledger.reportProviderResult?.({
      provider: "acme",
      model: "m",
      status: "teapot" as "ok",
      latency_ms: 1,
    });
    expect(refused).toMatchObject({ ok: false, status: 400, code: "invalid_request" });
  });
});
