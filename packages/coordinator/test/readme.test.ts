// The README's example, kept runnable.
import { ActorSystem } from '@chorus/actors';
import { type NodeId, SeededRandom, nodeId } from '@chorus/core';
import { DEFAULT_MAX_CLOCK_SKEW_MS, HybridLogicalClock, SkewTracker, spawnReplica } from '@chorus/replica';
import { RingView, allocateTokens } from '@chorus/ring';
import { Simulation } from '@chorus/sim';
import { spawnStorage } from '@chorus/storage';
import { wireCodec } from '@chorus/wire';
import { MemoryLevel } from 'memory-level';
import { expect, it } from 'vitest';
import { type CoordinatorHandle, spawnCoordinator } from '../src/index.js';

it('README example', async () => {
  const sim = new Simulation({ seed: 42, network: { latencyMs: 2, jitterMs: 3 } });
  const names = ['n1', 'n2', 'n3'].map(nodeId);
  let ring = RingView.empty();
  for (const node of names) ring = ring.with({ node, dc: 'dc1', rack: 'r1', tokens: allocateTokens(ring, { node, dc: 'dc1' }, 8, 3, new SeededRandom(1)), status: 'normal' });
  const keyspace = { name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } } as const;
  const nodes = new Map<string, CoordinatorHandle>();
  for (const name of names) {
    await sim.addNode(name, ({ env, transport, disk }) => {
      const system = new ActorSystem({ env, transport, codec: wireCodec() });
      const db = (disk.get('db') ?? new MemoryLevel({ keyEncoding: 'view', valueEncoding: 'view' })) as MemoryLevel<Uint8Array, Uint8Array>;
      disk.set('db', db);
      // What packages/node wires: storage, this node's replica actor, and one clock they share with the coordinator.
      const storage = spawnStorage(system, { db, env });
      const hlc = new HybridLogicalClock(() => env.clock.nowMicros());
      const skew = new SkewTracker(DEFAULT_MAX_CLOCK_SKEW_MS, env.logger);
      spawnReplica(system, { env, storage, hlc, skew });
      nodes.set(name, spawnCoordinator(system, {
        env,
        // Membership comes from gossip in a real node; here the simulation knows who is up.
        membership: { isAlive: (n: NodeId) => sim.isUp(n), locationOf: () => ({ dc: 'dc1', rack: 'r1' }) },
        topology: { ring: () => ring, keyspace: (n) => (n === 'app' ? keyspace : undefined), localDc: 'dc1', localRack: 'r1' },
        hlc,
        skew,
        localReplica: storage.reader,
      }));
    });
  }
  const run = async <T>(p: Promise<T>): Promise<T> => {
    let done = false;
    void p.finally(() => (done = true)).catch(() => undefined);
    await sim.run({ stopWhen: () => done, untilMs: sim.now + 10_000 });
    return p;
  };

  await run(nodes.get('n1')!.put('app', 'user:42', undefined, 'hello', { consistency: 'QUORUM' }));
  sim.crash('n3');
  const got = await run(nodes.get('n2')!.get('app', 'user:42', undefined, { consistency: 'QUORUM' }));
  console.log(new TextDecoder().decode(got!.value)); // hello
  await run(nodes.get('n2')!.get('app', 'user:42', undefined, { consistency: 'ALL' })).catch((e: Error) => console.log(e.name, e.message));
  // Unavailable cannot achieve consistency level ALL: 3 replicas required, 2 alive

  expect(new TextDecoder().decode(got!.value)).toBe('hello');
  await expect(run(nodes.get('n2')!.get('app', 'user:42', undefined, { consistency: 'ALL' }))).rejects.toMatchObject({ name: 'Unavailable' });
});
