import { nodeId } from '@chorus/core';
import { describe, expect, it } from 'vitest';
import { findKey, settle, startCluster } from './helpers.js';

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
    // Refused by every replica for a timestamp this node's own clock made: the node's problem, never the client's (no 4xx).
    expect(w).toMatchObject({ ok: false, error: { name: 'ClockSkewed', httpStatus: 503 } });
    if (!w.ok) expect((w.error as unknown as { fields: { aheadMs: number } }).fields.aheadMs).toBeGreaterThan(59_000);
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
