/**
 * The browser tests' account object: the ledger's own class with one method added, `runAlarm`,
 * which runs the object's alarm handler now, as `runDurableObjectAlarm` does in the workerd
 * tests. The browser tests' Worker (test/browser/worker.ts) exports it under the class name
 * wrangler.toml binds, so the ledger's routes reach the same objects, unchanged.
 */
import { AccountDurableObject as LedgerAccountDurableObject } from "../../durable-objects/account";

export class AccountDurableObject extends LedgerAccountDurableObject {
  /** Runs the alarm handler (settle what is due at the clock's now, project, re-arm). */
  async runAlarm(): Promise<void> {
    await this.alarm();
  }
}
