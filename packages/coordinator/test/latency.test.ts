import { describe, expect, it } from 'vitest';
import { LatencyWindow } from '../src/latency.js';

/** The p99 as defined: the sorted window's element at ceil(0.99 n) - 1. */
function sortedP99(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)]!;
}

describe('latency window p99', () => {
  it('is the sorted window’s 99th percentile for any window length and sample order', () => {
    let seed = 7;
    const next = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    for (const size of [1, 5, 100, 101, 128, 500, 1024, 1600]) {
      const w = new LatencyWindow(size, 1_000, 1);
      const recent: number[] = [];
      for (let i = 0; i < 3 * size + 7; i++) {
        // Ties and spikes included: latencies repeat, and a few are far above the rest.
        const ms = next() < 0.05 ? 100 + Math.floor(next() * 1000) : Math.floor(next() * 20);
        w.record(ms, i);
        recent.push(ms);
        if (recent.length > size) recent.shift();
        expect(w.p99(), `size ${size}, sample ${i}`).toBe(sortedP99(recent));
      }
    }
  });

  it('is found again every refreshEvery samples, and is the window’s p99 then', () => {
    const w = new LatencyWindow(1024, 1_000, 32);
    const recent: number[] = [];
    let seen: number | undefined;
    for (let i = 0; i < 3000; i++) {
      const ms = i % 97 === 0 ? 500 + i : i % 13;
      w.record(ms, i);
      recent.push(ms);
      if (recent.length > 1024) recent.shift();
      const p99 = w.p99();
      if (i % 32 === 0) expect(p99, `sample ${i}`).toBe(sortedP99(recent));
      else expect(p99, `sample ${i}`).toBe(seen);
      seen = p99;
    }
  });
});

describe('latency average (the dynamic snitch’s estimate)', () => {
  it('weighs answers by time: a burst of slow answers moves it by the moment they span, not by their number', () => {
    const w = new LatencyWindow();
    for (let t = 0; t < 1_000; t++) w.record(10, t);
    // Five answers of 500 ms land in the same millisecond, as a batch does from a node that stalled once.
    for (let i = 0; i < 5; i++) w.record(500, 1_000);
    expect(w.averageMs).toBeLessThan(12);
  });

  it('follows a lasting change within about a second, and lets the first answer after a silence replace it', () => {
    const w = new LatencyWindow(1024, 1_000);
    for (let t = 0; t < 1_000; t++) w.record(10, t);
    for (let t = 1_000; t < 3_000; t++) w.record(30, t);
    // Two half-lives: three quarters of the way from 10 to 30 ms.
    expect(w.averageMs).toBeGreaterThan(24.9);
    expect(w.averageMs).toBeLessThan(25.1);
    w.record(4, 60_000);
    expect(w.averageMs).toBeCloseTo(4, 6);
  });

  it('is evidence while it is recent: two seconds after the last answer, or ten times itself when longer', () => {
    const w = new LatencyWindow();
    expect(w.averageAt(0)).toBeUndefined();
    w.record(300, 1_000);
    expect(w.averageAt(3_000)).toBe(300);
    expect(w.averageAt(4_001)).toBeUndefined();
    w.record(20, 10_000);
    expect(w.averageAt(12_000)).toBeDefined();
    expect(w.averageAt(12_001)).toBeUndefined();
    // A replica that let an ask time out after 5 s is passed over for 50 s before it is asked again.
    w.recordTimeout(5_000, 20_000);
    expect(w.averageAt(69_000)).toBeGreaterThan(4_990);
    expect(w.averageAt(70_001)).toBeUndefined();
  });
});
