// The README's example, kept runnable.
import { ActorSystem } from '@chorus/actors';
import { type Env, Throttle, nodeId, token } from '@chorus/core';
import { HybridLogicalClock, SkewTracker, spawnReplica } from '@chorus/replica';
import { RingView } from '@chorus/ring';
import { Simulation } from '@chorus/sim';
import { type StorageHandle, spawnStorage, write } from '@chorus/storage';
import { wireCodec } from '@chorus/wire';
import { MemoryLevel } from 'memory-level';
import { expect, it } from 'vitest';
import { RangeMovement, rangesToFetch } from '../src/index.js';

it('README example', async () => {
  const sim = new Simulation({ seed: 5, network: { latencyMs: 2, jitterMs: 1 } });
  const member = (name: string, t: bigint, status: 'normal' | 'joining' = 'normal') => ({ node: nodeId(name), dc: 'dc1', rack: 'r1', tokens: [token(t)], status });
  const before = RingView.of([member('n1', -(2n ** 62n)), member('n2', 0n), member('n3', 2n ** 62n), member('n4', -(2n ** 61n), 'joining')]);
  const after = before.afterPendingChanges();
  const keyspaces = [{ name: 'app', replication: { class: 'SimpleStrategy' as const, rf: 2 } }];
  const tasks = rangesToFetch(before, after, keyspaces, nodeId('n4'));
  expect(tasks.map((t) => t.sources[0])).toContain('n2');

  const systems = new Map<string, ActorSystem>();
  const stores = new Map<string, StorageHandle>();
  const envs = new Map<string, Env>();
  for (const name of ['n1', 'n2', 'n3', 'n4']) {
    await sim.addNode(name, ({ env, transport }) => {
      const system = new ActorSystem({ env, transport, codec: wireCodec() });
      const storage = spawnStorage(system, { db: new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' }), env });
      spawnReplica(system, { env, storage, hlc: new HybridLogicalClock(() => env.clock.nowMicros()), skew: new SkewTracker(1_000, env.logger) });
      systems.set(name, system);
      stores.set(name, storage);
    envs.set(name, env);
    });
  }
  const run = async <T>(p: Promise<T>): Promise<T> => {
    let done = false;
    void p.finally(() => (done = true)).catch(() => undefined);
    await sim.run({ stopWhen: () => done, untilMs: sim.now + 60_000 });
    return p;
  };
  const row = { keyspace: 'app', token: token(-(2n ** 61n) - 5n), partition: new TextEncoder().encode('user:7'), cell: { value: new TextEncoder().encode('hi'), timestampMicros: 1_000 } };
  await run(Promise.all(before.naturalReplicas(row.token, keyspaces[0]!.replication).map((n) => write(stores.get(n)!.ref, row, 1_000))));

  const env = envs.get('n4')!;
  const movement = new RangeMovement('bootstrap-1', 'bootstrap', tasks, {
    system: systems.get('n4')!,
    env,
    clocks: () => ({ hlc: env.clock.nowMicros(), wallMicros: env.clock.nowMicros() }),
    isAlive: () => true,
    throttle: new Throttle(24 * 1024 * 1024, env.clock, env.scheduler),
  });
  expect((await run(movement.run())).rowsStreamed).toBe(1);
  const cell = await run(stores.get('n4')!.reader.get(row));
  expect(cell && 'value' in cell ? new TextDecoder().decode(cell.value) : cell).toBe('hi');
});
