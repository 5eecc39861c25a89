/**
 * The monitor (issue 14): one Durable Object ("global") that receives every isolate's metric
 * flushes (src/observability/metrics.ts), keeps one merged row per minute for the last
 * MONITOR_MINUTES_KEPT minutes (older rows are deleted on every flush: at most that many rows),
 * evaluates the alert rules (src/observability/alerts.ts) every minute from the cron and
 * whenever alerts are read, and sends the alert webhooks with their retries from its alarm.
 *
 * One object is enough at the flush rate (each isolate at most once per METRICS_FLUSH_INTERVAL_MS:
 * 1,000 busy isolates are 200 calls/s, under a Durable Object's soft limit); past that, shard the
 * flushes over a few objects by isolate and merge their windows when reading.
 */
import { DurableObject } from "cloudflare:workers";
import { clock } from "../src/clock";
import type { Env } from "../src/env";
import {
  type Alert,
  type AlertThresholds,
  checkRules,
  evaluateAlerts,
  sortAlerts,
  unmeasuredRules,
} from "../src/observability/alerts";
import { writeLog } from "../src/observability/log";
import {
  addMinute,
  boundProviders,
  emptyMinute,
  type MetricsFlush,
  MINUTE_MS,
  type MinuteCounts,
} from "../src/observability/metrics";
import type { MonitorObject } from "../src/observability/monitor-contract";
import { type Gauges, type MonitoringView, measurementsOf, monitoringView } from "../src/observability/windows";
import { alertEvent } from "../src/webhooks/events";
import { runWebhookOutbox, WEBHOOK_STATE_MIGRATION, WebhookOutbox } from "./outbox";
import { migrate } from "./schema";

/** Minutes of counts kept: the longest rule window (15 min) with room to spare. */
export const MONITOR_MINUTES_KEPT = 60;
/** Resolved alerts are forgotten this long after they resolved (bounds the alerts table). */
export const RESOLVED_ALERTS_KEPT_MS = 7 * 86_400_000;

const MONITOR_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE minutes (minute_ms INTEGER PRIMARY KEY, counts TEXT NOT NULL);
  CREATE TABLE alerts (
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (rule, subject)
  ) WITHOUT ROWID;
  CREATE TABLE webhook_outbox (
    event_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  `,
  WEBHOOK_STATE_MIGRATION,
];

/** A flush of one minute holding one failed D1 operation (the monitor's own failures). */
function singleFailure(nowMs: number, operation: string): MetricsFlush {
  const counts = emptyMinute();
  counts.d1_failures[operation] = 1;
  return { minutes: [[nowMs - (nowMs % MINUTE_MS), counts]], dropped_minutes: 0 };
}

export class MonitorDurableObject extends DurableObject<Env> implements MonitorObject {
  private readonly sql: SqlStorage;
  private readonly outbox: WebhookOutbox;
  /** The alert webhook run in progress: the cron, an evaluation and the alarm share it. */
  private sending: Promise<void> | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.storage.transactionSync(() => migrate(this.sql, MONITOR_MIGRATIONS));
    this.outbox = new WebhookOutbox(this.sql);
  }

  /** Merges one isolate's flush into the minute rows, and drops minutes past the window kept. */
  async ingest(flush: MetricsFlush): Promise<void> {
    const oldest = clock.now() - (clock.now() % MINUTE_MS) - (MONITOR_MINUTES_KEPT - 1) * MINUTE_MS;
    this.ctx.storage.transactionSync(() => {
      for (const [minute, counts] of flush.minutes) {
        if (minute < oldest) continue;
        const row = this.sql
          .exec<{ counts: string }>("SELECT counts FROM minutes WHERE minute_ms = ?", minute)
          .toArray()[0];
        const merged = boundProviders(
          row === undefined ? counts : addMinute(JSON.parse(row.counts) as MinuteCounts, counts),
        );
        this.sql.exec(
          "INSERT INTO minutes (minute_ms, counts) VALUES (?, ?) ON CONFLICT (minute_ms) DO UPDATE SET counts = excluded.counts",
          minute,
          JSON.stringify(merged),
        );
      }
      this.sql.exec("DELETE FROM minutes WHERE minute_ms < ?", oldest);
      if (flush.dropped_minutes > 0) {
        this.sql.exec(
          "INSERT INTO stats (name, value) VALUES ('dropped_minutes', ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
          flush.dropped_minutes,
        );
      }
    });
  }

  private rows(): [number, MinuteCounts][] {
    return this.sql
      .exec<{ minute_ms: number; counts: string }>("SELECT minute_ms, counts FROM minutes ORDER BY minute_ms")
      .toArray()
      .map((row) => [row.minute_ms, JSON.parse(row.counts) as MinuteCounts]);
  }

  /** The current windows (GET /v1/admin/monitoring). */
  async monitoring(gauges: Gauges): Promise<MonitoringView> {
    return monitoringView(this.rows(), clock.now(), gauges);
  }

  /** The alerts as last evaluated, firing first. */
  async alerts(): Promise<Alert[]> {
    return sortAlerts(
      this.sql
        .exec<{ body: string }>("SELECT body FROM alerts")
        .toArray()
        .map((row) => JSON.parse(row.body) as Alert),
    );
  }

  /**
   * Evaluates every rule now. The new states and the webhook events of the transitions are
   * written in one transaction (so a transition is notified exactly once); the events are then
   * handed to D1 and sent, off the caller's path.
   */
  async evaluate(gauges: Gauges, thresholds: AlertThresholds): Promise<Alert[]> {
    const nowMs = clock.now();
    const view = monitoringView(this.rows(), nowMs, gauges);
    const measured = measurementsOf(view);
    const checks = checkRules(measured, thresholds);
    const nowIso = new Date(nowMs).toISOString();
    const { alerts, transitions } = evaluateAlerts(await this.alerts(), checks, nowIso, unmeasuredRules(measured));
    const forgetBefore = new Date(nowMs - RESOLVED_ALERTS_KEPT_MS).toISOString();
    const kept = alerts.filter((a) => a.state === "firing" || (a.resolved_at ?? "") >= forgetBefore);
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("DELETE FROM alerts");
      for (const alert of kept) {
        this.sql.exec(
          "INSERT INTO alerts (rule, subject, body) VALUES (?, ?, ?)",
          alert.rule,
          alert.subject ?? "",
          JSON.stringify(alert),
        );
      }
      for (const transition of transitions) this.outbox.add(alertEvent(transition), nowMs);
    });
    if (transitions.length > 0) {
      writeLog(this.env, "warn", {
        msg: "alerts",
        transitions: transitions.map((t) => `${t.alert.rule}:${t.to}`).join(","),
      });
    }
    if (this.outbox.wakeAtMs() !== null) this.ctx.waitUntil(this.sendAlerts());
    return kept;
  }

  /** Sends the alert webhooks that are due; the alarm comes back for retries. One run at a time. */
  sendAlerts(): Promise<void> {
    this.sending ??= this.sendAlertsOnce().finally(() => {
      this.sending = null;
    });
    return this.sending;
  }

  private async sendAlertsOnce(): Promise<void> {
    try {
      await runWebhookOutbox(this.outbox, this.env, null);
    } catch (error) {
      writeLog(this.env, "warn", { msg: "alert_webhooks_failed", error: (error as Error).name ?? "Error" });
      // Folded here directly: the monitor's own isolate may never flush its module's counts.
      await this.ingest(singleFailure(clock.now(), "write:webhooks"));
    }
    // The outbox's wake: an event waiting, the next attempt, never before a failed run's retry time.
    const next = this.outbox.wakeAtMs();
    if (next !== null) await this.ctx.storage.setAlarm(next);
  }

  override async alarm(): Promise<void> {
    await this.sendAlerts();
  }
}
