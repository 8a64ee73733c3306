// The README's example, kept runnable.
import { ActorSystem } from '@chorus/actors';
import { nodeId, token } from '@chorus/core';
import { Simulation } from '@chorus/sim';
import { spawnStorage } from '@chorus/storage';
import { wireCodec } from '@chorus/wire';
import { MemoryLevel } from 'memory-level';
import { expect, it } from 'vitest';
import { type Clocks, DEFAULT_MAX_CLOCK_SKEW_MS, HybridLogicalClock, REPLICA_ACTOR, type ReplicaMsg, SkewTracker, fromWireCell, mutate, readData, spawnReplica } from '../src/index.js';

it('README example', async () => {
  const sim = new Simulation({ seed: 7, network: { latencyMs: 2, jitterMs: 1 } });
  const systems = new Map<string, ActorSystem>();
  const clocks = new Map<string, HybridLogicalClock>();
  for (const name of ['n1', 'n2']) {
    await sim.addNode(name, ({ env, transport }) => {
      const system = new ActorSystem({ env, transport, codec: wireCodec() });
      const storage = spawnStorage(system, { db: new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' }), env });
      // One clock per node, shared with its coordinator in a real node.
      const hlc = new HybridLogicalClock(() => env.clock.nowMicros());
      spawnReplica(system, { env, storage, hlc, skew: new SkewTracker(DEFAULT_MAX_CLOCK_SKEW_MS, env.logger) });
      systems.set(name, system);
      clocks.set(name, hlc);
    });
  }
  const run = async <T>(p: Promise<T>): Promise<T> => {
    let done = false;
    void p.finally(() => (done = true)).catch(() => undefined);
    await sim.run({ stopWhen: () => done, untilMs: sim.now + 10_000 });
    return p;
  };

  // n1 writes to n2's replica and reads it back, over the simulated network.
  const n2 = systems.get('n1')!.ref<ReplicaMsg>({ node: nodeId('n2'), name: REPLICA_ACTOR });
  const hlc = clocks.get('n1')!;
  const now = (): Clocks => ({ hlc: hlc.peek(), wallMicros: hlc.peek() });
  const row = { keyspace: 'app', token: token(42n), partition: new TextEncoder().encode('user:42') };
  await run(mutate(n2, { ...row, cell: { value: new TextEncoder().encode('hello'), timestampMicros: hlc.now() } }, now(), 1_000));
  const data = await run(readData(n2, row, now(), 1_000));
  const cell = fromWireCell(data);
  console.log(cell && 'value' in cell ? new TextDecoder().decode(cell.value) : cell); // hello

  expect(cell && 'value' in cell ? new TextDecoder().decode(cell.value) : cell).toBe('hello');
});
