// The README's example, kept runnable.
import { ActorSystem } from '@chorus/actors';
import { type MembershipView, type NodeId, nodeId, token } from '@chorus/core';
import { HybridLogicalClock, SkewTracker, spawnReplica } from '@chorus/replica';
import { RingView } from '@chorus/ring';
import { Simulation } from '@chorus/sim';
import { type StorageHandle, spawnStorage, write } from '@chorus/storage';
import { wireCodec } from '@chorus/wire';
import { MemoryLevel } from 'memory-level';
import { expect, it } from 'vitest';
import { type AntiEntropyHandle, startAntiEntropy } from '../src/index.js';

it('README example', async () => {
  const sim = new Simulation({ seed: 11, network: { latencyMs: 2, jitterMs: 1 } });
  const names = ['n1', 'n2'].map((n) => nodeId(n));
  // Both nodes own half the ring; keyspace app keeps a replica on each.
  const ring = RingView.of(names.map((node, i) => ({ node, dc: 'dc1', rack: 'r1', tokens: [token(i === 0 ? -1n : 2n ** 62n)], status: 'normal' as const })));
  const everyoneUp: MembershipView = { isAlive: () => true, locationOf: () => ({ dc: 'dc1', rack: 'r1' }), liveNodes: () => names, hostIdOf: () => undefined };
  const stores = new Map<NodeId, StorageHandle>();
  const repair = new Map<NodeId, AntiEntropyHandle>();
  for (const node of names) {
    await sim.addNode(node, async ({ env, transport }) => {
      const system = new ActorSystem({ env, transport, codec: wireCodec() });
      const storage = spawnStorage(system, { db: new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' }), env });
      const hlc = new HybridLogicalClock(() => env.clock.nowMicros());
      spawnReplica(system, { env, storage, hlc, skew: new SkewTracker(1_000, env.logger) });
      stores.set(node, storage);
      repair.set(
        node,
        await startAntiEntropy(system, {
          env,
          storage,
          membership: everyoneUp,
          ring: () => ring,
          keyspaces: () => [{ name: 'app', replication: { class: 'SimpleStrategy', rf: 2 } }],
          clocks: () => ({ hlc: hlc.peek(), wallMicros: env.clock.nowMicros() }),
          // gc grace of 10 days: older dead data is left out of comparisons.
          purgeBefore: () => env.clock.nowMicros() - 864_000 * 1_000_000,
        }),
      );
    });
  }
  const run = async <T>(p: Promise<T>): Promise<T> => {
    let done = false;
    void p.finally(() => (done = true)).catch(() => undefined);
    await sim.run({ stopWhen: () => done, untilMs: sim.now + 60_000 });
    return p;
  };

  // n1's replica holds 100 rows, n2's the same but for row 7, which only n2 has newer.
  const text = new TextEncoder();
  for (let i = 0; i < 100; i++) {
    const row = { keyspace: 'app', token: token(BigInt(i) * 1_000_000_007n), partition: text.encode(`user:${i}`) };
    await run(write(stores.get(names[0]!)!.ref, { ...row, cell: { value: text.encode('old'), timestampMicros: 1_000 } }, 1_000));
    await run(write(stores.get(names[1]!)!.ref, { ...row, cell: { value: text.encode(i === 7 ? 'new' : 'old'), timestampMicros: i === 7 ? 2_000 : 1_000 } }, 1_000));
  }

  // A repair job on n1 compares both replicas' Merkle trees and streams the one row that differs.
  const { id } = await run(repair.get(names[0]!)!.start({ keyspace: 'app' }));
  const job = () => repair.get(names[0]!)!.status(id)!;
  await run(new Promise<void>((resolve) => { const poll = () => (job().state === 'running' ? sim.at(sim.now + 50, 'poll', poll) : resolve()); poll(); }));
  console.log(job()); // { state: 'done', rangesTotal: 2, rangesDone: 2, rowsStreamed: 1, … }
  expect(job()).toMatchObject({ state: 'done', rangesTotal: 2, rangesDone: 2, rowsStreamed: 1 });
  const cell = await run(stores.get(names[0]!)!.reader.getCell({ keyspace: 'app', token: token(7n * 1_000_000_007n), partition: text.encode('user:7') }));
  expect(cell && 'value' in cell && new TextDecoder().decode(cell.value)).toBe('new');
  // Both replicas recorded the repair: repair-based tombstone GC may now purge what they stored before it.
  expect(repair.get(names[1]!)!.repairedAt('app', token(5n))).toBeGreaterThanOrEqual(job().startedAtMicros);
});
