/** Schemas of the read side's operator routes: projection status, reconciliation, dead letters. */
import { z } from "@hono/zod-openapi";
import { DEAD_LETTERS_REPLAY_MAX } from "../../projection/consumer/dead-letters";
import { READ_SHARDS_MAX } from "../../read-side/shards";
import { CURSOR_LENGTH_MAX, Id, PageParams, Time } from "./common";

export const ProjectionStatusSchema = z
  .object({
    last_seq: z.number().int(),
    projected_seq: z.number().int(),
    lag_ms: z.number().int(),
    failures: z.number().int(),
    retry_at: Time.nullable(),
    generation: z.number().int(),
  })
  .openapi("ProjectionStatus");

/** Accounts one reconciliation call checks at most. */
export const RECONCILE_ACCOUNTS_MAX = 100;

export const ReconcileBody = z
  .strictObject({
    account_ids: z.array(Id).min(1).max(RECONCILE_ACCOUNTS_MAX).optional(),
    shard: z
      .number()
      .int()
      .min(0)
      .max(READ_SHARDS_MAX - 1)
      .optional(),
    repair: z.boolean().optional(),
    limit: z.number().int().min(1).max(RECONCILE_ACCOUNTS_MAX).optional(),
    cursor: z.string().min(1).max(CURSOR_LENGTH_MAX).optional(),
  })
  .openapi("ReconcileRequest");

export const ReconcileResult = z
  .object({
    checked: z.number().int(),
    results: z.array(
      z.object({
        account_id: z.string(),
        state: z.enum(["ok", "lagging", "drift", "missing_in_d1", "unknown_account", "misplaced"]),
        detail: z.string(),
        repaired: z.boolean(),
      }),
    ),
    next_cursor: z.string().nullable(),
  })
  .openapi("ReconcileResult");

export const DeadLettersQuery = z.strictObject(PageParams);

export const DeadLetterPage = z
  .object({
    data: z.array(
      z.object({
        id: z.string(),
        account_id: z.string(),
        from_seq: z.number().int(),
        to_seq: z.number().int(),
        generation: z.number().int(),
        attempts: z.number().int(),
        received_at: Time,
      }),
    ),
    next_cursor: z.string().nullable(),
    total: z.number().int(),
  })
  .openapi("DeadLetterPage");

export const ReplayBody = z
  .strictObject({ ids: z.array(z.string().min(1).max(128)).min(1).max(DEAD_LETTERS_REPLAY_MAX).optional() })
  .openapi("DeadLetterReplayRequest");

const Count = z.number().int();
export const ReplayResultSchema = z
  .object({
    replayed: Count,
    outcomes: z.object({
      applied: Count,
      duplicate: Count,
      superseded: Count,
      gap: Count,
      failed: Count,
      invalid: Count,
    }),
    remaining: Count,
  })
  .openapi("DeadLetterReplayResult");
