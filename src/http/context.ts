/** The Hono environment of the ledger's routes. */
import type { Env } from "../env";
import type { LogFields } from "../observability/request-log";
import type { Principal } from "../security/api-keys";

export interface AppEnv {
  Bindings: Env;
  Variables: { requestId: string; principal: Principal | undefined; log: LogFields };
}

export type { LogFields };
