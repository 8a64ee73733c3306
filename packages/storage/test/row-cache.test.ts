import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { type Cell, type Mutation, cellDigest, expiryFromTtl } from '@chorus/model';
import type { StorageDb } from '../src/index.js';
import { Store } from '../src/store.js';
import { type Backend, dec, enc, holdBatches, levelBackend, memoryBackend, type TestEnv, testEnv, tokenOf } from './helpers.js';

const KS = 'ks';
const row = (key: string, clustering?: string) => ({ keyspace: KS, token: tokenOf(key), partition: enc(key), ...(clustering === undefined ? {} : { clustering: enc(clustering) }) });
const put = (key: string, value: string, ts: number, clustering?: string, expiresAtMicros?: number): Mutation => ({
  ...row(key, clustering),
  cell: expiresAtMicros === undefined ? { value: enc(value), timestampMicros: ts } : { value: enc(value), timestampMicros: ts, expiresAtMicros },
});
const del = (key: string, ts: number, clustering?: string): Mutation => ({ ...row(key, clustering), cell: { tombstone: true, timestampMicros: ts } });
const delPartition = (key: string, ts: number): Mutation => ({ keyspace: KS, token: tokenOf(key), partition: enc(key), partitionDeletion: { timestampMicros: ts } });
const show = (c: Cell | undefined) => (c === undefined ? undefined : 'tombstone' in c ? `T@${c.timestampMicros}` : `${dec(c.value)}@${c.timestampMicros}`);

async function physical(db: StorageDb): Promise<number> {
  return (await db.keys({ gte: Uint8Array.of(0x64), lt: Uint8Array.of(0x65), keyEncoding: 'view' }).all()).length;
}

/**
 * Holds the first `nextv` of the next iterator the store creates: a point read
 * then has its snapshot (taken when the iterator is created) but has not
 * finished, so a test can land writes in between.
 */
function holdNextRead(db: StorageDb): { started: Promise<void>; release(): void } {
  const real = db.iterator.bind(db) as (o: unknown) => ReturnType<StorageDb['iterator']>;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let started!: () => void;
  const startedP = new Promise<void>((r) => (started = r));
  (db as { iterator: unknown }).iterator = (o: unknown) => {
    (db as { iterator: unknown }).iterator = real;
    const it = real(o);
    const nextv = it.nextv.bind(it) as (...a: unknown[]) => Promise<unknown>;
    (it as { nextv: unknown }).nextv = async (...a: unknown[]) => {
      started();
      await gate;
      return nextv(...a);
    };
    return it;
  };
  return { started: startedP, release };
}

const backends: Array<() => Backend> = [memoryBackend, levelBackend];

describe.each(backends.map((b) => [b().name, b] as const))('row cache: %s', (_name, makeBackend) => {
  const backend = makeBackend();
  let db: StorageDb;
  let env: TestEnv;
  let store: Store;
  beforeEach(async () => {
    db = await backend.create();
    env = testEnv();
    // These tests are about what a fill may install; which misses are worth caching is tested apart.
    store = new Store(db, { env, gcGraceSeconds: 100, rowCacheAdmitsFirstMiss: true });
    return async () => {
      await store.close();
    };
  });
  afterAll(() => backend.cleanup());

  it('by default a row is cached on its second miss: rows read once leave the cache to rows read again', async () => {
    const doorkeeping = new Store(db, { env });
    await doorkeeping.apply([put('a', 'v', 10), put('b', 'w', 10)]);
    expect(show(await doorkeeping.getCell(row('a')))).toBe('v@10');
    expect(doorkeeping.cacheStats()).toMatchObject({ misses: 1, entries: 0 });
    expect(show(await doorkeeping.getCell(row('a')))).toBe('v@10');
    expect(doorkeeping.cacheStats()).toMatchObject({ misses: 2, entries: 1 });
    expect(show(await doorkeeping.getCell(row('a')))).toBe('v@10');
    expect(doorkeeping.cacheStats()).toMatchObject({ hits: 1, misses: 2, entries: 1 });
    expect(show(await doorkeeping.getCell(row('b')))).toBe('w@10');
    expect(doorkeeping.cacheStats()).toMatchObject({ entries: 1 });
    await doorkeeping.close();
  });

  it('a miss fills the cache and the next read hits, absent rows included', async () => {
    await store.write(put('a', 'v', 10));
    expect(show(await store.get(row('a')))).toBe('v@10');
    expect(store.cacheStats()).toMatchObject({ hits: 0, misses: 1, entries: 1 });
    expect(show(await store.getCell(row('a')))).toBe('v@10');
    expect(dec((await store.get(row('a')))!.value)).toBe('v');
    expect(await store.getCell(row('nope'))).toBeUndefined();
    expect(await store.getCell(row('nope'))).toBeUndefined();
    expect(cellDigest(await store.getCell(row('a')))).toEqual(await store.digest(row('a')));
    expect(store.cacheStats()).toMatchObject({ hits: 5, misses: 2, entries: 2, evictions: 0 });
    expect(store.cacheStats().bytes).toBeGreaterThan(0);
  });

  it('writes go through to cached rows: newer wins, older is ignored, tombstones and ties follow the merge rules', async () => {
    await store.write(put('a', 'v1', 10));
    await store.getCell(row('a'));
    await store.write(put('a', 'v2', 20));
    expect(show(await store.getCell(row('a')))).toBe('v2@20');
    await store.write(put('a', 'old', 15));
    expect(show(await store.getCell(row('a')))).toBe('v2@20');
    await store.write(put('a', 'v3', 20)); // equal timestamp: the greater value wins
    expect(show(await store.getCell(row('a')))).toBe('v3@20');
    await store.write(del('a', 20)); // equal timestamp: the tombstone wins
    expect(show(await store.getCell(row('a')))).toBe('T@20');
    expect(await store.get(row('a'))).toBeUndefined();
    await store.write(put('a', 'back', 21));
    expect(show(await store.get(row('a')))).toBe('back@21');
    // A cached absence takes the first write.
    expect(await store.getCell(row('b'))).toBeUndefined();
    await store.write(put('b', 'x', 1));
    expect(show(await store.getCell(row('b')))).toBe('x@1');
    expect(store.cacheStats()).toMatchObject({ misses: 2 });
    // The cache agrees with LevelDB.
    const cold = new Store(db, { env, rowCacheBytes: 0 });
    expect(show(await cold.getCell(row('a')))).toBe('back@21');
    expect(show(await cold.getCell(row('b')))).toBe('x@1');
  });

  it('the cache keeps its own copy of written and read values', async () => {
    const value = enc('orig');
    await store.getCell(row('a'));
    await store.write({ ...row('a'), cell: { value, timestampMicros: 5 } });
    value.fill(0x7a);
    expect(show(await store.getCell(row('a')))).toBe('orig@5');
  });

  it('a partition deletion shadows the cached rows of its partition, not newer ones nor other partitions', async () => {
    await store.apply([put('p', 'a', 10, 'a'), put('p', 'b', 30, 'b'), put('p', 'root', 10), put('q', 'q', 10)]);
    for (const c of ['a', 'b', 'none']) await store.getCell(row('p', c));
    await store.getCell(row('p'));
    await store.getCell(row('q'));
    const misses = store.cacheStats().misses;
    await store.write(delPartition('p', 20));
    expect(show(await store.getCell(row('p', 'a')))).toBe('T@20');
    expect(show(await store.getCell(row('p', 'b')))).toBe('b@30');
    expect(show(await store.getCell(row('p', 'none')))).toBe('T@20');
    expect(show(await store.getCell(row('p')))).toBe('T@20');
    expect(show(await store.getCell(row('q')))).toBe('q@10');
    // An older deletion changes nothing; a write newer than the deletion revives the row.
    await store.write(delPartition('p', 15));
    expect(show(await store.getCell(row('p', 'a')))).toBe('T@20');
    await store.write(put('p', 'again', 25, 'a'));
    expect(show(await store.getCell(row('p', 'a')))).toBe('again@25');
    await store.write(put('p', 'late', 19, 'none'));
    expect(show(await store.getCell(row('p', 'none')))).toBe('T@20');
    expect(store.cacheStats().misses).toBe(misses);
    const cold = new Store(db, { env, rowCacheBytes: 0 });
    for (const c of ['a', 'b', 'none']) expect(show(await cold.getCell(row('p', c)))).toBe(show(await store.getCell(row('p', c))));
  });

  it('a cached expiring value expires on time: the cache holds the cell, not the verdict', async () => {
    const now = env.clock.nowMicros();
    await store.write(put('a', 'short', now, undefined, expiryFromTtl(now, 5)));
    expect(show(await store.get(row('a')))).toBe(`short@${now}`);
    env.advanceSeconds(5);
    expect(await store.get(row('a'))).toBeUndefined();
    expect(show(await store.getCell(row('a')))).toBe(`short@${now}`);
    expect(store.cacheStats()).toMatchObject({ misses: 1, hits: 2 });
  });

  it('a gc purge forgets cached tombstones, so a purged row reads (and digests) as absent', async () => {
    await store.apply([del('a', 10), put('p', 'x', 10, 'r'), delPartition('p', 20)]);
    expect(show(await store.getCell(row('a')))).toBe('T@10');
    expect(show(await store.getCell(row('p', 'r')))).toBe('T@20');
    env.advanceSeconds(100);
    expect(await store.purge()).toBeGreaterThan(0);
    expect(await store.getCell(row('a'))).toBeUndefined();
    expect(await store.getCell(row('p', 'r'))).toBeUndefined();
    expect(await store.digest(row('a'))).toEqual(cellDigest(undefined));
  });

  it('writes to a cached row delete the versions they shadow, so a hot row does not pile up versions', async () => {
    await store.write(put('a', 'v0', 1));
    await store.getCell(row('a'));
    for (let ts = 2; ts <= 300; ts++) await store.write(put('a', `v${ts}`, ts % 2 === 0 ? ts : 600 - ts));
    await store.settled();
    expect(await physical(db)).toBe(1);
    expect(show(await store.get(row('a')))).toBe('v3@597');
    const cold = new Store(db, { env, rowCacheBytes: 0 });
    expect(show(await cold.get(row('a')))).toBe('v3@597');
    // A rewrite of the very same version (same key) must not delete it.
    await store.write(put('a', 'v3', 597));
    await store.settled();
    expect(show(await cold.get(row('a')))).toBe('v3@597');
  });

  it('evicts the least recently read rows to stay within its byte bound', async () => {
    const small = new Store(db, { env, rowCacheBytes: 4000, rowCacheAdmitsFirstMiss: true });
    const muts: Mutation[] = [];
    for (let i = 0; i < 100; i++) muts.push(put(`k${i}`, `value-${i}`, 1));
    await small.apply(muts);
    for (let i = 0; i < 100; i++) {
      expect(show(await small.get(row(`k${i}`)))).toBe(`value-${i}@1`);
      if (i >= 1) await small.get(row('k0')); // keep k0 hot
    }
    const s = small.cacheStats();
    expect(s.bytes).toBeLessThanOrEqual(4000);
    expect(s.entries).toBeGreaterThan(1);
    expect(s.entries).toBeLessThan(100);
    expect(s.evictions).toBe(100 - s.entries);
    const misses = s.misses;
    await small.get(row('k0'));
    await small.get(row('k99'));
    expect(small.cacheStats().misses).toBe(misses);
    await small.get(row('k1'));
    expect(small.cacheStats().misses).toBe(misses + 1);
    // Written rows that were evicted read right from LevelDB.
    await small.write(put('k1', 'new', 2));
    await small.write(put('k2', 'new', 2));
    expect(show(await small.get(row('k2')))).toBe('new@2');
    expect(show(await small.get(row('k1')))).toBe('new@2');
    await small.settled();
  });

  it('keeps the rows read again while many more rows pass through it, a segment at a time', async () => {
    // 64 KiB: sixteen segments of 4 KiB, each about twenty rows of this size.
    const cache = new Store(db, { env, rowCacheBytes: 64 * 1024, rowCacheAdmitsFirstMiss: true });
    const muts: Mutation[] = [];
    for (let i = 0; i < 3000; i++) muts.push(put(`k${i}`, `value-${i}`, 1));
    await cache.apply(muts);
    const hot = Array.from({ length: 20 }, (_, i) => `k${i}`);
    for (let i = 20; i < 3000; i++) {
      expect(show(await cache.get(row(`k${i}`)))).toBe(`value-${i}@1`);
      if (i % 10 === 0) for (const k of hot) await cache.get(row(k));
    }
    const s = cache.cacheStats();
    expect(s.bytes).toBeLessThanOrEqual(64 * 1024);
    expect(s.evictions).toBeGreaterThan(2000);
    expect(s.evictions).toBe(3000 - s.entries);
    for (const k of hot) expect(show(await cache.get(row(k)))).toBe(`value-${k.slice(1)}@1`);
    expect(cache.cacheStats().misses).toBe(s.misses);
    // A hot row written again is rewritten in the cache, its old record left for eviction to pass over.
    await cache.write(put('k3', 'newer', 2));
    expect(show(await cache.get(row('k3')))).toBe('newer@2');
    expect(cache.cacheStats().misses).toBe(s.misses);
    await cache.close();
  });

  it('reads a row too large for a segment from LevelDB every time, without caching it', async () => {
    // 16 KiB: segments of 1 KiB, smaller than this row.
    const cache = new Store(db, { env, rowCacheBytes: 16 * 1024, rowCacheAdmitsFirstMiss: true });
    const large = 'x'.repeat(2000);
    await cache.write(put('big', large, 1));
    await cache.write(put('small', 'v', 1));
    for (let i = 0; i < 2; i++) {
      expect(show(await cache.get(row('big')))).toBe(`${large}@1`);
      expect(show(await cache.get(row('small')))).toBe('v@1');
    }
    expect(cache.cacheStats()).toMatchObject({ entries: 1, hits: 1, misses: 3 });
    // A cached row that grows past a segment leaves the cache, and reads the new value.
    await cache.write(put('small', large, 2));
    expect(cache.cacheStats().entries).toBe(0);
    expect(show(await cache.get(row('small')))).toBe(`${large}@2`);
    await cache.close();
  });

  it('rowCacheBytes: 0 turns it off', async () => {
    const off = new Store(db, { env, rowCacheBytes: 0 });
    await off.write(put('a', 'v', 1));
    await off.get(row('a'));
    await off.get(row('a'));
    expect(off.cacheStats()).toMatchObject({ hits: 0, entries: 0, capacityBytes: 0 });
    expect(() => new Store(db, { env, rowCacheBytes: -1 })).toThrow(RangeError);
  });

  describe('a read that raced a write does not fill the cache', () => {
    it('with a row write', async () => {
      await store.write(put('a', 'old', 10));
      const hold = holdNextRead(db);
      const read = store.getCell(row('a'));
      await hold.started;
      await store.write(put('a', 'new', 20));
      hold.release();
      // The read took its snapshot before the write landed.
      if (backend.name === 'memory-level') expect(show(await read)).toBe('old@10');
      else await read;
      expect(store.cacheStats().raceSkips).toBe(1);
      expect(show(await store.getCell(row('a')))).toBe('new@20');
      expect(show(await store.getCell(row('a')))).toBe('new@20');
    });

    it('with a partition deletion', async () => {
      await store.write(put('p', 'old', 10, 'r'));
      const hold = holdNextRead(db);
      const read = store.getCell(row('p', 'r'));
      await hold.started;
      await store.write(delPartition('p', 20));
      hold.release();
      await read;
      expect(store.cacheStats().raceSkips).toBe(1);
      expect(show(await store.getCell(row('p', 'r')))).toBe('T@20');
    });

    it('with a gc purge', async () => {
      await store.write(del('a', 10));
      env.advanceSeconds(100);
      const hold = holdNextRead(db);
      const read = store.getCell(row('a'));
      await hold.started;
      expect(await store.purge()).toBe(1);
      hold.release();
      await read;
      expect(store.cacheStats().raceSkips).toBe(1);
      expect(await store.getCell(row('a'))).toBeUndefined();
    });

    it('even when the write landed so long ago that the cache forgot which row it wrote', async () => {
      await store.write(put('a', 'old', 10));
      const hold = holdNextRead(db);
      const read = store.getCell(row('a'));
      await hold.started;
      await store.write(put('a', 'new', 20));
      // Enough other writes to push row a out of the bounded record of recent writes.
      for (let i = 0; i < 70; i++) await store.apply(Array.from({ length: 1000 }, (_, j) => put(`f${i}-${j}`, 'x', 1)));
      hold.release();
      await read;
      expect(show(await store.getCell(row('a')))).toBe('new@20');
    });

    it('while a read that started after the write fills it', async () => {
      await store.write(put('a', 'old', 10));
      const hold = holdNextRead(db);
      const first = store.getCell(row('a'));
      await hold.started;
      await store.write(put('a', 'new', 20));
      expect(show(await store.getCell(row('a')))).toBe('new@20');
      hold.release();
      await first;
      expect(store.cacheStats()).toMatchObject({ entries: 1, raceSkips: 1 });
      expect(show(await store.getCell(row('a')))).toBe('new@20');
    });
  });

  it('a new Store over the same data starts cold', async () => {
    await store.write(put('a', 'v', 1));
    await store.get(row('a'));
    await store.get(row('a'));
    await store.close();
    if (backend.reopen !== undefined) db = await backend.reopen(db);
    else {
      // memory-level keeps its data across close and open.
      await db.open();
    }
    store = new Store(db, { env, gcGraceSeconds: 100, rowCacheAdmitsFirstMiss: true });
    expect(store.cacheStats()).toMatchObject({ hits: 0, misses: 0, entries: 0, bytes: 0 });
    expect(show(await store.get(row('a')))).toBe('v@1');
    expect(store.cacheStats()).toMatchObject({ hits: 0, misses: 1 });
  });
});

describe('row cache and pipelined batches', () => {
  it('each batch updates the cache when it lands, in any order, before its writes are acknowledged', async () => {
    const db = await memoryBackend().create();
    const store = new Store(db, { env: testEnv(), rowCacheAdmitsFirstMiss: true });
    await store.write(put('a', 'v0', 5));
    await store.getCell(row('a'));
    const hold = holdBatches(db);
    const first = store.submit([put('a', 'new', 20)]);
    const second = store.submit([put('a', 'old', 10), put('b', 'x', 1)]);
    // Nothing acknowledged yet: the cache still holds what has landed.
    expect(show(await store.getCell(row('a')))).toBe('v0@5');
    hold.release(1);
    await second.landed;
    expect(show(await store.getCell(row('a')))).toBe('old@10');
    hold.release(0);
    await first.landed;
    expect(show(await store.getCell(row('a')))).toBe('new@20');
    expect(store.cacheStats().misses).toBe(1);
    hold.release(2); // the deletes of the versions the two writes shadowed
    await store.close();
  });

  it('a batch that fails drops the rows it touched', async () => {
    const db = await memoryBackend().create();
    const store = new Store(db, { env: testEnv(), rowCacheAdmitsFirstMiss: true });
    await store.write(put('a', 'v0', 5));
    await store.getCell(row('a'));
    const realBatch = db.batch.bind(db) as (...a: unknown[]) => unknown;
    (db as { batch: unknown }).batch = (...args: unknown[]) => {
      const b = realBatch(...args) as { write: (o: unknown) => Promise<void> };
      b.write = async () => {
        throw new Error('disk on fire');
      };
      return b;
    };
    await expect(store.write(put('a', 'lost', 10))).rejects.toThrow('disk on fire');
    (db as { batch: unknown }).batch = realBatch;
    expect(store.cacheStats().entries).toBe(0);
    expect(show(await store.getCell(row('a')))).toBe('v0@5');
    await store.close();
  });
});
