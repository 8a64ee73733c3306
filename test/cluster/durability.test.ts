import { connect } from '@chorus/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, chorus } from './harness.js';

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
    const client = connect([cluster.address('n1'), cluster.address('n2'), cluster.address('n3')], { requestTimeoutMs: 5_000 });
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
          await new Promise((r) => setTimeout(r, 2)); // a few hundred writes a second keep the read-back short
        } catch (error) {
          const name = (error as Error).name;
          failures.set(name, (failures.get(name) ?? 0) + 1);
        }
      }
    })();
    try {
      for (const victim of ['n2', 'n3', 'n1']) {
        await new Promise((r) => setTimeout(r, 1_500));
        await chorus(['cluster', 'kill', victim, '--dir', cluster.dir]);
        await new Promise((r) => setTimeout(r, 2_000));
        await chorus(['cluster', 'start', '--dir', cluster.dir, '--json']);
      }
      await new Promise((r) => setTimeout(r, 1_000));
    } finally {
      writing = false;
      await writer;
    }
    console.log(`durability: ${acknowledged.length} writes acknowledged at QUORUM through three SIGKILLs; failed: ${JSON.stringify(Object.fromEntries(failures))}`);
    expect(acknowledged.length).toBeGreaterThan(100);

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
    expect(missing, `acknowledged but not readable: ${missing.slice(0, 10).join(', ')}`).toEqual([]);
  });
});
