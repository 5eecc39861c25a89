/**
 * The projection queue's consumer and its dead-letter queue (wrangler.toml [[queues.consumers]]).
 *
 * A batch holds messages of many accounts; ./apply.ts writes them to each shard in one D1
 * transaction of a few statements. Per message: applied, duplicate or superseded -> ack; a gap
 * (an earlier message of the account is late) -> retry after 1 s, backing off after three
 * attempts; a failed shard -> retry with exponential backoff; after `max_retries` the queue moves it to the dead-letter queue, whose consumer keeps
 * it in `projection_dead_letters` (shard 0) for an operator to see and replay
 * (GET, POST /v1/admin/projection/dead-letters; src/projection/consumer/dead-letters.ts).
 */
import { clock } from "../../clock";
import type { Env } from "../../env";
import { writeLog } from "../../observability/log";
import { recordD1Failure } from "../../observability/metrics";
import { shardsOf } from "../../read-side/shards";
import { ApplyError, applyMessages, type Outcome } from "./apply";
import { storeDeadLetters } from "./dead-letters";

export const PROJECTION_QUEUE = "openedge-ledger-projection";
export const PROJECTION_DLQ = "openedge-ledger-projection-dlq";
export const PROJECTION_RETRY_DELAY_SECONDS_MIN = 1;
export const PROJECTION_RETRY_DELAY_SECONDS_MAX = 60;

/**
 * The delay before a failed message's next attempt: 1, 2, 4, ... 60 s (its shard's D1 write
 * failed: give D1 time).
 */
export function retryDelaySeconds(attempts: number): number {
  return Math.min(
    PROJECTION_RETRY_DELAY_SECONDS_MIN * 2 ** Math.max(0, attempts - 1),
    PROJECTION_RETRY_DELAY_SECONDS_MAX,
  );
}

/** Attempts a gap is retried after the shortest delay before backing off. */
export const PROJECTION_GAP_QUICK_RETRIES = 3;

/**
 * The delay before a message after a gap is tried again: its predecessor is usually in a batch
 * moments behind, so 1 s for the first attempts (backing off doubles the lag of every message
 * behind it), then backing off as for a failure, so that a predecessor that is really lost sends
 * its successors to the dead letters after about three minutes (max_retries = 10).
 */
export function gapDelaySeconds(attempts: number): number {
  return attempts <= PROJECTION_GAP_QUICK_RETRIES
    ? PROJECTION_RETRY_DELAY_SECONDS_MIN
    : retryDelaySeconds(attempts - PROJECTION_GAP_QUICK_RETRIES + 1);
}

export async function consumeQueue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  if (batch.queue.endsWith("-dlq")) {
    try {
      await storeDeadLetters(env, batch.messages);
      for (const message of batch.messages) message.ack();
    } catch (error) {
      // D1 (shard 0) is down: keep the dead letters in their queue and try again later
      // (wrangler.toml gives this consumer max_retries = 100: over an hour and a half at 60 s).
      writeLog(env, "warn", { msg: "dead_letters_not_stored", error: String(error) });
      recordD1Failure(clock.now(), "write:dead_letters");
      for (const message of batch.messages) message.retry({ delaySeconds: PROJECTION_RETRY_DELAY_SECONDS_MAX });
    }
    return;
  }
  let outcomes: Outcome[];
  try {
    outcomes = await applyMessages(
      shardsOf(env),
      batch.messages.map((m) => m.body),
    );
  } catch (error) {
    if (!(error instanceof ApplyError)) throw error;
    outcomes = error.outcomes;
    writeLog(env, "warn", { msg: "projection_batch_failed", error: String(error.cause) });
    recordD1Failure(clock.now(), "write:projection_queue");
  }
  const invalid = batch.messages.filter((_, i) => outcomes[i] === "invalid");
  // A message no version of this code can read goes straight to the dead letters.
  if (invalid.length > 0) await storeDeadLetters(env, invalid);
  batch.messages.forEach((message, i) => {
    if (outcomes[i] === "gap") message.retry({ delaySeconds: gapDelaySeconds(message.attempts) });
    else if (outcomes[i] === "failed") message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
    else message.ack();
  });
}
