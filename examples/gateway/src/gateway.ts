/**
 * An example API gateway in front of an OpenAI-compatible provider, billing through the ledger's
 * service binding. It never computes money itself: it reserves by price and estimate, captures
 * by usage, and leaves every amount to the ledger. It is the integration people copy, so it
 * trusts nothing its callers say (issue 11). The rules it shows (docs/pricing.md, "The example
 * gateway"):
 *
 *   1. callers authenticate with a gateway key (keys.ts), which alone names the account; unknown
 *      keys get 401 before the ledger is called, and refunds and orders need an operator key;
 *   2. reserve before calling the provider; a refused reservation means the provider is never
 *      called. The hold is `gw:<account>:<request id>`, and a reserve answered as a replay means
 *      another request already owns it: 409, and the provider is called at most once per hold;
 *   3. the hold prices min(requested max_tokens, OUTPUT_TOKENS_MAX) output tokens and exactly that
 *      max_tokens is forwarded, so an honest provider cannot produce more than the hold covers. A
 *      provider that reports more anyway is captured at its reported usage with allow_overage (the
 *      platform's rule: upstream usage is the truth), counted in `overage_captures`, and logged.
 *      The ledger does not cap an overage capture at the credit limit: it charges it and then
 *      refuses the account new holds until a top-up (docs/api.md, "Rules");
 *   4. one idle timeout covers the headers and every chunk of the body. Before the first byte
 *      reaches the client (a timeout, an error status, an empty, stalled, broken or non-JSON body,
 *      or no event stream when one was asked) the hold is released: nothing was delivered;
 *   5. once delivery starts the hold is switched to on_expiry=capture, so a gateway that dies
 *      mid-request is settled by the ledger's alarm from the estimate, and extended again while a
 *      long stream runs. If that switch fails the answer is withheld (503) and the hold released:
 *      nothing is delivered unbilled;
 *   6. a stream that ends with usage is captured from usage at the pinned price. One that ends
 *      without usage, breaks, or is dropped by the client is settled from the estimate (the
 *      provider may have generated up to max_tokens). One the gateway cuts for stalling is
 *      captured for what was delivered: its usage if it sent one, else the held input and the
 *      output characters relayed (CHARS_PER_TOKEN_ESTIMATE), or released if no output was relayed;
 *   7. every extend, capture and release result is checked and retried (settle.ts); one that still
 *      fails is counted in `stats()`, logged without secrets, and left to the hold's on_expiry;
 *   8. asynchronous orders are bounded in amount and time, expire by the alarm if not fulfilled,
 *      and settle for 0 only when the operator says so; refunds are idempotent by refund_id;
 *   9. prices are pinned by the reservation, so a price change mid-call does not change its cost.
 */
import { z } from "zod";
import type { CaptureInput, LedgerResult, LedgerService } from "../../../src/service";
import { bearerToken, type GatewayKeyStore, type GatewayPrincipal } from "./keys";
import {
  createSettler,
  type GatewayLog,
  type GatewayStats,
  SETTLE_BACKOFF_MS,
  type Settled,
  type Settler,
} from "./settle";
import {
  IdleTimeout,
  type ProviderUsage,
  type ReadFailure,
  readFirstChunk,
  readWholeBody,
  relayStream,
  type SetTimer,
  type StreamEnd,
  StreamTally,
} from "./upstream";

export { GATEWAY_KEY_PATTERN, type GatewayKeyStore, keyStoreFromConfig, newGatewayKey } from "./keys";
export { type GatewayStats, SETTLE_ATTEMPTS_MAX, SETTLE_BACKOFF_MS } from "./settle";

/** The ledger's RPC surface as a binding sees it. */
export type Ledger = Pick<
  LedgerService,
  "reserve" | "capture" | "release" | "extend" | "refund" | "getAccount" | "getReservation"
> &
  // Optional: a ledger without monitoring (or a test's fake) still bills.
  Partial<Pick<LedgerService, "reportProviderResult">>;

export interface GatewayOptions {
  ledger: Ledger;
  /** Who may call: resolves a presented gateway key to its account and role. */
  keys: GatewayKeyStore;
  /** Calls the upstream provider (in production a guarded fetch to its base URL). */
  provider: (request: Request) => Promise<Response>;
  providerName: string;
  serviceId: string;
  /** How long a hold lives if nobody settles it. */
  reservationTtlSeconds: number;
  /** The longest the provider may stay silent: before its headers, and between any two chunks. */
  providerIdleTimeoutMs: number;
  /** The clock for latencies, in ms since the epoch. Default: the system clock. */
  now?: () => number;
  /**
   * Arms a timer: calls `onTimeout` after `ms` unless the returned function cancels it first.
   * Used for the idle timeout and the settle backoff. Default: setTimeout. Tests pass a
   * scheduler they fire themselves, never waiting.
   */
  setTimer?: SetTimer;
  /** Delay before the first settle retry (doubling after); 0 retries at once. Default SETTLE_BACKOFF_MS. */
  settleBackoffMs?: number;
  /** Operational log lines (never a key, prompt or answer). Default: console.log as JSON. */
  log?: GatewayLog;
}

/** Output tokens held for a request that names no max_tokens. */
export const OUTPUT_TOKENS_DEFAULT = 1_024;
/** Output tokens one request may hold and ask for: the provider is never sent a larger max_tokens. */
export const OUTPUT_TOKENS_MAX = 4_096;
/** The fewest output tokens worth calling the provider for; a hold covering fewer is refused (402). */
export const OUTPUT_TOKENS_MIN = 1;
/** Rough token estimate for the hold: never below the real count for ordinary text. */
export const CHARS_PER_TOKEN_ESTIMATE = 3;
/** Input tokens held beyond the text's estimate: the chat template's own tokens. */
export const INPUT_TOKENS_OVERHEAD = 16;
/** Largest request body the gateway reads. */
export const REQUEST_BODY_BYTES_MAX = 1_048_576;
/** Largest order an operator key may place, in minor units. */
export const ORDER_AMOUNT_MINOR_MAX = 100_000;
/** Longest an order may wait for fulfilment (its hold locks the customer's funds meanwhile): one day. */
export const ORDER_FULFIL_SECONDS_MAX = 86_400;

/** Request and order ids: no ':' so `gw:<account>:<id>` reads one way only. */
const REQUEST_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const ChatBody = z.looseObject({
  model: z.string().min(1).max(256),
  messages: z.array(z.looseObject({ role: z.string(), content: z.string() })).min(1),
  max_tokens: z.number().int().min(1).optional(),
  max_completion_tokens: z.number().int().min(1).optional(),
  stream: z.boolean().optional(),
  // n choices would each produce up to max_tokens: more than the hold prices.
  n: z.literal(1).optional(),
});
type ChatBody = z.infer<typeof ChatBody>;

const OrderBody = z.strictObject({
  order_id: z.string().regex(REQUEST_ID_PATTERN),
  amount: z.number().int().min(1).max(ORDER_AMOUNT_MINOR_MAX),
  fulfil_within_seconds: z.number().int().min(1).max(ORDER_FULFIL_SECONDS_MAX),
});
const FulfilBody = z.strictObject({
  amount: z.number().int().min(0).max(ORDER_AMOUNT_MINOR_MAX),
  // Settling an order for nothing must be said, not fallen into by a missing or zero amount.
  allow_zero: z.literal(true).optional(),
});
const RefundBody = z.strictObject({
  refund_id: z.string().regex(REQUEST_ID_PATTERN),
  charge_id: z.string().min(1).max(128),
  amount: z.number().int().min(1),
  reason: z.string().min(1).max(500).optional(),
});

/** A hold the gateway placed: everything settling it needs. */
interface Hold {
  accountId: string;
  reservationId: string;
  amount: number;
  inputTokens: number;
  outputTokens: number;
  started: number;
}

/** How a delivered call is settled (rule 6). */
type Delivered =
  | { kind: "usage"; usage: ProviderUsage }
  | { kind: "estimate" }
  | { kind: "relayed"; outputChars: number };

const json = (body: unknown, status: number, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

const problem = (status: number, code: string, message: string, extra: Record<string, unknown> = {}) =>
  json({ error: { code, message, ...extra } }, status);

function rejected(result: LedgerResult<unknown>): Response {
  if (result.ok) throw new Error("not a rejection");
  return problem(result.status, result.code, result.detail, result.facts ?? {});
}

/** The ledger's usage fields from an OpenAI-style usage object (cached tokens billed apart). */
export function toUsage(usage: ProviderUsage) {
  const count = (n: unknown) => (typeof n === "number" && Number.isSafeInteger(n) && n > 0 ? n : 0);
  const cached = count(usage.prompt_tokens_details?.cached_tokens);
  return {
    input_tokens: Math.max(count(usage.prompt_tokens) - cached, 0),
    output_tokens: count(usage.completion_tokens),
    cached_tokens: cached,
  };
}

/** A request body parsed by `schema`, or the 400/413 answer. */
async function readBody<T>(request: Request, schema: z.ZodType<T>): Promise<{ ok: true; body: T } | Response> {
  const declared = Number(request.headers.get("content-length") ?? 0);
  const bytes = declared > REQUEST_BODY_BYTES_MAX ? null : await readBounded(request, REQUEST_BODY_BYTES_MAX);
  if (bytes === null) {
    return problem(413, "payload_too_large", `The body exceeds ${REQUEST_BODY_BYTES_MAX} bytes.`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return problem(400, "invalid_request", "The body is not JSON.");
  }
  const checked = schema.safeParse(parsed);
  if (checked.success) return { ok: true, body: checked.data };
  const fields = checked.error.issues.map((issue) => issue.path.join(".") || "body");
  return problem(400, "invalid_request", `Invalid fields: ${[...new Set(fields)].join(", ")}.`);
}

/**
 * The body, read chunk by chunk and given up past `max` bytes (null): a chunked body declares no
 * length, and reading it whole first would hold whatever the caller sends (issue 31, defect 7).
 */
async function readBounded(request: Request, max: number): Promise<Uint8Array | null> {
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => undefined);
      return null;
    }
    chunks.push(value);
  }
  const body = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.byteLength;
  }
  return body;
}

const FAILURE_ANSWERS: Record<ReadFailure | "status" | "not_json" | "not_sse", [number, string, string]> = {
  stalled: [504, "provider_timeout", "The provider stopped answering."],
  broken: [502, "provider_failed", "The provider's answer broke off."],
  empty: [502, "provider_failed", "The provider answered with an empty body."],
  too_large: [502, "provider_failed", "The provider's answer is too large."],
  status: [502, "provider_failed", "The provider failed."],
  not_json: [502, "provider_failed", "The provider's answer is not JSON."],
  not_sse: [502, "provider_failed", "The provider did not answer with an event stream."],
};

/** What every step of a request needs: the options and the seams resolved once. */
interface Deps {
  options: GatewayOptions;
  ledger: Ledger;
  now: () => number;
  setTimer: SetTimer;
  log: GatewayLog;
  settler: Settler;
}

export function createGateway(options: GatewayOptions) {
  const setTimer = options.setTimer ?? systemTimer;
  const log = options.log ?? ((line: Record<string, string | number>) => console.log(JSON.stringify(line)));
  const deps: Deps = {
    options,
    ledger: options.ledger,
    now: options.now ?? (() => Date.now()),
    setTimer,
    log,
    settler: createSettler({ setTimer, backoffMs: options.settleBackoffMs ?? SETTLE_BACKOFF_MS, log }),
  };
  return {
    fetch: (request: Request, ctx: ExecutionContext): Promise<Response> => route(deps, request, ctx),
    /** Counters of this gateway object (per isolate): settle retries, failures, overages. */
    stats: (): GatewayStats => ({ ...deps.settler.stats }),
  };
}

async function route(deps: Deps, request: Request, ctx: ExecutionContext): Promise<Response> {
  const principal = await authenticate(deps.options.keys, request);
  if (principal instanceof Response) return principal;
  const url = new URL(request.url);
  if (request.method === "POST" && url.pathname === "/v1/chat/completions") return chat(deps, request, principal, ctx);
  const fulfil = /^\/v1\/orders\/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\/fulfil$/.exec(url.pathname);
  const operatorRoute = url.pathname === "/v1/orders" || url.pathname === "/v1/refunds" || fulfil !== null;
  if (request.method !== "POST" || !operatorRoute) return problem(404, "not_found", "No such route.");
  if (principal.role !== "operator") return problem(403, "forbidden", "Refunds and orders need an operator key.");
  if (url.pathname === "/v1/orders") return placeOrder(deps.ledger, request, principal);
  if (url.pathname === "/v1/refunds") return refund(deps.ledger, request, principal);
  return fulfilOrder(deps.ledger, request, principal, fulfil?.[1] ?? "");
}

const target = (hold: Hold) => ({ accountId: hold.accountId, reservationId: hold.reservationId });

function release(deps: Deps, hold: Hold, reason: string): Promise<Settled<unknown>> {
  return deps.settler.run("release", target(hold), () =>
    deps.ledger.release(hold.accountId, hold.reservationId, { reason }),
  );
}

/** Extends a delivering hold by the TTL; each extension has its own id, so a retry replays it. */
function extendDelivering(deps: Deps, hold: Hold, extensionId: string): Promise<Settled<unknown>> {
  const input = { ttl_seconds: deps.options.reservationTtlSeconds, on_expiry: "capture" as const };
  return deps.settler.run("extend", target(hold), () =>
    deps.ledger.extend(hold.accountId, hold.reservationId, { ...input, extension_id: extensionId }),
  );
}

/** Rule 5: delivery may start only once an unsettled hold would be charged, not released. */
async function startDelivery(deps: Deps, hold: Hold): Promise<boolean> {
  if ((await extendDelivering(deps, hold, "delivering")).ok) return true;
  await release(deps, hold, "the hold could not be switched to capture");
  return false;
}

/**
 * Keeps a delivering hold alive while its stream runs: once half the TTL has passed since the
 * last extension, the next chunk extends it again. Without this a stream longer than the TTL
 * would be expired, and charged the estimate, by the alarm while it is still delivering.
 */
function holdKeeper(deps: Deps, hold: Hold) {
  const halfTtlMs = (deps.options.reservationTtlSeconds * 1_000) / 2;
  let extendedAt = deps.now();
  let extensions = 1;
  let pending: Promise<unknown> = Promise.resolve();
  return {
    onChunk(): void {
      if (deps.now() - extendedAt < halfTtlMs) return;
      extendedAt = deps.now();
      extensions += 1;
      const extensionId = `delivering-${extensions}`;
      pending = pending.then(() => extendDelivering(deps, hold, extensionId));
    },
    /** Resolves once no extension is in flight, so none lands after the capture. */
    settled: () => pending,
  };
}

/** The capture body for what was delivered (rule 6). */
function captureBody(hold: Hold, delivered: Delivered, latency_ms: number): CaptureInput {
  if (delivered.kind === "usage") return { usage: { ...toUsage(delivered.usage), latency_ms, status: "ok" } };
  if (delivered.kind === "estimate") {
    return { amount: hold.amount, usage: { latency_ms, status: "cut_off", error_code: "no_usage" } };
  }
  const output = Math.min(Math.ceil(delivered.outputChars / CHARS_PER_TOKEN_ESTIMATE), hold.outputTokens);
  return {
    usage: {
      input_tokens: hold.inputTokens,
      output_tokens: output,
      latency_ms,
      status: "stalled",
      error_code: "idle_timeout",
    },
  };
}

/** Rules 3, 6 and 7: captures what was delivered, above the hold only for reported usage. */
async function settle(deps: Deps, hold: Hold, delivered: Delivered): Promise<void> {
  if (delivered.kind === "relayed" && delivered.outputChars === 0) {
    await release(deps, hold, "the provider stalled before delivering any output");
    return;
  }
  let body = captureBody(hold, delivered, Math.max(deps.now() - hold.started, 0));
  await deps.settler.run("capture", target(hold), async () => {
    const captured = await deps.ledger.capture(hold.accountId, hold.reservationId, body);
    if (captured.ok || captured.code !== "capture_exceeds_reservation" || delivered.kind !== "usage") return captured;
    // The provider reported more than the max_tokens it was sent: its usage is still the bill.
    // The body stays switched, so a retry repeats this capture exactly.
    body = { ...body, allow_overage: true };
    deps.settler.stats.overage_captures += 1;
    deps.log({ event: "gateway_provider_overage", account_id: hold.accountId, reservation_id: hold.reservationId });
    return deps.ledger.capture(hold.accountId, hold.reservationId, body);
  });
}

function settleStream(deps: Deps, hold: Hold, end: StreamEnd, tally: StreamTally): Promise<void> {
  if (tally.usage !== null) return settle(deps, hold, { kind: "usage", usage: tally.usage });
  if (end === "stalled") return settle(deps, hold, { kind: "relayed", outputChars: tally.outputChars });
  return settle(deps, hold, { kind: "estimate" });
}

/** Rule 4: nothing reached the client, so the hold is released and the client told why. */
async function failBeforeDelivery(deps: Deps, hold: Hold, why: keyof typeof FAILURE_ANSWERS, reason: string) {
  await release(deps, hold, reason);
  const [status, code, message] = FAILURE_ANSWERS[why];
  return problem(status, code, message);
}

/** Rules 2 and 3: the hold for a chat request, or the answer that refuses it. */
async function reserve(deps: Deps, principal: GatewayPrincipal, requestId: string, chat: ChatBody) {
  const { options } = deps;
  const asked = Math.min(chat.max_tokens ?? Infinity, chat.max_completion_tokens ?? Infinity);
  const outputTokens = Math.min(Number.isFinite(asked) ? asked : OUTPUT_TOKENS_DEFAULT, OUTPUT_TOKENS_MAX);
  const inputChars = chat.messages.reduce((n, m) => n + m.content.length, 0);
  const inputTokens = Math.ceil(inputChars / CHARS_PER_TOKEN_ESTIMATE) + INPUT_TOKENS_OVERHEAD;
  const reservationId = `gw:${principal.account_id}:${requestId}`;
  const started = deps.now();
  const price = { service_id: options.serviceId, provider: options.providerName, model: chat.model };
  let reserved: Awaited<ReturnType<Ledger["reserve"]>>;
  // The caller's key and project: the ledger counts the call against their spend limits.
  const caller = {
    ...(principal.key_id === undefined ? {} : { api_key_id: principal.key_id }),
    ...(principal.project_id === undefined ? {} : { project_id: principal.project_id }),
  };
  try {
    // Sized to what is affordable (issue 28): the ledger holds the most of the estimate that the
    // balance and the spend limits allow, and says how many output tokens that covers.
    reserved = await deps.ledger.reserve(
      principal.account_id,
      {
        reservation_id: reservationId,
        price,
        estimate: { max_input_tokens: inputTokens, max_output_tokens: outputTokens },
        amount_min: 1,
        ttl_seconds: options.reservationTtlSeconds,
        on_expiry: "release",
        context: { request_id: requestId, ...price },
      },
      caller,
    );
  } catch {
    // Whether the hold was placed is unknown; if it was, it expires by its release rule.
    return problem(503, "ledger_unavailable", "Billing is unavailable; retry with a new x-request-id.");
  }
  // A replay means another request placed this hold and owns its provider call.
  const duplicate = reserved.ok ? reserved.replayed : reserved.code === "idempotency_conflict";
  if (duplicate) {
    return problem(409, "duplicate_request", "This x-request-id was already used; send a new one.", {
      request_id: requestId,
    });
  }
  if (!reserved.ok) return rejected(reserved);
  const amount = reserved.value.reservation.amount;
  const covered = reserved.value.requested?.output_tokens_covered ?? outputTokens;
  const hold: Hold = {
    accountId: principal.account_id,
    reservationId,
    amount,
    inputTokens,
    outputTokens: covered,
    started,
  };
  // Not even one output token is affordable: the provider is never called.
  if (covered < OUTPUT_TOKENS_MIN) {
    await release(deps, hold, "the balance or a spend limit covers no output");
    return problem(402, "insufficient_funds", "The balance or a spend limit does not cover this request.", {
      output_tokens_covered: covered,
    });
  }
  return hold;
}

/** Calls the provider under the idle timeout, with max_tokens set to what the hold covers. */
function callProvider(deps: Deps, hold: Hold, chat: ChatBody, idle: IdleTimeout): Promise<Response> {
  // max_completion_tokens is dropped: max_tokens alone says how much the hold covers.
  const { max_completion_tokens: _dropped, ...forwarded } = chat;
  const body = {
    ...forwarded,
    max_tokens: hold.outputTokens,
    stream_options: chat.stream ? { include_usage: true } : undefined,
  };
  return idle.wait(
    deps.options.provider(
      new Request("https://provider.invalid/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: idle.signal,
      }),
    ),
  );
}

/** The provider status classes the ledger's monitoring counts (issue 14). */
function providerStatus(status: number): "ok" | "401" | "403" | "429" | "5xx" | "4xx" {
  if (status >= 200 && status < 300) return "ok";
  if (status === 401 || status === 403 || status === 429) return String(status) as "401" | "403" | "429";
  return status >= 500 ? "5xx" : "4xx";
}

/**
 * Reports the provider call to the ledger's monitoring (provider failure rates), after the
 * response: it adds no latency, and a failed report changes nothing for the caller.
 */
function reportProvider(
  deps: Deps,
  ctx: ExecutionContext,
  model: string,
  status: "ok" | "401" | "403" | "429" | "5xx" | "4xx" | "timeout",
  started: number,
): void {
  if (deps.ledger.reportProviderResult === undefined) return;
  const latency_ms = Math.max(0, deps.now() - started);
  // Called on the ledger itself: an RPC stub's method is not a plain function to rebind.
  const reported = deps.ledger.reportProviderResult({
    provider: deps.options.providerName,
    model: model.slice(0, 256),
    status,
    latency_ms,
  });
  ctx.waitUntil(Promise.resolve(reported).catch(() => undefined));
}

async function chat(deps: Deps, request: Request, principal: GatewayPrincipal, ctx: ExecutionContext) {
  const requestId = request.headers.get("x-request-id") ?? crypto.randomUUID();
  if (!REQUEST_ID_PATTERN.test(requestId)) {
    return problem(400, "invalid_request", "x-request-id must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$.");
  }
  const read = await readBody(request, ChatBody);
  if (read instanceof Response) return read;
  const hold = await reserve(deps, principal, requestId, read.body);
  if (hold instanceof Response) return hold;
  const idle = new IdleTimeout(deps.options.providerIdleTimeoutMs, deps.setTimer);
  let upstream: Response;
  try {
    upstream = await callProvider(deps, hold, read.body, idle);
  } catch {
    reportProvider(deps, ctx, read.body.model, idle.fired ? "timeout" : "5xx", hold.started);
    await release(deps, hold, idle.fired ? "the provider timed out" : "the provider was unreachable");
    return problem(504, "provider_unavailable", "The provider did not answer.");
  }
  reportProvider(deps, ctx, read.body.model, providerStatus(upstream.status), hold.started);
  if (!upstream.ok || upstream.body === null) {
    upstream.body?.cancel().catch(() => undefined);
    return failBeforeDelivery(deps, hold, "status", `provider answered ${upstream.status}`);
  }
  const answered = upstream as Response & { body: ReadableStream<Uint8Array> };
  return read.body.stream
    ? streamAnswer(deps, hold, answered, idle, ctx)
    : jsonAnswer(deps, hold, answered.body, idle, ctx);
}

async function streamAnswer(
  deps: Deps,
  hold: Hold,
  upstream: Response & { body: ReadableStream<Uint8Array> },
  idle: IdleTimeout,
  ctx: ExecutionContext,
): Promise<Response> {
  if (!(upstream.headers.get("content-type") ?? "").includes("text/event-stream")) {
    // A stream was asked for and something else came (an error page, a JSON error): nothing
    // usable can reach the client, so nothing is owed.
    upstream.body.cancel().catch(() => undefined);
    return failBeforeDelivery(deps, hold, "not_sse", "the provider answered 200 without an event stream");
  }
  const reader = upstream.body.getReader();
  const first = await readFirstChunk(reader, idle);
  if (!first.ok) return failBeforeDelivery(deps, hold, first.failure, `the provider's stream was ${first.failure}`);
  if (!(await startDelivery(deps, hold))) {
    reader.cancel().catch(() => undefined);
    return problem(503, "billing_unavailable", "The call could not be billed; nothing was charged.");
  }
  const tally = new StreamTally();
  const keeper = holdKeeper(deps, hold);
  const relay = relayStream(reader, first.chunk, idle, tally, keeper.onChunk);
  ctx.waitUntil(
    relay.ended.then(async (end) => {
      await keeper.settled();
      await settleStream(deps, hold, end, tally);
    }),
  );
  return new Response(relay.body, {
    status: 200,
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
  });
}

async function jsonAnswer(
  deps: Deps,
  hold: Hold,
  upstream: ReadableStream<Uint8Array>,
  idle: IdleTimeout,
  ctx: ExecutionContext,
): Promise<Response> {
  const read = await readWholeBody(upstream, idle);
  if (!read.ok) return failBeforeDelivery(deps, hold, read.failure, `the provider's answer was ${read.failure}`);
  let answer: unknown = null;
  try {
    answer = JSON.parse(read.text);
  } catch {
    answer = null;
  }
  if (typeof answer !== "object" || answer === null || Array.isArray(answer)) {
    return failBeforeDelivery(
      deps,
      hold,
      "not_json",
      "the provider answered 200 with a body that is not a JSON object",
    );
  }
  if (!(await startDelivery(deps, hold))) {
    return problem(503, "billing_unavailable", "The call could not be billed; nothing was charged.");
  }
  const reported = (answer as { usage?: unknown }).usage;
  const usage = typeof reported === "object" && reported !== null ? (reported as ProviderUsage) : null;
  ctx.waitUntil(settle(deps, hold, usage === null ? { kind: "estimate" } : { kind: "usage", usage }));
  return json(answer, 200);
}

export type Gateway = ReturnType<typeof createGateway>;

const systemTimer: SetTimer = (ms, onTimeout) => {
  const timer = setTimeout(onTimeout, ms);
  return () => clearTimeout(timer);
};

/** Rule 1: the principal of the request's key, or the 401 that refuses it. The key is never echoed. */
async function authenticate(keys: GatewayKeyStore, request: Request): Promise<GatewayPrincipal | Response> {
  const token = bearerToken(request);
  let principal: GatewayPrincipal | null = null;
  try {
    principal = token === null ? null : await keys.lookup(token);
  } catch {
    return problem(503, "auth_unavailable", "Keys cannot be checked right now.");
  }
  if (principal !== null) return principal;
  return json({ error: { code: "unauthorized", message: "Send Authorization: Bearer <gateway key>." } }, 401, {
    "www-authenticate": 'Bearer realm="gateway"',
  });
}

/** Calls the ledger for an operator route; a binding that throws is a 503, not a crash. */
async function ledgerCall<T>(run: () => Promise<LedgerResult<T>>): Promise<LedgerResult<T> | Response> {
  try {
    return await run();
  } catch {
    return problem(503, "ledger_unavailable", "Billing is unavailable; retry the same request.");
  }
}

const orderHold = (principal: GatewayPrincipal, orderId: string) => `order:${principal.account_id}:${orderId}`;

/** Rule 8: an order holds a bounded amount for a bounded time on the key's own account. */
async function placeOrder(ledger: Ledger, request: Request, principal: GatewayPrincipal): Promise<Response> {
  const read = await readBody(request, OrderBody);
  if (read instanceof Response) return read;
  const { order_id, amount, fulfil_within_seconds } = read.body;
  const reserved = await ledgerCall(() =>
    ledger.reserve(principal.account_id, {
      reservation_id: orderHold(principal, order_id),
      amount,
      ttl_seconds: fulfil_within_seconds,
      on_expiry: "release",
      context: { request_id: order_id, service_id: "orders" },
    }),
  );
  if (reserved instanceof Response) return reserved;
  // Placing an order is idempotent by order_id: a retry finds it placed.
  return reserved.ok ? json({ order_id, status: "placed", replayed: reserved.replayed }, 201) : rejected(reserved);
}

/** Rule 8: fulfilment charges at most the hold, and 0 only when the operator says so. */
async function fulfilOrder(ledger: Ledger, request: Request, principal: GatewayPrincipal, orderId: string) {
  const read = await readBody(request, FulfilBody);
  if (read instanceof Response) return read;
  if (read.body.amount === 0 && read.body.allow_zero !== true) {
    return problem(400, "zero_amount_refused", "Settling an order for 0 needs allow_zero: true.");
  }
  const captured = await ledgerCall(() =>
    ledger.capture(principal.account_id, orderHold(principal, orderId), { amount: read.body.amount }),
  );
  if (captured instanceof Response) return captured;
  return captured.ok
    ? json({ order_id: orderId, status: "fulfilled", charged: captured.value.charge.amount }, 200)
    : rejected(captured);
}

/** Refunds pass through with the operator's refund_id (idempotent), on the key's own account. */
async function refund(ledger: Ledger, request: Request, principal: GatewayPrincipal): Promise<Response> {
  const read = await readBody(request, RefundBody);
  if (read instanceof Response) return read;
  const refunded = await ledgerCall(() => ledger.refund(principal.account_id, read.body));
  if (refunded instanceof Response) return refunded;
  return refunded.ok ? json(refunded.value, refunded.status) : rejected(refunded);
}
