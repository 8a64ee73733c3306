#!/usr/bin/env node
/**
 * Storage benchmark: raw LevelDB batched puts as the ceiling, then the storage
 * actor's acknowledged writes in each commit mode, point reads and a 100-row
 * slice. Run with `pnpm bench:storage` after `pnpm build`. It is a CLI entry
 * point, so it may read the real clock.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ActorSystem } from '@chorus/actors';
import { nodeId, realEnv, token, type Token } from '@chorus/core';
import { Level } from 'level';
import { type CommitSyncMode, type Mutation, Store, rowKeyPrefix, spawnStorage, write } from './index.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 3);
const VALUE = new Uint8Array(randomBytes(100));
// More in flight only adds garbage-collector work (every pending ask is a promise and a timer); 1000 keeps batches full.
const IN_FLIGHT = Number(process.env['BENCH_IN_FLIGHT'] ?? 1000);
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

async function actorWrites(root: string, mode: CommitSyncMode): Promise<number> {
  const db = await fresh(root, `actor-${mode}`);
  const system = new ActorSystem({ env });
  const h = spawnStorage(system, { db, env, commitSync: mode });
  let next = 0;
  let acked = 0;
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const i = next++;
      await write(h.ref, mutation(i, 1), 30_000);
      acked++;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const ms = performance.now() - start;
  await h.close();
  await system.shutdown();
  return (acked / ms) * 1000;
}

async function reads(root: string): Promise<{ pointPerSec: number; sliceMs: number; slicePerSec: number }> {
  const db = await fresh(root, 'reads');
  const store = new Store(db, { env });
  const N = 100_000;
  for (let i = 0; i < N; i += 1000) {
    const batch: Mutation[] = [];
    for (let j = i; j < i + 1000; j++) batch.push(mutation(j, 1));
    await store.apply(batch);
  }
  const wide: Mutation[] = [];
  for (let c = 0; c < 100; c++) wide.push({ keyspace: 'bench', token: tokenOf(-1), partition: te.encode('wide'), clustering: te.encode(`c${String(c).padStart(3, '0')}`), cell: { value: VALUE, timestampMicros: 1 } });
  await store.apply(wide);

  let n = 0;
  let start = performance.now();
  let deadline = start + (SECONDS * 1000) / 2;
  const worker = async (): Promise<void> => {
    let x = 0;
    while (performance.now() < deadline) {
      x = (x * 7919 + n++) % N;
      if ((await store.get({ keyspace: 'bench', token: tokenOf(x), partition: te.encode(`key-${x}`) })) === undefined) throw new Error('missing row');
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  const pointPerSec = (n / (performance.now() - start)) * 1000;

  let slices = 0;
  start = performance.now();
  deadline = start + (SECONDS * 1000) / 2;
  while (performance.now() < deadline) {
    const page = await store.slice('bench', tokenOf(-1), te.encode('wide'), { limit: 100 });
    if (page.rows.length !== 100) throw new Error('short slice');
    slices++;
  }
  const ms = performance.now() - start;
  await store.close();
  return { pointPerSec, sliceMs: ms / slices, slicePerSec: (slices / ms) * 1000 };
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'chorus-bench-'));
  try {
    console.log(`storage bench: LevelDB in ${root}, 100-byte values, ${SECONDS}s per phase`);
    const raw = await rawPuts(root);
    console.log(`raw leveldb batched puts (1000/batch): ${rate(raw, 1000)} puts/s`);
    const results: Record<string, number> = {};
    for (const mode of ['none', 'periodic', 'batch'] as const) {
      results[mode] = await actorWrites(root, mode);
      console.log(`actor acked writes, commitSync=${mode}${mode === 'periodic' ? ' (default)' : ''}, ${IN_FLIGHT} in flight: ${rate(results[mode], 1000)} writes/s (ratio ${(results[mode] / raw).toFixed(2)})`);
    }
    const r = await reads(root);
    console.log(`point reads (64 concurrent): ${rate(r.pointPerSec, 1000)} reads/s`);
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
