/**
 * The example gateway (examples/gateway) against the real ledger through its service binding
 * (RPC to the LedgerService entrypoint) and a fake OpenAI-compatible provider that can stream,
 * stall, break, fail, hang or omit usage. Each scenario is checked against the ledger's
 * balances and events. Nothing waits on the wall clock: the gateway's provider timeout is a
 * scheduler the test fires, and holds expire by advancing a ManualClock and running the alarm.
 */
import {
  createExecutionContext,
  runDurableObjectAlarm,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { createGateway, type Ledger } from "../../examples/gateway/src/gateway";
import { clock } from "../../src/clock";
import type { LedgerEvent } from "../../src/domain/events";
import { account, api, expectEveryAccountConsistent, openAccount, stub, useManualClock } from "../helpers";
import { logOf } from "../projection/support";

afterEach(expectEveryAccountConsistent);

const ledger = (exports as unknown as { LedgerService: Ledger }).LedgerService;
const encoder = new TextEncoder();

type Mode = "stream" | "stream_no_usage" | "stream_break" | "stall" | "fail" | "hang" | "json";

/**
 * A fake provider; `calls` counts requests, `called` resolves at the first one (the gateway
 * has reserved by then), `finish` releases a stalled stream.
 */
function fakeProvider(mode: Mode, usage = { prompt_tokens: 40, completion_tokens: 25 }) {
  const state: { calls: number; called: Promise<void>; finish: () => void } = {
    calls: 0,
    called: Promise.resolve(),
    finish: () => undefined,
  };
  const gate = new Promise<void>((resolve) => {
    state.finish = resolve;
  });
  let markCalled: () => void = () => undefined;
  state.called = new Promise<void>((resolve) => {
    markCalled = resolve;
  });
  const chunk = (data: unknown) => encoder.encode(`data: ${JSON.stringify(data)}\n\n`);
  const delta = (text: string) => chunk({ choices: [{ delta: { content: text } }] });
  const fetch = async (request: Request): Promise<Response> => {
    state.calls += 1;
    markCalled();
    if (mode === "fail") return new Response("upstream exploded", { status: 500 });
    if (mode === "hang") {
      return new Promise<Response>((_resolve, reject) => {
        request.signal.addEventListener("abort", () => reject(new Error("aborted")));
      });
    }
    if (mode === "json") return Response.json({ choices: [{ message: { content: "hi" } }], usage });
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(delta("Hel"));
        if (mode === "stall") {
          await gate;
          controller.enqueue(delta("lo"));
          controller.enqueue(chunk({ choices: [], usage }));
          controller.close();
          return;
        }
        controller.enqueue(delta("lo"));
        if (mode === "stream_break") {
          controller.error(new Error("upstream connection reset"));
          return;
        }
        if (mode === "stream") controller.enqueue(chunk({ choices: [], usage }));
        controller.enqueue(encoder.encode("data: [DONE]\n\n"));
        controller.close();
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  };
  return Object.assign(state, { fetch });
}

/** Provider timeouts the test fires itself (`fire`); a gateway that "dies" simply never sees one. */
function manualTimers() {
  const armed = new Set<{ ms: number; onTimeout: () => void }>();
  return {
    setTimer(ms: number, onTimeout: () => void) {
      const timer = { ms, onTimeout };
      armed.add(timer);
      return () => {
        armed.delete(timer);
      };
    },
    /** The delays of the timers armed and not cancelled. */
    armed: () => [...armed].map((t) => t.ms),
    /** Fires every armed timer now, as if their time had come. */
    fire() {
      for (const timer of [...armed]) {
        armed.delete(timer);
        timer.onTimeout();
      }
    },
  };
}

function gatewayWith(
  provider: { fetch: (r: Request) => Promise<Response> },
  options: { ttl?: number; timeoutMs?: number; timers?: ReturnType<typeof manualTimers> } = {},
) {
  return createGateway({
    ledger,
    provider: provider.fetch,
    providerName: "acme",
    serviceId: "chat",
    reservationTtlSeconds: options.ttl ?? 300,
    providerTimeoutMs: options.timeoutMs ?? 200,
    // The ledger's clock seam (a test's ManualClock when one is installed), and timeouts that
    // fire only when the test fires them: no scenario depends on how fast the machine is.
    now: () => clock.now(),
    setTimer: (options.timers ?? manualTimers()).setTimer,
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

function chatRequest(accountId: string, requestId: string, model: string, extra: Record<string, unknown> = {}) {
  return new Request("https://gateway.test/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json", "x-account-id": accountId, "x-request-id": requestId },
    body: JSON.stringify({
      model,
      messages: [{ role: "user", content: "x".repeat(30) }],
      max_tokens: 100,
      stream: true,
      ...extra,
    }),
  });
}

/** Runs a chat through the gateway, reads the whole answer, and waits for settlement. */
async function chat(gateway: ReturnType<typeof gatewayWith>, request: Request) {
  const ctx = createExecutionContext();
  const response = await gateway.fetch(request, ctx);
  // A broken upstream breaks the client's stream too: that is what the client would see.
  const text = await response.text().catch(() => "<stream broken>");
  await waitOnExecutionContext(ctx);
  return { status: response.status, text };
}

const reservationOf = async (accountId: string, requestId: string) =>
  (await api("GET", `/v1/accounts/${accountId}/reservations/gw_${requestId}`)).body;

// The hold for the requests above: ceil((30/3 + 16) input × 1/10 + 100 output × 3/10 + 5) = 38.
const HOLD = 38;
// The cost of the fake provider's usage: 40 × 1/10 + 25 × 3/10 + 5 = 16.5 -> 17, rounded up once.
const COST = 17;

describe("gateway billing", () => {
  it("1. never calls the provider when the reservation is refused for funds", async () => {
    await publish("m1");
    const id = await openAccount(10);
    const provider = fakeProvider("stream");
    const { status, text } = await chat(gatewayWith(provider), chatRequest(id, "q1", "m1"));
    expect(status).toBe(402);
    expect(JSON.parse(text).error.code).toBe("insufficient_funds");
    expect(provider.calls).toBe(0);
    expect(await account(id)).toMatchObject({ balance: 10, reserved: 0, last_seq: 2 });
  });

  it("2. captures a completed stream from its usage at the pinned price and releases the rest", async () => {
    await publish("m2");
    const id = await openAccount(1_000);
    const { status, text } = await chat(gatewayWith(fakeProvider("stream")), chatRequest(id, "q2", "m2"));
    expect(status).toBe(200);
    expect(text).toContain("Hel");
    expect(text).toContain("[DONE]");
    const r = await reservationOf(id, "q2");
    expect(r).toMatchObject({ status: "captured", amount: HOLD, captured_amount: COST, released_amount: HOLD - COST });
    expect(await account(id)).toMatchObject({ balance: 1_000 - COST, reserved: 0 });
    const captured = (await logOf(id)).find((e) => e.type === "ReservationCaptured") as Extract<
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
    const id = await openAccount(1_000);
    const { status } = await chat(gatewayWith(fakeProvider("json")), chatRequest(id, "q2b", "m2b", { stream: false }));
    expect(status).toBe(200);
    expect(await account(id)).toMatchObject({ balance: 1_000 - COST, reserved: 0 });
  });

  it("3. settles from the reserved estimate when the stream ends without usage, or breaks", async () => {
    await publish("m3");
    const id = await openAccount(1_000);
    await chat(gatewayWith(fakeProvider("stream_no_usage")), chatRequest(id, "q3a", "m3"));
    expect(await reservationOf(id, "q3a")).toMatchObject({ status: "captured", captured_amount: HOLD });
    await chat(gatewayWith(fakeProvider("stream_break")), chatRequest(id, "q3b", "m3"));
    expect(await reservationOf(id, "q3b")).toMatchObject({ status: "captured", captured_amount: HOLD });
    expect(await account(id)).toMatchObject({ balance: 1_000 - 2 * HOLD, reserved: 0 });
  });

  it("3c. settles from the estimate when the client disconnects mid-stream", async () => {
    await publish("m3c");
    const id = await openAccount(1_000);
    const provider = fakeProvider("stall");
    const ctx = createExecutionContext();
    const response = await gatewayWith(provider).fetch(chatRequest(id, "q3c", "m3c"), ctx);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain("Hel");
    await reader.cancel("client went away");
    provider.finish();
    await waitOnExecutionContext(ctx);
    expect(await reservationOf(id, "q3c")).toMatchObject({ status: "captured", captured_amount: HOLD });
  });

  it("4. releases when the provider fails or times out before delivering: the customer pays nothing", async () => {
    await publish("m4");
    const id = await openAccount(1_000);
    const failed = await chat(gatewayWith(fakeProvider("fail")), chatRequest(id, "q4a", "m4"));
    expect(failed.status).toBe(502);
    // The provider hangs until the gateway's timeout aborts it; the test fires the timeout.
    const hanging = fakeProvider("hang");
    const timers = manualTimers();
    const timingOut = chat(gatewayWith(hanging, { timers }), chatRequest(id, "q4b", "m4"));
    await hanging.called;
    expect(timers.armed()).toEqual([200]);
    timers.fire();
    const timedOut = await timingOut;
    expect(timedOut.status).toBe(504);
    for (const q of ["q4a", "q4b"]) expect(await reservationOf(id, q)).toMatchObject({ status: "released" });
    expect(await account(id)).toMatchObject({ balance: 1_000, reserved: 0 });
  });

  it("5. expires an unfulfilled asynchronous order by the alarm; a late fulfilment cannot charge", async () => {
    const time = useManualClock();
    const id = await openAccount(1_000);
    const gateway = gatewayWith(fakeProvider("stream"));
    const ctx = createExecutionContext();
    const order = (path: string, body: unknown) =>
      gateway.fetch(new Request(`https://gateway.test${path}`, { method: "POST", body: JSON.stringify(body) }), ctx);
    const placed = await order("/v1/orders", { account_id: id, order_id: "o1", amount: 300, fulfil_within_seconds: 1 });
    expect(placed.status).toBe(201);
    expect(await account(id)).toMatchObject({ available: 700 });
    // The order's second passes; its alarm runs (the ManualClock is a day ahead of the wall
    // clock, so only this call runs it) and storage shows it settled the order.
    time.advance(1_000);
    expect(await runDurableObjectAlarm(stub(id))).toBe(true);
    const stored = await runInDurableObject(stub(id), (_i: AccountDurableObject, state) =>
      state.storage.sql
        .exec<{ status: string }>("SELECT status FROM reservations WHERE reservation_id = 'order_o1'")
        .one(),
    );
    expect(stored.status).toBe("expired");
    const late = await order("/v1/orders/o1/fulfil", { account_id: id, amount: 300 });
    expect(late.status).toBe(409);
    expect(((await late.json()) as { error: { code: string } }).error.code).toBe("reservation_not_open");
    expect(await account(id)).toMatchObject({ balance: 1_000, reserved: 0 });
  });

  it("6. refunds once under concurrent and sequential retries", async () => {
    await publish("m6");
    const id = await openAccount(1_000);
    await chat(gatewayWith(fakeProvider("stream")), chatRequest(id, "q6", "m6"));
    const gateway = gatewayWith(fakeProvider("stream"));
    const ctx = createExecutionContext();
    const refund = () =>
      gateway.fetch(
        new Request("https://gateway.test/v1/refunds", {
          method: "POST",
          body: JSON.stringify({
            account_id: id,
            refund_id: "rf_q6",
            charge_id: "gw_q6",
            amount: 10,
            reason: "bad answer",
          }),
        }),
        ctx,
      );
    const concurrent = await Promise.all(Array.from({ length: 20 }, refund));
    const sequential = [];
    for (let i = 0; i < 5; i++) sequential.push(await refund());
    expect([...concurrent, ...sequential].every((r) => r.status === 201)).toBe(true);
    const refunds = (await logOf(id)).filter((e) => e.type === "ChargeRefunded");
    expect(refunds).toHaveLength(1);
    expect(await account(id)).toMatchObject({ balance: 1_000 - COST + 10 });
  });

  it("7. charges the pinned price when the price changes mid-call; new calls pay the new price", async () => {
    const oldRules = await publish("m7");
    const id = await openAccount(1_000);
    const provider = fakeProvider("stall");
    const ctx = createExecutionContext();
    const response = await gatewayWith(provider).fetch(chatRequest(id, "q7", "m7"), ctx);
    const reading = response.text();
    // Prices double while the call is streaming.
    const newRules = await publish("m7", { input: 2, output: 6, request: 10 });
    provider.finish();
    await reading;
    await waitOnExecutionContext(ctx);
    const first = await reservationOf(id, "q7");
    expect(first).toMatchObject({ status: "captured", amount: HOLD, captured_amount: COST });
    expect(first.pricing.rules.map((r: { rule_id: string }) => r.rule_id).sort()).toEqual(
      oldRules.map((r) => r.rule_id).sort(),
    );
    await chat(gatewayWith(fakeProvider("stream")), chatRequest(id, "q7b", "m7"));
    const second = await reservationOf(id, "q7b");
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
    const id = await openAccount(1_000);
    // Dies after delivery started: the hold was switched to capture, so the estimate is charged.
    const delivering = fakeProvider("stall");
    const dead = { waitUntil: () => undefined, passThroughOnException: () => undefined } as unknown as ExecutionContext;
    await gatewayWith(delivering, { ttl: 1 }).fetch(chatRequest(id, "q8a", "m8"), dead);
    // Dies before the provider answered (its timeout never fires): the hold is still release-on-expiry.
    const hanging = fakeProvider("hang");
    void gatewayWith(hanging, { ttl: 1, timeoutMs: 3_000 })
      .fetch(chatRequest(id, "q8b", "m8"), dead)
      .catch(() => undefined);
    await hanging.called;
    expect(await account(id)).toMatchObject({ reserved: 2 * HOLD });
    time.advance(1_000);
    expect(await runDurableObjectAlarm(stub(id))).toBe(true);
    expect(await reservationOf(id, "q8a")).toMatchObject({
      status: "expired",
      on_expiry: "capture",
      captured_amount: HOLD,
    });
    expect(await reservationOf(id, "q8b")).toMatchObject({
      status: "expired",
      on_expiry: "release",
      captured_amount: null,
    });
    expect(await account(id)).toMatchObject({ balance: 1_000 - HOLD, reserved: 0 });
    delivering.finish();
  });
});
