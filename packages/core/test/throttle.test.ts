import { describe, expect, it } from 'vitest';
import { Throttle } from '../src/throttle.js';

/** A clock and timers that move only when the test says so. */
function manualTime() {
  let now = 0;
  const timers: Array<{ at: number; fn: () => void }> = [];
  return {
    clock: { nowMicros: () => now * 1000, monotonicMs: () => now },
    scheduler: {
      setTimer(ms: number, fn: () => void) {
        timers.push({ at: now + ms, fn });
        return { cancel() {} };
      },
      defer: (fn: () => void) => fn(),
      deferIo: (fn: () => void) => fn(),
      track: <T>(work: Promise<T>) => work,
    },
    async advance(ms: number) {
      now += ms;
      for (const t of timers.splice(0).sort((a, b) => a.at - b.at)) {
        if (t.at <= now) t.fn();
        else timers.push(t);
      }
      await Promise.resolve();
    },
  };
}

describe('replay throttle', () => {
  it('lets a second of budget through at once, then paces takers to the rate', async () => {
    const time = manualTime();
    const throttle = new Throttle(1000, time.clock, time.scheduler);
    expect(throttle.take(600)).toBeUndefined();
    expect(throttle.take(400)).toBeUndefined();
    let done = 0;
    for (let i = 0; i < 4; i++) void throttle.take(250)?.then(() => done++);
    // 1000 bytes overdrawn at 1000 bytes/s: the last taker waits a second.
    await time.advance(250);
    expect(done).toBe(1);
    await time.advance(750);
    expect(done).toBe(4);
  });

  it('is off at a rate of 0', () => {
    const time = manualTime();
    const throttle = new Throttle(0, time.clock, time.scheduler);
    for (let i = 0; i < 100; i++) expect(throttle.take(1 << 20)).toBeUndefined();
  });
});
