#!/usr/bin/env node
/**
 * Storage benchmark: raw LevelDB batched puts as the ceiling, then the storage
 * actor's acknowledged writes in each commit mode, point reads (cold: every
 * read a row cache miss; hot: a 10,000-row set read over and over, with the
 * row cache and without it) and a 100-row slice. Run with `pnpm bench:storage` after `pnpm build`. It is a CLI entry
 * point, so it may read the real clock.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ActorSystem } from '@chorus/actors';
import { nodeId, realEnv, token, type Token } from '@chorus/core';
import { Level } from 'level';
import type { Mutation } from '@chorus/model';
import { type CommitSyncMode, spawnStorage, write } from './index.js';
import { rowKeyPrefix } from './keys.js';
import { cacheId, RowCache } from './row-cache.js';
import { Store } from './store.js';

const HOT_KEYS = 10_000;
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 3);
const VALUE = new Uint8Array(randomBytes(100));
// More in flight only adds garbage-collector work (every pending ask is a promise and a timer); 1000 keeps batches full.
const IN_FLIGHT = Number(process.env['BENCH_IN_FLIGHT'] ?? 1000);
// The row cache bound of the write phases' stores (default: the store's default); 0 measures writes without its bookkeeping.
const ROW_CACHE_BYTES = process.env['BENCH_ROW_CACHE_BYTES'] === undefined ? undefined : Number(process.env['BENCH_ROW_CACHE_BYTES']);
const env = realEnv(nodeId('bench'));
const te = new TextEncoder();

function tokenOf(i: number): Token {
  // Any well-spread function of the key will do here; the ring package owns Murmur3.
  return token(BigInt.asIntN(64, BigInt(i + 1) * 0x9e3779b97f4a7c15n));
}

function mutation(i: number, ts: number): Mutation {
  return { keyspace: 'bench', token: tokenOf(i), partition: te.encode(`key-${i}`), cell: { value: VALUE, timestampMicros: ts } };
}

async function fresh(root: string, name: string): Promise<Level<Uint8Array, Uint8Array>> {
  const db = new Level<Uint8Array, Uint8Array>(join(root, name), { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  return db;
}

function rate(n: number, ms: number): string {
  return `${Math.round((n / ms) * 1000).toLocaleString('en-US')}`;
}

async function rawPuts(root: string): Promise<number> {
  const db = await fresh(root, 'raw');
  let n = 0;
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  while (performance.now() < deadline) {
    const ops = [];
    for (let j = 0; j < 1000; j++, n++) ops.push({ type: 'put' as const, key: rowKeyPrefix('bench', tokenOf(n), te.encode(`key-${n}`), new Uint8Array(0)), value: VALUE });
    await db.batch(ops);
  }
  const ms = performance.now() - start;
  await db.close();
  return (n / ms) * 1000;
}

/**
 * Acknowledged writes through the actor. With `warm`, the row cache first
 * holds 10,000 rows and every other write goes to one of them, so the phase
 * pays the write-through merges and the deletes of the versions they shadow.
 */
async function actorWrites(root: string, mode: CommitSyncMode, warm = false): Promise<number> {
  const db = await fresh(root, `actor-${mode}${warm ? '-warm' : ''}`);
  const system = new ActorSystem({ env });
  const h = spawnStorage(system, ROW_CACHE_BYTES === undefined ? { db, env, commitSync: mode } : { db, env, commitSync: mode, rowCacheBytes: ROW_CACHE_BYTES });
  if (warm) {
    await Promise.all(Array.from({ length: HOT_KEYS }, (_, i) => write(h.ref, mutation(i, 1), 60_000)));
    for (let i = 0; i < HOT_KEYS; i++) await h.reader.get({ keyspace: 'bench', token: tokenOf(i), partition: te.encode(`key-${i}`) });
  }
  let next = 0;
  let acked = 0;
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const n = next++;
      const i = warm && n % 2 === 0 ? (n / 2) % HOT_KEYS : n;
      // Each write newer than the ones before, as a clock stamps them.
      await write(h.ref, mutation(i, 2 + n), 30_000);
      acked++;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const ms = performance.now() - start;
  await h.close();
  await system.shutdown();
  return (acked / ms) * 1000;
}

interface PointPhase {
  perSec: number;
  hits: number;
  misses: number;
}

/** 64 concurrent readers for half a phase; the i-th read is of key `(i * 7919) % keys` (7919 is prime: no repeats before `keys` reads). */
async function pointReads(store: Store, keys: number): Promise<PointPhase> {
  const before = store.cacheStats();
  let n = 0;
  const start = performance.now();
  const deadline = start + (SECONDS * 1000) / 2;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const x = (n++ * 7919) % keys;
      if ((await store.get({ keyspace: 'bench', token: tokenOf(x), partition: te.encode(`key-${x}`) })) === undefined) throw new Error('missing row');
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  const perSec = (n / (performance.now() - start)) * 1000;
  const after = store.cacheStats();
  return { perSec, hits: after.hits - before.hits, misses: after.misses - before.misses };
}

/**
 * Cold reads in batches, as a replica hands its turn's reads to the store:
 * `readers` loops, each asking for `batch` rows at a time, for half a phase.
 * `read` answers one batch of key numbers.
 */
async function batchedReads(keys: number, batch: number, readers: number, read: (xs: number[]) => Promise<void>): Promise<number> {
  let n = 0;
  const start = performance.now();
  const deadline = start + (SECONDS * 1000) / 2;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const xs: number[] = [];
      for (let j = 0; j < batch; j++) xs.push((n++ * 7919) % keys);
      await read(xs);
    }
  };
  await Promise.all(Array.from({ length: readers }, worker));
  return (n / (performance.now() - start)) * 1000;
}

/**
 * The cold reads of a replica's turn through the store (one `getMany` of the
 * rows' heads, then the row cache's fill) against the floor of the same
 * work, LevelDB's `getMany` of exact keys, the same number of rows of the
 * same size.
 */
async function batchedColdReads(root: string, db: Level<Uint8Array, Uint8Array>, keys: number): Promise<{ store: number; getMany: number }> {
  const store = await new Store(db, { env }).open();
  const storeRate = await batchedReads(keys, 64, 2, async (xs) => {
    await store.pointReads(
      xs.map((x) => ({ address: { keyspace: 'bench', token: tokenOf(x), partition: te.encode(`key-${x}`) }, digest: false })),
      (_i, error, cell) => {
        if (error !== undefined || cell === undefined) throw error ?? new Error('missing row');
      },
    );
  });
  const exact = await fresh(root, 'exact');
  const keyOf = (x: number) => rowKeyPrefix('bench', tokenOf(x), te.encode(`key-${x}`), new Uint8Array(0));
  for (let i = 0; i < keys; i += 1000) {
    const ops = [];
    for (let j = i; j < i + 1000; j++) ops.push({ type: 'put' as const, key: keyOf(j), value: VALUE });
    await exact.batch(ops);
  }
  const getManyRate = await batchedReads(keys, 64, 2, async (xs) => {
    const values = await exact.getMany(xs.map(keyOf));
    if (values.some((v) => v === undefined)) throw new Error('missing key');
  });
  await exact.close();
  return { store: storeRate, getMany: getManyRate };
}

async function reads(root: string): Promise<{ cold: PointPhase; coldBatched: { store: number; getMany: number }; hot: PointPhase; hotUncached: PointPhase; cache: ReturnType<Store['cacheStats']>; sliceMs: number; slicePerSec: number }> {
  const db = await fresh(root, 'reads');
  const store = await new Store(db, { env }).open();
  const N = 100_000;
  for (let i = 0; i < N; i += 1000) {
    const batch: Mutation[] = [];
    // Each write newer than the one before, as a clock gives them: each puts its row's head.
    for (let j = i; j < i + 1000; j++) batch.push(mutation(j, 1 + j));
    await store.apply(batch);
  }
  const wide: Mutation[] = [];
  for (let c = 0; c < 100; c++) wide.push({ keyspace: 'bench', token: tokenOf(-1), partition: te.encode('wide'), clustering: te.encode(`c${String(c).padStart(3, '0')}`), cell: { value: VALUE, timestampMicros: 1 } });
  await store.apply(wide);

  // Cold: 100,000 keys, none read twice within the phase, so every read is a miss (and fills the cache).
  const cold = await pointReads(store, N);
  const coldBatched = await batchedColdReads(root, db, N);
  // Hot: a fresh store (cold cache) reading a 10,000-key set over and over; the same with the cache off.
  const hotStore = new Store(db, { env });
  const hot = await pointReads(hotStore, HOT_KEYS);
  const hotUncached = await pointReads(new Store(db, { env, rowCacheBytes: 0 }), HOT_KEYS);
  const cache = hotStore.cacheStats();

  let slices = 0;
  const start = performance.now();
  const deadline = start + (SECONDS * 1000) / 2;
  while (performance.now() < deadline) {
    const page = await store.slice('bench', tokenOf(-1), te.encode('wide'), { limit: 100 });
    if (page.rows.length !== 100) throw new Error('short slice');
    slices++;
  }
  const ms = performance.now() - start;
  await store.close();
  return { cold, coldBatched, hot, hotUncached, cache, sliceMs: ms / slices, slicePerSec: (slices / ms) * 1000 };
}

/**
 * The row cache's real memory per entry against its own estimate, the one
 * its byte bound counts: 100,000 rows of 100-byte values installed into an
 * unbounded cache, the V8 heap and the memory of buffers (where the rows
 * are) measured after full collections before and after. Needs
 * `--expose-gc` (the `bench:storage` script passes it).
 */
function rowCacheFootprint(): { realPerEntry: number; estimatedPerEntry: number } | undefined {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return undefined;
  const rows = 100_000;
  // Twice: a collection can leave what only the next one frees, which would count against the cache.
  gc();
  gc();
  const used = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  const before = used();
  // Admitted on the first miss: this measures what an entry takes, not which rows the doorkeeper lets in.
  const cache = new RowCache(2 ** 40, () => {}, true);
  for (let i = 0; i < rows; i++) {
    const prefix = rowKeyPrefix('bench', tokenOf(i), te.encode(`key-${i}`), new Uint8Array(0));
    // A version key as the store writes one for a value over 32 bytes: the prefix, ~timestamp, the tie tag and a SHA-256.
    const version = new Uint8Array(prefix.length + 8 + 2 + 32);
    version.set(prefix);
    const rowId = cacheId(prefix, prefix.length);
    // The partition's id is the row's less its kind byte and empty clustering key (00 01): 3 chars shorter.
    cache.endRead(cache.beginRead(), rowId, prefix.length - 3, { value: VALUE, timestampMicros: 1_700_000_000_000_000 + i }, version, true);
  }
  gc();
  gc();
  const real = used() - before;
  const stats = cache.stats();
  if (stats.entries !== rows) throw new Error(`row cache kept ${stats.entries} of ${rows} rows`);
  return { realPerEntry: real / rows, estimatedPerEntry: stats.bytes / rows };
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'chorus-bench-'));
  try {
    console.log(`storage bench: LevelDB in ${root}, 100-byte values, ${SECONDS}s per phase`);
    // First, while the heap holds nothing of the other phases.
    const footprint = rowCacheFootprint();
    console.log(
      footprint === undefined
        ? 'row cache footprint: run with --expose-gc to measure it'
        : `row cache footprint: ${footprint.realPerEntry.toFixed(0)} B per 100-byte row, estimated ${footprint.estimatedPerEntry.toFixed(0)} B (real/estimate ${(footprint.realPerEntry / footprint.estimatedPerEntry).toFixed(2)})`,
    );
    const raw = await rawPuts(root);
    console.log(`raw leveldb batched puts (1000/batch): ${rate(raw, 1000)} puts/s`);
    const results: Record<string, number> = {};
    for (const mode of ['none', 'periodic', 'batch'] as const) {
      results[mode] = await actorWrites(root, mode);
      console.log(`actor acked writes, commitSync=${mode}${mode === 'periodic' ? ' (default)' : ''}, ${IN_FLIGHT} in flight: ${rate(results[mode], 1000)} writes/s (ratio ${(results[mode] / raw).toFixed(2)})`);
    }
    const warm = await actorWrites(root, 'periodic', true);
    console.log(`actor acked writes, commitSync=periodic, half of them to the ${HOT_KEYS.toLocaleString('en-US')} rows in the row cache: ${rate(warm, 1000)} writes/s (ratio ${(warm / raw).toFixed(2)})`);
    const r = await reads(root);
    const misses = (p: PointPhase): string => `${p.hits.toLocaleString('en-US')} hits, ${p.misses.toLocaleString('en-US')} misses`;
    console.log(`point reads, cold (64 concurrent, 100k keys, each read once): ${rate(r.cold.perSec, 1000)} reads/s (${misses(r.cold)})`);
    const { store: batchedRate, getMany } = r.coldBatched;
    console.log(`point reads, cold, in batches of 64 as a replica's turn (2 batches in flight): ${rate(batchedRate, 1000)} reads/s; LevelDB getMany of as many exact keys: ${rate(getMany, 1000)} reads/s (ratio ${(batchedRate / getMany).toFixed(2)})`);
    console.log(`point reads, hot set of ${HOT_KEYS.toLocaleString('en-US')} keys, row cache on (default): ${rate(r.hot.perSec, 1000)} reads/s (${misses(r.hot)})`);
    console.log(`point reads, hot set of ${HOT_KEYS.toLocaleString('en-US')} keys, row cache off: ${rate(r.hotUncached.perSec, 1000)} reads/s`);
    console.log(`row cache after the hot phase: ${r.cache.entries.toLocaleString('en-US')} rows, ${(r.cache.bytes / 1024 / 1024).toFixed(1)} MiB estimated`);
    console.log(`100-row slice: ${r.sliceMs.toFixed(3)} ms (${rate(r.slicePerSec, 1000)} slices/s)`);
    console.log(`ratio ${(results['periodic']! / raw).toFixed(2)}`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
