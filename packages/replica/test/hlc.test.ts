import { InvalidRequest, type Logger, nodeId, silentLogger } from '@chorus/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HybridLogicalClock, SkewTracker } from '../src/index.js';

describe('hybrid logical clock', () => {
  it('is strictly monotonic under a wall clock that steps back', () => {
    let wall = 1_000_000;
    const hlc = new HybridLogicalClock(() => wall);
    const a = hlc.now();
    wall -= 500_000; // NTP steps the clock back half a second
    const b = hlc.now();
    const c = hlc.now();
    expect(b).toBeGreaterThan(a);
    expect(c).toBeGreaterThan(b);
    wall += 2_000_000;
    expect(hlc.now()).toBe(wall);
  });

  it('property: any sequence of wall readings and observations gives strictly increasing timestamps', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: -1_000, max: 1_000 }), fc.option(fc.integer({ min: 0, max: 3_000_000 }))), { maxLength: 200 }), (steps) => {
        let wall = 10_000_000;
        const hlc = new HybridLogicalClock(() => wall);
        let last = 0;
        for (const [dt, seen] of steps) {
          wall += dt;
          if (seen !== null) hlc.observe(wall - 1_000_000 + seen);
          const t = hlc.now();
          expect(t).toBeGreaterThan(last);
          if (seen !== null && seen <= 2_000_000) expect(t).toBeGreaterThan(wall - 1_000_000 + seen);
          last = t;
        }
      }),
    );
  });

  it('moves past a peer timestamp within the skew bound, so a causally later write wins', () => {
    const wall = 5_000_000;
    const hlc = new HybridLogicalClock(() => wall, 1_000_000);
    expect(hlc.observe(wall + 300_000)).toBe(true);
    expect(hlc.now()).toBe(wall + 300_001);
  });

  it('does not adopt a peer timestamp beyond max skew, and refuses such a client timestamp', () => {
    const wall = 5_000_000;
    const hlc = new HybridLogicalClock(() => wall, 1_000_000);
    expect(hlc.observe(wall + 3_600_000_000)).toBe(false);
    expect(hlc.rejected).toBe(1);
    expect(hlc.now()).toBe(wall);
    expect(() => hlc.checkNotTooFarAhead(wall + 1_000_001, 'client timestamp')).toThrow(InvalidRequest);
    expect(() => hlc.checkNotTooFarAhead(wall + 999_999, 'client timestamp')).not.toThrow();
  });

  it('flags a peer whose clock drifts past max skew and warns once', () => {
    const warnings: unknown[] = [];
    const logger: Logger = { ...silentLogger, warn: (o: object) => void warnings.push(o), child: () => logger };
    const skew = new SkewTracker(1_000, logger);
    const n2 = nodeId('n2');
    const n3 = nodeId('n3');
    for (let i = 0; i < 10; i++) {
      const sent = 10_000_000 + i * 300_000;
      // n2's answer carries a wall reading 5 s ahead of the midpoint of a 2 ms round trip.
      skew.observeRoundTrip(n2, { sentWallMicros: sent, peerWallMicros: sent + 1_000 + 5_000_000, rttMs: 2, atMs: i * 300 });
      skew.observeRoundTrip(n3, { sentWallMicros: sent, peerWallMicros: sent + 1_000 + 2_000, rttMs: 2, atMs: i * 300 });
    }
    const s = skew.snapshot();
    expect(s['n2']).toMatchObject({ flagged: true, method: 'round-trip' });
    expect(s['n2']!.skewMs).toBeCloseTo(5_000, 0);
    expect(s['n3']).toMatchObject({ flagged: false });
    expect(s['n3']!.skewMs).toBeCloseTo(2, 0);
    expect(warnings).toHaveLength(1);
  });

  it('warns of a peer past clock_skew_warn and below max_clock_skew, once per change, and says when it is back', () => {
    const lines: Array<{ level: string; fields: Record<string, unknown>; msg: string }> = [];
    const logger: Logger = {
      ...silentLogger,
      warn: (fields: object, msg?: string) => void lines.push({ level: 'warn', fields: fields as Record<string, unknown>, msg: msg ?? '' }),
      info: (fields: object, msg?: string) => void lines.push({ level: 'info', fields: fields as Record<string, unknown>, msg: msg ?? '' }),
      child: () => logger,
    };
    const skew = new SkewTracker(1_000, logger, { warnMs: 20 });
    const n2 = nodeId('n2');
    let t = 0;
    const observe = (offsetMs: number, count: number) => {
      for (let i = 0; i < count; i++, t += 300) {
        const sent = 10_000_000 + t * 1000;
        skew.observeRoundTrip(n2, { sentWallMicros: sent, peerWallMicros: sent + 1_000 + offsetMs * 1000, rttMs: 2, atMs: t });
      }
    };
    observe(2, 10);
    expect(skew.snapshot()['n2']).toMatchObject({ warning: false, flagged: false });
    observe(35, 30);
    expect(skew.snapshot()['n2']).toMatchObject({ warning: true, flagged: false });
    expect(skew.snapshot()['n2']!.skewMs).toBeCloseTo(35, 0);
    expect(lines.map((l) => [l.level, l.fields['peer'], l.fields['clockSkewWarnMs']])).toEqual([['warn', 'n2', 20]]);
    observe(-1, 30);
    expect(skew.snapshot()['n2']).toMatchObject({ warning: false, flagged: false });
    expect(lines.map((l) => l.level)).toEqual(['warn', 'info']);
    expect(lines[1]!.msg).toMatch(/within clock_skew_warn/);
  });

  it('drops round trips stretched by a stall, and never judges from one burst', () => {
    const skew = new SkewTracker(1_000, silentLogger);
    const peers = ['n2', 'n3', 'n4'].map(nodeId);
    let t = 0;
    const sample = (peer: (typeof peers)[number], offsetMs: number, rttMs: number) => {
      const sent = 50_000_000 + t * 1000;
      skew.observeRoundTrip(peer, { sentWallMicros: sent, peerWallMicros: sent + (offsetMs + rttMs / 2) * 1000, rttMs, atMs: t + rttMs });
    };
    for (let i = 0; i < 5; i++, t += 300) for (const p of peers) sample(p, 0, 2);
    // A 1.5 s stall: the peers' readings look 750 ms behind the midpoint, or 1.5 s behind our clock at processing.
    for (let i = 0; i < 20; i++, t += 10) for (const p of peers) sample(p, -750, 1_500);
    expect(skew.selfAheadMs()).toBeUndefined();
    for (const s of Object.values(skew.snapshot())) expect(s).toMatchObject({ flagged: false, samples: 5 });
    // A genuine offset, but all in one burst: not judged yet; spread over time: judged.
    const fresh = new SkewTracker(1_000, silentLogger);
    for (const p of peers) for (let i = 0; i < 10; i++) fresh.observeRoundTrip(p, { sentWallMicros: 0, peerWallMicros: -3_000_000, rttMs: 1, atMs: 100 });
    expect(fresh.selfAheadMs()).toBeUndefined();
    for (const p of peers) for (let i = 0; i < 10; i++) fresh.observeRoundTrip(p, { sentWallMicros: 0, peerWallMicros: -3_000_000, rttMs: 1, atMs: 200 + i * 200 });
    expect(fresh.selfAheadMs()).toBeCloseTo(3_000, -1);
  });

  it('judges a skewed clock under load, when every answer is a sample', () => {
    const skew = new SkewTracker(1_000, silentLogger);
    const peers = ['n2', 'n3', 'n4'].map(nodeId);
    // Two seconds of answers, one per peer every millisecond, each saying this node runs 3 s ahead.
    for (let t = 0; t < 2_000; t++) for (const p of peers) skew.observeRoundTrip(p, { sentWallMicros: t * 1000, peerWallMicros: t * 1000 - 3_000_000, rttMs: 1, atMs: t });
    expect(skew.selfAheadMs()).toBeCloseTo(3_000, -1);
    for (const s of Object.values(skew.snapshot())) expect(s).toMatchObject({ flagged: true });
  });

  it('one-way readings prove a peer ahead, never behind', () => {
    const skew = new SkewTracker(1_000, silentLogger);
    skew.observeOneWay(nodeId('n2'), 10_000_000 + 60_000_000, 10_000_000); // 60 s ahead at least
    skew.observeOneWay(nodeId('n3'), 10_000_000 - 5_000_000, 10_000_000); // 5 s late: delay or skew, unknown
    expect(skew.snapshot()['n2']).toMatchObject({ flagged: true, method: 'one-way' });
    expect(skew.snapshot()['n3']).toMatchObject({ flagged: false, method: 'one-way' });
    expect(skew.selfAheadMs()).toBeUndefined();
  });
});
