/** The contracts of the monitoring and alert routes (issue 14). */
import { z } from "@hono/zod-openapi";
import { ALERT_RULES } from "../../observability/alerts";
import { Time } from "./common";

const Latency = z
  .object({ p50: z.number().nullable(), p95: z.number().nullable(), p99: z.number().nullable() })
  .openapi({ description: "Milliseconds, to the histogram bucket's upper bound; null without requests." });
const Counts = z.record(z.string(), z.number().int());
const RouteWindow = {
  requests: z.number().int(),
  status: z.object({
    "2xx": z.number().int(),
    "3xx": z.number().int(),
    "4xx": z.number().int(),
    "5xx": z.number().int(),
  }),
  rate_5xx: z.number(),
  billing_failures: z.number().int(),
  alerted: z.object({ requests: z.number().int(), errors_5xx: z.number().int() }).openapi({
    description:
      "What the 5xx-rate alert counts: authenticated requests to /v1 routes, not answered 401 or 429, and their 5xx.",
  }),
  errors: Counts,
  latency_ms: Latency,
};

export const MonitoringSchema = z
  .object({
    at: Time,
    window_minutes: z.number().int(),
    overall: z.object(RouteWindow),
    routes: z.array(z.object({ route: z.string(), ...RouteWindow })),
    providers: z.array(
      z.object({
        provider: z.string(),
        requests: z.number().int(),
        failures: z.number().int(),
        failure_rate: z.number(),
        statuses: Counts,
        latency_ms: Latency,
      }),
    ),
    auth_failures_10m: z.number().int(),
    rate_limited: z.number().int(),
    d1_failures: Counts,
    background_failures: Counts,
    projection_lag_p99_ms: z.number().nullable(),
    alarms_exhausted_15m: z.number().int(),
    pending_refunds: z.number().int().nullable().openapi({ description: "Null when D1 could not be read." }),
    dead_letters: z.number().int().nullable().openapi({ description: "Null when D1 could not be read." }),
  })
  .openapi("Monitoring");

export const AlertSchema = z
  .object({
    rule: z.enum(ALERT_RULES),
    subject: z.string().nullable().openapi({ description: "The provider, for provider_failure_rate; else null." }),
    state: z.enum(["firing", "resolved"]),
    value: z.number(),
    threshold: z.number(),
    since: Time,
    resolved_at: Time.nullable(),
  })
  .openapi("Alert");

export const AlertList = z.object({ data: z.array(AlertSchema) }).openapi("AlertList");
