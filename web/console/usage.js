// @ts-check
/**
 * Usage by day and by model for the last USAGE_DAYS days, as an inline SVG bar chart (one bar per
 * day with usage, stacked by model) with its legend and a table (GET /v1/reports/usage with
 * group_by=day,model over whole UTC days). Costs are decimal strings added as BigInt; a bar's
 * height is its share of the tallest day in whole pixels, computed in BigInt too.
 */
import { explain, get } from "./api.js";
import { amount, h, replace, showEmpty, showError, showLoading, svg, table } from "./dom.js";
import { formatMinor } from "./money.js";
import { utcDay } from "./time.js";

/** Days the chart covers, today (UTC) included. */
export const USAGE_DAYS = 30;
/** Groups one page answers (30 days of a few models fit in one page). */
const USAGE_PAGE = 1000;
/** Pages read at most (a bound on a tenant with very many models). */
const USAGE_PAGES_MAX = 10;
/** Models drawn in their own colour; the rest share one ("other models"). */
const SERIES_MAX = 7;
const WIDTH = 600;
const HEIGHT = 200;
const SLOT = WIDTH / USAGE_DAYS;
const NO_MODEL = "(no model)";

/** @param {Element} body @param {{ accountId: string, currency: string, lifetime: import("./time.js").Lifetime }} view */
export async function loadUsage(body, view) {
  showLoading(body, "usage");
  try {
    const from = utcDay(Date.now(), 1 - USAGE_DAYS);
    const to = utcDay(Date.now(), 1);
    const rows = await readUsage(view.accountId, from, to);
    if (view.lifetime.disposed) return;
    if (rows.length === 0) {
      showEmpty(
        body,
        `No usage in the last ${USAGE_DAYS} days. Charges and captured holds appear here by day and by model.`,
      );
      return;
    }
    renderUsage(body, rows, from, view.currency);
  } catch (error) {
    if (!view.lifetime.disposed) showError(body, explain(error, "ledger:read", "the usage report"));
  }
}

/** Every group of the period, page after page (bounded). @param {string} accountId @param {string} from @param {string} to */
async function readUsage(accountId, from, to) {
  /** @type {Record<string, any>[]} */
  const rows = [];
  let cursor = null;
  for (let page = 0; page < USAGE_PAGES_MAX; page++) {
    const query = `group_by=day,model&account_id=${encodeURIComponent(accountId)}&from=${from}&to=${to}&limit=${USAGE_PAGE}`;
    const answer = await get(
      `/v1/reports/usage?${query}${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`,
    );
    rows.push(...answer.data);
    cursor = answer.next_cursor;
    if (cursor === null) break;
  }
  return rows;
}

/**
 * Models by total cost, largest first: the first SERIES_MAX keep their name, the rest are "other".
 * @param {Record<string, any>[]} rows
 */
function seriesOf(rows) {
  /** @type {Map<string, { cost: bigint, charges: number }>} */
  const totals = new Map();
  for (const row of rows) {
    const model = row.model ?? NO_MODEL;
    const total = totals.get(model) ?? { cost: 0n, charges: 0 };
    totals.set(model, { cost: total.cost + BigInt(row.cost), charges: total.charges + row.charges });
  }
  const sorted = [...totals].sort(([a, x], [b, y]) =>
    x.cost === y.cost ? a.localeCompare(b) : x.cost > y.cost ? -1 : 1,
  );
  const named = new Map(sorted.slice(0, SERIES_MAX).map(([model], index) => [model, index]));
  return { sorted, seriesOfModel: (/** @type {string} */ model) => named.get(model) ?? SERIES_MAX };
}

/**
 * @param {Element} body @param {Record<string, any>[]} rows @param {string} from @param {string} currency
 */
function renderUsage(body, rows, from, currency) {
  const { sorted, seriesOfModel } = seriesOf(rows);
  /** @type {Map<string, bigint[]>} cost per series, per day */
  const days = new Map();
  for (const row of rows) {
    const stack = days.get(row.day) ?? new Array(SERIES_MAX + 1).fill(0n);
    const series = seriesOfModel(row.model ?? NO_MODEL);
    stack[series] += BigInt(row.cost);
    days.set(row.day, stack);
  }
  const dayTotal = (/** @type {bigint[]} */ stack) => stack.reduce((a, b) => a + b, 0n);
  const tallest = [...days.values()].reduce((max, stack) => (dayTotal(stack) > max ? dayTotal(stack) : max), 0n);
  const chart = chartSvg(days, from, tallest, currency, dayTotal);
  const legend = h(
    "ul",
    { class: "legend" },
    ...sorted.map(([model, total]) =>
      h(
        "li",
        { "data-model": model },
        h("span", { class: `swatch series-${seriesOfModel(model)}`, "aria-hidden": "true" }),
        h("span", { class: "legend-name" }, model),
        amount(total.cost.toString(), currency),
        h("span", { class: "note" }, ` · ${total.charges} charge(s)`),
      ),
    ),
  );
  const detail = table(
    ["Day", "Model", "Charges", "Cost", "Input tokens", "Output tokens"],
    rows.map((row) => [
      h("td", {}, row.day),
      h("td", {}, row.model ?? NO_MODEL),
      h("td", { class: "num" }, String(row.charges)),
      h("td", { class: "num" }, amount(row.cost, currency)),
      h("td", { class: "num" }, row.input_tokens),
      h("td", { class: "num" }, row.output_tokens),
    ]),
  );
  replace(
    body,
    chart,
    h("h3", {}, "By model, last 30 days"),
    legend,
    h("details", {}, h("summary", {}, "By day and model, as a table"), detail),
  );
}

/**
 * @param {Map<string, bigint[]>} days @param {string} from @param {bigint} tallest @param {string} currency
 * @param {(stack: bigint[]) => bigint} dayTotal
 */
function chartSvg(days, from, tallest, currency, dayTotal) {
  const start = Date.parse(from);
  const bars = [];
  for (let index = 0; index < USAGE_DAYS; index++) {
    const day = new Date(start + index * 86_400_000).toISOString().slice(0, 10);
    const stack = days.get(day);
    if (stack === undefined) continue;
    const total = dayTotal(stack);
    const x = index * SLOT + SLOT * 0.15;
    let y = HEIGHT;
    const segments = [];
    for (const [series, cost] of stack.entries()) {
      if (cost === 0n) continue;
      // Whole pixels, computed exactly; a day with any usage stays visible (at least 1 px).
      const height = Math.max(1, Number((cost * BigInt(HEIGHT)) / (tallest === 0n ? 1n : tallest)));
      y -= height;
      segments.push(svg("rect", { class: `series-${series}`, x, y, width: SLOT * 0.7, height }));
    }
    bars.push(
      svg(
        "g",
        { class: "bar", "data-day": day, "data-cost": total.toString() },
        svg("title", {}, `${day}: ${formatMinor(total, currency)}`),
        ...segments,
      ),
    );
  }
  const dayLabel = (/** @type {number} */ index) => new Date(start + index * 86_400_000).toISOString().slice(0, 10);
  // Text stays in HTML, outside the stretched SVG, so it reads the same at any width.
  return h(
    "figure",
    { class: "chart-frame" },
    h("p", { class: "note" }, `Tallest day: ${formatMinor(tallest, currency)}`),
    svg(
      "svg",
      {
        class: "chart",
        viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
        preserveAspectRatio: "none",
        role: "img",
        "aria-label": `Usage cost per day over the last ${USAGE_DAYS} days, stacked by model`,
      },
      ...bars,
      svg("line", { x1: 0, x2: WIDTH, y1: HEIGHT, y2: HEIGHT, class: "baseline" }),
    ),
    h("figcaption", { class: "axis-labels" }, h("span", {}, dayLabel(0)), h("span", {}, dayLabel(USAGE_DAYS - 1))),
  );
}
