import { type ActorRef, ActorSystem } from '@chorus/actors';
import { type Env, nodeId, token } from '@chorus/core';
import { LIMITS, type Mutation, cellDigest } from '@chorus/model';
import { Simulation } from '@chorus/sim';
import { type StorageHandle, spawnStorage } from '@chorus/storage';
import { FrameRejected, wireCodec } from '@chorus/wire';
import { MemoryLevel } from 'memory-level';
import { describe, expect, it } from 'vitest';
import { type BatchedMsg, DEFAULT_MAX_CLOCK_SKEW_MS, HybridLogicalClock, REPLICA_ACTOR, type ReplicaMsg, SkewTracker, fromWireCell, mutate, readData, readDigest, requestBatch, spawnReplica } from '../src/index.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const address = { keyspace: 'app', token: token(-7n), partition: bytes('p') };
const MUTATIONS: Record<string, Mutation> = {
  value: { ...address, cell: { value: bytes('v'), timestampMicros: 1_000 } },
  'expiring value in a row': { ...address, clustering: bytes('c'), cell: { value: bytes('v'), timestampMicros: 1_000, expiresAtMicros: 9_000 } },
  'row tombstone': { ...address, clustering: bytes('c'), cell: { tombstone: true, timestampMicros: 2_000 } },
  'partition deletion': { ...address, partitionDeletion: { timestampMicros: 3_000 } },
};
const clocks = { hlc: 1, wallMicros: 1 };

/** Plain arrays for bytes, so a decoded Buffer and the Uint8Array it came from compare equal. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return [...v];
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

function decodeMutate(mutation: unknown): unknown {
  const codec = wireCodec();
  const envelope = codec.decode(codec.encode({ t: 'msg', to: REPLICA_ACTOR, msg: { type: 'replica.mutate', mutation, ...clocks }, r: { node: nodeId('n1'), id: 1, run: 1 } }));
  if (envelope.t !== 'msg') throw new Error('not a message');
  return (envelope.msg as { mutation: unknown }).mutation;
}

async function settled<T>(sim: Simulation, p: Promise<T>): Promise<T> {
  let done = false;
  void p.finally(() => (done = true)).catch(() => undefined);
  await sim.run({ stopWhen: () => done, untilMs: sim.now + 10_000 });
  return p;
}

/** Two nodes with a replica each; n1 reaches n2's replica through `remote`, and the test reads n2's store directly. */
async function twoReplicas(sim: Simulation) {
  const systems = new Map<string, ActorSystem>();
  let storage!: StorageHandle;
  let now!: () => number;
  for (const name of ['n1', 'n2']) {
    await sim.addNode(name, ({ env, transport }) => {
      const system = new ActorSystem({ env, transport, codec: wireCodec() });
      systems.set(name, system);
      const s = spawnStorage(system, { db: new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' }), env });
      const hlc = new HybridLogicalClock(() => env.clock.nowMicros());
      spawnReplica(system, { env, storage: s, hlc, skew: new SkewTracker(DEFAULT_MAX_CLOCK_SKEW_MS, env.logger) });
      if (name === 'n2') {
        storage = s;
        now = () => env.clock.nowMicros();
      }
    });
  }
  return { systems, storage, now, remote: systems.get('n1')!.ref<ReplicaMsg>({ node: nodeId('n2'), name: REPLICA_ACTOR }) };
}

describe('replica.mutate on the wire', () => {
  for (const [what, m] of Object.entries(MUTATIONS)) {
    it(`carries a ${what} as the model's Mutation`, () => {
      expect(plain(decodeMutate(m))).toEqual(plain(m));
    });
  }

  it('refuses what is not a Mutation, with the model limits', () => {
    const bad: unknown[] = [
      { ...address, cell: { value: new Uint8Array(LIMITS.maxValueBytes + 1), timestampMicros: 1 } },
      { ...address, partition: new Uint8Array(0), cell: { value: bytes('v'), timestampMicros: 1 } },
      { ...address, partition: new Uint8Array(LIMITS.maxPartitionKeyBytes + 1), cell: { value: bytes('v'), timestampMicros: 1 } },
      { ...address, clustering: new Uint8Array(LIMITS.maxClusteringKeyBytes + 1), cell: { value: bytes('v'), timestampMicros: 1 } },
      { ...address, keyspace: 'no spaces', cell: { value: bytes('v'), timestampMicros: 1 } },
      { ...address, cell: { tombstone: true, value: bytes('v'), timestampMicros: 1 } },
      { ...address, cell: { tombstone: true, timestampMicros: 1, expiresAtMicros: 5 } },
      { ...address, cell: { value: bytes('v'), timestampMicros: -1 } },
      { ...address, cell: { timestampMicros: 1 } },
      { ...address, cell: { value: bytes('v'), timestampMicros: 1 }, partitionDeletion: { timestampMicros: 1 } },
      { ...address, clustering: bytes('c'), partitionDeletion: { timestampMicros: 1 } },
      { ...address, cell: { value: bytes('v'), timestampMicros: 1 }, extra: 1 },
      { ...address },
    ];
    for (const [i, m] of bad.entries()) {
      let error: unknown;
      try {
        decodeMutate(m);
      } catch (e) {
        error = e;
      }
      expect(error, `bad mutation #${i}`).toBeInstanceOf(FrameRejected);
      expect((error as FrameRejected).reason).toBe('invalid-fields');
    }
  });
});

describe('replica actor', () => {
  it('hands a local mutation to storage as is: no flattening, no copy', async () => {
    const sim = new Simulation({ seed: 11 });
    const received: Mutation[] = [];
    let replica!: ActorRef<ReplicaMsg>;
    let env!: Env;
    await sim.addNode('n1', (boot) => {
      env = boot.env;
      const system = new ActorSystem({ env: boot.env, transport: boot.transport, codec: wireCodec() });
      // Stands in for the storage actor: records the mutations it is asked to write.
      const storageRef = system.spawn<{ type: 'write-many'; mutations: Mutation[]; replyTo: never }>('fake-storage', () => ({
        receive(msg, ctx) {
          received.push(...msg.mutations);
          ctx.reply(msg.replyTo, msg.mutations.map(() => undefined));
        },
      }));
      const storage = { ref: storageRef, reader: {}, close: async () => undefined } as unknown as StorageHandle;
      const hlc = new HybridLogicalClock(() => boot.env.clock.nowMicros());
      replica = spawnReplica(system, { env: boot.env, storage, hlc, skew: new SkewTracker(DEFAULT_MAX_CLOCK_SKEW_MS, boot.env.logger) });
    });
    const m: Mutation = { ...address, cell: { value: bytes('v'), timestampMicros: env.clock.nowMicros() } };
    await settled(sim, mutate(replica, m, clocks, 1_000));
    expect(received).toHaveLength(1);
    expect(received[0]).toBe(m);
  });

  it('applies every kind of mutation from a remote coordinator', async () => {
    const sim = new Simulation({ seed: 12, network: { latencyMs: 1, jitterMs: 1 } });
    const { systems, storage, now, remote } = await twoReplicas(sim);
    const t = now();
    const row = { ...address, clustering: bytes('c') };
    await settled(sim, mutate(remote, { ...row, cell: { value: bytes('v1'), timestampMicros: t, expiresAtMicros: t + 60_000_000 } }, clocks, 1_000));
    expect(plain(await settled(sim, storage.reader.getCell(row)))).toEqual(plain({ value: bytes('v1'), timestampMicros: t, expiresAtMicros: t + 60_000_000 }));
    await settled(sim, mutate(remote, { ...row, cell: { tombstone: true, timestampMicros: t + 1 } }, clocks, 1_000));
    expect(await settled(sim, storage.reader.getCell(row))).toEqual({ tombstone: true, timestampMicros: t + 1 });
    await settled(sim, mutate(remote, { ...address, clustering: bytes('d'), cell: { value: bytes('v2'), timestampMicros: t + 2 } }, clocks, 1_000));
    await settled(sim, mutate(remote, { ...address, partitionDeletion: { timestampMicros: t + 3 } }, clocks, 1_000));
    const after = await settled(sim, storage.reader.getCell({ ...address, clustering: bytes('d') }));
    expect(after === undefined || ('tombstone' in after && after.tombstone)).toBe(true);
    expect(systems.get('n2')!.stats().rejectedFrames).toBe(0);
  });
});

describe('replica reads of one turn', () => {
  it('answers a burst of remote data and digest reads, each with its own row; a cached row with its digest to this node only', async () => {
    const sim = new Simulation({ seed: 14, network: { latencyMs: 1, jitterMs: 0 } });
    const { systems, storage, now, remote } = await twoReplicas(sim);
    const t = now();
    const row = (i: number) => ({ keyspace: 'app', token: token(BigInt(i * 7919 - 40_000)), partition: bytes(`p${i}`) });
    await settled(sim, Promise.all(Array.from({ length: 40 }, (_, i) => (i % 4 === 3 ? Promise.resolve() : mutate(remote, { ...row(i), cell: { value: bytes(`v${i}`), timestampMicros: t + i } }, clocks, 1_000)))));
    await settled(sim, storage.reader.getCell(row(0)));
    const readsBefore = storage.reader.cacheStats().hits + storage.reader.cacheStats().misses;
    // Sent at once: they arrive in one frame and the replica takes them in one turn.
    const answers = await settled(
      sim,
      Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? readData(remote, row(i), clocks, 1_000) : readDigest(remote, row(i), clocks, 1_000)))),
    );
    expect(storage.reader.cacheStats().hits + storage.reader.cacheStats().misses - readsBefore).toBe(40);
    for (let i = 0; i < 40; i++) {
      const expected = i % 4 === 3 ? undefined : { value: bytes(`v${i}`), timestampMicros: t + i };
      const a = answers[i]!;
      if (a.type === 'replica.data') {
        expect(plain(fromWireCell(a))).toEqual(plain(expected));
        // Row 0 was cached, but a node of the previous build would refuse a data answer with a digest: none crosses the wire.
        expect(a.digest).toBeUndefined();
      } else expect(plain(a.digest)).toEqual(plain(cellDigest(expected)));
    }
    // Asked by this node's own coordinator, the cached row's data answer carries its digest, which the coordinator then need not compute.
    const local = systems.get('n2')!.ref<ReplicaMsg>({ node: nodeId('n2'), name: REPLICA_ACTOR });
    const own = await settled(sim, readData(local, row(0), clocks, 1_000));
    expect(plain(own.digest)).toEqual(plain(cellDigest({ value: bytes('v0'), timestampMicros: t })));
  });
});

describe('replica.batch', () => {
  const row = (i: number) => ({ keyspace: 'app', token: token(BigInt(i * 7919 - 40_000)), partition: bytes(`p${i}`) });

  it('applies the mutations and reads the digests of one message, and answers once with the failed items by number', async () => {
    const sim = new Simulation({ seed: 15, network: { latencyMs: 1, jitterMs: 0 } });
    const { storage, now, remote } = await twoReplicas(sim);
    const t = now();
    await settled(sim, Promise.all([0, 1].map((i) => mutate(remote, { ...row(i), cell: { value: bytes(`v${i}`), timestampMicros: t + i } }, clocks, 1_000))));
    const aheadMicros = t + 3_600_000_000;
    const mutations: Mutation[] = [
      { ...row(10), cell: { value: bytes('a'), timestampMicros: t } },
      { ...row(11), cell: { value: bytes('b'), timestampMicros: aheadMicros } },
      { ...row(12), cell: { tombstone: true, timestampMicros: t } },
    ];
    const answered = new Promise<BatchedMsg>((resolve, reject) =>
      requestBatch(remote, { mutations, digests: [row(0), row(5), row(1)], reads: [] }, clocks, 1_000, (error, answer) => (error ? reject(error) : resolve(answer!))),
    );
    const answer = await settled(sim, answered);
    expect(answer.failures?.map((f) => [f.index, f.error.name, f.error.fields.reason])).toEqual([[1, 'InvalidRequest', 'TIMESTAMP_IN_FUTURE']]);
    expect(answer.digests?.map(plain)).toEqual([cellDigest({ value: bytes('v0'), timestampMicros: t }), cellDigest(undefined), cellDigest({ value: bytes('v1'), timestampMicros: t + 1 })].map(plain));
    expect(plain(await settled(sim, storage.reader.getCell(row(10))))).toEqual(plain({ value: bytes('a'), timestampMicros: t }));
    expect(await settled(sim, storage.reader.getCell(row(11)))).toBeUndefined();
    expect(await settled(sim, storage.reader.getCell(row(12)))).toEqual({ tombstone: true, timestampMicros: t });
  });

  it("serves data reads for this node's own coordinator, each with its cell and the cached digest", async () => {
    const sim = new Simulation({ seed: 17 });
    const { systems, now, remote } = await twoReplicas(sim);
    const t = now();
    await settled(sim, Promise.all([0, 1].map((i) => mutate(remote, { ...row(i), cell: { value: bytes(`v${i}`), timestampMicros: t + i } }, clocks, 1_000))));
    const local = systems.get('n2')!.ref<ReplicaMsg>({ node: nodeId('n2'), name: REPLICA_ACTOR });
    const ask = () =>
      settled(sim, new Promise<BatchedMsg>((resolve, reject) => requestBatch(local, { mutations: [], digests: [row(1)], reads: [row(0), row(7), row(1)] }, clocks, 1_000, (error, answer) => (error ? reject(error) : resolve(answer!)))));
    const first = await ask();
    expect(first.failures).toBeUndefined();
    expect(first.digests?.map(plain)).toEqual([plain(cellDigest({ value: bytes('v1'), timestampMicros: t + 1 }))]);
    expect(first.data?.map((d) => plain(fromWireCell(d)))).toEqual([plain({ value: bytes('v0'), timestampMicros: t }), undefined, plain({ value: bytes('v1'), timestampMicros: t + 1 })]);
    // A row is cached on its second miss: read twice more, and the rows come from the row cache, with the digests it keeps.
    await ask();
    const again = await ask();
    expect(plain(again.data?.[0]?.digest)).toEqual(plain(cellDigest({ value: bytes('v0'), timestampMicros: t })));
  });

  it('on a replica that left, still applies the mutations and fails the digest reads', async () => {
    const sim = new Simulation({ seed: 16 });
    let replica!: ActorRef<ReplicaMsg>;
    let storage!: StorageHandle;
    await sim.addNode('n1', ({ env }) => {
      const system = new ActorSystem({ env });
      storage = spawnStorage(system, { db: new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' }), env });
      const hlc = new HybridLogicalClock(() => env.clock.nowMicros());
      replica = spawnReplica(system, { env, storage, hlc, skew: new SkewTracker(DEFAULT_MAX_CLOCK_SKEW_MS, env.logger), left: () => true });
    });
    const answered = new Promise<BatchedMsg>((resolve, reject) =>
      requestBatch(replica, { mutations: [{ ...row(1), cell: { value: bytes('v'), timestampMicros: 1_000 } }], digests: [row(1), row(2)], reads: [row(1)] }, clocks, 1_000, (error, answer) => (error ? reject(error) : resolve(answer!))),
    );
    const answer = await settled(sim, answered);
    expect(answer.failures?.map((f) => [f.index, f.error.name])).toEqual([[1, 'ReplicaLeft'], [2, 'ReplicaLeft'], [3, 'ReplicaLeft']]);
    expect(plain(await settled(sim, storage.reader.getCell(row(1))))).toEqual(plain({ value: bytes('v'), timestampMicros: 1_000 }));
  });
});

describe('replica mailbox byte budget', () => {
  it('refuses mutations past its bytes with MailboxFull instead of queueing 1 MiB values without bound', async () => {
    const sim = new Simulation({ seed: 13 });
    let replica!: ActorRef<ReplicaMsg>;
    await sim.addNode('n1', ({ env }) => {
      const system = new ActorSystem({ env });
      const storage = spawnStorage(system, { db: new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' }), env });
      const hlc = new HybridLogicalClock(() => env.clock.nowMicros());
      replica = spawnReplica(system, { env, storage, hlc, skew: new SkewTracker(DEFAULT_MAX_CLOCK_SKEW_MS, env.logger), mailboxBytes: 4 * 1024 * 1024 });
    });
    const MiB = new Uint8Array(1024 * 1024);
    // Sent in one turn: nothing is handled before all are queued, so the budget decides.
    const outcomes = Array.from({ length: 10 }, (_, i) => mutate(replica, { ...address, clustering: bytes(`c${i}`), cell: { value: MiB, timestampMicros: 1_000 + i } }, clocks, 5_000).then(() => 'ok', (e: unknown) => e));
    const all = await settled(sim, Promise.all(outcomes));
    const refused = all.filter((o) => o !== 'ok');
    expect(all.filter((o) => o === 'ok').length).toBeLessThanOrEqual(4);
    expect(refused.length).toBeGreaterThanOrEqual(6);
    for (const e of refused) expect(e).toMatchObject({ name: 'MailboxFull', code: 'OVERLOADED', fields: expect.objectContaining({ budgetBytes: 4 * 1024 * 1024 }) });
  });
});
