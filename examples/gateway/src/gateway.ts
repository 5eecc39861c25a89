/**
 * An example API gateway in front of an OpenAI-compatible provider, billing through the ledger's
 * service binding. It never computes money itself: it reserves by price and estimate, captures
 * by usage, and leaves every amount to the ledger. The rules it shows (README "Integrating a
 * gateway"):
 *
 *   1. reserve before calling the provider; a refused reservation means the provider is never called;
 *   2. a stream that ends with usage is captured from usage at the pinned price, the rest released;
 *   3. a stream cut off (client or upstream) without usage is settled from the reserved estimate;
 *   4. a provider that fails or times out before its first byte is released: the customer pays nothing;
 *   5. an asynchronous order not fulfilled in time expires by the ledger's alarm and cannot be charged late;
 *   6. refunds are idempotent by refund_id, however often they are retried;
 *   7. prices are pinned by the reservation, so a price change mid-call does not change its cost;
 *   8. once the provider starts delivering, the hold is switched to on_expiry=capture, so if the
 *      gateway dies mid-request the ledger's alarm settles from the estimate.
 */
import type { LedgerResult, LedgerService } from "../../../src/service";

/** The ledger's RPC surface as a binding sees it. */
export type Ledger = Pick<
  LedgerService,
  "reserve" | "capture" | "release" | "extend" | "refund" | "getAccount" | "getReservation"
>;

export interface GatewayOptions {
  ledger: Ledger;
  /** Calls the upstream provider (in production a guarded fetch to its base URL). */
  provider: (request: Request) => Promise<Response>;
  providerName: string;
  serviceId: string;
  /** How long a hold lives if nobody settles it; the gateway extends it while streaming. */
  reservationTtlSeconds: number;
  /** Give up on a provider that has not answered by then (released: nothing delivered). */
  providerTimeoutMs: number;
  /** The clock for latencies, in ms since the epoch. Default: the system clock. */
  now?: () => number;
  /**
   * Arms the provider timeout: calls `onTimeout` after `ms` unless the returned function cancels
   * it first. Default: setTimeout. Tests pass a scheduler they fire themselves, never waiting.
   */
  setTimer?: (ms: number, onTimeout: () => void) => () => void;
}

const systemTimer = (ms: number, onTimeout: () => void): (() => void) => {
  const timer = setTimeout(onTimeout, ms);
  return () => clearTimeout(timer);
};

/** Default output budget when the request names none. */
export const DEFAULT_MAX_OUTPUT_TOKENS = 1_024;
/** Rough token estimate for the hold: never below the real count for ordinary text. */
export const CHARS_PER_TOKEN_ESTIMATE = 3;

interface ChatRequest {
  model: string;
  messages: { role: string; content: string }[];
  max_tokens?: number;
  stream?: boolean;
}

interface ProviderUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  prompt_tokens_details?: { cached_tokens?: number };
}

const json = (body: unknown, status: number) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

function rejected(result: LedgerResult<unknown>): Response {
  if (result.ok) throw new Error("not a rejection");
  return json({ error: { code: result.code, message: result.detail, ...(result.facts ?? {}) } }, result.status);
}

/** The ledger's usage fields from an OpenAI-style usage object (cached tokens billed apart). */
export function toUsage(usage: ProviderUsage) {
  const cached = usage.prompt_tokens_details?.cached_tokens ?? 0;
  return {
    input_tokens: Math.max((usage.prompt_tokens ?? 0) - cached, 0),
    output_tokens: usage.completion_tokens ?? 0,
    cached_tokens: cached,
  };
}

export function createGateway(options: GatewayOptions) {
  const { ledger } = options;
  const now = options.now ?? (() => Date.now());
  const setTimer = options.setTimer ?? systemTimer;

  /** Settles a delivered call: from usage when the provider reported it, else the whole estimate. */
  async function settle(accountId: string, reservationId: string, usage: ProviderUsage | null, latencyMs: number) {
    if (usage !== null) {
      return ledger.capture(accountId, reservationId, {
        usage: { ...toUsage(usage), latency_ms: latencyMs, status: "ok" },
      });
    }
    const held = await ledger.getReservation(accountId, reservationId);
    if (!held.ok) return held;
    return ledger.capture(accountId, reservationId, {
      amount: held.value.amount,
      usage: { latency_ms: latencyMs, status: "cut_off", error_code: "no_usage" },
    });
  }

  async function chat(request: Request, ctx: ExecutionContext): Promise<Response> {
    const accountId = request.headers.get("x-account-id") ?? "";
    const requestId = request.headers.get("x-request-id") ?? crypto.randomUUID();
    const body = (await request.json()) as ChatRequest;
    const reservationId = `gw_${requestId}`;
    const started = now();

    // 1. Reserve the estimate before any paid work.
    const inputChars = body.messages.reduce((n, m) => n + m.content.length, 0);
    const reserved = await ledger.reserve(accountId, {
      reservation_id: reservationId,
      price: { service_id: options.serviceId, provider: options.providerName, model: body.model },
      estimate: {
        max_input_tokens: Math.ceil(inputChars / CHARS_PER_TOKEN_ESTIMATE) + 16,
        max_output_tokens: body.max_tokens ?? DEFAULT_MAX_OUTPUT_TOKENS,
      },
      ttl_seconds: options.reservationTtlSeconds,
      on_expiry: "release",
      context: {
        request_id: requestId,
        service_id: options.serviceId,
        provider: options.providerName,
        model: body.model,
      },
    });
    if (!reserved.ok) return rejected(reserved);

    // 4. The provider must start answering in time; until it does, nothing is owed.
    const abort = new AbortController();
    const cancelTimer = setTimer(options.providerTimeoutMs, () => abort.abort(new Error("provider timeout")));
    let upstream: Response;
    try {
      upstream = await options.provider(
        new Request("https://provider.invalid/v1/chat/completions", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ ...body, stream_options: body.stream ? { include_usage: true } : undefined }),
          signal: abort.signal,
        }),
      );
    } catch {
      cancelTimer();
      await ledger.release(accountId, reservationId, { reason: "provider unreachable or timed out" });
      return json({ error: { code: "provider_unavailable", message: "The provider did not answer." } }, 504);
    }
    cancelTimer();
    if (!upstream.ok || upstream.body === null) {
      await ledger.release(accountId, reservationId, { reason: `provider answered ${upstream.status}` });
      return json({ error: { code: "provider_failed", message: "The provider failed." } }, 502);
    }

    // 8. Delivery starts: from now on an unsettled hold is charged, not released.
    await ledger.extend(accountId, reservationId, {
      ttl_seconds: options.reservationTtlSeconds,
      on_expiry: "capture",
      extension_id: "delivering",
    });

    if (!body.stream) {
      const answer = (await upstream.json()) as { usage?: ProviderUsage };
      ctx.waitUntil(settle(accountId, reservationId, answer.usage ?? null, now() - started));
      return json(answer, 200);
    }

    // 2 and 3. Relay the stream, watch for usage, settle when it ends however it ends.
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    const pump = async () => {
      const reader = (upstream.body as ReadableStream<Uint8Array>).getReader();
      const writer = writable.getWriter();
      const decoder = new TextDecoder();
      let usage: ProviderUsage | null = null;
      let pending = "";
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          pending += decoder.decode(value, { stream: true });
          const events = pending.split("\n\n");
          pending = events.pop() ?? "";
          for (const event of events) {
            const data = event.replace(/^data: /, "").trim();
            if (data === "" || data === "[DONE]") continue;
            try {
              const parsed = JSON.parse(data) as { usage?: ProviderUsage | null };
              if (parsed.usage) usage = parsed.usage;
            } catch {
              // A chunk that is not JSON is relayed as is and carries no usage.
            }
          }
          await writer.write(value);
        }
        await writer.close();
      } catch {
        // The client went away or the upstream broke: stop relaying and settle what we know.
        await reader.cancel().catch(() => undefined);
        await writer.abort().catch(() => undefined);
      }
      await settle(accountId, reservationId, usage, now() - started);
    };
    ctx.waitUntil(pump());
    return new Response(readable, { status: 200, headers: { "content-type": "text/event-stream" } });
  }

  /**
   * 5. An asynchronous order (e.g. an energy rental fulfilled later): the hold expires by the
   * ledger's alarm if it is not fulfilled in time, and a late fulfilment cannot charge.
   */
  async function placeOrder(request: Request): Promise<Response> {
    const { account_id, order_id, amount, fulfil_within_seconds } = (await request.json()) as {
      account_id: string;
      order_id: string;
      amount: number;
      fulfil_within_seconds: number;
    };
    const reserved = await ledger.reserve(account_id, {
      reservation_id: `order_${order_id}`,
      amount,
      ttl_seconds: fulfil_within_seconds,
      on_expiry: "release",
      context: { request_id: order_id, service_id: "orders", provider: options.providerName },
    });
    return reserved.ok ? json({ order_id, status: "placed" }, 201) : rejected(reserved);
  }

  async function fulfilOrder(request: Request, orderId: string): Promise<Response> {
    const { account_id, amount } = (await request.json()) as { account_id: string; amount: number };
    const captured = await ledger.capture(account_id, `order_${orderId}`, { amount });
    return captured.ok ? json({ order_id: orderId, status: "fulfilled", charged: amount }, 200) : rejected(captured);
  }

  /** 6. Refunds pass through with the caller's refund_id: retries refund once. */
  async function refund(request: Request): Promise<Response> {
    const { account_id, ...input } = (await request.json()) as {
      account_id: string;
      refund_id: string;
      charge_id: string;
      amount: number;
      reason?: string;
    };
    const refunded = await ledger.refund(account_id, input);
    return refunded.ok ? json(refunded.value, refunded.status) : rejected(refunded);
  }

  return {
    async fetch(request: Request, ctx: ExecutionContext): Promise<Response> {
      const url = new URL(request.url);
      if (request.method === "POST" && url.pathname === "/v1/chat/completions") return chat(request, ctx);
      if (request.method === "POST" && url.pathname === "/v1/orders") return placeOrder(request);
      const fulfil = /^\/v1\/orders\/([A-Za-z0-9_-]+)\/fulfil$/.exec(url.pathname);
      if (request.method === "POST" && fulfil?.[1] !== undefined) return fulfilOrder(request, fulfil[1]);
      if (request.method === "POST" && url.pathname === "/v1/refunds") return refund(request);
      return json({ error: { code: "not_found" } }, 404);
    },
  };
}
