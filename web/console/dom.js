// @ts-check
/**
 * Building the page without HTML strings: every element is created with its text set as text,
 * never parsed as markup, so nothing the ledger answers (ids, reasons, model names) can inject
 * script or markup. Inline SVG for the charts is built the same way.
 */

import { formatMinor, toMinor } from "./money.js";

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * @typedef {Node | string | number | null | undefined | false} Child
 * @typedef {Record<string, string | number | boolean | null | undefined | EventListener>} Attributes
 */

/** @param {Element} element @param {Attributes} attributes @param {Child[]} children */
function fill(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(name.replace(/^on/, ""), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(typeof child === "object" ? child : String(child));
  }
  return element;
}

/**
 * An HTML element: h("p", { class: "note" }, "text", child). Attributes named on* are listeners.
 * @param {string} tag @param {Attributes} [attributes] @param {Child[]} children
 * @returns {HTMLElement}
 */
export function h(tag, attributes = {}, ...children) {
  return /** @type {HTMLElement} */ (fill(document.createElement(tag), attributes, children));
}

/**
 * An SVG element, as h() makes HTML ones.
 * @param {string} tag @param {Attributes} [attributes] @param {Child[]} children
 * @returns {SVGElement}
 */
export function svg(tag, attributes = {}, ...children) {
  return /** @type {SVGElement} */ (fill(document.createElementNS(SVG_NS, tag), attributes, children));
}

/** Replaces the children of `parent` with `children`. @param {Element} parent @param {Child[]} children */
export function replace(parent, ...children) {
  parent.replaceChildren();
  fill(parent, {}, children);
}

/**
 * A panel: a titled section whose body shows one state at a time (loading, empty, error, data).
 * @param {string} id @param {string} title
 */
export function panel(id, title) {
  const body = h("div", { class: "panel-body", "aria-live": "polite" });
  const section = h(
    "section",
    { class: "panel", id, "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, title),
    body,
  );
  return { section, body };
}

/** The loading state of a panel. @param {Element} body @param {string} what */
export function showLoading(body, what) {
  replace(body, h("p", { class: "state state-loading", "data-state": "loading" }, `Loading ${what}…`));
}

/** The empty state: what is missing and what makes it appear. @param {Element} body @param {string} message */
export function showEmpty(body, message) {
  replace(body, h("p", { class: "state state-empty", "data-state": "empty" }, message));
}

/**
 * The error state: what went wrong and what to do about it, and an optional action.
 * @param {Element} body @param {{ title: string, detail: string, action?: string }} explained
 * @param {{ label: string, run: () => void }} [action]
 */
export function showError(body, explained, action) {
  replace(
    body,
    h(
      "div",
      { class: "state state-error", role: "alert", "data-state": "error" },
      h("p", { class: "state-title" }, explained.title),
      h("p", {}, explained.detail),
      explained.action === undefined ? null : h("p", { class: "state-action" }, explained.action),
      action === undefined ? null : h("button", { type: "button", onclick: action.run }, action.label),
    ),
  );
}

/**
 * A table in a horizontally scrollable frame; on a phone each row becomes a card of labelled
 * lines (style.css), so no column is out of sight.
 * @param {string[]} headings @param {Node[][]} rows @param {Attributes} [attributes]
 */
export function table(headings, rows, attributes = {}) {
  return h(
    "div",
    { class: "table-frame" },
    h(
      "table",
      attributes,
      h("thead", {}, h("tr", {}, ...headings.map((heading) => h("th", { scope: "col" }, heading)))),
      h(
        "tbody",
        {},
        ...rows.map((cells) => {
          // Each cell names its column, which a phone shows beside it (style.css, narrow screens).
          cells.forEach((cell, index) => {
            if (cell instanceof Element) cell.setAttribute("data-label", headings[index] ?? "");
          });
          return h("tr", {}, ...cells);
        }),
      ),
    ),
  );
}

/**
 * An amount for people, carrying its exact minor units in `data-minor` (what a test or a copy
 * reads back without parsing the formatted text).
 * @param {unknown} value @param {string} currency
 */
export function amount(value, currency) {
  const minor = toMinor(value);
  return h(
    "span",
    {
      class: minor !== null && minor < 0n ? "amount negative" : "amount",
      "data-minor": minor === null ? null : String(minor),
    },
    formatMinor(value, currency),
  );
}

/**
 * The button to the next page of a report, or nothing on the last page.
 * @param {string | null} cursor the page's next_cursor @param {string} label @param {(cursor: string) => void} load
 */
export function nextPage(cursor, label, load) {
  if (cursor === null) return null;
  return h("div", { class: "pager" }, h("button", { type: "button", onclick: () => load(cursor) }, label));
}
