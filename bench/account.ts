/**
 * The bench's account object: the ledger's own class with bench-only methods added:
 * - `benchWrite`, the ceiling for a durable write into a Durable Object;
 * - `benchFill` and `benchStorage`, which build a long history (1,000,000 events) through the
 *   real decide/append path in large batches inside the object, instead of through HTTP, and
 *   report what its storage costs (docs/benchmarks.md, "A long history").
 * bench/worker.ts exports it under the class name wrangler.toml binds; bench/routes.ts calls it.
 */
import { AccountDurableObject as LedgerAccountDurableObject } from "../durable-objects/account";
import { clock } from "../src/clock";
import type { Command } from "../src/domain/commands";
import { BATCH_OPERATIONS_MAX } from "../src/domain/limits";
import { applyStats } from "../src/projection/consumer/apply";
import { queueDelivery } from "../src/projection/producer/delivery";

export type BenchMix = "gateway" | "credits";

/** Events appended per fill before sealing what is due (the tail stays near this size). */
const FILL_SEAL_EVERY_EVENTS = 20_000;

/** The first command of a history: a backstop lot that burns last (priority 100), never running out. */
const SEED: Command = {
  type: "CreditFunds",
  credit_id: "c0",
  amount: 1_000_000_000_000,
  grant: { kind: "paid", priority: 100, expires_at: null },
  reason: null,
  metadata: {},
};

/**
 * The n-th command of a history, one event each, after the seed (n = 0): "gateway" cycles credit,
 * reserve, capture, charge; "credits" alternates a credit and a charge of the same amount (the
 * smallest keys per event, for comparison). Each top-up is spent within its cycle, as an account
 * tops up about what it spends: a history of a million unspent top-ups would hold a million lots
 * with credit in them, past LOTS_ACTIVE_MAX (src/domain/lots.ts).
 */
function benchCommand(n: number, mix: BenchMix): Command {
  if (n === 0) return SEED;
  if (mix === "credits") {
    if (n % 2 === 1) return { type: "CreditFunds", credit_id: `c${n}`, amount: 10, reason: null, metadata: {} };
    return { type: "ChargeAccount", charge_id: `ch${n}`, amount: 10, context: {}, metadata: {} };
  }
  switch (n % 4) {
    case 0:
      return { type: "CreditFunds", credit_id: `c${n}`, amount: 70, reason: null, metadata: {} };
    case 1: {
      const hold = { reservation_id: `r${n}`, amount: 100, ttl_seconds: 900, on_expiry: "release" } as const;
      return { type: "ReserveFunds", ...hold, context: {}, metadata: {} };
    }
    case 2:
      return {
        type: "CaptureReservation",
        reservation_id: `r${n - 1}`,
        amount: 60,
        allow_overage: false,
        usage: {},
        metadata: {},
      };
    default:
      return { type: "ChargeAccount", charge_id: `ch${n}`, amount: 10, context: {}, metadata: {} };
  }
}

/**
 * Account objects constructed in this isolate since it started: each one after the first for an
 * account is a reconstruction after the runtime evicted an idle object (GET /v1/bench/constructions).
 */
export const constructions = { count: 0 };

export class AccountDurableObject extends LedgerAccountDurableObject {
  private benchTable = false;

  constructor(ctx: DurableObjectState, env: ConstructorParameters<typeof LedgerAccountDurableObject>[1]) {
    super(ctx, env);
    constructions.count += 1;
    // BENCH_PROJECTION_SINK (bench/run.mjs): the object's side of the projection alone. Messages
    // are built and written out as for the queue, whose send resolves at once (on the platform
    // the queue's work is I/O done elsewhere); the cursor moves as when a queue accepts them.
    if ((env as { BENCH_PROJECTION_SINK?: string }).BENCH_PROJECTION_SINK === "1") {
      const sink = { send: async () => undefined, sendBatch: async () => undefined } as unknown as Queue<string>;
      this.projector.deliver = queueDelivery(sink, async () => ({ accepted: 0 }));
    }
  }

  /** Does nothing: the benchmark's ceiling for a call into a Durable Object. */
  async ping(): Promise<number> {
    return this.store.account?.last_seq ?? 0;
  }

  /** Cost counters: commits and the SQLite rows they wrote, and this isolate's direct D1 writes. */
  async stats() {
    return {
      commits: this.store.commits,
      rows_written: this.store.rowsWritten,
      projection_rows_written: this.projector.rowsWritten,
      events_projected: this.projector.eventsProjected,
      messages_delivered: this.projector.messagesDelivered,
      // Writes this isolate applied to D1 directly (PROJECTION_DELIVERY = "direct").
      d1_rows_written: applyStats.rowsWritten,
      d1_statements: applyStats.statements,
      d1_events_applied: applyStats.eventsApplied,
    };
  }

  /** One durable SQLite write (an upsert of one row), nothing else: the durable-write ceiling. */
  async benchWrite(): Promise<number> {
    return this.benchWriteSync();
  }

  private benchWriteSync(): number {
    const sql = this.ctx.storage.sql;
    if (!this.benchTable) {
      sql.exec("CREATE TABLE IF NOT EXISTS bench_writes (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)");
      this.benchTable = true;
    }
    const row = sql
      .exec<{ n: number }>(
        "INSERT INTO bench_writes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1 RETURNING n",
      )
      .one();
    return row.n;
  }

  /**
   * The same write inside `transactionSync`, as every ledger command writes (a throw rolls it
   * back): what the transaction itself costs, for bench/instructions.mjs.
   */
  async benchWriteInTransaction(): Promise<number> {
    return this.ctx.storage.transactionSync(() => this.benchWriteSync());
  }

  /**
   * Appends `count` events, commands `from` to `from + count - 1` of a gateway-like history, in
   * atomic batches of BATCH_OPERATIONS_MAX through `executeBatch` (the real path), sealing what
   * is due every FILL_SEAL_EVERY_EVENTS. The read side accepts this account's messages without
   * writing D1: D1's throughput is what the other scenarios measure, not this one.
   */
  async benchFill(
    from: number,
    count: number,
    mix: BenchMix = "gateway",
  ): Promise<{ last_seq: number; sqlite_bytes: number }> {
    this.projector.deliver = async (messages) => ({ accepted: messages.length });
    for (let done = 0; done < count; ) {
      const n = Math.min(BATCH_OPERATIONS_MAX, count - done);
      const commands = Array.from({ length: n }, (_, i) => benchCommand(from + done + i, mix));
      const result = await this.executeBatch(commands, true);
      if (!result.committed) throw new Error(`bench batch at ${from + done} was refused`);
      done += n;
      if (done % FILL_SEAL_EVERY_EVENTS === 0 || done === count) await this.benchSeal();
    }
    return { last_seq: (await this.ping()) as number, sqlite_bytes: this.ctx.storage.sql.databaseSize };
  }

  /**
   * Runs the projection and the sealing until nothing more is due (what the alarm does: a few
   * projection batches and a few segments per run; sealing waits for what is delivered).
   */
  private async benchSeal(): Promise<void> {
    for (let run = 0; run < 10_000; run++) {
      await this.catchUp();
      if (!this.projector.behind() && this.archiver.wakeAtMs(clock.now()) === null) return;
    }
  }

  /** The object's SQLite size, what R2 holds for it, and rows per table. */
  async benchStorage() {
    const sql = this.ctx.storage.sql;
    const count = (table: string) => sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`).one().n;
    const r2 = sql
      .exec<{ bytes: number | null }>("SELECT SUM(json_extract(entry, '$.bytes')) AS bytes FROM segments")
      .one().bytes;
    return {
      sqlite_bytes: sql.databaseSize,
      r2_bytes: r2 ?? 0,
      rows: {
        events: count("events"),
        reservations: count("reservations"),
        charges: count("charges"),
        operations: count("operations"),
        segments: count("segments"),
      },
      table_bytes: tableBytes(sql),
      // What each key-bearing row stores (its key, state and columns; an integer column counted as 8
      // bytes, its most), without SQLite's per-row and page overhead.
      payload_bytes: {
        reservations: sum(
          sql,
          `SELECT SUM(length(reservation_id) + length(status) + length(on_expiry) + COALESCE(length(state), 0) + 40) AS n
             FROM reservations`,
        ),
        charges: sum(sql, "SELECT SUM(length(charge_id) + length(kind) + 24) AS n FROM charges"),
        operations: sum(sql, "SELECT SUM(length(key) + 8) AS n FROM operations"),
        events: sum(sql, "SELECT SUM(length(body) + length(hash) + length(type) + length(at) + 24) AS n FROM events"),
      },
      archive: await this.archiveStatus(),
    };
  }
}

function sum(sql: SqlStorage, query: string): number {
  return sql.exec<{ n: number | null }>(query).one().n ?? 0;
}

/** Bytes per table and index from SQLite's dbstat, where the runtime has it (null otherwise). */
function tableBytes(sql: SqlStorage): Record<string, number> | null {
  try {
    const rows = sql.exec<{ name: string; bytes: number }>(
      "SELECT name, SUM(pgsize) AS bytes FROM dbstat GROUP BY name",
    );
    return Object.fromEntries([...rows].map((r) => [r.name, r.bytes]));
  } catch {
    return null;
  }
}
