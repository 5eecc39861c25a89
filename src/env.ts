/** Bindings and secrets of the ledger Worker (see wrangler.toml and docs/operations.md, "Configuration"). */
import type { ConfigVars } from "./config";
import type { AccountObject } from "./contract";
import type { MonitorObject } from "./observability/monitor-contract";

/** Bindings and secrets; the tunables (vars) are ConfigVars, read only through `configOf` (src/config.ts). */
export interface Env extends ConfigVars {
  /** One Durable Object per account, addressed by `getByName(account_id)`: its contract is src/contract.ts. */
  ACCOUNTS: DurableObjectNamespace<AccountObject>;
  /**
   * The read side (reports), shard 0 and the control database (keys, prices, dead letters).
   * More shards are bound as DB_1, DB_2, ... (src/read-side/shards.ts).
   */
  DB: D1Database;
  /**
   * The projection queue's producer (wrangler.toml [[queues.producers]]): each body is a
   * ProjectionMessage as JSON text (src/projection/producer/delivery.ts).
   */
  PROJECTION_QUEUE?: Queue<string>;
  /**
   * Bootstrap admin bearer token (a secret: `wrangler secret put ADMIN_API_KEY`); 32+ random bytes
   * (ADMIN_API_KEY_LENGTH_MIN characters and more), else every request answers 503.
   */
  ADMIN_API_KEY: string;
  /** Sealed segments of the account logs (wrangler.toml [[r2_buckets]]; docs/archive.md). */
  ARCHIVE?: R2Bucket;
  /** Per-key request limiter (wrangler.toml [[ratelimits]]). */
  RATE_LIMITER: RateLimit;
  /** The bootstrap key's own, higher request limit (wrangler.toml [[ratelimits]]). */
  BOOTSTRAP_RATE_LIMITER: RateLimit;
  /** Failed authentications per client address (wrangler.toml [[ratelimits]]; src/http/auth.ts). */
  AUTH_FAILURE_LIMITER: RateLimit;
  /** Encrypts configuration secrets at rest (src/security/secrets.ts); 32+ random bytes, base64. */
  CONFIG_ENCRYPTION_KEY?: string;
  /** The key being rotated out; decrypts only. */
  CONFIG_ENCRYPTION_KEY_PREVIOUS?: string;
  /** Ed25519 private key (PKCS#8, base64) that signs audit checkpoints (a secret). */
  AUDIT_SIGNING_KEY?: string;
  /** The monitor (durable-objects/monitor.ts): metric windows, alerts, alert webhooks; one object, "global". */
  MONITOR: DurableObjectNamespace<MonitorObject>;
  /**
   * One data point per request for dashboards (wrangler.toml [[analytics_engine_datasets]]), in
   * production only; optional, and nothing reads it back (local writes are dropped).
   */
  ANALYTICS?: AnalyticsEngineDataset;
}
