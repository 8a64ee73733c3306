import { nodeId } from '@chorus/core';
import type { KeyspaceDef } from '@chorus/ring';
import { describe, expect, it } from 'vitest';
import { settle, startCluster } from './helpers.js';

const ks: KeyspaceDef = { name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } };
const NODES = ['n1', 'n2', 'n3', 'n4', 'n5'].map((name) => ({ name }));
const PEERS = ['n1', 'n2', 'n3', 'n5'];

describe('clock-skew estimate', () => {
  it('seed 800: a 1.5 s stall on the coordinator is not mistaken for skew; its writes keep working', async () => {
    const seed = 800;
    const c = await startCluster({ seed, nodes: NODES, keyspaces: [ks] });
    const h = c.handle('n4');
    const failures: string[] = [];
    const write = (i: number) =>
      h.put('app', `k${i}`, undefined, 'v', { consistency: 'ONE' }).then(
        () => undefined,
        (e: Error) => void failures.push(`${i}: ${e.name}`),
      );
    for (let i = 0; i < 20; i++) {
      void write(i);
      await c.sim.runFor(20);
    }
    // The stall: every frame to n4 sits 1.5 s before n4 handles it (an event loop blocked, a mailbox backlog).
    for (const p of PEERS) c.sim.network.setLink(nodeId(p), nodeId('n4'), { latencyMs: 1_500 });
    for (let i = 20; i < 40; i++) {
      void write(i);
      await c.sim.runFor(50);
    }
    for (const p of PEERS) c.sim.network.setLink(nodeId(p), nodeId('n4'), { latencyMs: 1 });
    await c.sim.runFor(2_000);
    for (let i = 40; i < 60; i++) {
      void write(i);
      await c.sim.runFor(20);
    }
    await c.sim.runFor(2_500);
    expect(failures, `seed ${seed}`).toEqual([]);
    for (const s of Object.values(h.clockSkew())) expect(s.flagged).toBe(false);
  });

  it('seed 801: a peer whose clock is genuinely off is flagged; a node that is itself off refuses to stamp writes', async () => {
    const seed = 801;
    const c = await startCluster({ seed, nodes: NODES, keyspaces: [ks] });
    c.sim.setClockSkew('n1', -3_000_000); // n1 runs 3 s slow
    c.sim.setClockSkew('n4', 3_000_000); // n4 runs 3 s fast
    for (let i = 0; i < 20; i++) {
      for (const n of ['n2', 'n4']) await settle(c.sim, c.handle(n).get('app', `k${i}`, undefined, { consistency: 'ALL' }));
      await c.sim.runFor(100);
    }
    const seen = c.handle('n2').clockSkew();
    expect(seen['n1'], `seed ${seed}`).toMatchObject({ flagged: true });
    expect(seen['n1']!.skewMs).toBeCloseTo(-3_000, -2);
    expect(seen['n4']).toMatchObject({ flagged: true });
    expect(seen['n3']).toMatchObject({ flagged: false });
    // n2 is in step with most of its peers and keeps writing; n4 is ahead of them all and refuses.
    expect((await settle(c.sim, c.handle('n2').put('app', 'w', undefined, 'v'))).ok).toBe(true);
    expect(await settle(c.sim, c.handle('n4').put('app', 'w', undefined, 'v')), `seed ${seed}`).toMatchObject({ ok: false, error: { name: 'ClockSkewed' } });
  });
});
