/**
 * Where the ledger's structured log lines go. Every line is built by its caller from an
 * allowlist of fields (docs/security.md, log policy); this module only decides whether and
 * where it is written:
 * - in production, to the console (Workers Logs);
 * - with LOG_REQUESTS="0" (the test suite's default), nowhere, so a test run prints only the
 *   runner's summary; LOG_REQUESTS=1 npm test shows them again;
 * - while a test holds a capture, into that capture (the log-policy tests read what would
 *   have been written, whatever LOG_REQUESTS says).
 */
import { type ConfigVars, configOf } from "../config";

export type LogLevel = "log" | "warn" | "error";
export interface LogLine {
  level: LogLevel;
  text: string;
}
/** The part of the environment this module reads. */
export type LogEnv = ConfigVars;

let capture: LogLine[] | null = null;

/** Writes one JSON line. */
export function writeLog(env: LogEnv | undefined, level: LogLevel, line: Record<string, unknown>): void {
  const text = JSON.stringify(line);
  if (capture !== null) {
    capture.push({ level, text });
    return;
  }
  if (!configOf(env).logRequests) return;
  console[level](text);
}

/** Test seam: collects every line written until `stop` is called. */
export function captureLogs(): { lines: LogLine[]; stop: () => void } {
  const lines: LogLine[] = [];
  capture = lines;
  return {
    lines,
    stop: () => {
      if (capture === lines) capture = null;
    },
  };
}
