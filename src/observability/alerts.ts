/**
 * Alert rules (issue 14), pure: measurements and thresholds in, checks out; previous alerts and
 * checks in, alerts and transitions out. Time is an argument. The rules, their windows and
 * their exact edges (docs/operations.md, "Monitoring and alerts"):
 *
 * | rule                    | fires when                                                          |
 * | worker_5xx_rate         | 5xx / requests > 1% over 5 min, with at least 100 requests          |
 * | provider_failure_rate   | failures / calls > 5% over 5 min, per provider, at least 20 calls   |
 * | pending_refunds         | more than 10                                                        |
 * | d1_write_failures       | repeated: at least 2 failed D1 writes in 5 min                      |
 * | auth_failures           | more than 100 in 10 min                                             |
 * | projection_lag          | p99 above 60 s over 5 min                                           |
 * | dead_letters            | the dead-letter table is not empty                                  |
 * | alarm_retries_exhausted | any account's alarm ran out of retries in the last 15 min           |
 *
 * "Above" is strict: a 5xx rate of exactly 1% and exactly 100 auth failures do not fire. Rates
 * are compared in integers (failures * 10,000 > requests * basis points), never as floats.
 * Every threshold is a named constant, overridable by a wrangler var of the same name.
 */
import { ALERT_THRESHOLDS_DEFAULT, type AlertThresholds } from "../config";

export { ALERT_THRESHOLDS_DEFAULT, type AlertThresholds };

/** Windows of the rules, in minutes. */
export const ALERT_RATE_WINDOW_MINUTES = 5;
export const ALERT_AUTH_WINDOW_MINUTES = 10;
export const ALERT_ALARM_WINDOW_MINUTES = 15;

export const ALERT_RULES = [
  "worker_5xx_rate",
  "provider_failure_rate",
  "pending_refunds",
  "d1_write_failures",
  "auth_failures",
  "projection_lag",
  "dead_letters",
  "alarm_retries_exhausted",
] as const;
export type AlertRule = (typeof ALERT_RULES)[number];

export interface Measurements {
  /** Over ALERT_RATE_WINDOW_MINUTES. */
  requests: number;
  errors_5xx: number;
  providers: Readonly<Record<string, { requests: number; failures: number }>>;
  d1_write_failures: number;
  projection_lag_p99_ms: number | null;
  /** Over ALERT_AUTH_WINDOW_MINUTES. */
  auth_failures: number;
  /** Over ALERT_ALARM_WINDOW_MINUTES. */
  alarms_exhausted: number;
  /** Now; null when D1 could not be read (the rule is not checked: its alert keeps its state). */
  pending_refunds: number | null;
  dead_letters: number | null;
}

/** The rules whose measurement is missing (a gauge D1 could not answer): not checked this time. */
export function unmeasuredRules(m: Measurements): AlertRule[] {
  const rules: AlertRule[] = [];
  if (m.pending_refunds === null) rules.push("pending_refunds");
  if (m.dead_letters === null) rules.push("dead_letters");
  return rules;
}

export interface Check {
  rule: AlertRule;
  /** The provider for provider_failure_rate; null for the ledger-wide rules. */
  subject: string | null;
  value: number;
  threshold: number;
  firing: boolean;
}

/**
 * A rate rule: failures / requests above `bp` basis points, compared exactly in integers, once
 * the window holds at least `requestsMin` requests. The value and threshold are fractions.
 */
function rateCheck(
  rule: AlertRule,
  subject: string | null,
  counts: { failures: number; requests: number },
  bp: number,
  requestsMin: number,
): Check {
  const { failures, requests } = counts;
  return {
    rule,
    subject,
    value: requests === 0 ? 0 : failures / requests,
    threshold: bp / 10_000,
    firing: requests >= requestsMin && failures * 10_000 > requests * bp,
  };
}

/** Every rule's check against the measurements, but for the unmeasured rules (unmeasuredRules). */
export function checkRules(m: Measurements, t: AlertThresholds): Check[] {
  const worker = { failures: m.errors_5xx, requests: m.requests };
  const checks: Check[] = [
    rateCheck("worker_5xx_rate", null, worker, t.ALERT_WORKER_5XX_RATE_BP, t.ALERT_WORKER_5XX_REQUESTS_MIN),
  ];
  for (const [provider, calls] of Object.entries(m.providers).sort(([a], [b]) => (a < b ? -1 : 1))) {
    checks.push(
      rateCheck("provider_failure_rate", provider, calls, t.ALERT_PROVIDER_FAILURE_RATE_BP, t.ALERT_PROVIDER_CALLS_MIN),
    );
  }
  const above = (rule: AlertRule, value: number, max: number): Check => ({
    rule,
    subject: null,
    value,
    threshold: max,
    firing: value > max,
  });
  if (m.pending_refunds !== null) checks.push(above("pending_refunds", m.pending_refunds, t.ALERT_PENDING_REFUNDS_MAX));
  if (m.dead_letters !== null) checks.push(above("dead_letters", m.dead_letters, t.ALERT_DEAD_LETTERS_MAX));
  checks.push(
    {
      rule: "d1_write_failures",
      subject: null,
      value: m.d1_write_failures,
      threshold: t.ALERT_D1_WRITE_FAILURES_MIN,
      firing: m.d1_write_failures >= t.ALERT_D1_WRITE_FAILURES_MIN,
    },
    above("auth_failures", m.auth_failures, t.ALERT_AUTH_FAILURES_MAX),
    above("projection_lag", m.projection_lag_p99_ms ?? 0, t.ALERT_PROJECTION_LAG_P99_MS_MAX),
    above("alarm_retries_exhausted", m.alarms_exhausted, t.ALERT_ALARMS_EXHAUSTED_MAX),
  );
  return checks;
}

export interface Alert {
  rule: AlertRule;
  subject: string | null;
  state: "firing" | "resolved";
  value: number;
  threshold: number;
  /** When it last started firing. */
  since: string;
  resolved_at: string | null;
}

export interface Transition {
  to: "alert.firing" | "alert.resolved";
  alert: Alert;
}

const keyOf = (a: { rule: string; subject: string | null }) => `${a.rule}\u0000${a.subject ?? ""}`;

/**
 * The alerts after this evaluation and what changed. An alert fires once (a transition to
 * firing) and resolves once (a transition to resolved); staying firing or staying quiet is no
 * transition, which is the deduplication. A previous alert whose subject has no check any more
 * (a provider with no calls in the window) counts as not firing, unless its rule is in
 * `unmeasured` (its measurement could not be read): such an alert keeps its state as it was.
 * Rules that never fired have no alert.
 */
export function evaluateAlerts(
  previous: readonly Alert[],
  checks: readonly Check[],
  nowIso: string,
  unmeasured: readonly AlertRule[] = [],
): { alerts: Alert[]; transitions: Transition[] } {
  const byKey = new Map(previous.map((a) => [keyOf(a), a]));
  const seen = new Set<string>();
  const alerts: Alert[] = [];
  const transitions: Transition[] = [];
  for (const check of checks) {
    const key = keyOf(check);
    seen.add(key);
    const before = byKey.get(key);
    const wasFiring = before?.state === "firing";
    const measured = { value: check.value, threshold: check.threshold };
    if (check.firing && !wasFiring) {
      const alert: Alert = {
        rule: check.rule,
        subject: check.subject,
        state: "firing",
        ...measured,
        since: nowIso,
        resolved_at: null,
      };
      alerts.push(alert);
      transitions.push({ to: "alert.firing", alert });
    } else if (!check.firing && wasFiring) {
      const alert: Alert = { ...before, ...measured, state: "resolved", resolved_at: nowIso };
      alerts.push(alert);
      transitions.push({ to: "alert.resolved", alert });
    } else if (before !== undefined) {
      alerts.push(wasFiring ? { ...before, ...measured } : before);
    }
  }
  for (const [key, before] of byKey) {
    if (seen.has(key)) continue;
    if (before.state !== "firing" || unmeasured.includes(before.rule)) {
      alerts.push(before);
      continue;
    }
    const alert: Alert = { ...before, state: "resolved", resolved_at: nowIso };
    alerts.push(alert);
    transitions.push({ to: "alert.resolved", alert });
  }
  return { alerts: sortAlerts(alerts), transitions };
}

/** Firing first (newest first), then resolved (most recently resolved first). */
export function sortAlerts(alerts: Alert[]): Alert[] {
  const rank = (a: Alert) => (a.state === "firing" ? 0 : 1);
  const time = (a: Alert) => (a.state === "firing" ? a.since : (a.resolved_at ?? ""));
  return alerts.sort((a, b) => rank(a) - rank(b) || (time(a) < time(b) ? 1 : time(a) > time(b) ? -1 : 0));
}
