import { type NodeId, nodeId } from '@chorus/core';
import { type KeyspaceDef, tokenOf } from '@chorus/ring';
import { describe, expect, it } from 'vitest';
import { findKey, settle, startCluster, str } from './helpers.js';

const ks: KeyspaceDef = { name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } };

describe('speculative retry', () => {
  for (const level of ['ONE', 'QUORUM'] as const) {
    it(`a ${level} read completes well before a slow data replica answers`, async () => {
      const c = await startCluster({ seed: 400, nodes: ['n1', 'n2', 'n3', 'n4', 'n5'].map((name) => ({ name })), keyspaces: [ks], network: { latencyMs: 1, jitterMs: 2 } });
      const h = c.handle('n5');
      const key = findKey(c.ring, ks, (r) => !r.includes(nodeId('n5')));
      expect((await settle(c.sim, h.put('app', key, undefined, 'v', { consistency: 'ALL' }))).ok).toBe(true);
      for (let i = 0; i < 30; i++) expect((await settle(c.sim, h.get('app', key, undefined, { consistency: 'ALL' }))).ok).toBe(true);
      // The replica the dynamic snitch ranks first becomes slow (but answers well within the read timeout).
      const peers = h.stats().peers;
      const replicas = c.ring.naturalReplicas(tokenOf(key), ks.replication);
      const first = [...replicas].sort((a, b) => peers[a]!.averageMs - peers[b]!.averageMs)[0] as NodeId;
      c.sim.network.setLink(nodeId('n5'), first, { latencyMs: 400 });
      c.sim.network.setLink(first, nodeId('n5'), { latencyMs: 400 });
      const before = h.stats().speculativeRetries;
      const t0 = c.sim.now;
      const r = await settle(c.sim, h.get('app', key, undefined, { consistency: level }));
      const took = c.sim.now - t0;
      expect(r.ok && str(r.value?.value)).toBe('v');
      expect(took).toBeLessThan(100);
      expect(h.stats().speculativeRetries).toBe(before + 1);
    });
  }

  it('stops reading from a replica that stopped answering once an ask to it times out', async () => {
    const names = ['n1', 'n2', 'n3', 'n4', 'n5'];
    // The failure detector never convicts: only the coordinator's own latencies can steer reads away.
    const c = await startCluster({ seed: 401, nodes: names.map((name) => ({ name })), keyspaces: [ks], believedUp: names, coordinator: { readTimeoutMs: 1_000 } });
    const h = c.handle('n5');
    const key = findKey(c.ring, ks, (r) => !r.includes(nodeId('n5')));
    expect((await settle(c.sim, h.put('app', key, undefined, 'v', { consistency: 'ALL' }))).ok).toBe(true);
    for (let i = 0; i < 30; i++) expect((await settle(c.sim, h.get('app', key, undefined, { consistency: 'ALL' }))).ok).toBe(true);
    const replicas = c.ring.naturalReplicas(tokenOf(key), ks.replication);
    const byLatency = () => [...replicas].sort((a, b) => h.stats().peers[a]!.averageMs - h.stats().peers[b]!.averageMs);
    const first = byLatency()[0]!;
    // Paused, not crashed: its links stay up and its asks go unanswered, as in a long GC pause or a stalled disk.
    c.sim.pause(first);
    // Until its first ask times out, each QUORUM read that asks the silent replica is saved by a speculative retry.
    const crashedAt = c.sim.now;
    while (c.sim.now - crashedAt < 1_200) expect((await settle(c.sim, h.get('app', key, undefined, { consistency: 'QUORUM' }))).ok).toBe(true);
    expect(h.stats().peers[first]!.averageMs).toBeGreaterThanOrEqual(500);
    expect(byLatency()[2]).toBe(first);
    const before = h.stats().speculativeRetries;
    for (let i = 0; i < 20; i++) {
      const t0 = c.sim.now;
      const r = await settle(c.sim, h.get('app', key, undefined, { consistency: 'QUORUM' }));
      expect(r.ok && str(r.value?.value)).toBe('v');
      expect(c.sim.now - t0).toBeLessThan(20);
    }
    expect(h.stats().speculativeRetries).toBe(before);
  });
});
