/** Admin routes for monitoring (issue 14): the current windows, and the alerts (evaluated on read). */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { AlertList, MonitoringSchema } from "../app/schemas/monitoring";
import { clock } from "../clock";
import { evaluateAlertsNow, monitorOf } from "../observability/evaluate";
import { readGauges } from "../observability/gauges";
import type { AppEnv } from "./context";
import { defineRoute, tenantWideAdmin } from "./route";

const MONITORING_ADMIN = tenantWideAdmin("Monitoring");

export function registerMonitoringRoutes(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/admin/monitoring",
      operationId: "getMonitoring",
      ...MONITORING_ADMIN,
      summary: "The current windows, per route and overall",
      description:
        "Requests, 5xx rate and p50/p95/p99 latency over the last 5 minutes; authentication failures in 10 minutes; D1 failures; provider failure rates; pending refunds; projection lag p99; dead letters.",
      success: { status: 200, schema: MonitoringSchema, description: "The windows." },
      errors: [],
    },
    async (c) => c.json(await monitorOf(c.env).monitoring(await readGauges(c.env, clock.now()))),
  );

  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/admin/alerts",
      operationId: "listAlerts",
      ...MONITORING_ADMIN,
      summary: "Alerts, firing first (the rules are evaluated on read)",
      success: { status: 200, schema: AlertList, description: "Every alert that has fired and not been forgotten." },
      errors: [],
    },
    async (c) => c.json({ data: await evaluateAlertsNow(c.env, clock.now()) }),
  );
}
