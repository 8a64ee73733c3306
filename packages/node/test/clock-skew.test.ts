import { describe, expect, it } from 'vitest';
import { simCluster } from './sim-cluster.js';

describe('clock skew under max_clock_skew', () => {
  it('seed 31: a peer 60 ms ahead is flagged in status past clock_skew_warn, while its timestamps are still accepted', async () => {
    const seed = 31;
    const { sim, nodes, node, settle, during } = await simCluster(seed, ['n1', 'n2', 'n3'], { runLimitMs: 30_000, pollMs: 100 });
    await settle('all UN', async () => nodes.size === 3 && (await node('n1').status()).nodes.filter((n) => n.state === 'UN').length === 3);
    await during(node('n1').putKeyspace('app', { class: 'SimpleStrategy', rf: 3 }));
    await settle('schema everywhere', async () => (await Promise.all([...nodes.values()].map((n) => n.keyspaces()))).every((k) => k.keyspaces.length === 1));
    sim.setClockSkew('n2', 60_000);
    // Round trips to n2 (every write at ALL is one) measure its offset; a judgement needs several over more than a second.
    for (let i = 0; i < 12; i++) {
      const w = await during(node('n1').coordinator.put('app', `k${i}`, undefined, 'v', { consistency: 'ALL' }));
      expect(w.timestampMicros, `seed ${seed}`).toBeGreaterThan(0);
      await sim.runFor(200);
    }
    const seen = (await during(node('n1').status())).nodes;
    expect(seen.find((n) => n.name === 'n2'), `seed ${seed}`).toMatchObject({ clockSkewed: true, clockSkewRefused: false });
    expect(seen.find((n) => n.name === 'n2')!.clockSkewMs).toBeGreaterThan(50);
    expect(seen.find((n) => n.name === 'n3'), `seed ${seed}`).toMatchObject({ clockSkewed: false, clockSkewRefused: false });
    // Writes through the skewed node still work: below max_clock_skew nothing is refused.
    const w = await during(node('n2').coordinator.put('app', 'from-n2', undefined, 'v', { consistency: 'ALL' }));
    expect(w.timestampMicros).toBeGreaterThan(0);
  });
});
