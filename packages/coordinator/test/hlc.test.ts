import { InvalidRequest, type Logger, nodeId, silentLogger } from '@chorus/core';
import { type Cell, cellDigest } from '@chorus/storage';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HybridLogicalClock, SkewTracker, digestsAgree, mergeSlicePages, resolveCells, staleReplicas } from '../src/index.js';
import { findKey, settle, startCluster } from './helpers.js';

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
      skew.observe(n2, 10_000_000 + 5_000_000, 10_000_000);
      skew.observe(n3, 10_000_000 + 2_000, 10_000_000);
    }
    const s = skew.snapshot();
    expect(s['n2']).toMatchObject({ flagged: true });
    expect(s['n2']!.skewMs).toBeCloseTo(5_000, 0);
    expect(s['n3']).toMatchObject({ flagged: false });
    expect(warnings).toHaveLength(1);
  });
});

describe('timestamps through the cluster', () => {
  it('refuses a client timestamp beyond max skew with InvalidRequest and accepts one within it', async () => {
    const c = await startCluster({ seed: 3, nodes: [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }], keyspaces: [{ name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } }] });
    const h = c.handle('n1');
    const now = h.clock.peek();
    const far = await settle(c.sim, h.put('app', 'k', undefined, 'v', { timestampMicros: now + 5_000_000 }));
    expect(far).toMatchObject({ ok: false, error: { name: 'InvalidRequest' } });
    const near = await settle(c.sim, h.put('app', 'k', undefined, 'v', { timestampMicros: now + 500_000 }));
    expect(near).toEqual({ ok: true, value: { timestampMicros: now + 500_000 } });
    // The next write of this node moves past the client timestamp it accepted.
    const next = await settle(c.sim, h.put('app', 'k', undefined, 'v2'));
    expect(next.ok && next.value.timestampMicros).toBeGreaterThan(now + 500_000);
  });

  it('a write after reading a value written by a node with a faster clock still wins', async () => {
    const c = await startCluster({ seed: 4, nodes: [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }], keyspaces: [{ name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } }] });
    c.sim.setClockSkew('n1', 400_000); // n1 runs 400 ms fast, within max skew
    await settle(c.sim, c.handle('n1').put('app', 'k', undefined, 'from-n1', { consistency: 'ALL' }));
    const read = await settle(c.sim, c.handle('n2').get('app', 'k', undefined, { consistency: 'ONE' }));
    expect(read.ok).toBe(true);
    const w = await settle(c.sim, c.handle('n2').put('app', 'k', undefined, 'from-n2'));
    expect(w.ok).toBe(true);
    const after = await settle(c.sim, c.handle('n3').get('app', 'k', undefined, { consistency: 'ALL' }));
    expect(after.ok && new TextDecoder().decode(after.value!.value)).toBe('from-n2');
  });

  it('a coordinator whose clock runs beyond max skew cannot plant future writes on its peers; it then refuses writes itself', async () => {
    const c = await startCluster({ seed: 5, nodes: [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }, { name: 'n4' }], keyspaces: [{ name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } }] });
    c.sim.setClockSkew('n4', 60_000_000); // a minute fast
    const key = findKey(c.ring, c.keyspace('app'), (r) => !r.includes(nodeId('n4')));
    const w = await settle(c.sim, c.handle('n4').put('app', key, undefined, 'future', { consistency: 'ONE' }));
    expect(w).toMatchObject({ ok: false, error: { name: 'InvalidRequest', fields: { reason: 'TIMESTAMP_IN_FUTURE' } } });
    expect(c.handle('n1').clockSkew()['n4']).toMatchObject({ flagged: true });
    const honest = await settle(c.sim, c.handle('n2').put('app', key, undefined, 'now', { consistency: 'QUORUM' }));
    expect(honest.ok).toBe(true);
    const r = await settle(c.sim, c.handle('n3').get('app', key, undefined, { consistency: 'ALL' }));
    expect(r.ok && new TextDecoder().decode(r.value!.value)).toBe('now');
    // Once n4 has heard its peers' clocks it knows it is the odd one out and refuses before sending anything.
    await settle(c.sim, c.handle('n4').get('app', key, undefined, { consistency: 'ALL' }));
    const sent = c.sim.network.stats().sent;
    const again = await settle(c.sim, c.handle('n4').put('app', key, undefined, 'future2'));
    expect(again).toMatchObject({ ok: false, error: { name: 'ClockSkewed' } });
    expect(c.sim.network.stats().sent).toBe(sent);
  });
});

describe('read resolution', () => {
  const v = (s: string, ts: number): Cell => ({ value: new TextEncoder().encode(s), timestampMicros: ts });
  it('picks the newest version; a tombstone wins a tie', () => {
    expect(resolveCells([v('a', 1), v('b', 3), undefined, v('c', 2)])).toEqual(v('b', 3));
    expect(resolveCells([v('a', 3), { tombstone: true, timestampMicros: 3 }])).toEqual({ tombstone: true, timestampMicros: 3 });
    expect(resolveCells([undefined, undefined])).toBeUndefined();
  });

  it('property: resolution is order-independent and digests agree exactly on equal versions', () => {
    const cell = fc.oneof(
      fc.constant(undefined),
      fc.record({ value: fc.uint8Array({ maxLength: 3 }), timestampMicros: fc.integer({ min: 0, max: 5 }) }),
      fc.record({ tombstone: fc.constant(true as const), timestampMicros: fc.integer({ min: 0, max: 5 }) }),
    );
    fc.assert(
      fc.property(fc.array(cell, { maxLength: 5 }), (cells) => {
        const a = resolveCells(cells);
        const b = resolveCells([...cells].reverse());
        expect(cellDigest(a)).toEqual(cellDigest(b));
        const stale = staleReplicas(a, new Map(cells.map((c, i) => [nodeId(`n${i}`), c])));
        const fresh = cells.filter((c) => digestsAgree([cellDigest(c), cellDigest(a)]));
        expect(stale.length + fresh.length).toBe(a === undefined ? stale.length + fresh.length : cells.length);
      }),
    );
  });

  it('merges slice pages row by row up to the earliest cut of a full page', () => {
    const ck = (s: string) => new TextEncoder().encode(s);
    const row = (c: string, cell: Cell) => ({ clustering: ck(c), cell });
    const a = { rows: [row('a', v('a1', 1)), row('b', v('b1', 1))], nextPage: ck('b') };
    const b = { rows: [row('a', v('a2', 2)), row('c', v('c2', 2)), row('d', v('d2', 2))] };
    const merged = mergeSlicePages([a, b], 2, false, 100);
    expect(merged.rows.map((r) => new TextDecoder().decode((r.cell as { value: Uint8Array }).value))).toEqual(['a2', 'b1']);
    expect(merged.nextPage).toEqual(ck('b'));
    // A tombstone on one replica hides the live row of another; a partition deletion hides older rows.
    const t = mergeSlicePages([{ rows: [row('a', { tombstone: true, timestampMicros: 5 })] }, { rows: [row('a', v('x', 4)), row('b', v('y', 9))], partitionDeletedAtMicros: 6 }, { rows: [row('c', v('z', 6))] }], 10, false, 100);
    expect(t.rows.map((r) => new TextDecoder().decode(r.clustering))).toEqual(['b']);
    expect(t.nextPage).toBeUndefined();
  });
});
