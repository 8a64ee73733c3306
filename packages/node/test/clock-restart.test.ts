import { describe, expect, it } from 'vitest';
import { simCluster } from './sim-cluster.js';

const dec = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));

describe("a coordinator's clock across restarts", () => {
  it.each([
    ['a clean stop', 41, 3, false],
    ['a crash 1.2 s after the write (a mark was recorded meanwhile)', 42, 6, true],
  ])('after %s and a clock stepped back, its next write still wins over its last one (seed %i, %i s back)', async (_how, seed, stepBackS, crash) => {
    const { sim, nodes, node, settle, during, allUp } = await simCluster(seed, ['n1', 'n2', 'n3'], { runLimitMs: 30_000, pollMs: 100, settings: { maxClockSkewMs: 5_000 } });
    await settle('all UN', async () => nodes.size === 3 && (await node('n1').status()).nodes.filter((n) => n.state === 'UN').length === 3);
    await during(node('n1').putKeyspace('app', { class: 'SimpleStrategy', rf: 3 }));
    await settle('schema everywhere', async () => (await Promise.all([...nodes.values()].map((n) => n.keyspaces()))).every((k) => k.keyspaces.length === 1));
    const first = await during(node('n1').coordinator.put('app', 'k', undefined, 'first', { consistency: 'ALL' }));
    if (crash) {
      await sim.runFor(1_200);
      sim.crash('n1');
    } else {
      await during(node('n1').stop());
      sim.crash('n1');
    }
    nodes.delete('n1');
    // NTP stepped the clock back while the node was down (within max_clock_skew, here 5 s, of its peers' clocks) and it came back within a few seconds, before its clock caught up with its last write.
    sim.setClockSkew('n1', -stepBackS * 1_000_000);
    await sim.restart('n1');
    await settle('n1 back and UN everywhere', allUp);
    const second = await during(node('n1').coordinator.put('app', 'k', undefined, 'second', { consistency: 'ALL' }));
    expect(second.timestampMicros, `seed ${seed}`).toBeGreaterThan(first.timestampMicros);
    const read = await during(node('n2').coordinator.get('app', 'k', undefined, { consistency: 'ALL' }));
    expect(dec(read?.value), `seed ${seed}`).toBe('second');
  });
});
