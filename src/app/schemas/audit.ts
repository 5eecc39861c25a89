/** The contracts of the audit routes: the event log, point-in-time balances, checkpoints, verification. */
import { z } from "@hono/zod-openapi";
import { EVENTS_PAGE_LIMIT_DEFAULT, EVENTS_PAGE_LIMIT_MAX } from "../../domain/limits";
import { Minor, Rfc3339, Time } from "./common";

export const EventsQuery = z.strictObject({
  after_seq: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
  limit: z.coerce.number().int().min(1).max(EVENTS_PAGE_LIMIT_MAX).default(EVENTS_PAGE_LIMIT_DEFAULT),
});

export const Event = z
  .object({
    seq: z.number().int(),
    event_id: z.string(),
    type: z.string(),
    at: Time,
    balance_after: Minor,
    reserved_after: Minor,
    hash: z.string(),
  })
  .catchall(z.unknown())
  .openapi("Event", {
    description: "One ledger event; the fields after `type` depend on it (see docs/architecture.md, Events).",
  });

export const EventsPage = z
  .object({ events: z.array(Event), next_after_seq: z.number().int().nullable() })
  .openapi("EventsPage");

export const BalanceAsOfQuery = z
  .strictObject({
    at: Rfc3339.optional(),
    seq: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  })
  .refine((q) => (q.at === undefined) !== (q.seq === undefined), "give exactly one of at or seq");

export const BalanceAsOf = z
  .object({
    account_id: z.string(),
    seq: z
      .number()
      .int()
      .openapi({ description: "The last event at or before the point; 0 before the account existed." }),
    at: Time.nullable(),
    balance: Minor,
    reserved: Minor,
    available: Minor,
  })
  .openapi("BalanceAsOf");

/** Which checkpoint-signing key: a signature names the key that made it, as the published key does. */
const SigningKeyName = { algorithm: z.literal("Ed25519"), key_id: z.string() };

export const SignedCheckpointSchema = z
  .object({
    checkpoint: z.object({
      account_id: z.string(),
      seq: z.number().int(),
      head_hash: z.string(),
      balance: Minor,
      reserved: Minor,
      at: Time,
    }),
    ...SigningKeyName,
    signature: z.string().openapi({ description: "base64url Ed25519 signature of the checkpoint's canonical JSON." }),
  })
  .openapi("SignedCheckpoint");

export const PublicKeySchema = z
  .object({
    ...SigningKeyName,
    public_key: z.string().openapi({ description: "32 raw bytes, base64url." }),
  })
  .openapi("AuditPublicKey");

export const VerifyReportSchema = z
  .object({
    ok: z.boolean(),
    events: z.number().int(),
    head_seq: z.number().int(),
    head_hash: z.string().nullable(),
    balance: Minor,
    reserved: Minor,
    first_bad_seq: z.number().int().nullable(),
    problems: z.array(z.string()),
  })
  .openapi("VerifyReport");
