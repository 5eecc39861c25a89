/**
 * The ledger's configuration: every variable of the environment that tunes it (wrangler.toml
 * [vars]; secrets and bindings are not configuration) parsed in one place, once per environment
 * object, each with its unit in its name and its default here. Nothing else reads `env.X`
 * for a tunable: it asks `configOf(env)`.
 *
 * A value that is not of its form falls back to its default (or, for an amount that can be
 * turned off, to off), except the read side's retention, where a wrong window would delete
 * data: that one throws `ConfigError` when it is first read. A parsed configuration is frozen:
 * every object of an isolate shares it.
 * The speed mechanisms are named switches, each with a decision record in docs/decisions/.
 */

import { SEGMENT_AGE_MS_MAX, SEGMENT_BYTES_MAX, SEGMENT_EVENTS_MAX } from "./domain/limits";
import { ConfigError } from "./errors";

/** The console's origin when CONSOLE_ORIGIN is not set: the only origin a browser may read from. */
export const CONSOLE_ORIGIN_DEFAULT = "https://console.open4x.com";
/** Coalescing window of the projection when PROJECTION_COALESCE_MS is not set. */
export const PROJECTION_COALESCE_MS_DEFAULT = 50;
/**
 * How long in all a flush may wait for a lone open hold's settlement (PROJECTION_HOLD_WAIT_MS;
 * "0" turns the wait off): docs/decisions/0002-projection-hold-wait.md.
 */
export const PROJECTION_HOLD_WAIT_MS_DEFAULT = 250;
/** Events deleted from the events table per transaction once their segment is archived. */
export const ARCHIVE_DELETE_CHUNK_ROWS_DEFAULT = 1_000;
/** Hours before a lot's expiry that `lot.expiring` is sent, when LOT_EXPIRING_LEAD_HOURS is not set (7 days). */
export const LOT_EXPIRING_LEAD_HOURS_DEFAULT = 168;
/** The longest lead allowed (29 days): inside the delivery records' 30 days, which keep an event id once. */
export const LOT_EXPIRING_LEAD_HOURS_MAX = 696;
/** Verification by full fold up to this many events, streaming beyond. */
export const VERIFY_FULL_FOLD_EVENTS_MAX_DEFAULT = 100_000;
/** Raw events older than this many days are pruned from D1 (RAW_EVENTS_WINDOW_DAYS). */
export const RAW_EVENTS_WINDOW_DAYS_DEFAULT = 35;
/** Estimated bytes of raw events a database keeps at most (RAW_EVENTS_WINDOW_BYTES_MAX): 20% of a 10 GB shard. */
export const RAW_EVENTS_WINDOW_BYTES_MAX_DEFAULT = 2_000_000_000;
/**
 * Hourly rollups older than this many days are pruned (ROLLUPS_HOURLY_RETENTION_DAYS): a week of
 * hour-by-hour reports; older periods are read by whole days.
 */
export const ROLLUPS_HOURLY_RETENTION_DAYS_DEFAULT = 7;

/**
 * The alert rules' thresholds (src/observability/alerts.ts), each overridable by a var of its
 * name: rates in basis points, windows' counts, lag in milliseconds.
 */
export const ALERT_THRESHOLDS_DEFAULT = {
  ALERT_WORKER_5XX_RATE_BP: 100,
  ALERT_WORKER_5XX_REQUESTS_MIN: 100,
  ALERT_PROVIDER_FAILURE_RATE_BP: 500,
  ALERT_PROVIDER_CALLS_MIN: 20,
  ALERT_PENDING_REFUNDS_MAX: 10,
  ALERT_D1_WRITE_FAILURES_MIN: 2,
  ALERT_AUTH_FAILURES_MAX: 100,
  ALERT_PROJECTION_LAG_P99_MS_MAX: 60_000,
  ALERT_DEAD_LETTERS_MAX: 0,
  ALERT_ALARMS_EXHAUSTED_MAX: 0,
} as const;
export type AlertThresholds = { -readonly [K in keyof typeof ALERT_THRESHOLDS_DEFAULT]: number };

/** The variables read here, as wrangler passes them: strings, each optional. */
export interface ConfigVars {
  /** The console's origin, the only one allowed to read from a browser (CORS). */
  CONSOLE_ORIGIN?: string;
  /** "0" silences the log lines (the test suite's default; docs/operations.md, "Test knobs"). */
  LOG_REQUESTS?: string;
  /** "direct": account objects write their projection to D1 themselves instead of the queue. */
  PROJECTION_DELIVERY?: string;
  /** Milliseconds a projection flush waits to gather a busy account's events (0: flush at once). */
  PROJECTION_COALESCE_MS?: string;
  /** Switch: milliseconds in all a flush may wait for a lone open hold's settlement (0: off). */
  PROJECTION_HOLD_WAIT_MS?: string;
  /** Switch: "on" lets the projection's cursor wait for the next command's commit instead of its own write. */
  PROJECTION_CURSOR_WITH_COMMAND?: string;
  /** Switch: "off" sends a lone projection message by sendBatch too. */
  PROJECTION_LONE_SEND?: string;
  /** Switch: "off" sends every keyed command alone instead of in its account's group. */
  GROUP_COMMIT?: string;
  /** Switch: "node" hashes the chain with node:crypto instead of the JavaScript SHA-256. */
  CHAIN_SHA256?: string;
  /** Overrides of the segment limits (src/domain/limits.ts), as decimal strings. */
  SEGMENT_EVENTS_MAX?: string;
  SEGMENT_AGE_MS_MAX?: string;
  SEGMENT_BYTES_MAX?: string;
  ARCHIVE_DELETE_CHUNK_ROWS?: string;
  /** Verification by full fold up to this many events, streaming beyond (default 100,000). */
  VERIFY_FULL_FOLD_EVENTS_MAX?: string;
  /** Hours before a lot's expiry that `lot.expiring` is sent (issue 27). */
  LOT_EXPIRING_LEAD_HOURS?: string;
  /** Raw events D1 keeps, in days and in estimated bytes; hourly rollups kept, in days. */
  RAW_EVENTS_WINDOW_DAYS?: string;
  RAW_EVENTS_WINDOW_BYTES_MAX?: string;
  ROLLUPS_HOURLY_RETENTION_DAYS?: string;
  /** Alert thresholds, each overriding its default (src/observability/alerts.ts), e.g. ALERT_AUTH_FAILURES_MAX. */
  [alertThreshold: `ALERT_${string}`]: string | undefined;
}

export interface ArchiveLimits {
  eventsMax: number;
  ageMsMax: number;
  bytesMax: number;
  deleteChunkRows: number;
}

export interface RetentionConfig {
  rawEventsWindowDays: number;
  rawEventsWindowBytesMax: number;
  hourlyRetentionDays: number;
}

export interface ProjectionConfig {
  /** PROJECTION_DELIVERY = "direct": straight to D1 even where the object has a queue binding. */
  direct: boolean;
  coalesceMs: number;
  holdWaitMs: number;
  cursorWithCommand: boolean;
  loneSend: boolean;
}

export interface Config {
  /** How long before a lot expires its `lot.expiring` webhook is sent. */
  lotExpiringLeadMs: number;
  consoleOrigin: string;
  logRequests: boolean;
  groupCommit: boolean;
  chainSha256: "js" | "node";
  projection: ProjectionConfig;
  archive: ArchiveLimits;
  verifyFullFoldEventsMax: number;
  alerts: AlertThresholds;
  /**
   * Throws ConfigError when a retention variable is malformed: the cron's prune and the reports
   * over the rollups (which then answer 503 service_misconfigured) read it.
   */
  readonly retention: RetentionConfig;
}

const parsed = new WeakMap<object, Config>();

/** The configuration of an environment, parsed on first use and kept with it. */
export function configOf(env: ConfigVars | undefined): Config {
  if (env === undefined) return parseConfig({});
  let config = parsed.get(env);
  if (config === undefined) {
    config = deepFreeze(parseConfig(env));
    parsed.set(env, config);
  }
  return config;
}

function deepFreeze<T extends object>(value: T): T {
  for (const key of Object.keys(value) as (keyof T)[]) {
    const descriptor = Object.getOwnPropertyDescriptor(value, key);
    // The retention getter parses on first read; it is not a value to freeze.
    if (descriptor?.get === undefined && typeof value[key] === "object" && value[key] !== null) {
      deepFreeze(value[key] as object);
    }
  }
  return Object.freeze(value);
}

function parseConfig(vars: ConfigVars): Config {
  let retention: RetentionConfig | null = null;
  return {
    lotExpiringLeadMs:
      Math.min(
        wholeAtLeast(vars.LOT_EXPIRING_LEAD_HOURS, 1, LOT_EXPIRING_LEAD_HOURS_DEFAULT),
        LOT_EXPIRING_LEAD_HOURS_MAX,
      ) * 3_600_000,
    consoleOrigin: vars.CONSOLE_ORIGIN ?? CONSOLE_ORIGIN_DEFAULT,
    logRequests: vars.LOG_REQUESTS !== "0",
    groupCommit: vars.GROUP_COMMIT !== "off",
    chainSha256: vars.CHAIN_SHA256 === "node" ? "node" : "js",
    projection: {
      direct: vars.PROJECTION_DELIVERY === "direct",
      coalesceMs: amountOrOff(vars.PROJECTION_COALESCE_MS, PROJECTION_COALESCE_MS_DEFAULT),
      holdWaitMs: amountOrOff(vars.PROJECTION_HOLD_WAIT_MS, PROJECTION_HOLD_WAIT_MS_DEFAULT),
      cursorWithCommand: vars.PROJECTION_CURSOR_WITH_COMMAND === "on",
      loneSend: vars.PROJECTION_LONE_SEND !== "off",
    },
    archive: {
      eventsMax: wholeAtLeast(vars.SEGMENT_EVENTS_MAX, 1, SEGMENT_EVENTS_MAX),
      ageMsMax: wholeAtLeast(vars.SEGMENT_AGE_MS_MAX, 1, SEGMENT_AGE_MS_MAX),
      bytesMax: wholeAtLeast(vars.SEGMENT_BYTES_MAX, 1, SEGMENT_BYTES_MAX),
      deleteChunkRows: wholeAtLeast(vars.ARCHIVE_DELETE_CHUNK_ROWS, 1, ARCHIVE_DELETE_CHUNK_ROWS_DEFAULT),
    },
    verifyFullFoldEventsMax: amountOrOff(vars.VERIFY_FULL_FOLD_EVENTS_MAX, VERIFY_FULL_FOLD_EVENTS_MAX_DEFAULT),
    alerts: alertThresholds(vars),
    get retention() {
      retention ??= retentionConfig(vars);
      return retention;
    },
  };
}

/**
 * A positive amount, the default when the variable is absent, and 0 ("off": flush at once, no
 * hold wait, always stream) for any value that is not a positive number, "0" included.
 */
function amountOrOff(raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  return Number.isFinite(value) && value > 0 ? value : 0;
}

/** A decimal whole number of at least `min`, else the default. */
function wholeAtLeast(raw: string | undefined, min: number, fallback: number): number {
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  return Number.isSafeInteger(value) && value >= min ? value : fallback;
}

/** The alert thresholds in force: each default unless a var of its name holds a whole number >= 0. */
export function alertThresholds(env: object): AlertThresholds {
  const vars = env as Readonly<Record<string, unknown>>;
  const thresholds: AlertThresholds = { ...ALERT_THRESHOLDS_DEFAULT };
  for (const name of Object.keys(thresholds) as (keyof AlertThresholds)[]) {
    const raw = vars[name];
    if (typeof raw !== "string" || !/^\d{1,15}$/.test(raw)) continue;
    thresholds[name] = Number(raw);
  }
  return thresholds;
}

/** The read side's retention; a malformed value is a deployment error and throws. */
export function retentionConfig(vars: ConfigVars): RetentionConfig {
  return {
    rawEventsWindowDays: positive(vars, "RAW_EVENTS_WINDOW_DAYS", RAW_EVENTS_WINDOW_DAYS_DEFAULT),
    rawEventsWindowBytesMax: positive(vars, "RAW_EVENTS_WINDOW_BYTES_MAX", RAW_EVENTS_WINDOW_BYTES_MAX_DEFAULT),
    hourlyRetentionDays: positive(vars, "ROLLUPS_HOURLY_RETENTION_DAYS", ROLLUPS_HOURLY_RETENTION_DAYS_DEFAULT),
  };
}

function positive(
  vars: ConfigVars,
  name: "RAW_EVENTS_WINDOW_DAYS" | "RAW_EVENTS_WINDOW_BYTES_MAX" | "ROLLUPS_HOURLY_RETENTION_DAYS",
  fallback: number,
): number {
  const raw = vars[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new ConfigError(`${name} must be a positive number, not "${raw}"`);
  return value;
}
