/**
 * How an account object delivers its projection messages (./projector.ts `Delivery`):
 * - `queueDelivery`: to the projection queue, whose consumer applies many accounts' messages
 *   in bulk (../consumer/queue.ts). Each message goes as its JSON text (content type "text"): the
 *   object writes that text once, to size it, and the queue carries it as it is, where a "json"
 *   body would be written out again by the runtime (and, locally, parsed and re-written by the
 *   queue's emulator). The platform's limits are named below; a message over the per-message
 *   limit is applied directly instead, once the queue has delivered what came before it
 *   (contiguity: ../consumer/apply.ts). A lone message goes by `send`, more by `sendBatch`: one call
 *   either way on the platform, but locally `sendBatch` is a JSON document of base64 bodies that
 *   the queue's emulator parses and validates, where `send` hands it the text as it is. Across
 *   many accounts almost every flush is one message (docs/benchmarks.md, sixth pass).
 * - `directDelivery`: straight to the read side through the consumer's code, for an object
 *   without a queue binding (PROJECTION_DELIVERY = "direct", the test suite's default).
 */

import type { Shard } from "../../read-side/shards";
import { applyMessages } from "../consumer/apply";
import type { Delivery } from "./projector";

/** Largest message body sent to the queue (the platform's limit is 128 KB). */
export const QUEUE_MESSAGE_BYTES_MAX = 120_000;
/** Largest `sendBatch` (the platform's limits are 256 KB and 100 messages). */
export const QUEUE_SEND_BYTES_MAX = 240_000;
export const QUEUE_SEND_MESSAGES_MAX = 100;

const encoder = new TextEncoder();

/** Applies messages itself; a gap (the read side lost rows) is reported for a rebuild. */
export function directDelivery(shards: readonly Shard[]): Delivery {
  return async (messages) => {
    const outcomes = await applyMessages(shards, messages);
    let accepted = 0;
    while (accepted < outcomes.length && isFinal(outcomes[accepted])) accepted++;
    return { accepted, gap: outcomes[accepted] === "gap" };
  };
}

function isFinal(outcome: string | undefined): boolean {
  return outcome === "applied" || outcome === "duplicate" || outcome === "superseded";
}

/**
 * `loneSend` (PROJECTION_LONE_SEND, a switch: docs/decisions/0004-lone-message-send.md): a lone
 * message goes by `send`; off, every flush goes by `sendBatch`.
 */
export function queueDelivery(queue: Queue<string>, direct: Delivery, loneSend = true): Delivery {
  return async (messages) => {
    let accepted = 0;
    let batch: string[] = [];
    let bytes = 0;
    const send = async () => {
      if (batch.length === 0) return;
      const [only] = batch;
      if (loneSend && batch.length === 1 && only !== undefined) await queue.send(only, { contentType: "text" });
      else await queue.sendBatch(batch.map((body) => ({ body, contentType: "text" as const })));
      accepted += batch.length;
      batch = [];
      bytes = 0;
    };
    try {
      for (const message of messages) {
        const text = JSON.stringify(message);
        const size = encoder.encode(text).length;
        if (size > QUEUE_MESSAGE_BYTES_MAX) {
          await send();
          // Too large for the queue: applied here, after the queue applied the ones before it
          // (until then it is a gap, and the object retries it with backoff).
          const result = await direct([message]);
          if (result.accepted === 0) return { accepted };
          accepted += 1;
          continue;
        }
        if (batch.length === QUEUE_SEND_MESSAGES_MAX || bytes + size > QUEUE_SEND_BYTES_MAX) await send();
        batch.push(text);
        bytes += size;
      }
      await send();
    } catch (error) {
      if (accepted === 0) throw error;
    }
    return { accepted };
  };
}
