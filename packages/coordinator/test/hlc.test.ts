import { InvalidRequest, type Logger, nodeId, silentLogger } from '@chorus/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Cell, cellDigest } from '@chorus/model';
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

  it('one-way readings prove a peer ahead, never behind', () => {
    const skew = new SkewTracker(1_000, silentLogger);
    skew.observeOneWay(nodeId('n2'), 10_000_000 + 60_000_000, 10_000_000); // 60 s ahead at least
    skew.observeOneWay(nodeId('n3'), 10_000_000 - 5_000_000, 10_000_000); // 5 s late: delay or skew, unknown
    expect(skew.snapshot()['n2']).toMatchObject({ flagged: true, method: 'one-way' });
    expect(skew.snapshot()['n3']).toMatchObject({ flagged: false, method: 'one-way' });
    expect(skew.selfAheadMs()).toBeUndefined();
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
    // Once n4 has heard its peers' clocks for a while (one burst never decides) it knows it is the odd one out and refuses before sending anything.
    for (let i = 0; i < 6; i++) {
      await settle(c.sim, c.handle('n4').get('app', key, undefined, { consistency: 'ALL' }));
      await c.sim.runFor(250);
    }
    const sent = c.sim.network.stats().sent;
    const again = await settle(c.sim, c.handle('n4').put('app', key, undefined, 'future2'));
    expect(again).toMatchObject({ ok: false, error: { name: 'ClockSkewed' } });
    expect(c.sim.network.stats().sent).toBe(sent);
  });
});

describe('client timestamps near the skew bound', () => {
  it('seed 610: with the coordinator 100 ms ahead, a client timestamp just inside its bound is accepted by every replica', async () => {
    const seed = 610;
    const c = await startCluster({ seed, nodes: [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }], keyspaces: [{ name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } }] });
    c.sim.setClockSkew('n1', 100_000);
    const h = c.handle('n1');
    const ts = h.clock.peek() + 950_000; // 1050 ms ahead of n2 and n3
    const w = await settle(c.sim, h.put('app', 'k', undefined, 'client', { timestampMicros: ts, consistency: 'ALL' }));
    expect(w, `seed ${seed}`).toEqual({ ok: true, value: { timestampMicros: ts } });
    // This node's next own write moves past the timestamp it accepted, and the replicas, slightly behind, take it too.
    const next = await settle(c.sim, h.put('app', 'k', undefined, 'own', { consistency: 'ALL' }));
    expect(next.ok && next.value.timestampMicros, `seed ${seed}`).toBeGreaterThan(ts);
    const r = await settle(c.sim, c.handle('n2').get('app', 'k', undefined, { consistency: 'ALL' }));
    expect(r.ok && new TextDecoder().decode(r.value!.value)).toBe('own');
  });

  it('seed 611: a replica refusal after another replica applied the write is a WriteTimeout; a refusal by all is InvalidRequest', async () => {
    const seed = 611;
    const c = await startCluster({ seed, nodes: ['n1', 'n2', 'n3', 'n4'].map((name) => ({ name })), keyspaces: [{ name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } }] });
    c.sim.setClockSkew('n1', 1_500_000); // n1 runs 1.5 s fast: its own replica takes what the others refuse
    const h = c.handle('n1');
    const mine = findKey(c.ring, c.keyspace('app'), (r) => r.includes(nodeId('n1')));
    const t0 = c.sim.now;
    const ts = h.clock.peek() + 900_000; // 2.4 s ahead of the others
    const w = await settle(c.sim, h.put('app', mine, undefined, 'v', { timestampMicros: ts, consistency: 'QUORUM' }));
    expect(w, `seed ${seed}`).toMatchObject({ ok: false, error: { name: 'WriteTimeout', fields: { consistency: 'QUORUM', required: 2, received: 1 } } });
    if (!w.ok) expect(w.error.message).toMatch(/may have been applied/);
    const local = await settle(c.sim, h.local('app', mine));
    expect(local.ok && local.value?.timestampMicros).toBe(ts);
    const theirs = findKey(c.ring, c.keyspace('app'), (r) => !r.includes(nodeId('n1')));
    const refused = await settle(c.sim, h.put('app', theirs, undefined, 'v', { timestampMicros: ts + (c.sim.now - t0) * 1000, consistency: 'ONE' }));
    expect(refused, `seed ${seed}`).toMatchObject({ ok: false, error: { name: 'InvalidRequest', fields: { reason: 'TIMESTAMP_IN_FUTURE' } } });
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
        // Exactly the replicas whose answer differs from the resolved version are stale.
        const differing = cells.flatMap((c, i) => (digestsAgree([cellDigest(c), cellDigest(a)]) ? [] : [nodeId(`n${i}`)]));
        expect(stale).toEqual(differing);
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
