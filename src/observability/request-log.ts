/**
 * The one log line per request (HTTP) or per call (service binding). Its fields are exactly
 * the allowed set (docs/security.md, log policy): handlers fill in what they know, and the line
 * is built from this object only, field by field from the allowlist, so nothing outside it
 * (keys, headers, metadata, reasons, prompts, URLs) can ever reach the log.
 */
import { USAGE_CONTEXT_FIELDS, type UsageContext } from "../domain/commands";
import { type LogEnv, writeLog } from "./log";

export interface LogFields extends UsageContext {
  input_tokens?: number;
  output_tokens?: number;
  cached_tokens?: number;
  final_cost?: number;
  error_code?: string;
  account_id?: string;
  key_prefix?: string;
  route?: string;
}

const LOG_FIELDS: readonly (keyof LogFields)[] = [
  ...USAGE_CONTEXT_FIELDS,
  "input_tokens",
  "output_tokens",
  "cached_tokens",
  "final_cost",
  "error_code",
  "account_id",
  "key_prefix",
  "route",
];

/**
 * Writes the request's line. The caller's own request id (from the command's context) wins
 * over the ledger's; an unmatched request says so.
 */
export function writeRequestLog(
  env: LogEnv | undefined,
  fields: LogFields,
  outcome: { requestId: string; status: number; latencyMs: number },
): void {
  const line: Record<string, string | number> = { msg: "request" };
  for (const name of LOG_FIELDS) {
    const value = fields[name];
    if (value !== undefined) line[name] = value;
  }
  line.request_id = fields.request_id ?? outcome.requestId;
  line.route ??= "unmatched";
  line.status = outcome.status;
  line.latency_ms = outcome.latencyMs;
  writeLog(env, "log", line);
}
