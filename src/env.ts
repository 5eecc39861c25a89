/** Bindings and secrets of the ledger Worker (see wrangler.toml and docs/operations.md, "Configuration"). */
import type { AccountDurableObject } from "../durable-objects/account";
import type { MonitorDurableObject } from "../durable-objects/monitor";

export interface Env {
  /** One Durable Object per account, addressed by `getByName(account_id)`. */
  ACCOUNTS: DurableObjectNamespace<AccountDurableObject>;
  /**
   * The read side (reports), shard 0 and the control database (keys, prices, dead letters).
   * More shards are bound as DB_1, DB_2, ... (src/projection/shards.ts).
   */
  DB: D1Database;
  /**
   * The projection queue's producer (wrangler.toml [[queues.producers]]): each body is a
   * ProjectionMessage as JSON text (src/projection/delivery.ts).
   */
  PROJECTION_QUEUE?: Queue<string>;
  /** "direct": account objects write their projection to D1 themselves instead of the queue. */
  PROJECTION_DELIVERY?: string;
  /**
   * Bootstrap admin bearer token (a secret: `wrangler secret put ADMIN_API_KEY`); 32+ random bytes
   * (ADMIN_API_KEY_LENGTH_MIN characters and more), else every request answers 503.
   */
  ADMIN_API_KEY: string;
  /** Milliseconds a projection flush waits to gather a busy account's events (0: flush at once). */
  PROJECTION_COALESCE_MS?: string;
  /** Milliseconds in all a flush may wait for a lone open hold's settlement (src/projection/projector.ts). */
  PROJECTION_HOLD_WAIT_MS?: string;
  /** Raw events D1 keeps, in days and in estimated bytes; hourly rollups kept, in days (src/projection/retention.ts). */
  RAW_EVENTS_WINDOW_DAYS?: string;
  RAW_EVENTS_WINDOW_BYTES_MAX?: string;
  ROLLUPS_HOURLY_RETENTION_DAYS?: string;
  /** Sealed segments of the account logs (wrangler.toml [[r2_buckets]]; docs/archive.md). */
  ARCHIVE?: R2Bucket;
  /** Overrides of the segment limits (src/domain/limits.ts), as decimal strings. */
  SEGMENT_EVENTS_MAX?: string;
  SEGMENT_AGE_MS_MAX?: string;
  SEGMENT_BYTES_MAX?: string;
  ARCHIVE_DELETE_CHUNK_ROWS?: string;
  /** Verification by full fold up to this many events, streaming beyond (default 100,000). */
  VERIFY_FULL_FOLD_EVENTS_MAX?: string;
  /** "0" silences the log lines (the test suite's default; docs/operations.md, "Test knobs"). */
  LOG_REQUESTS?: string;
  /** Per-key request limiter (wrangler.toml [[ratelimits]]). */
  RATE_LIMITER: RateLimit;
  /** The bootstrap key's own, higher request limit (wrangler.toml [[ratelimits]]). */
  BOOTSTRAP_RATE_LIMITER: RateLimit;
  /** Failed authentications per client address (wrangler.toml [[ratelimits]]; src/http/auth.ts). */
  AUTH_FAILURE_LIMITER: RateLimit;
  /** The console's origin, the only one allowed to read from a browser (CORS). */
  CONSOLE_ORIGIN?: string;
  /** Encrypts configuration secrets at rest (src/security/secrets.ts); 32+ random bytes, base64. */
  CONFIG_ENCRYPTION_KEY?: string;
  /** The key being rotated out; decrypts only. */
  CONFIG_ENCRYPTION_KEY_PREVIOUS?: string;
  /** Ed25519 private key (PKCS#8, base64) that signs audit checkpoints (a secret). */
  AUDIT_SIGNING_KEY?: string;
  /** The monitor (durable-objects/monitor.ts): metric windows, alerts, alert webhooks; one object, "global". */
  MONITOR: DurableObjectNamespace<MonitorDurableObject>;
  /**
   * One data point per request for dashboards (wrangler.toml [[analytics_engine_datasets]]), in
   * production only; optional, and nothing reads it back (local writes are dropped).
   */
  ANALYTICS?: AnalyticsEngineDataset;
  /** Alert thresholds, each overriding its default (src/observability/alerts.ts), e.g. ALERT_AUTH_FAILURES_MAX. */
  [alertThreshold: `ALERT_${string}`]: string | undefined;
}
