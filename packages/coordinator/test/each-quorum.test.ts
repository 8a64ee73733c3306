import { nodeId } from '@chorus/core';
import type { KeyspaceDef } from '@chorus/ring';
import { describe, expect, it } from 'vitest';
import { settle, startCluster, str } from './helpers.js';

/** NTS dc1:5, dc2:3: EACH_QUORUM needs 3 in dc1 and 2 in dc2, and the closest extras are all in dc1. */
const geo: KeyspaceDef = { name: 'geo', replication: { class: 'NetworkTopologyStrategy', dcs: { dc1: 5, dc2: 3 } } };
const NODES = [...['a1', 'a2', 'a3', 'a4', 'a5'].map((name) => ({ name, dc: 'dc1' })), ...['b1', 'b2', 'b3'].map((name) => ({ name, dc: 'dc2' }))];
const DC2 = ['b1', 'b2', 'b3'];

describe('EACH_QUORUM replacements and speculation stay in the datacenter that needs them', () => {
  it('seed 700: a dc2 replica that fails fast is replaced by the other dc2 replica (reads and slices)', async () => {
    const seed = 700;
    // The failure detector has not noticed the crashes yet: asks to the crashed node fail at once (link down).
    const c = await startCluster({ seed, nodes: NODES, keyspaces: [geo], believedUp: DC2 });
    const h = c.handle('a1');
    expect((await settle(c.sim, h.put('geo', 'k', undefined, 'v', { consistency: 'ALL' }))).ok).toBe(true);
    expect((await settle(c.sim, h.put('geo', 'p', 'r1', 'row', { consistency: 'ALL' }))).ok).toBe(true);
    // Two of the three dc2 replicas are contacts; whichever one fails, the third must be asked.
    for (const victim of DC2) {
      c.sim.crash(victim);
      await c.sim.runFor(5);
      const t0 = c.sim.now;
      const r = await settle(c.sim, h.get('geo', 'k', undefined, { consistency: 'EACH_QUORUM' }));
      expect([seed, victim, r.ok ? str(r.value?.value) : r.error.message]).toEqual([seed, victim, 'v']);
      const s = await settle(c.sim, h.slice('geo', 'p', { consistency: 'EACH_QUORUM' }));
      expect([seed, victim, s.ok ? s.value.rows.map((row) => str(row.value)) : s.error.message]).toEqual([seed, victim, ['row']]);
      expect(c.sim.now - t0, `seed ${seed} victim ${victim}`).toBeLessThan(100);
      await c.sim.restart(victim);
      await c.sim.runFor(5);
    }
  });

  it('seed 701: speculation for a slow dc2 replica goes to the other dc2 replica', async () => {
    const seed = 701;
    // A fresh cluster per slow replica: latency history would otherwise steer the plan away from it.
    for (const slow of DC2) {
      const c = await startCluster({ seed, nodes: NODES, keyspaces: [geo] });
      const h = c.handle('a1');
      expect((await settle(c.sim, h.put('geo', 'k', undefined, 'v', { consistency: 'ALL' }))).ok).toBe(true);
      c.sim.network.setLink(nodeId('a1'), nodeId(slow), { latencyMs: 400 });
      const t0 = c.sim.now;
      const r = await settle(c.sim, h.get('geo', 'k', undefined, { consistency: 'EACH_QUORUM' }));
      expect([seed, slow, r.ok ? str(r.value?.value) : r.error.message]).toEqual([seed, slow, 'v']);
      expect(c.sim.now - t0, `seed ${seed} slow ${slow}`).toBeLessThan(200);
    }
  });
});
