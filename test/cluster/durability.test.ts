import { connect } from '@chorus/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, scaled, stateOf } from './harness.js';

/**
 * Jepsen-style, on real processes: a writer keeps writing new keys at QUORUM
 * while nodes are SIGKILLed and restarted one after another. Every write the
 * cluster acknowledged must be readable at QUORUM afterwards.
 */
describe('acknowledged writes survive SIGKILLs and restarts', () => {
  const cluster = new TestCluster();
  beforeAll(() => cluster.start(3));
  afterAll(() => cluster.destroy());

  it('loses no write acknowledged at QUORUM', async () => {
    const client = connect([cluster.address('n1'), cluster.address('n2'), cluster.address('n3')], { requestTimeoutMs: scaled(5_000) });
    await client.ready();
    const acknowledged: string[] = [];
    const failures = new Map<string, number>();
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const key = `durable-${i}`;
        try {
          await client.put('default', key, `value-${i}`, { consistency: 'QUORUM' });
          acknowledged.push(key);
        } catch (error) {
          const name = (error as Error).name;
          failures.set(name, (failures.get(name) ?? 0) + 1);
        }
        // A few hundred writes a second keep the read-back short; and a write that fails at once must not starve the timers.
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    // Each phase lasts until the writer got that many more writes acknowledged: with all three nodes up, with one
    // killed (before and after the others notice), and after it is back.
    const progress = async (phase: string, writes: number) => {
      const from = acknowledged.length;
      const ms = await cluster.waitFor(`${writes} more acknowledged writes ${phase}`, async () => acknowledged.length >= from + writes, scaled(60_000));
      console.log(`durability: ${acknowledged.length - from} writes acknowledged in ${ms} ms ${phase}`);
    };
    try {
      for (const victim of ['n2', 'n3', 'n1']) {
        await progress(`with all three nodes up`, 200);
        await cluster.kill(victim);
        const survivors = ['n1', 'n2', 'n3'].filter((n) => n !== victim);
        const detectMs = await cluster.waitFor(`${victim} DN on ${survivors.join(' and ')}`, async () => (await Promise.all(survivors.map((o) => stateOf(cluster, o, victim)))).every((n) => n?.state === 'DN'), scaled(40_000));
        console.log(`durability: ${victim} DN on both other nodes ${detectMs} ms after its SIGKILL`);
        await progress(`with ${victim} DN`, 200);
        const restarting = Date.now();
        await cluster.restart();
        console.log(`durability: ${victim} back, every node UN, after ${Date.now() - restarting} ms`);
      }
      await progress('after the last restart', 100);
    } finally {
      writing = false;
      await writer;
    }
    console.log(`durability: ${acknowledged.length} writes acknowledged at QUORUM through three SIGKILLs; failed: ${JSON.stringify(Object.fromEntries(failures))}`);
    expect(acknowledged.length).toBeGreaterThan(100);

    const readBack = Date.now();
    const missing: string[] = [];
    for (let i = 0; i < acknowledged.length; i += 64) {
      await Promise.all(
        acknowledged.slice(i, i + 64).map(async (key) => {
          const found = await client.get('default', key, { consistency: 'QUORUM' });
          if (!found || Buffer.from(found.value).toString() !== `value-${key.slice('durable-'.length)}`) missing.push(key);
        }),
      );
    }
    await client.close();
    console.log(`durability: read back ${acknowledged.length} writes in ${Date.now() - readBack} ms`);
    expect(missing, `acknowledged but not readable: ${missing.slice(0, 10).join(', ')}`).toEqual([]);
  });
});
