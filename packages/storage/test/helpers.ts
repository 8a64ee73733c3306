import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Env, type Scheduler, nodeId, silentLogger, token, type Token } from '@chorus/core';
import { Level } from 'level';
import { MemoryLevel } from 'memory-level';
import type { StorageDb } from '../src/index.js';

/** An Env whose wall clock the test moves by hand; timers are real so actors run normally. */
export interface TestEnv extends Env {
  setNowMicros(us: number): void;
  advanceSeconds(s: number): void;
}

export function testEnv(startMicros = 1_700_000_000_000_000): TestEnv {
  let now = startMicros;
  const scheduler: Scheduler = {
    setTimer(ms, fn) {
      const h = setTimeout(fn, Math.max(0, ms));
      return { cancel: () => clearTimeout(h) };
    },
    defer(fn) {
      setImmediate(fn);
    },
    deferIo(fn) {
      setImmediate(fn);
    },
    track: (w) => w,
  };
  return {
    node: nodeId('n1'),
    clock: { nowMicros: () => now, monotonicMs: () => performance.now() },
    scheduler,
    random: { next: () => 0.5, int: () => 0, bytes: (n) => new Uint8Array(n), uuid: () => '00000000-0000-4000-8000-000000000000' },
    logger: silentLogger,
    setNowMicros(us) {
      now = us;
    },
    advanceSeconds(s) {
      now += s * 1_000_000;
    },
  };
}

export interface Backend {
  name: string;
  /** A fresh, open database. */
  create(): Promise<StorageDb>;
  /** Closes `db` (if open) and opens the same data again; undefined when the backend cannot persist. */
  reopen?(db: StorageDb): Promise<StorageDb>;
  cleanup(): Promise<void>;
}

export function memoryBackend(): Backend {
  return {
    name: 'memory-level',
    async create() {
      const db = new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
      await db.open();
      return db;
    },
    // memory-level keeps its data across close and open of the same instance, like a disk across a restart.
    async reopen(db) {
      if (db.status !== 'closed') await db.close();
      await db.open();
      return db;
    },
    async cleanup() {},
  };
}

export function levelBackend(): Backend {
  const dirs: string[] = [];
  const locations = new WeakMap<object, string>();
  const openAt = async (dir: string): Promise<StorageDb> => {
    const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    locations.set(db, dir);
    return db;
  };
  return {
    name: 'level',
    async create() {
      const dir = await mkdtemp(join(tmpdir(), 'chorus-storage-test-'));
      dirs.push(dir);
      return openAt(dir);
    },
    async reopen(db) {
      const dir = locations.get(db)!;
      if (db.status !== 'closed') await db.close();
      return openAt(dir);
    },
    async cleanup() {
      for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
    },
  };
}

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

/** Any function of the key will do for tests; this one spreads small keys over the ring. */
export function tokenOf(key: string): Token {
  let h = 0xcbf29ce484222325n;
  for (const b of enc(key)) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return token(BigInt.asIntN(64, h));
}

/** The first byte of the store's bookkeeping keys (the periodic sync's marker among them). */
export const META = 0x6d;

/**
 * Lets a test hold back batch writes of `db`: before each is written, `wait`
 * gets its index (a chained batch's in creation order, a batch of one's when
 * it is written) and the keys it deletes, and the write waits for the promise
 * it returns, if any. The periodic sync's marker is not a batch and passes.
 */
export function delayBatchWrites(db: StorageDb, wait: (index: number, deleted: readonly Uint8Array[]) => Promise<unknown> | undefined): void {
  const realBatch = db.batch.bind(db) as (...a: unknown[]) => unknown;
  const realPut = db.put.bind(db) as (k: Uint8Array, v: unknown, o?: unknown) => Promise<void>;
  const realDel = db.del.bind(db) as (k: Uint8Array, o?: unknown) => Promise<void>;
  let n = 0;
  (db as { batch: unknown }).batch = (...args: unknown[]) => {
    const b = realBatch(...args) as { del: (k: Uint8Array, o?: unknown) => unknown; write: (o: unknown) => Promise<void> };
    if (args.length > 0) return b;
    const index = n++;
    const deleted: Uint8Array[] = [];
    const del = b.del.bind(b);
    b.del = (k: Uint8Array, o?: unknown) => {
      deleted.push(k);
      return del(k, o);
    };
    const write = b.write.bind(b);
    b.write = async (o: unknown) => {
      await wait(index, deleted);
      return write(o);
    };
    return b;
  };
  // A batch of one goes to LevelDB as a plain put or del (see Batch): it is a batch here too.
  (db as { put: unknown }).put = async (k: Uint8Array, v: unknown, o?: unknown) => {
    if (k[0] === META) return realPut(k, v, o);
    await wait(n++, []);
    return realPut(k, v, o);
  };
  (db as { del: unknown }).del = async (k: Uint8Array, o?: unknown) => {
    await wait(n++, [k]);
    return realDel(k, o);
  };
}

/** Holds every batch write of `db` until released by its index. */
export function holdBatches(db: StorageDb): { release(i: number): void } {
  const gates: Array<() => void> = [];
  const waits: Array<Promise<void>> = [];
  const gate = (i: number): Promise<void> => {
    while (waits.length <= i) {
      const n = waits.length;
      waits.push(new Promise<void>((r) => (gates[n] = r)));
    }
    return waits[i]!;
  };
  delayBatchWrites(db, (i) => gate(i));
  return {
    release(i) {
      void gate(i);
      gates[i]!();
    },
  };
}

/** Counts the iterators `db` opens from now on (a point read answered by a head opens none). */
export function countIterators(db: StorageDb): { count: number } {
  const counter = { count: 0 };
  const real = db.iterator.bind(db) as (o: unknown) => ReturnType<StorageDb['iterator']>;
  (db as { iterator: unknown }).iterator = (o: unknown) => {
    counter.count++;
    return real(o);
  };
  return counter;
}
