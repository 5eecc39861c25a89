/**
 * Webhook endpoints and delivery records in D1 (control database, shard 0; migration 0007).
 * The endpoint's URL and secret are encrypted (enc:v1) with the endpoint's id as context, so a
 * value copied onto another row does not decrypt. Nothing here logs.
 */

import { newUlid } from "../ids";
import { type ConfigKeys, decryptSecret, encryptSecret, SecretDecryptionError } from "../security/secrets";
import type { DeliveryState } from "./backoff";
import type { WebhookEvent, WebhookEventType } from "./events";

/** Endpoints in all; creating one more is refused (422 webhook_endpoints_limit). */
export const WEBHOOK_ENDPOINTS_MAX = 100;
/** Delivered records are kept this long, then pruned by the cron. */
export const WEBHOOK_DELIVERIES_RETENTION_DAYS = 30;
/**
 * Failed records are kept, whatever their age, until an admin redelivers them (they become
 * delivered, then age out) or their count passes this bound; past it the oldest are pruned,
 * and each one pruned is logged and counted by the cron (never silently).
 */
export const WEBHOOK_FAILED_KEPT_MAX = 10_000;
/** Records pruned per cron run (bounded work; the rest next minute). */
export const WEBHOOK_DELIVERIES_PRUNE_MAX = 1_000;

export interface EndpointRecord {
  id: string;
  /** null when it does not decrypt under the configured keys (`undecryptable`). */
  url: string | null;
  undecryptable?: true;
  events: WebhookEventType[];
  account_id: string | null;
  created_at: string;
}

interface EndpointRow {
  id: string;
  url: string;
  secret: string;
  events: string;
  account_id: string | null;
  created_at: string;
}

export interface DeliveryRecord {
  id: string;
  endpoint_id: string;
  event_id: string;
  event_type: WebhookEventType;
  account_id: string | null;
  state: DeliveryState;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  next_attempt_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface DeliveryRow extends Omit<DeliveryRecord, "next_attempt_at"> {
  body: string;
  next_attempt_at_ms: number | null;
}

const urlContext = (id: string) => `webhook_endpoints/${id}/url`;
const secretContext = (id: string) => `webhook_endpoints/${id}/secret`;

export async function createEndpoint(
  db: D1Database,
  keys: ConfigKeys,
  input: { url: string; secret: string; events: WebhookEventType[]; account_id: string | null },
  now: Date,
): Promise<EndpointRecord | "limit"> {
  const id = `we_${newUlid(now.getTime())}`;
  const url = await encryptSecret(keys, input.url, urlContext(id));
  const secret = await encryptSecret(keys, input.secret, secretContext(id));
  // The count and the insert in one statement: two concurrent creations cannot both pass the limit.
  const inserted = await db
    .prepare(
      `INSERT INTO webhook_endpoints (id, url, secret, events, account_id, created_at)
       SELECT ?, ?, ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM webhook_endpoints) < ?`,
    )
    .bind(id, url, secret, JSON.stringify(input.events), input.account_id, now.toISOString(), WEBHOOK_ENDPOINTS_MAX)
    .run();
  if (inserted.meta.changes === 0) return "limit";
  return { id, url: input.url, events: input.events, account_id: input.account_id, created_at: now.toISOString() };
}

function recordOf(row: EndpointRow, url: string | null): EndpointRecord {
  return {
    id: row.id,
    url,
    events: JSON.parse(row.events) as WebhookEventType[],
    account_id: row.account_id,
    created_at: row.created_at,
  };
}

/** Every endpoint (at most WEBHOOK_ENDPOINTS_MAX), URLs decrypted for the admin; never secrets. */
export async function listEndpoints(db: D1Database, keys: ConfigKeys): Promise<EndpointRecord[]> {
  const rows = await db.prepare("SELECT * FROM webhook_endpoints ORDER BY id").all<EndpointRow>();
  return Promise.all(
    rows.results.map(async (row) => {
      try {
        return recordOf(row, await decryptSecret(keys, row.url, urlContext(row.id)));
      } catch (error) {
        // One endpoint whose URL no configured key opens must not take the whole list down.
        if (!(error instanceof SecretDecryptionError)) throw error;
        return { ...recordOf(row, null), undecryptable: true as const };
      }
    }),
  );
}

export async function deleteEndpoint(db: D1Database, id: string): Promise<boolean> {
  const deleted = await db.prepare("DELETE FROM webhook_endpoints WHERE id = ?").bind(id).run();
  return deleted.meta.changes > 0;
}

/** What sending needs: the endpoint's URL and secret, decrypted; null once the endpoint is deleted. */
export async function endpointTarget(
  db: D1Database,
  keys: ConfigKeys,
  id: string,
): Promise<{ url: string; secret: string } | null> {
  const row = await db.prepare("SELECT * FROM webhook_endpoints WHERE id = ?").bind(id).first<EndpointRow>();
  if (row === null) return null;
  return {
    url: await decryptSecret(keys, row.url, urlContext(id)),
    secret: await decryptSecret(keys, row.secret, secretContext(id)),
  };
}

/**
 * Creates the delivery records of `events`: one per endpoint that subscribes to the event's type
 * and either watches every account or the event's own (alerts go only to endpoints that watch
 * every account). Idempotent: (endpoint, event) is unique, so a hand-off repeated after a crash
 * creates nothing twice. One D1 transaction.
 */
export async function enqueueDeliveries(
  db: D1Database,
  events: readonly WebhookEvent[],
  nowMs: number,
): Promise<number> {
  if (events.length === 0) return 0;
  const endpoints = await db
    .prepare("SELECT id, events, account_id FROM webhook_endpoints")
    .all<Pick<EndpointRow, "id" | "events" | "account_id">>();
  const now = new Date(nowMs).toISOString();
  const statements: D1PreparedStatement[] = [];
  for (const event of events) {
    for (const endpoint of endpoints.results) {
      const types = JSON.parse(endpoint.events) as string[];
      if (!types.includes(event.type)) continue;
      if (endpoint.account_id !== null && endpoint.account_id !== event.account_id) continue;
      statements.push(
        db
          .prepare(
            `INSERT OR IGNORE INTO webhook_deliveries (id, endpoint_id, event_id, event_type, account_id, body, state,
               attempts, last_status, last_error, next_attempt_at_ms, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, NULL, NULL, ?, ?, ?)`,
          )
          .bind(
            `whd_${newUlid(nowMs)}`,
            endpoint.id,
            event.id,
            event.type,
            event.account_id,
            JSON.stringify(event),
            nowMs,
            now,
            now,
          ),
      );
    }
  }
  if (statements.length > 0) await db.batch(statements);
  return statements.length;
}

/** Due pending deliveries of one owner (an account id, or null for alerts), oldest due first. */
export async function dueDeliveries(
  db: D1Database,
  owner: string | null,
  nowMs: number,
  limit: number,
): Promise<DeliveryRow[]> {
  const where = owner === null ? "account_id IS NULL" : "account_id = ?";
  const binds = owner === null ? [nowMs, limit] : [owner, nowMs, limit];
  const rows = await db
    .prepare(
      `SELECT * FROM webhook_deliveries WHERE ${where} AND state = 'pending' AND next_attempt_at_ms <= ?
       ORDER BY next_attempt_at_ms LIMIT ?`,
    )
    .bind(...binds)
    .all<DeliveryRow>();
  return rows.results;
}

/** The earliest next attempt of an owner's pending deliveries, or null. */
export async function nextDueMs(db: D1Database, owner: string | null): Promise<number | null> {
  const where = owner === null ? "account_id IS NULL" : "account_id = ?";
  const row = await db
    .prepare(`SELECT MIN(next_attempt_at_ms) AS next FROM webhook_deliveries WHERE ${where} AND state = 'pending'`)
    .bind(...(owner === null ? [] : [owner]))
    .first<{ next: number | null }>();
  return row?.next ?? null;
}

export async function recordAttempt(
  db: D1Database,
  id: string,
  result: {
    state: DeliveryState;
    attempts: number;
    last_status: number | null;
    last_error: string | null;
    next_attempt_at_ms: number | null;
  },
  nowMs: number,
): Promise<void> {
  await db
    .prepare(
      `UPDATE webhook_deliveries SET state = ?, attempts = ?, last_status = ?, last_error = ?, next_attempt_at_ms = ?,
         updated_at = ? WHERE id = ?`,
    )
    .bind(
      result.state,
      result.attempts,
      result.last_status,
      result.last_error,
      result.next_attempt_at_ms,
      new Date(nowMs).toISOString(),
      id,
    )
    .run();
}

export function deliveryRecord(row: DeliveryRow): DeliveryRecord {
  const { body: _body, next_attempt_at_ms, ...rest } = row;
  return {
    ...rest,
    next_attempt_at: next_attempt_at_ms === null ? null : new Date(next_attempt_at_ms).toISOString(),
  };
}

export async function getDelivery(db: D1Database, id: string): Promise<DeliveryRow | null> {
  return db.prepare("SELECT * FROM webhook_deliveries WHERE id = ?").bind(id).first<DeliveryRow>();
}

/** A page of delivery records, newest first (keyset on id, which sorts by creation). */
export async function listDeliveries(
  db: D1Database,
  filter: { endpoint_id?: string; state?: DeliveryState; before?: string },
  limit: number,
): Promise<DeliveryRow[]> {
  const where: string[] = [];
  const binds: (string | number)[] = [];
  if (filter.endpoint_id !== undefined) where.push("endpoint_id = ?") && binds.push(filter.endpoint_id);
  if (filter.state !== undefined) where.push("state = ?") && binds.push(filter.state);
  if (filter.before !== undefined) where.push("id < ?") && binds.push(filter.before);
  const clause = where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`;
  const rows = await db
    .prepare(`SELECT * FROM webhook_deliveries ${clause} ORDER BY id DESC LIMIT ?`)
    .bind(...binds, limit)
    .all<DeliveryRow>();
  return rows.results;
}

/** Makes a delivery pending and due now, with a fresh budget of attempts (admin redelivery). */
export async function resetForRedelivery(db: D1Database, id: string, nowMs: number): Promise<void> {
  await db
    .prepare(
      "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at_ms = ?, updated_at = ? WHERE id = ?",
    )
    .bind(nowMs, new Date(nowMs).toISOString(), id)
    .run();
}

/** A failed record pruned past WEBHOOK_FAILED_KEPT_MAX: what the cron logs of it (no URL, no body). */
export interface PrunedFailure {
  id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
}

/**
 * Prunes delivered records past the retention, and the oldest failed records past
 * `failedKeptMax` (each bounded per run). Answers how many delivered went, and which failed did.
 */
export async function pruneDeliveries(
  db: D1Database,
  nowMs: number,
  failedKeptMax: number = WEBHOOK_FAILED_KEPT_MAX,
): Promise<{ delivered: number; failed: PrunedFailure[] }> {
  const before = new Date(nowMs - WEBHOOK_DELIVERIES_RETENTION_DAYS * 86_400_000).toISOString();
  const delivered = await db
    .prepare(
      `DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries
         WHERE created_at < ? AND state = 'delivered' ORDER BY created_at LIMIT ?)`,
    )
    .bind(before, WEBHOOK_DELIVERIES_PRUNE_MAX)
    .run();
  const count = await db
    .prepare("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE state = 'failed'")
    .first<{ n: number }>();
  const excess = Math.min((count?.n ?? 0) - failedKeptMax, WEBHOOK_DELIVERIES_PRUNE_MAX);
  if (excess <= 0) return { delivered: delivered.meta.changes, failed: [] };
  const failed = await db
    .prepare(
      `DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries
         WHERE state = 'failed' ORDER BY created_at, id LIMIT ?) RETURNING id, endpoint_id, event_id, event_type`,
    )
    .bind(excess)
    .all<PrunedFailure>();
  return { delivered: delivered.meta.changes, failed: failed.results };
}
