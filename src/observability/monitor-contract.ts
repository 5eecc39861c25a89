/**
 * The monitor object's contract (durable-objects/monitor.ts, one object named "global"): what
 * every isolate and the cron may ask of it. The Worker's environment names this interface, not the
 * object's class, as it does the account object's (src/contract.ts).
 */
import type { AlertThresholds } from "../config";
import type { Alert } from "./alerts";
import type { MetricsFlush } from "./metrics";
import type { Gauges, MonitoringView } from "./windows";

export interface MonitorObject extends Rpc.DurableObjectBranded {
  /** Merges one isolate's flush of counts into the minute rows. */
  ingest(flush: MetricsFlush): Promise<void>;
  /** The current windows (GET /v1/admin/monitoring). */
  monitoring(gauges: Gauges): Promise<MonitoringView>;
  /** The alerts as last evaluated, firing first. */
  alerts(): Promise<Alert[]>;
  /** Evaluates every rule now; transitions are notified exactly once. */
  evaluate(gauges: Gauges, thresholds: AlertThresholds): Promise<Alert[]>;
  /** Sends the alert webhooks that are due. */
  sendAlerts(): Promise<void>;
}
