/**
 * The clock seam. The domain takes `now` as an argument; the shells (the account object, the
 * projector, the sweep, authentication's caches, the example gateway) read it from a `Clock`.
 * Production uses the system clock. Tests install a `ManualClock` with `useClock` and advance
 * it instead of sleeping, so no test depends on a wall-clock margin (issue 10).
 *
 * Why a module-level seam: under the test runtime, the Worker, its Durable Objects and the
 * tests share one isolate and one module graph, so installing a clock in a test is seen by the
 * object it then calls. Nothing in production ever installs one.
 */

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

let installed: Clock = systemClock;

/** The clock in force: the system clock unless a test installed another. */
export const clock: Clock = { now: () => installed.now() };

/** Installs `next` until the returned function restores the previous clock. */
export function useClock(next: Clock): () => void {
  const previous = installed;
  installed = next;
  return () => {
    installed = previous;
  };
}

/** A clock that moves only when told to. Starts at `startMs` (by default the real time). */
export class ManualClock implements Clock {
  private ms: number;
  constructor(startMs: number = Date.now()) {
    this.ms = startMs;
  }
  now(): number {
    return this.ms;
  }
  advance(ms: number): void {
    if (!(Number.isSafeInteger(ms) && ms >= 0)) throw new Error("a clock only moves forward by whole milliseconds");
    this.ms += ms;
  }
  set(ms: number): void {
    this.ms = ms;
  }
}
