// @ts-check
/**
 * Times for people, and the timers of the view on screen. Every time comes from `Date.now()`
 * and the page's timers, so a test that drives the page's clock drives the countdowns too.
 */

const SECOND_MS = 1000;
const MINUTE_MS = 60 * SECOND_MS;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** An RFC 3339 time as "2026-12-05 12:00:00 UTC" (the ledger's times are UTC). @param {string | null | undefined} iso */
export function formatTime(iso) {
  if (typeof iso !== "string" || iso.length < 19) return "—";
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

/** Time left as "1d 02h", "1h 02m 05s", "4m 05s" or "12s"; whole seconds, rounded up. @param {number} ms */
export function formatCountdown(ms) {
  const total = Math.ceil(ms / SECOND_MS);
  const days = Math.floor(total / 86_400);
  const hours = Math.floor((total % 86_400) / 3_600);
  const minutes = Math.floor((total % 3_600) / 60);
  const seconds = total % 60;
  const two = (/** @type {number} */ n) => String(n).padStart(2, "0");
  if (days > 0) return `${days}d ${two(hours)}h`;
  if (hours > 0) return `${hours}h ${two(minutes)}m ${two(seconds)}s`;
  if (minutes > 0) return `${minutes}m ${two(seconds)}s`;
  return `${seconds}s`;
}

/** A lag in milliseconds as "850 ms" or "12.3 s" (integer arithmetic). @param {number | null | undefined} ms */
export function formatLag(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  if (ms < SECOND_MS) return `${ms} ms`;
  return `${Math.floor(ms / SECOND_MS)}.${Math.floor((ms % SECOND_MS) / 100)} s`;
}

/** Midnight UTC of the day holding `ms`, as an RFC 3339 string `days` days later. @param {number} ms @param {number} days */
export function utcDay(ms, days = 0) {
  return new Date(Math.floor(ms / DAY_MS) * DAY_MS + days * DAY_MS).toISOString().replace(".000Z", "Z");
}

/**
 * The timers of one view: cleared together when the view goes away, so a view left behind never
 * keeps polling.
 */
export class Lifetime {
  /** @type {Set<ReturnType<typeof setTimeout>>} */
  #timeouts = new Set();
  /** @type {Set<ReturnType<typeof setInterval>>} */
  #intervals = new Set();
  disposed = false;

  /** Runs `run` every `ms`. @param {number} ms @param {() => void} run */
  every(ms, run) {
    if (!this.disposed) this.#intervals.add(setInterval(run, ms));
  }

  /** Runs `run` once after `ms`. @param {number} ms @param {() => void} run */
  after(ms, run) {
    if (this.disposed) return;
    const id = setTimeout(() => {
      this.#timeouts.delete(id);
      run();
    }, ms);
    this.#timeouts.add(id);
  }

  dispose() {
    this.disposed = true;
    for (const id of this.#timeouts) clearTimeout(id);
    for (const id of this.#intervals) clearInterval(id);
    this.#timeouts.clear();
    this.#intervals.clear();
  }
}
