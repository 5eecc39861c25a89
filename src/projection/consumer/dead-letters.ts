/**
 * Projection messages the consumer gave up on, kept in `projection_dead_letters` (shard 0)
 * until an operator replays them: `GET /v1/admin/projection/dead-letters` lists them,
 * `POST /v1/admin/projection/dead-letters/replay` applies them again, oldest position first,
 * and removes those that are now applied (or were duplicates, or superseded by a rebuild).
 * A message that still finds a gap (its predecessor was lost too) stays; reprojecting the
 * account (`POST /v1/admin/accounts/{id}/reproject`) supersedes all of its dead letters.
 */
import { clock } from "../../clock";
import type { Env } from "../../env";
import { controlDb, shardsOf } from "../../read-side/shards";
import { ApplyError, applyMessages, isProjectionMessage, type Outcome, projectionBody } from "./apply";

/** Dead letters one replay applies (one consumer batch's worth). */
export const DEAD_LETTERS_REPLAY_MAX = 100;
/** Of which at most this many per account, so that one stuck account never blocks the others. */
export const DEAD_LETTERS_REPLAY_PER_ACCOUNT_MAX = 20;
/** Bytes of dead-letter rows bound to one statement (D1 binds a value of up to about 2 MB). */
export const DEAD_LETTERS_PARAM_BYTES_MAX = 500_000;

export interface DeadLetter {
  id: string;
  account_id: string;
  from_seq: number;
  to_seq: number;
  generation: number;
  attempts: number;
  received_at: string;
}

export async function storeDeadLetters(
  env: Env,
  messages: readonly { id: string; body: unknown; attempts: number }[],
): Promise<void> {
  const at = new Date(clock.now()).toISOString();
  const rows = messages.map((m) => {
    const parsed = projectionBody(m.body);
    const body = isProjectionMessage(parsed) ? parsed : null;
    return [
      m.id,
      body?.account_id ?? "",
      body?.from_seq ?? 0,
      body?.to_seq ?? 0,
      body?.generation ?? 0,
      m.attempts,
      at,
      // Stored as JSON text either way: the text a body came as, or an object written out.
      typeof m.body === "string" ? m.body : JSON.stringify(m.body),
    ];
  });
  // Bodies may be 120 KB each: several statements, each binding at most DEAD_LETTERS_PARAM_BYTES_MAX.
  const statements: D1PreparedStatement[] = [];
  let chunk: unknown[][] = [];
  let bytes = 0;
  const flush = () => {
    if (chunk.length === 0) return;
    statements.push(
      controlDb(env)
        .prepare(
          `INSERT OR IGNORE INTO projection_dead_letters (id, account_id, from_seq, to_seq, generation, attempts, received_at, body)
         SELECT value ->> '$[0]', value ->> '$[1]', value ->> '$[2]', value ->> '$[3]', value ->> '$[4]', value ->> '$[5]',
                value ->> '$[6]', value ->> '$[7]'
         FROM json_each(?1)`,
        )
        .bind(JSON.stringify(chunk)),
    );
    chunk = [];
    bytes = 0;
  };
  for (const row of rows) {
    const size = JSON.stringify(row).length;
    if (chunk.length > 0 && bytes + size > DEAD_LETTERS_PARAM_BYTES_MAX) flush();
    chunk.push(row);
    bytes += size;
  }
  flush();
  if (statements.length > 0) await controlDb(env).batch(statements);
}

/** A page of dead letters, by account and position; `after` is the previous page's last id. */
export async function listDeadLetters(
  env: Env,
  limit: number,
  after?: string,
): Promise<{ data: DeadLetter[]; next_cursor: string | null; total: number }> {
  const [page, count] = await controlDb(env).batch([
    controlDb(env)
      .prepare(
        `SELECT id, account_id, from_seq, to_seq, generation, attempts, received_at FROM projection_dead_letters
       WHERE id > ?1 ORDER BY id LIMIT ?2`,
      )
      .bind(after ?? "", limit + 1),
    controlDb(env).prepare("SELECT COUNT(*) AS total FROM projection_dead_letters"),
  ]);
  const rows = (page?.results ?? []) as DeadLetter[];
  const more = rows.length > limit;
  const data = more ? rows.slice(0, limit) : rows;
  return {
    data,
    next_cursor: more ? (data.at(-1)?.id ?? null) : null,
    total: ((count?.results?.[0] as { total: number } | undefined)?.total ?? 0) as number,
  };
}

export interface ReplayResult {
  replayed: number;
  outcomes: Record<Outcome, number>;
  /** Dead letters left (gaps, or a shard that failed). */
  remaining: number;
}

/** Applies dead letters again (all, or the ids given), oldest position first. */
export async function replayDeadLetters(env: Env, ids?: readonly string[]): Promise<ReplayResult> {
  const select =
    ids === undefined
      ? controlDb(env)
          .prepare(
            `SELECT id, body FROM (
             SELECT id, body, account_id, generation, from_seq,
                    ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY generation, from_seq) AS n
             FROM projection_dead_letters)
           WHERE n <= ?2 ORDER BY account_id, generation, from_seq LIMIT ?1`,
          )
          .bind(DEAD_LETTERS_REPLAY_MAX, DEAD_LETTERS_REPLAY_PER_ACCOUNT_MAX)
      : controlDb(env)
          .prepare(
            `SELECT id, body FROM projection_dead_letters WHERE id IN (SELECT value FROM json_each(?1))
           ORDER BY account_id, generation, from_seq LIMIT ?2`,
          )
          .bind(JSON.stringify(ids), DEAD_LETTERS_REPLAY_MAX);
  const rows = (await select.all<{ id: string; body: string }>()).results;
  let outcomes: Outcome[];
  try {
    outcomes = await applyMessages(
      shardsOf(env),
      rows.map((r) => r.body),
    );
  } catch (error) {
    if (!(error instanceof ApplyError)) throw error;
    outcomes = error.outcomes;
  }
  const done = rows
    .filter((_, i) => outcomes[i] !== "gap" && outcomes[i] !== "failed" && outcomes[i] !== "invalid")
    .map((r) => r.id);
  if (done.length > 0) {
    await controlDb(env)
      .prepare("DELETE FROM projection_dead_letters WHERE id IN (SELECT value FROM json_each(?1))")
      .bind(JSON.stringify(done))
      .run();
  }
  const counts: Record<Outcome, number> = { applied: 0, duplicate: 0, superseded: 0, gap: 0, failed: 0, invalid: 0 };
  for (const outcome of outcomes) counts[outcome] += 1;
  const left = await controlDb(env).prepare("SELECT COUNT(*) AS n FROM projection_dead_letters").first<{ n: number }>();
  return { replayed: rows.length, outcomes: counts, remaining: left?.n ?? 0 };
}
