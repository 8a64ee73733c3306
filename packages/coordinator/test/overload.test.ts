import { type HintSink, nodeId } from '@chorus/core';
import type { Mutation } from '@chorus/model';
import { describe, expect, it } from 'vitest';
import { settle, startCluster } from './helpers.js';

const ks = { name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } } as const;
const MiB = 1024 * 1024;

describe('coordinated request bytes', () => {
  it('refuses a write that would take the bytes coordinated at once past the budget with Overloaded, and takes it again once they are answered', async () => {
    const c = await startCluster({ seed: 31, nodes: [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }], keyspaces: [ks], coordinator: { maxInFlightBytes: 4 * MiB } });
    const h = c.handle('n1');
    const value = new Uint8Array(MiB);
    // Started in one turn: none is answered before the next starts, so the budget decides.
    const writes = Array.from({ length: 8 }, (_, i) => h.put('app', `big${i}`, undefined, value));
    const outcomes = await Promise.all(writes.map((w) => settle(c.sim, w)));
    const refused = outcomes.filter((o) => !o.ok);
    expect(outcomes.filter((o) => o.ok).length).toBe(3);
    expect(refused).toHaveLength(5);
    for (const o of refused) {
      expect(o.ok === false && o.error).toMatchObject({ name: 'Overloaded', code: 'OVERLOADED', httpStatus: 503, fields: expect.objectContaining({ budgetBytes: 4 * MiB }) });
    }
    // The budget is free again once the writes in flight are answered.
    expect((await settle(c.sim, h.put('app', 'after', undefined, value))).ok).toBe(true);
  });

  it('seed 32: counts a write answered at ONE until its last replicas answer, since its mutation may still be queued to them', async () => {
    const hints: HintSink<Mutation> = { offer: () => Promise.resolve(true) };
    const c = await startCluster({ seed: 32, nodes: [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }], keyspaces: [ks], coordinator: { maxInFlightBytes: 4 * MiB, hints } });
    for (const peer of ['n2', 'n3']) c.sim.network.setLink(nodeId(peer), nodeId('n1'), { latencyMs: 500 });
    const h = c.handle('n1');
    const value = new Uint8Array(MiB);
    // Each is answered at once by n1's own replica, and waits half a second more for n2's and n3's.
    for (let i = 0; i < 3; i++) expect((await settle(c.sim, h.put('app', `big${i}`, undefined, value, { consistency: 'ONE' }))).ok).toBe(true);
    expect(h.stats()).toMatchObject({ inFlight: 0, background: 3 });
    expect(h.stats().inFlightBytes).toBeGreaterThan(3 * MiB);
    const refused = await settle(c.sim, h.put('app', 'big3', undefined, value, { consistency: 'ONE' }));
    expect(refused.ok === false && refused.error).toMatchObject({ name: 'Overloaded', fields: expect.objectContaining({ budgetBytes: 4 * MiB, heldBytes: h.stats().inFlightBytes }) });
    // Once the replicas have them, the budget is free again.
    await c.sim.runFor(1_500);
    expect(h.stats()).toMatchObject({ background: 0, inFlightBytes: 0 });
    expect((await settle(c.sim, h.put('app', 'big3', undefined, value, { consistency: 'ONE' }))).ok).toBe(true);
  });
});
