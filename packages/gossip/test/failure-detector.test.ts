import { describe, expect, it } from 'vitest';
import { PhiAccrualFailureDetector } from '../src/index.js';

/** Silence (ms after the last arrival) at which phi first reaches the threshold, searched in 10 ms steps. */
function convictionDelay(fd: PhiAccrualFailureDetector, key: string, last: number): number {
  for (let t = last; t < last + 1_000_000; t += 10) if (!fd.isAvailable(key, t)) return t - last;
  throw new Error('never convicted');
}

describe('phi accrual failure detector', () => {
  it('keeps phi low under steady heartbeats and convicts after about 18.4 mean intervals of silence', () => {
    const fd = new PhiAccrualFailureDetector({ maxIntervalMs: 2_000 });
    let t = 0;
    for (let i = 0; i < 1_200; i++) fd.report('a', (t += 1_000));
    // The bootstrap sample has left the window: the mean is exactly the heartbeat interval.
    expect(fd.meanIntervalMs('a')).toBe(1_000);
    expect(fd.phi('a', t + 1_000)).toBeCloseTo(1 / Math.LN10, 6);
    expect(fd.phi('a', t + 1_000)).toBeLessThan(0.5);
    expect(fd.isAvailable('a', t + 10_000)).toBe(true);
    // phi = Δt / mean / ln 10 reaches 8 at Δt = 8 · ln 10 · 1000 ≈ 18,421 ms.
    const delay = convictionDelay(fd, 'a', t);
    expect(delay).toBeGreaterThanOrEqual(18_420);
    expect(delay).toBeLessThanOrEqual(18_430);
  });

  it('scales with the observed interval and with the threshold', () => {
    const fast = new PhiAccrualFailureDetector({ maxIntervalMs: 2_000 });
    const strict = new PhiAccrualFailureDetector({ threshold: 4, maxIntervalMs: 2_000 });
    let t = 0;
    for (let i = 0; i < 1_500; i++) {
      t += 200;
      fast.report('a', t);
      strict.report('a', t * 5);
    }
    expect(convictionDelay(fast, 'a', t)).toBeCloseTo(18_420 / 5, -2);
    expect(convictionDelay(strict, 'a', t * 5)).toBeCloseTo(18_420 / 2, -2);
  });

  it('judges a node heard once against the initial interval, so one arrival cannot convict it fast', () => {
    const fd = new PhiAccrualFailureDetector({ initialIntervalMs: 2_000 });
    expect(fd.phi('new', 5_000)).toBe(0); // never heard: no suspicion at all
    fd.report('new', 0);
    expect(fd.samples('new')).toBe(1);
    expect(fd.meanIntervalMs('new')).toBe(2_000);
    expect(convictionDelay(fd, 'new', 0)).toBeGreaterThan(36_000);
    // A very short first real interval is averaged with the bootstrap, not taken alone.
    fd.report('new', 10);
    expect(fd.meanIntervalMs('new')).toBe(1_005);
  });

  it('ignores intervals over the maximum, so a long pause does not poison the window', () => {
    const fd = new PhiAccrualFailureDetector({ maxIntervalMs: 2_000 });
    let t = 0;
    for (let i = 0; i < 100; i++) fd.report('a', (t += 1_000));
    const before = fd.meanIntervalMs('a');
    fd.report('a', (t += 120_000)); // back after a partition
    expect(fd.meanIntervalMs('a')).toBe(before);
    expect(fd.phi('a', t)).toBe(0);
    expect(fd.phi('a', t + 1_000)).toBeLessThan(1);
  });

  it('convicts only candidates past the threshold, and none after a local pause', () => {
    const fd = new PhiAccrualFailureDetector({ maxLocalPauseMs: 5_000, maxIntervalMs: 2_000 });
    let t = 0;
    for (let i = 0; i < 50; i++) {
      t += 1_000;
      fd.report('alive', t);
      fd.report('silent', t);
    }
    for (let s = 1; s <= 30; s++) {
      t += 1_000;
      fd.report('alive', t);
      const convicted = fd.convict(['alive', 'silent'], t);
      if (s < 18) expect(convicted).toEqual([]);
      if (s === 19) expect(convicted).toEqual(['silent']);
    }
    // The checker itself stalled for 10 s: its silence, not the peers'.
    t += 10_000;
    expect(fd.convict(['alive', 'silent'], t)).toEqual([]);
    expect(fd.convict(['alive', 'silent'], t + 1_000)).toEqual(['silent']); // alive's 11 s of silence is phi 4.8
    fd.forget('silent');
    expect(fd.phi('silent', t)).toBe(0);
  });
});
