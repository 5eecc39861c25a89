/** The Hono environment of the ledger's routes. */
import type { Env } from "../env";
import type { Principal } from "../security/api-keys";

/**
 * The request log's fields: exactly the allowed set (README "Security"). Handlers fill in what
 * they know; the request-log middleware writes one line per request from this object only, so
 * nothing outside it (keys, headers, metadata, prompts) can ever reach the log.
 */
export interface LogFields {
  request_id?: string;
  user_id?: string;
  service_id?: string;
  alias?: string;
  provider?: string;
  model?: string;
  input_tokens?: number;
  output_tokens?: number;
  cached_tokens?: number;
  final_cost?: number;
  error_code?: string;
  account_id?: string;
  key_prefix?: string;
  route?: string;
}

export interface AppEnv {
  Bindings: Env;
  Variables: { requestId: string; principal: Principal | undefined; log: LogFields };
}
