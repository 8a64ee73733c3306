import type { Clock, Scheduler } from './env.js';

/**
 * Paces a flow of bytes (hint replay, repair streaming) to a rate over every
 * sender sharing it, as a token bucket holding at most one second of
 * budget. A take may overdraw the bucket; the taker then waits until the
 * overdraft has been paid back, so concurrent takers queue up behind it.
 */
export class Throttle {
  private tokens: number;
  private lastMs: number;

  constructor(
    private readonly bytesPerSecond: number,
    private readonly clock: Clock,
    private readonly scheduler: Scheduler,
  ) {
    this.tokens = bytesPerSecond;
    this.lastMs = clock.monotonicMs();
  }

  /** Resolves when `bytes` may be sent; at once while unthrottled (a rate of 0) or within budget. */
  take(bytes: number): Promise<void> | undefined {
    if (this.bytesPerSecond <= 0) return undefined;
    const now = this.clock.monotonicMs();
    this.tokens = Math.min(this.bytesPerSecond, this.tokens + ((now - this.lastMs) * this.bytesPerSecond) / 1000);
    this.lastMs = now;
    this.tokens -= bytes;
    if (this.tokens >= 0) return undefined;
    const waitMs = Math.ceil((-this.tokens * 1000) / this.bytesPerSecond);
    return new Promise((resolve) => this.scheduler.setTimer(waitMs, resolve));
  }
}
