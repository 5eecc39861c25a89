/**
 * When an account object starts a projection flush (./projector.ts). Never on a command's path:
 * each runs after the response, under the object's `waitUntil`.
 * - The coalescing window (PROJECTION_COALESCE_MS): the commands of a busy account share one
 *   message instead of each paying for its own; 0 flushes at once.
 * - The hold wait (PROJECTION_HOLD_WAIT_MS, a switch: docs/decisions/0002-projection-hold-wait.md):
 *   a lone hold just opened is given a moment for its capture or release to join the same
 *   message, which then writes the read side no row for the hold.
 * And how the object delivers (`deliveryFor`): to the projection queue when it has one, else
 * straight to the read side.
 */
import type { ProjectionConfig } from "../../config";
import { shardsOf } from "../../read-side/shards";
import { directDelivery, queueDelivery } from "./delivery";
import type { Delivery, Projector } from "./projector";

/**
 * The projection queue when the object has one (wrangler.toml [[queues.producers]]), else the
 * read side directly; PROJECTION_DELIVERY = "direct" forces the latter (the test suite's
 * default, so that tests see D1 move command by command).
 */
export function deliveryFor(env: { PROJECTION_QUEUE?: Queue<string> }, config: ProjectionConfig): Delivery {
  const direct = directDelivery(shardsOf(env));
  if (env.PROJECTION_QUEUE === undefined || config.direct) return direct;
  return queueDelivery(env.PROJECTION_QUEUE, direct, config.loneSend);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class FlushTimer {
  /** A flush is scheduled (its coalescing window is open). */
  private scheduled = false;

  constructor(
    private readonly projector: Projector,
    private readonly config: ProjectionConfig,
    /** The object's `ctx.waitUntil`. */
    private readonly waitUntil: (work: Promise<unknown>) => void,
    /** After each flush: what it delivered may complete a segment to seal. */
    private readonly flushed: () => void,
  ) {}

  /** A command committed: flush after the window, or join the flush already scheduled. */
  request(): void {
    const { coalesceMs, holdWaitMs } = this.config;
    if (!(coalesceMs > 0)) {
      this.waitUntil(this.projector.flush());
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    this.waitUntil(
      sleep(coalesceMs)
        .then(() =>
          holdWaitMs > coalesceMs && this.projector.holdWorthWaiting() ? sleep(holdWaitMs - coalesceMs) : undefined,
        )
        .then(() => {
          this.scheduled = false;
          return this.projector.flush();
        })
        .then(() => this.flushed()),
    );
  }
}
