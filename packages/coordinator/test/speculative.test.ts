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
      const first = [...replicas].sort((a, b) => peers[a]!.ewmaMs - peers[b]!.ewmaMs)[0] as NodeId;
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
});
