import { type HintSink, nodeId } from '@chorus/core';
import type { Mutation } from '@chorus/model';
import type { KeyspaceDef } from '@chorus/ring';
import { describe, expect, it } from 'vitest';
import { type Cluster, settle, startCluster } from './helpers.js';

const ks: KeyspaceDef = { name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } };
const NODES = ['n1', 'n2', 'n3'].map((name) => ({ name }));
const hints: HintSink<Mutation> = { offer: () => Promise.resolve(true) };

/** Three nodes whose coordinators follow each write to its last replica (hints on) and keep at most two behind their answers. */
async function cluster(seed: number): Promise<Cluster> {
  return startCluster({ seed, nodes: NODES, keyspaces: [ks], coordinator: { hints, maxBackgroundWrites: 2 } });
}

/** Answers from `peers` reach n1 only after `latencyMs`; n1's own replica answers at once. */
function slowPeers(c: Cluster, latencyMs: number, peers = ['n2', 'n3']): void {
  for (const peer of peers) c.sim.network.setLink(nodeId(peer), nodeId('n1'), { latencyMs });
}

async function timedPut(c: Cluster, key: string): Promise<{ ok: boolean; tookMs: number; error?: Error }> {
  const startedAt = c.sim.now;
  const outcome = await settle(c.sim, c.handle('n1').put('app', key, undefined, 'v', { consistency: 'ONE' }));
  return { ok: outcome.ok, tookMs: c.sim.now - startedAt, ...(outcome.ok ? {} : { error: outcome.error }) };
}

describe('writes behind their answers', () => {
  it('seed 1201: past max_background_writes, a ONE write is answered once all but one of its replicas answered', async () => {
    const c = await cluster(1201);
    slowPeers(c, 500);
    const h = c.handle('n1');
    // The coordinator's own replica is the one ONE needs: answered at once, the other two still behind.
    for (const key of ['a', 'b']) {
      const w = await timedPut(c, key);
      expect(w).toMatchObject({ ok: true });
      expect(w.tookMs).toBeLessThan(100);
    }
    expect(h.stats()).toMatchObject({ background: 2, heldWrites: 0 });
    const held = await timedPut(c, 'c');
    expect(held.ok).toBe(true);
    expect(held.tookMs).toBeGreaterThanOrEqual(500);
    expect(held.tookMs).toBeLessThan(2_000);
    expect(h.stats().heldWrites).toBe(1);
    // Once the replicas catch up, writes are answered at their level again.
    await c.sim.runFor(2_000);
    expect(h.stats()).toMatchObject({ background: 0, open: 0 });
    slowPeers(c, 1);
    expect((await timedPut(c, 'd')).tookMs).toBeLessThan(100);
  });

  it('seed 1203: one silent replica, not convicted yet, does not hold writes: the last replica is never waited for', async () => {
    const c = await cluster(1203);
    slowPeers(c, 5_000, ['n3']);
    for (const key of ['a', 'b', 'c', 'd']) {
      const w = await timedPut(c, key);
      expect(w).toMatchObject({ ok: true });
      expect(w.tookMs).toBeLessThan(100);
    }
    // Two writes were behind their answers (n3 silent) when c and d reached their level: each waited for n2.
    expect(c.handle('n1').stats()).toMatchObject({ background: 4, heldWrites: 2 });
  });

  it('seed 1202: a held write whose other replicas stay silent is answered at its deadline with success, since its level was met', async () => {
    const c = await cluster(1202);
    slowPeers(c, 5_000);
    for (const key of ['a', 'b']) expect((await timedPut(c, key)).ok).toBe(true);
    const held = await timedPut(c, 'c');
    expect(held).toMatchObject({ ok: true });
    // The write timeout (2 s) ends the wait, not a WriteTimeout: one replica acknowledged, and ONE asks no more.
    expect(held.tookMs).toBeGreaterThanOrEqual(1_900);
    expect(held.tookMs).toBeLessThan(2_100);
    expect(c.handle('n1').stats()).toMatchObject({ heldWrites: 1, write: expect.objectContaining({ ok: 3, timeouts: 0 }) });
  });
});
