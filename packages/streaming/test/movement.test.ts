import { ActorSystem } from '@chorus/actors';
import { type Env, type NodeId, Throttle, nodeId, token } from '@chorus/core';
import { DEFAULT_MAX_CLOCK_SKEW_MS, HybridLogicalClock, SkewTracker, spawnReplica } from '@chorus/replica';
import { Simulation } from '@chorus/sim';
import { type StorageHandle, type TokenRange, spawnStorage, write } from '@chorus/storage';
import { wireCodec } from '@chorus/wire';
import { MemoryLevel } from 'memory-level';
import { describe, expect, it } from 'vitest';
import { type MovementContext, MovementInProgress, Movements, RangeMovement, type RangeTask, StreamFailed } from '../src/index.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const KS = 'app';
const WHOLE: TokenRange = { start: token(0n), end: token(0n) };

async function cluster(seed: number) {
  const sim = new Simulation({ seed, network: { latencyMs: 2, jitterMs: 2 } });
  const systems = new Map<string, ActorSystem>();
  const stores = new Map<string, StorageHandle>();
  const envs = new Map<string, Env>();
  const down = new Set<string>();
  for (const name of ['n1', 'n2', 'n3']) {
    await sim.addNode(name, ({ env, transport }) => {
      const system = new ActorSystem({ env, transport, codec: wireCodec() });
      const storage = spawnStorage(system, { db: new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' }), env });
      spawnReplica(system, { env, storage, hlc: new HybridLogicalClock(() => env.clock.nowMicros()), skew: new SkewTracker(DEFAULT_MAX_CLOCK_SKEW_MS, env.logger), streamBudgetBytes: 8_192 });
      systems.set(name, system);
      stores.set(name, storage);
      envs.set(name, env);
    });
  }
  const during = async <T>(p: Promise<T>): Promise<T> => {
    let done = false;
    const settled = p.finally(() => (done = true));
    settled.catch(() => undefined);
    await sim.run({ stopWhen: () => done, untilMs: sim.now + 600_000 });
    return settled;
  };
  const ctx = (name: string, bytesPerSec = 0): MovementContext => {
    const env = envs.get(name)!;
    return {
      system: systems.get(name)!,
      env,
      clocks: () => ({ hlc: env.clock.nowMicros(), wallMicros: env.clock.nowMicros() }),
      isAlive: (node: NodeId) => !down.has(node),
      throttle: new Throttle(bytesPerSec, env.clock, env.scheduler),
      pageTimeoutMs: 2_000,
      writeTimeoutMs: 2_000,
    };
  };
  const keys = async (name: string, range: TokenRange = WHOLE): Promise<string[]> => {
    const out: string[] = [];
    for await (const e of stores.get(name)!.reader.scanRange(KS, range, { includeDead: true })) {
      if (e.type === 'row') out.push(`${new TextDecoder().decode(e.partition)}=${'tombstone' in e.cell ? 'T' : new TextDecoder().decode(e.cell.value)}@${e.cell.timestampMicros}`);
    }
    return out;
  };
  return { sim, systems, stores, envs, down, during, ctx, keys };
}

async function fill(c: Awaited<ReturnType<typeof cluster>>, names: string[], count: number, value = 'x'.repeat(200)): Promise<void> {
  const now = c.envs.get('n1')!.clock.nowMicros();
  await c.during(
    Promise.all(
      names.flatMap((name) =>
        Array.from({ length: count }, (_, i) =>
          write(c.stores.get(name)!.ref, { keyspace: KS, token: token(BigInt(i * 1_000_003 - 500_000)), partition: bytes(`k${i}`), cell: i % 10 === 0 ? { tombstone: true, timestampMicros: now - i } : { value: bytes(`${value}${i}`), timestampMicros: now - i } }, 5_000),
        ),
      ),
    ),
  );
}

const task = (sources: string[], target = 'n3'): RangeTask => ({ keyspace: KS, range: WHOLE, sources: sources.map(nodeId), target: nodeId(target) });

describe('range movement', () => {
  it('copies a range from its first source with every row as it was, paced by the throttle, and counts rows, bytes and ranges', async () => {
    const c = await cluster(51);
    await fill(c, ['n1', 'n2'], 400);
    const halves: RangeTask[] = [
      { keyspace: KS, range: { start: token(0n), end: token(2n ** 62n) }, sources: [nodeId('n1'), nodeId('n2')], target: nodeId('n3') },
      { keyspace: KS, range: { start: token(2n ** 62n), end: token(0n) }, sources: [nodeId('n1'), nodeId('n2')], target: nodeId('n3') },
    ];
    const rate = 50_000;
    const m = new RangeMovement('b1', 'bootstrap', halves, c.ctx('n3', rate));
    expect(m.status()).toMatchObject({ state: 'running', rangesTotal: 2, rangesDone: 0, percent: 0, sources: ['n1', 'n2'], targets: ['n3'] });
    const started = c.sim.now;
    const status = await c.during(m.run());
    expect(await c.during(c.keys('n3'))).toEqual(await c.during(c.keys('n1')));
    expect(status).toMatchObject({ state: 'done', rangesDone: 2, rowsStreamed: 400, percent: 100 });
    expect(status.bytesStreamed).toBeGreaterThan(400 * 200);
    // A one-second bucket, then the rate: the copy took at least the bytes over the rate, less that second.
    expect(c.sim.now - started).toBeGreaterThanOrEqual(((status.bytesStreamed - rate) / rate) * 1000);
  });

  it('when its source dies mid-stream, starts the range again from the next replica, which may hold rows the first lacked', async () => {
    const c = await cluster(52);
    await fill(c, ['n1', 'n2'], 600);
    // Only n2 has it: a copy resumed from n1's position would miss it, or keep it only by chance.
    const now = c.envs.get('n2')!.clock.nowMicros();
    await c.during(write(c.stores.get('n2')!.ref, { keyspace: KS, token: token(-400_000n), partition: bytes('only-n2'), cell: { value: bytes('v'), timestampMicros: now } }, 5_000));
    const m = new RangeMovement('b2', 'bootstrap', [task(['n1', 'n2'])], c.ctx('n3', 20_000));
    const run = m.run();
    run.catch(() => undefined);
    await c.sim.runFor(3_000);
    expect(m.status().rowsStreamed).toBeGreaterThan(0);
    expect(m.status().rowsStreamed).toBeLessThan(600);
    c.sim.crash('n1');
    const status = await c.during(run);
    expect(status.state).toBe('done');
    expect(await c.during(c.keys('n3'))).toEqual(await c.during(c.keys('n2')));
  });

  it('fails a round when no source is up, keeps what it copied, and finishes when run again', async () => {
    const c = await cluster(53);
    await fill(c, ['n1'], 50);
    c.down.add('n1');
    const m = new RangeMovement('b3', 'bootstrap', [task(['n1'])], c.ctx('n3'));
    await expect(c.during(m.run())).rejects.toBeInstanceOf(StreamFailed);
    expect(m.status()).toMatchObject({ state: 'failed', rangesDone: 0 });
    expect(m.status().error).toMatch(/no replica to copy the range from is up \(n1\)/);
    c.down.delete('n1');
    expect(await c.during(m.run())).toMatchObject({ state: 'done', rowsStreamed: 50 });
  });

  it('a node runs one movement at a time', async () => {
    const c = await cluster(54);
    const movements = new Movements();
    const first = movements.begin('m1', 'bootstrap', [task(['n1'])], c.ctx('n3'));
    expect(() => movements.begin('m2', 'decommission', [task(['n3'], 'n1')], c.ctx('n3'))).toThrow(MovementInProgress);
    await c.during(first.run());
    expect(movements.begin('m2', 'decommission', [], c.ctx('n3')).done).toBe(true);
    expect(movements.statuses().map((s) => s.id)).toEqual(['m1', 'm2']);
  });
});
