// @ts-check
/**
 * The console (web/console, served at /console/ by Workers Static Assets) in a real browser:
 * Chromium from the npm registry (@sparticuz/chromium) driven by playwright-core, against a
 * ledger served locally by workerd (test/browser/ledger.mjs) with a history made through its API.
 *
 * Time: the ledger's clock is a ManualClock the test sets (test/browser/worker.ts) and the
 * page's clock is Playwright's (page.clock), so the hold's countdown and its settlement move
 * only when the test moves them; every wait is on a condition (a selector, the projection's
 * status), none on the wall clock.
 *
 * Screenshots of the main views, at desktop and phone width, go to test/browser/screenshots/
 * (git-ignored).
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { after, before, test } from "node:test";
import sparticuz from "@sparticuz/chromium";
import { chromium } from "playwright-core";
import { EVENTS_PAGE } from "../../web/console/events.js";
import { EXPIRED_REFRESH_MS } from "../../web/console/holds.js";
import { formatMinor } from "../../web/console/money.js";
import { USAGE_DAYS } from "../../web/console/usage.js";
import { startLedger } from "./ledger.mjs";
import { seedHistory, testEpoch } from "./seed.mjs";

const SHOTS = new URL("./screenshots/", import.meta.url).pathname;
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 375, height: 812 };
const DAY_MS = 86_400_000;
/** Page time at which the test pauses the page's clock: the page loads before, the hold expires after. */
const PAUSE_AFTER_T0_MS = 300_000;

/** @type {Awaited<ReturnType<typeof startLedger>>} */
let ledger;
/** @type {import("playwright-core").Browser} */
let browser;
/** @type {import("playwright-core").Page} */
let page;
let t0 = 0;
let holdExpiresMs = 0;
/** Every URL the page requested, and what the browser reported against the CSP or as errors. */
const requested = /** @type {string[]} */ ([]);
const violations = /** @type {string[]} */ ([]);

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  ledger = await startLedger();
  t0 = testEpoch(Date.now());
  ({ holdExpiresMs } = await seedHistory(ledger, t0));
  browser = await chromium.launch({ executablePath: await sparticuz.executablePath(), args: sparticuz.args });
  page = await browser.newPage({ viewport: DESKTOP });
  // Waits are on conditions; a timeout only ever catches a hang, so it is generous for a loaded
  // 2-core machine (as vitest.config.ts's testTimeout).
  page.setDefaultTimeout(60_000);
  page.on("request", (request) => requested.push(request.url()));
  page.on("console", (message) => {
    if (/content.security.policy/i.test(message.text())) violations.push(message.text());
  });
  page.on("pageerror", (error) => violations.push(String(error)));
  // The page's clock starts at T0 and flows until the hold test pauses it.
  await page.clock.install({ time: t0 });
});

after(async () => {
  await browser?.close();
  await ledger?.close();
});

/** Opens the console afresh (no key in the tab) and signs in. @param {string} key @param {string} [accountId] */
async function signIn(key, accountId = "") {
  await page.goto(`${ledger.url}/console/`);
  await page.evaluate(() => sessionStorage.clear());
  await page.goto("about:blank");
  await page.goto(`${ledger.url}/console/`);
  await page.fill("#key", key);
  await page.fill("#account", accountId);
  await page.click("#signin button[type=submit]");
}

/** Screenshots of the page at desktop and phone width; at phone width nothing may be wider than the screen. @param {string} name */
async function screenshots(name) {
  await page.screenshot({ path: `${SHOTS}${name}-desktop.png`, fullPage: true });
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: `${SHOTS}${name}-375.png`, fullPage: true });
  const overflow = await page.evaluate(
    () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
  );
  assert.equal(overflow, 0, `${name}: the page is wider than 375 px`);
  await page.setViewportSize(DESKTOP);
}

/** The exact minor units and the text of the amount in `selector`. @param {string} selector */
async function shownAmount(selector) {
  const element = page.locator(selector).first();
  return { minor: await element.getAttribute("data-minor"), text: await element.textContent() };
}

test("the console is served with a strict Content-Security-Policy", async () => {
  for (const path of ["/console/", "/console/app.js", "/console/style.css"]) {
    const response = await fetch(`${ledger.url}${path}`);
    assert.equal(response.status, 200, path);
    const csp = response.headers.get("content-security-policy") ?? "";
    for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'"]) {
      assert.ok(csp.includes(directive), `${path}: ${directive} in ${csp}`);
    }
    assert.ok(!csp.includes("unsafe-inline") && !csp.includes("unsafe-eval") && !csp.includes("*"), csp);
    assert.equal(response.headers.get("x-content-type-options"), "nosniff");
  }
  // The page itself has no inline script: every script element loads a file of this origin.
  const html = await (await fetch(`${ledger.url}/console/`)).text();
  for (const script of html.match(/<script[^>]*>[\s\S]*?<\/script>/g) ?? []) {
    assert.match(script, /^<script type="module" src="app\.js"><\/script>$/);
  }
});

test("a wrong key shows the error state and is not kept", async () => {
  await signIn("oel_00000000_not-a-key-this-ledger-ever-issued-0000000000");
  const error = page.locator("#signin [data-state=error]");
  await error.waitFor();
  assert.match((await error.textContent()) ?? "", /not accepted \(401\)/);
  assert.match((await error.textContent()) ?? "", /Enter the whole key again/);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.ok(!page.url().includes("not-a-key"));
  await screenshots("error");
});

test("the account view shows the API's balances, events, usage and refunds", async () => {
  await signIn(ledger.adminKey, "acct_main");
  const account = await ledger.api.call("GET", "/v1/accounts/acct_main");
  await page.locator("#balances [data-field=balance] .amount").waitFor();
  for (const field of ["balance", "reserved", "available", "credit_limit"]) {
    const shown = await shownAmount(`#balances [data-field=${field}] .amount`);
    assert.deepEqual(shown, { minor: String(account[field]), text: formatMinor(account[field], "USD") }, field);
  }
  assert.equal(account.reserved, 7_777);

  // Events, newest first, a page at a time, each with the balance after it.
  await page.locator("#events table.events").waitFor();
  const events = (await ledger.api.call("GET", `/v1/accounts/acct_main/events?after_seq=0&limit=1000`)).events;
  const newestFirst = events.map((/** @type {any} */ e) => String(e.balance_after)).reverse();
  const balancesShown = () =>
    page
      .locator("#events [data-field=balance_after] .amount")
      .evaluateAll((cells) => cells.map((c) => c.getAttribute("data-minor")));
  assert.deepEqual(await balancesShown(), newestFirst.slice(0, EVENTS_PAGE));
  await page.click("#events button:text('Older')");
  await page.locator(`#events .pager:has-text("events 1–${account.last_seq - EVENTS_PAGE} of")`).waitFor();
  assert.deepEqual(await balancesShown(), newestFirst.slice(EVENTS_PAGE));

  // The chart: one bar per day with usage in the last 30 days, each the API's total for its day.
  await page.locator("#usage svg.chart").waitFor();
  const from = new Date(Math.floor(t0 / DAY_MS) * DAY_MS - (USAGE_DAYS - 1) * DAY_MS).toISOString();
  const to = new Date(Math.floor(t0 / DAY_MS) * DAY_MS + DAY_MS).toISOString();
  const usage = (
    await ledger.api.call(
      "GET",
      `/v1/reports/usage?group_by=day&account_id=acct_main&from=${from.replace(".000", "")}&to=${to.replace(".000", "")}`,
    )
  ).data;
  const bars = await page
    .locator("#usage svg.chart g.bar")
    .evaluateAll((gs) => gs.map((g) => [g.getAttribute("data-day"), g.getAttribute("data-cost")]));
  assert.deepEqual(
    bars,
    usage.map((/** @type {any} */ row) => [row.day, row.cost]),
  );
  assert.equal(bars.length, 5, "usage on 5 days of the last 30 (the one 40 days ago is outside)");

  // Lots with credit, in the order they are spent: the promotional one first, with its expiry.
  await page.locator("#lots table.lots").waitFor();
  const lots = await page
    .locator("#lots tbody tr")
    .evaluateAll((rows) =>
      rows.map((r) => [r.querySelector("code")?.textContent, r.querySelector("[data-field=expires_at]")?.textContent]),
    );
  assert.deepEqual(
    lots.map((l) => l[0]),
    ["promo_welcome", "topup_1"],
  );
  assert.match(String(lots[0]?.[1]), /^\d{4}-\d{2}-\d{2} .* UTC$/);
  assert.equal(lots[1]?.[1], "never");
  // The open hold earmarks the promotional lot first.
  assert.deepEqual(await shownAmount("#lots tbody tr:first-child [data-field=held] .amount"), {
    minor: "5000",
    text: formatMinor(5_000, "USD"),
  });

  // Spend limits: the day's limit on model-c, past its threshold after today's charge.
  await page.locator("#limits table.limits").waitFor();
  const limit = await page
    .locator("#limits tbody tr")
    .evaluateAll((rows) =>
      rows.map((r) => [r.querySelector("code")?.textContent, r.querySelector("[data-field=state]")?.textContent]),
    );
  assert.deepEqual(limit, [["model-c-daily", "threshold"]]);
  assert.deepEqual(await shownAmount("#limits tbody tr:first-child [data-field=remaining] .amount"), {
    minor: "1",
    text: formatMinor(1, "USD"),
  });

  // Refunds.
  await page.locator("#refunds table.refunds").waitFor();
  assert.deepEqual(await shownAmount("#refunds tbody td:nth-child(4) .amount"), { minor: "1500", text: "15.00 USD" });
  await screenshots("account");
});

test("a hold counts down to its expiry and leaves once the alarm settled it", async () => {
  const countdown = page.locator("#holds tr:has-text('hold_open') .countdown");
  await countdown.waitFor();
  assert.match(
    (await page.locator("#holds tr:has-text('hold_open')").textContent()) ?? "",
    /77\.77 USD[\s\S]*release: given back/,
  );
  await page.clock.pauseAt(t0 + PAUSE_AFTER_T0_MS);
  await page.clock.runFor(1000);
  await page.locator("#holds .countdown:text('4m 59s')").waitFor();
  await page.clock.runFor(holdExpiresMs - (t0 + PAUSE_AFTER_T0_MS + 1000) - 1000);
  await page.locator("#holds .countdown:text('1s')").waitFor();
  await page.clock.runFor(1000);
  await page.locator("#holds .countdown[data-state=expired]").waitFor();
  assert.equal(await countdown.textContent(), "expired: settling");

  // The ledger's clock reaches the expiry, and its alarm settles the hold (released: on_expiry).
  await ledger.setClock(holdExpiresMs);
  await ledger.runAlarm("acct_main");
  const hold = await ledger.api.call("GET", "/v1/accounts/acct_main/reservations/hold_open");
  assert.equal(hold.status, "expired");
  await page.clock.runFor(EXPIRED_REFRESH_MS);
  await page.locator("#holds [data-state=empty]").waitFor();
  await page.locator('#balances [data-field=reserved] .amount[data-minor="0"]').waitFor();
});

test("a key without audit:read is told which scope the events need", async () => {
  const issued = await ledger.api.call("POST", "/v1/admin/api-keys", {
    name: "console reader",
    scopes: ["ledger:read"],
    account_id: "acct_main",
  });
  await signIn(issued.secret, "acct_main");
  const error = page.locator("#events [data-state=error]");
  await error.waitFor();
  assert.match((await error.textContent()) ?? "", /may not read the event log \(403\)[\s\S]*audit:read/);
  await page.locator("#balances [data-field=balance] .amount").waitFor();
  await page.locator("#usage svg.chart").waitFor();
  await screenshots("restricted");
});

test("the operator view lists accounts lowest available first, with projection lag and monitoring", async () => {
  // The page's own answers from the monitoring routes, passed through unchanged and kept, so that
  // what the panels show is compared with exactly what the API answered them.
  /** @type {Record<string, any>} */
  const answered = {};
  for (const path of ["/v1/admin/monitoring", "/v1/admin/alerts"]) {
    await page.route(`**${path}`, async (route) => {
      const response = await route.fetch();
      answered[path] = await response.json();
      await route.fulfill({ response });
    });
  }
  await signIn(ledger.adminKey);
  await page.locator("#accounts table.accounts").waitFor();
  const report = (await ledger.api.call("GET", "/v1/reports/balances?sort=available&order=asc")).data;
  const rows = await page
    .locator("#accounts tbody tr")
    .evaluateAll((trs) =>
      trs.map((tr) => [
        tr.querySelector("a")?.textContent,
        tr.querySelector("[data-field=available] .amount")?.getAttribute("data-minor"),
      ]),
    );
  assert.deepEqual(
    rows,
    report.map((/** @type {any} */ a) => [a.account_id, String(a.available)]),
  );
  assert.deepEqual(
    rows.map(([id]) => id),
    ["acct_low", "acct_yen", "acct_main"],
  );
  assert.equal(
    await page.locator("#accounts tr:has-text('acct_yen') [data-field=available]").textContent(),
    "5,000 JPY",
  );
  await page.locator("#projection [data-field=worst_projection_lag_ms]").waitFor();
  assert.equal(await page.locator("#projection [data-field=dead_letters]").textContent(), "0");
  // The monitoring windows, as the API answered them (the requests this file made so far).
  await page.locator("#monitoring dl.figures").waitFor();
  const monitoring = answered["/v1/admin/monitoring"];
  assert.ok(monitoring.overall.requests > 0, "the requests of this file are counted");
  const shown = async (/** @type {string} */ field) => page.locator(`#monitoring [data-field=${field}]`).textContent();
  assert.equal(await shown("requests"), String(monitoring.overall.requests));
  assert.equal(await shown("rate_5xx"), `${(monitoring.overall.rate_5xx * 100).toFixed(2)} %`);
  assert.equal(await shown("pending_refunds"), String(monitoring.pending_refunds));
  assert.equal(await shown("dead_letters"), String(monitoring.dead_letters));
  assert.equal(await shown("auth_failures_10m"), String(monitoring.auth_failures_10m));
  const routes = await page.locator("#monitoring table.routes tbody tr td.route").allTextContents();
  assert.deepEqual(
    routes,
    monitoring.routes.map((/** @type {any} */ r) => r.route),
  );
  // The alerts as the API answered them: none has fired here, and the panel says so.
  assert.deepEqual(answered["/v1/admin/alerts"], { data: [] });
  await page.locator("#alerts [data-state=empty]:has-text('No alert has fired')").waitFor();
  await page.unrouteAll();
  await screenshots("operator");
});

/**
 * Alerts that fire and resolve need minutes of traffic; their real answers' shape is served to the
 * page here (page.route, same origin) to show both states. The low-balance threshold is real: set
 * through PATCH, read back by the account view.
 */
test("the console shows firing and resolved alerts, and the account's low-balance threshold", async () => {
  await page.route("**/v1/admin/alerts", (route) =>
    route.fulfill({
      status: 200,
      contentType: "application/json",
      body: JSON.stringify({
        data: [
          {
            rule: "provider_failure_rate",
            subject: "openai",
            state: "firing",
            value: 0.08,
            threshold: 0.05,
            since: "2026-11-29T10:00:00.000Z",
            resolved_at: null,
          },
          {
            rule: "pending_refunds",
            subject: null,
            state: "resolved",
            value: 11,
            threshold: 10,
            since: "2026-11-29T09:00:00.000Z",
            resolved_at: "2026-11-29T09:30:00.000Z",
          },
        ],
      }),
    }),
  );
  const patched = await ledger.api.call("PATCH", "/v1/accounts/acct_main", { low_balance_threshold: 1_000_000 });
  assert.equal(patched.low_balance_threshold, 1_000_000);
  try {
    await signIn(ledger.adminKey);
    await page.locator("#alerts table.alerts").waitFor();
    const rows = await page
      .locator("#alerts tbody tr")
      .evaluateAll((trs) => trs.map((tr) => [tr.children[0]?.textContent, tr.children[1]?.textContent]));
    assert.deepEqual(rows, [
      ["provider_failure_rate (openai)", "firing"],
      ["pending_refunds", "resolved"],
    ]);
    await screenshots("operator-monitoring");
    // Available with the credit limit: 9,902.93 + 25.00 USD, below a threshold of 10,000.00 USD.
    await page.goto(`${ledger.url}/console/#/account/acct_main`);
    const threshold = page.locator("#balances [data-field=low_balance_threshold]");
    await threshold.waitFor();
    assert.deepEqual(await shownAmount("#balances [data-field=low_balance_threshold] .amount"), {
      minor: "1000000",
      text: "10,000.00 USD",
    });
    assert.equal(await threshold.locator("[data-threshold-state]").getAttribute("data-threshold-state"), "low");
  } finally {
    await page.unrouteAll();
  }
});

test("the page never contacted another origin, and the CSP refused nothing", () => {
  const origin = new URL(ledger.url).origin;
  const elsewhere = requested.filter((url) => !url.startsWith("about:") && new URL(url).origin !== origin);
  assert.deepEqual(elsewhere, []);
  assert.ok(requested.some((url) => url.endsWith("/console/app.js")));
  assert.ok(!requested.some((url) => url.includes(ledger.adminKey)), "the key is never in a URL");
  assert.deepEqual(violations, []);
});
