/**
 * Reading the provider's answer under an idle timeout, and watching its stream for usage.
 *
 * A timeout on the headers alone lets a provider answer 200 and then stall forever, holding the
 * customer's funds until the ledger's alarm charges the whole estimate (issue 11). Here one idle
 * timer covers the headers and every chunk of the body: each wait on the provider is raced
 * against it, and it is re-armed for each wait, so a slow but live stream is never cut while a
 * silent one is cut after `ms`. It is paused while the client is slow to read, which is the
 * client's doing, not the provider's.
 *
 * Server-sent events are parsed by `eventsource-parser`, which follows the WHATWG grammar, so
 * `\r\n` and `\r` line endings yield events as `\n` does (a split on "\n\n" never saw them).
 */
import { createParser, type EventSourceParser } from "eventsource-parser";

export type SetTimer = (ms: number, onTimeout: () => void) => () => void;

/** Largest non-streaming answer the gateway buffers: a bigger one is refused, and released. */
export const ANSWER_BYTES_MAX = 8 * 1_048_576;
/** Largest unfinished SSE line the parser holds: a provider sending more is no longer read for usage. */
export const SSE_BUFFER_CHARS_MAX = 1_048_576;

const noop = () => undefined;

export class IdleTimeout {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private cancelTimer: () => void = noop;

  constructor(
    private readonly ms: number,
    private readonly setTimer: SetTimer,
  ) {
    this.signal = this.controller.signal;
  }

  /** True once the provider stayed silent for the whole timeout. */
  get fired(): boolean {
    return this.signal.aborted;
  }

  /** Starts (or restarts) the wait for the provider's next sign of life. */
  arm(): void {
    this.cancelTimer();
    if (this.fired) return;
    this.cancelTimer = this.setTimer(this.ms, () => this.controller.abort(new Error("provider idle timeout")));
  }

  /** Stops waiting: the provider answered, or the gateway is done with it. */
  pause(): void {
    this.cancelTimer();
    this.cancelTimer = noop;
  }

  /** Arms the timer, waits for `work`, and rejects if the timeout fires first. */
  async wait<T>(work: Promise<T>): Promise<T> {
    this.arm();
    try {
      return await new Promise<T>((resolve, reject) => {
        if (this.fired) return reject(this.signal.reason);
        const onAbort = () => reject(this.signal.reason);
        this.signal.addEventListener("abort", onAbort, { once: true });
        work.then(resolve, reject).finally(() => this.signal.removeEventListener("abort", onAbort));
      });
    } finally {
      this.pause();
    }
  }
}

/** How reading a body ended, when it did not end with the answer. */
export type ReadFailure = "stalled" | "broken" | "empty" | "too_large";

/** The first chunk of a body: delivery may start only once there is something to deliver. */
export async function readFirstChunk(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  idle: IdleTimeout,
): Promise<{ ok: true; chunk: Uint8Array } | { ok: false; failure: ReadFailure }> {
  try {
    for (;;) {
      const read = await idle.wait(reader.read());
      if (read.done) return { ok: false, failure: "empty" };
      if (read.value.byteLength > 0) return { ok: true, chunk: read.value };
    }
  } catch {
    reader.cancel().catch(noop);
    return { ok: false, failure: idle.fired ? "stalled" : "broken" };
  }
}

/** A whole non-streaming body, every chunk under the idle timeout, at most ANSWER_BYTES_MAX. */
export async function readWholeBody(
  body: ReadableStream<Uint8Array>,
  idle: IdleTimeout,
): Promise<{ ok: true; text: string } | { ok: false; failure: ReadFailure }> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let bytes = 0;
  try {
    for (;;) {
      const read = await idle.wait(reader.read());
      if (read.done) break;
      bytes += read.value.byteLength;
      if (bytes > ANSWER_BYTES_MAX) {
        reader.cancel().catch(noop);
        return { ok: false, failure: "too_large" };
      }
      text += decoder.decode(read.value, { stream: true });
    }
  } catch {
    reader.cancel().catch(noop);
    return { ok: false, failure: idle.fired ? "stalled" : "broken" };
  }
  text += decoder.decode();
  return text.trim() === "" ? { ok: false, failure: "empty" } : { ok: true, text };
}

export interface ProviderUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  prompt_tokens_details?: { cached_tokens?: number };
}

interface StreamDelta {
  content?: unknown;
  reasoning_content?: unknown;
  tool_calls?: { function?: { arguments?: unknown } }[];
}

/**
 * What a relayed stream carried: the provider's usage if it sent one, and how many characters of
 * output the client received (the measure of delivery when a stalled stream never sent usage).
 */
export class StreamTally {
  usage: ProviderUsage | null = null;
  outputChars = 0;
  private readable = true;
  private readonly decoder = new TextDecoder();
  private readonly parser: EventSourceParser = createParser({
    maxBufferSize: SSE_BUFFER_CHARS_MAX,
    onEvent: (event) => this.onData(event.data),
    onError: () => {
      this.readable = false;
    },
  });

  feed(bytes: Uint8Array): void {
    if (!this.readable) return;
    try {
      this.parser.feed(this.decoder.decode(bytes, { stream: true }));
    } catch {
      // Only an overflow throws, and the parser stays terminated: stop reading, keep relaying.
      this.readable = false;
    }
  }

  private onData(data: string): void {
    if (data === "[DONE]") return;
    let parsed: { usage?: unknown; choices?: { delta?: StreamDelta }[] };
    try {
      parsed = JSON.parse(data);
    } catch {
      return; // An event that is not JSON is relayed as is and carries no usage.
    }
    if (typeof parsed !== "object" || parsed === null) return;
    if (typeof parsed.usage === "object" && parsed.usage !== null) this.usage = parsed.usage as ProviderUsage;
    for (const choice of Array.isArray(parsed.choices) ? parsed.choices : []) {
      const delta = choice?.delta;
      if (delta === undefined || delta === null) continue;
      this.outputChars += textLength(delta.content) + textLength(delta.reasoning_content);
      for (const call of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
        this.outputChars += textLength(call?.function?.arguments);
      }
    }
  }
}

const textLength = (value: unknown) => (typeof value === "string" ? value.length : 0);

/** How a relayed stream ended. */
export type StreamEnd = "complete" | "broken" | "stalled" | "client_gone";

/**
 * Relays the provider's stream to the client chunk by chunk, as the client reads (so a slow
 * client is never buffered for), feeding `tally` and resolving `ended` exactly once.
 */
export function relayStream(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  first: Uint8Array,
  idle: IdleTimeout,
  tally: StreamTally,
  onChunk: () => void = noop,
): { body: ReadableStream<Uint8Array>; ended: Promise<StreamEnd> } {
  let resolveEnded: (end: StreamEnd) => void = noop;
  const ended = new Promise<StreamEnd>((resolve) => {
    resolveEnded = resolve;
  });
  let over = false;
  const end = (how: StreamEnd) => {
    if (over) return;
    over = true;
    idle.pause();
    resolveEnded(how);
  };
  const body = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        tally.feed(first);
        controller.enqueue(first);
      },
      async pull(controller) {
        try {
          const read = await idle.wait(reader.read());
          if (over) return;
          if (read.done) {
            end("complete");
            controller.close();
            return;
          }
          tally.feed(read.value);
          onChunk();
          controller.enqueue(read.value);
        } catch {
          if (over) return;
          const how = idle.fired ? "stalled" : "broken";
          end(how);
          reader.cancel().catch(noop);
          controller.error(new Error(how === "stalled" ? "the provider stalled" : "the provider's stream broke"));
        }
      },
      cancel() {
        // The client went away: stop the provider at once rather than pay for output nobody reads.
        end("client_gone");
        reader.cancel().catch(noop);
      },
    },
    { highWaterMark: 0 },
  );
  return { body, ended };
}
