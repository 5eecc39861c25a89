/**
 * Alerting while D1 is down (issue 14 review): the gauges D1 cannot answer are null, the rules
 * that need them keep their state (neither resolved nor fired on a guess), every other rule is
 * still evaluated (d1_write_failures fires), and the monitoring routes answer 200.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Env } from "../../src/env";
import worker from "../../src/index";
import type { Alert } from "../../src/observability/alerts";
import { evaluateAlertsNow } from "../../src/observability/evaluate";
import { flushMetricsIfDue } from "../../src/observability/flush";
import { recordD1Failure } from "../../src/observability/metrics";
import { AUTH, useManualClock } from "../helpers";
import { downD1 } from "../webhooks/support";

async function fetchWith(target: Env, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const ctx = createExecutionContext();
  const response = await worker.fetch(new Request(`http://ledger.test${path}`, { headers: AUTH }), target, ctx);
  await waitOnExecutionContext(ctx);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const byRule = (alerts: readonly Alert[], rule: string) => alerts.find((a) => a.rule === rule);

describe("alerting while D1 is down", () => {
  it("still fires d1_write_failures, keeps the D1 gauges' alerts as they were, and answers 200", async () => {
    // Days away from the other tests, so the monitor's minutes hold only this test's counts.
    const clock = useManualClock(Date.now() + 30 * 86_400_000);
    await env.DB.prepare(
      "INSERT INTO projection_dead_letters (id, account_id, from_seq, to_seq, generation, attempts, received_at, body) VALUES ('dl_down', 'acct_dl', 1, 1, 0, 10, ?, '{}')",
    )
      .bind(new Date(clock.now()).toISOString())
      .run();
    const before = await evaluateAlertsNow(env, clock.now());
    const deadLetters = byRule(before, "dead_letters");
    expect(deadLetters?.state).toBe("firing");
    expect(byRule(before, "pending_refunds")).toBeUndefined();

    const down = { ...env, DB: downD1() } as Env;
    recordD1Failure(clock.now(), "write:projection");
    recordD1Failure(clock.now(), "write:webhooks");
    await flushMetricsIfDue(env, () => undefined, true);
    clock.advance(60_000);
    const during = await evaluateAlertsNow(down, clock.now());
    expect(byRule(during, "d1_write_failures")).toMatchObject({ state: "firing", value: 2 });
    // Unread, not guessed: the dead-letter alert stays firing since it first fired, and
    // pending_refunds (quiet before) neither fires nor appears.
    expect(byRule(during, "dead_letters")).toEqual(deadLetters);
    expect(byRule(during, "pending_refunds")).toBeUndefined();

    const monitoring = await fetchWith(down, "/v1/admin/monitoring");
    expect(monitoring.status).toBe(200);
    expect(monitoring.body).toMatchObject({ pending_refunds: null, dead_letters: null });
    const alerts = await fetchWith(down, "/v1/admin/alerts");
    expect(alerts.status).toBe(200);
    expect((alerts.body.data as Alert[]).map((a) => `${a.rule}:${a.state}`).sort()).toEqual([
      "d1_write_failures:firing",
      "dead_letters:firing",
    ]);

    // D1 back and the table empty: the dead-letter alert resolves, read for real.
    await env.DB.prepare("DELETE FROM projection_dead_letters").run();
    clock.advance(60_000);
    expect(byRule(await evaluateAlertsNow(env, clock.now()), "dead_letters")?.state).toBe("resolved");
  });
});
