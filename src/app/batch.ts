/**
 * A batch for one account: every item is built by its operation's contract (prices resolved
 * once per distinct price), then decided and committed by the account object in one
 * transaction. An item that cannot be built (no price in effect) is rejected in place; with
 * `atomic` that rejects the whole batch before the object is asked.
 */
import type { z } from "@hono/zod-openapi";
import type { BatchResult } from "../contract";
import type { Command } from "../domain/commands";
import type { Env } from "../env";
import { PriceCache } from "../pricing/cache";
import { controlDb } from "../read-side/shards";
import { accountClient } from "./account-client";
import { buildCommand, type CallerKey, OPERATIONS, statusOf } from "./operations";
import { type Outcome, outcomeOf, rejectedOutcome } from "./outcome";
import type { BatchBody } from "./schemas/batch";

const ABORTED = rejectedOutcome("batch_aborted", "Not applied: the atomic batch was rolled back.");

export async function runBatch(
  env: Env,
  accountId: string,
  body: z.infer<typeof BatchBody>,
  caller?: CallerKey,
): Promise<{ committed: boolean; results: Outcome[] }> {
  const prices = new PriceCache(controlDb(env));
  await prices.prefetch(body.operations.flatMap((item) => (item.op === "reserve" && item.price ? [item.price] : [])));
  const built: (Command | Outcome)[] = [];
  for (const { op, ...input } of body.operations) {
    // Settlements name their reservation in the item, where the single call has it in its path.
    const reservation = OPERATIONS[op].reservation && "reservation_id" in input ? input.reservation_id : undefined;
    const target = {
      account_id: accountId,
      ...(reservation === undefined ? {} : { reservation_id: reservation }),
      ...(caller === undefined ? {} : { caller }),
    };
    built.push(await buildCommand(op, input, target, prices));
  }
  const atomic = body.atomic ?? false;
  const commands = built.filter((b): b is Command => "type" in b);
  if (atomic && commands.length < built.length) {
    return { committed: false, results: built.map((b) => ("type" in b ? ABORTED : b)) };
  }
  const outcome: BatchResult =
    commands.length === 0
      ? { committed: true, results: [] }
      : await accountClient(env, accountId).executeBatch(commands, atomic);
  let next = 0;
  const results = built.map((b, i): Outcome => {
    if (!("type" in b)) return b;
    const r = outcome.results[next++];
    if (r === undefined || (!outcome.committed && r.ok)) return ABORTED;
    return outcomeOf(r, statusOf(body.operations[i]?.op ?? "credit"));
  });
  return { committed: outcome.committed, results };
}
