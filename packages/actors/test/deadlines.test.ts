import type { Scheduler } from '@chorus/core';
import { describe, expect, it } from 'vitest';
import { DeadlineQueues } from '../src/index.js';

/** Timers on a clock the test moves by hand. */
function manualTime() {
  let now = 0;
  let timers: Array<{ at: number; fn: () => void; live: boolean }> = [];
  const scheduler: Scheduler = {
    setTimer(delayMs, fn) {
      const timer = { at: now + delayMs, fn, live: true };
      timers.push(timer);
      return { cancel: () => void (timer.live = false) };
    },
    defer: (fn) => fn(),
    deferIo: (fn) => fn(),
    track: (work) => work,
  };
  /** Moves the clock to `to`, firing every timer due on the way in deadline order. */
  const advance = (to: number) => {
    for (;;) {
      const due = timers.filter((t) => t.live && t.at <= to).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      now = Math.max(now, due.at);
      due.live = false;
      due.fn();
    }
    now = to;
    timers = timers.filter((t) => t.live);
  };
  return { scheduler, now: () => now, advance, liveTimers: () => timers.filter((t) => t.live).length };
}

/** A small seeded generator, so that a failing case can be replayed. */
function seeded(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

describe('DeadlineQueues', () => {
  it('expires every id once, no earlier than its deadline, across growth, wrap-around and shrinking', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const random = seeded(seed);
      const time = manualTime();
      const expired: Array<{ id: number; at: number; timeoutMs: number }> = [];
      const queues = new DeadlineQueues(time.scheduler, time.now, (id, timeoutMs) => expired.push({ id, at: time.now(), timeoutMs }));
      const deadlineOf = new Map<number, number>();
      const timeouts = [5, 50, 2_000];
      let id = 0;
      let clock = 0;
      // Bursts of thousands of asks between steps of the clock: the rings grow past their first size, wrap and shrink.
      for (let step = 0; step < 200; step++) {
        const burst = random() < 0.1 ? 3_000 : Math.floor(random() * 40);
        for (let i = 0; i < burst; i++) {
          const timeoutMs = timeouts[Math.floor(random() * timeouts.length)]!;
          deadlineOf.set(++id, clock + timeoutMs);
          queues.add(id, timeoutMs);
        }
        clock += Math.floor(random() * 30);
        time.advance(clock);
      }
      time.advance(clock + 10_000);
      const ids = expired.map((e) => e.id);
      expect(new Set(ids).size, `seed ${seed}`).toBe(ids.length);
      expect(ids.length, `seed ${seed}`).toBe(id);
      expect(expired.filter((e) => e.at < deadlineOf.get(e.id)!), `seed ${seed}: expired early`).toEqual([]);
      // One timeout's asks expire in the order they were made.
      for (const timeoutMs of timeouts) {
        const order = expired.filter((e) => e.timeoutMs === timeoutMs).map((e) => e.id);
        expect(order.every((x, i) => i === 0 || order[i - 1]! < x), `seed ${seed}: timeout ${timeoutMs} out of order`).toBe(true);
      }
      expect(time.liveTimers(), `seed ${seed}`).toBe(0);
    }
  });

  it('fires a timeout a bounded number of times under a steady trickle of asks, each expiring at most 2 % of its timeout late', () => {
    const time = manualTime();
    let fired = 0;
    const setTimer = time.scheduler.setTimer;
    time.scheduler.setTimer = (delayMs, fn) => setTimer(delayMs, () => (fired++, fn()));
    const lateness: number[] = [];
    const deadlineOf = new Map<number, number>();
    const queues = new DeadlineQueues(time.scheduler, time.now, (id) => lateness.push(time.now() - deadlineOf.get(id)!));
    // One ask a millisecond for 10 s, as one request at a time makes them.
    for (let id = 1; id <= 10_000; id++) {
      deadlineOf.set(id, time.now() + 2_000);
      queues.add(id, 2_000);
      time.advance(id);
    }
    time.advance(20_000);
    expect(lateness.length).toBe(10_000);
    expect(Math.min(...lateness)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...lateness)).toBeLessThanOrEqual(40);
    // 12 s of deadlines, a firing at most every 40 ms, where a timer per head fired 10,000 times.
    expect(fired).toBeLessThanOrEqual(12_000 / 40 + 2);
  });

  it('keeps one timer per timeout when an expiry adds to its own queue', () => {
    const time = manualTime();
    const expired: number[] = [];
    const queues = new DeadlineQueues(time.scheduler, time.now, (id) => {
      expired.push(id);
      if (id < 5) queues.add(id + 1, 10);
    });
    queues.add(1, 10);
    expect(time.liveTimers()).toBe(1);
    for (let t = 10; t <= 50; t += 10) {
      time.advance(t);
      expect(time.liveTimers()).toBeLessThanOrEqual(1);
    }
    expect(expired).toEqual([1, 2, 3, 4, 5]);
    expect(time.liveTimers()).toBe(0);
  });

  it('survives an expiry that cancels every queue', () => {
    const time = manualTime();
    const expired: number[] = [];
    const queues = new DeadlineQueues(time.scheduler, time.now, (id) => {
      expired.push(id);
      queues.cancelAll();
    });
    queues.add(1, 10);
    queues.add(2, 10);
    time.advance(20);
    expect(expired).toEqual([1]);
    expect(time.liveTimers()).toBe(0);
  });
});
