/**
 * The bench's account object: the ledger's own class with one method added, `benchWrite`, the
 * ceiling for a durable write into a Durable Object. bench/worker.ts exports it under the class
 * name wrangler.toml binds; bench/routes.ts calls it.
 */
import { AccountDurableObject as LedgerAccountDurableObject } from "../durable-objects/account";

export class AccountDurableObject extends LedgerAccountDurableObject {
  private benchTable = false;

  /** One durable SQLite write (an upsert of one row), nothing else: the durable-write ceiling. */
  async benchWrite(): Promise<number> {
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
}
