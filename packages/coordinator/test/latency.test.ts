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
    for (const size of [1, 5, 100, 101, 128, 500]) {
      const w = new LatencyWindow(size);
      const recent: number[] = [];
      for (let i = 0; i < 3 * size + 7; i++) {
        // Ties and spikes included: latencies repeat, and a few are far above the rest.
        const ms = next() < 0.05 ? 100 + Math.floor(next() * 1000) : Math.floor(next() * 20);
        w.record(ms);
        recent.push(ms);
        if (recent.length > size) recent.shift();
        expect(w.p99(), `size ${size}, sample ${i}`).toBe(sortedP99(recent));
      }
    }
  });
});
