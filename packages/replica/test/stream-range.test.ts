import { ActorSystem } from '@chorus/actors';
import { type Token, nodeId, token } from '@chorus/core';
import type { Mutation } from '@chorus/model';
import { Simulation } from '@chorus/sim';
import { type ScanEntry, type ScanPosition, type StorageHandle, type TokenRange, spawnStorage, write } from '@chorus/storage';
import { MAX_FRAME_BYTES, wireCodec } from '@chorus/wire';
import { MemoryLevel } from 'memory-level';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_CLOCK_SKEW_MS,
  HybridLogicalClock,
  REPLICA_ACTOR,
  type ReplicaMsg,
  type StreamEntryWire,
  SkewTracker,
  mutationsOf,
  rangePageWithinBudget,
  spawnReplica,
  streamRange,
} from '../src/index.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const clocks = { hlc: 1, wallMicros: 1 };
const KS = 'app';

async function settled<T>(sim: Simulation, p: Promise<T>): Promise<T> {
  let done = false;
  void p.finally(() => (done = true)).catch(() => undefined);
  await sim.run({ stopWhen: () => done, untilMs: sim.now + 10_000 });
  return p;
}

/** Two simulated nodes with a store and a replica each. */
async function twoNodes(seed: number) {
  const sim = new Simulation({ seed, network: { latencyMs: 1, jitterMs: 1 } });
  const systems = new Map<string, ActorSystem>();
  const stores = new Map<string, StorageHandle>();
  let nowMicros!: () => number;
  for (const name of ['n1', 'n2']) {
    await sim.addNode(name, ({ env, transport }) => {
      const system = new ActorSystem({ env, transport, codec: wireCodec() });
      const storage = spawnStorage(system, { db: new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' }), env });
      spawnReplica(system, { env, storage, hlc: new HybridLogicalClock(() => env.clock.nowMicros()), skew: new SkewTracker(DEFAULT_MAX_CLOCK_SKEW_MS, env.logger), streamBudgetBytes: 4_096 });
      systems.set(name, system);
      stores.set(name, storage);
      nowMicros = () => env.clock.nowMicros();
    });
  }
  return { sim, systems, stores, nowMicros };
}

/** Rows of every kind in tokens -100..100: values, expiring and already expired values, tombstones, a deleted partition with older and newer rows. */
function dataset(now: number): Mutation[] {
  const out: Mutation[] = [];
  for (let i = 0; i < 60; i++) {
    const t = token(BigInt(i * 3 - 90));
    const partition = bytes(`p${i}`);
    const base = { keyspace: KS, token: t, partition };
    if (i % 5 === 0) out.push({ ...base, cell: { tombstone: true, timestampMicros: now - 10 } });
    else if (i % 5 === 1) out.push({ ...base, cell: { value: bytes('x'.repeat(300)), timestampMicros: now - 10, expiresAtMicros: now + 60_000_000 } });
    else if (i % 5 === 2) out.push({ ...base, cell: { value: bytes('gone'), timestampMicros: now - 10_000_000, expiresAtMicros: now - 5_000_000 } });
    else out.push({ ...base, cell: { value: bytes(`v${i}`.repeat(40)), timestampMicros: now - i } });
    for (const c of ['a', 'b']) out.push({ ...base, clustering: bytes(c), cell: { value: bytes(`${c}${i}`.repeat(30)), timestampMicros: now - 100 } });
  }
  // A deleted partition: one row older than the deletion (shadowed), one newer.
  const wide = { keyspace: KS, token: token(-1n), partition: bytes('wide') };
  out.push({ ...wide, clustering: bytes('old'), cell: { value: bytes('old'), timestampMicros: now - 1_000 } });
  out.push({ ...wide, partitionDeletion: { timestampMicros: now - 500 } });
  out.push({ ...wide, clustering: bytes('new'), cell: { value: bytes('new'), timestampMicros: now - 100 } });
  // Outside the range streamed below.
  out.push({ keyspace: KS, token: token(500n), partition: bytes('outside'), cell: { value: bytes('no'), timestampMicros: now } });
  return out;
}

const RANGE: TokenRange = { start: token(-100n), end: token(100n) };

/** What a store holds of a range, as comparable text; rows shadowed by their partition's deletion read the same whether held or not. */
async function contents(store: StorageHandle, range: TokenRange): Promise<string[]> {
  const out: string[] = [];
  for await (const e of store.reader.scanRange(KS, range, { includeDead: true })) if (!(e.type === 'row' && e.shadowed)) out.push(show(e));
  return out;
}
function show(e: ScanEntry): string {
  const key = `${e.token}/${new TextDecoder().decode(e.partition)}`;
  if (e.type === 'partition-deletion') return `${key} deleted@${e.timestampMicros}`;
  const c = e.cell;
  const what = 'tombstone' in c ? 'T' : `${new TextDecoder().decode(c.value)}${c.expiresAtMicros ? `~${c.expiresAtMicros}` : ''}`;
  return `${key}/${new TextDecoder().decode(e.clustering)} ${what}@${c.timestampMicros}${e.type === 'row' && e.shadowed ? ' shadowed' : ''}`;
}

describe('replica.stream-range', () => {
  it('pages a range with tombstones, expired cells and partition deletions, each page within its budget, and another replica applying the pages holds the same range', async () => {
    const { sim, systems, stores, nowMicros } = await twoNodes(21);
    const now = nowMicros();
    const source = stores.get('n1')!;
    await settled(sim, Promise.all(dataset(now).map((m) => write(source.ref, m, 5_000))));
    const remote = systems.get('n2')!.ref<ReplicaMsg>({ node: nodeId('n1'), name: REPLICA_ACTOR });

    const streamed: StreamEntryWire[] = [];
    let after: Parameters<typeof streamRange>[3];
    let pages = 0;
    for (;;) {
      const page = await settled(sim, streamRange(remote, KS, RANGE, after, clocks, 5_000));
      pages++;
      const pageBytes = page.entries.reduce((n, e) => n + e.partition.length + (e.clustering?.length ?? 0) + (e.value?.length ?? 0), 0);
      expect(page.entries.length).toBeGreaterThan(0);
      expect(pageBytes).toBeLessThanOrEqual(4_096);
      streamed.push(...page.entries);
      if (page.done) break;
      expect(page.last).toBeDefined();
      after = { ...page.last!, token: page.last!.token as Token };
      expect(pages).toBeLessThan(200);
    }
    expect(pages).toBeGreaterThan(3);
    // 60 partition rows, 120 clustered rows, the partition deletion and the newer wide row; not the shadowed row nor the key outside.
    expect(streamed).toHaveLength(60 + 120 + 2);
    expect(streamed.some((e) => e.clustering === undefined && new TextDecoder().decode(e.partition) === 'wide')).toBe(true);
    expect(streamed.filter((e) => e.state === 'tombstone')).toHaveLength(12 + 1);
    expect(streamed.filter((e) => e.expiresAtMicros !== undefined && e.expiresAtMicros < now)).toHaveLength(12);
    // Scan order: tokens never go back.
    for (let i = 1; i < streamed.length; i++) expect(streamed[i]!.token >= streamed[i - 1]!.token).toBe(true);

    const target = stores.get('n2')!;
    await settled(sim, Promise.all(mutationsOf(KS, streamed).map((m) => write(target.ref, m, 5_000))));
    expect(await settled(sim, contents(target, RANGE))).toEqual(await settled(sim, contents(source, RANGE)));
    // The shadowed row is not needed: the target reads it as the deletion does.
    const old = { keyspace: KS, token: token(-1n), partition: bytes('wide'), clustering: bytes('old') };
    expect(await settled(sim, target.reader.getCell(old))).toEqual(await settled(sim, source.reader.getCell(old)));
    expect(await settled(sim, contents(target, { start: token(100n), end: token(-100n) }))).toEqual([]);
  });

  it('resumes after any position, also inside a partition, and a wrapping range reads both ends', async () => {
    const { sim, stores, nowMicros } = await twoNodes(22);
    const now = nowMicros();
    const source = stores.get('n1')!;
    await settled(sim, Promise.all(dataset(now).map((m) => write(source.ref, m, 5_000))));
    const whole = await settled(sim, rangePageWithinBudget(source.reader, KS, RANGE, undefined, 1 << 30));
    expect(whole.done).toBe(true);
    // Pages of one entry each add up to the whole.
    const one: StreamEntryWire[] = [];
    let after: ScanPosition | undefined;
    for (;;) {
      const page = await settled(sim, rangePageWithinBudget(source.reader, KS, RANGE, after, 1));
      expect(page.entries.length).toBeLessThanOrEqual(1);
      one.push(...page.entries);
      if (page.done) break;
      after = page.last;
    }
    expect(one.map((e) => `${e.token}/${e.clustering}`)).toEqual(whole.entries.map((e) => `${e.token}/${e.clustering}`));
    const wrap = await settled(sim, rangePageWithinBudget(source.reader, KS, { start: token(0n), end: token(-80n) }, undefined, 1 << 30));
    expect(wrap.entries.map((e) => e.token).filter((t) => t < 0n && t > -80n)).toEqual([]);
    expect(wrap.entries.some((e) => e.token === 500n)).toBe(true);
    expect(wrap.entries.some((e) => e.token === -90n)).toBe(true);
    const empty = await settled(sim, rangePageWithinBudget(source.reader, KS, { start: token(1000n), end: token(2000n) }, undefined));
    expect(empty).toEqual({ entries: [], done: true });
  });

  it('a page of the largest rows stays inside the wire frame', async () => {
    const { sim, systems, stores, nowMicros } = await twoNodes(23);
    const now = nowMicros();
    const source = stores.get('n1')!;
    const big = new Uint8Array(1024 * 1024 - 16).fill(7);
    await settled(sim, Promise.all(Array.from({ length: 6 }, (_, i) => write(source.ref, { keyspace: KS, token: token(BigInt(i)), partition: bytes(`big${i}`), cell: { value: big, timestampMicros: now } }, 5_000))));
    const page = await settled(sim, rangePageWithinBudget(source.reader, KS, RANGE, undefined));
    expect(page.entries.length).toBeGreaterThanOrEqual(1);
    expect(page.entries.length).toBeLessThan(6);
    const codec = wireCodec();
    const frame = codec.encode({ t: 'msg', to: 'x', msg: { type: 'replica.range-page', ...page, ...clocks } });
    expect(frame.length).toBeLessThan(MAX_FRAME_BYTES);
    void systems;
  });
});
