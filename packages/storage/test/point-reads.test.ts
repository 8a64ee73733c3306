import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { type Cell, EmptyPartitionKey, type Mutation, type RowAddress, cellDigest } from '@chorus/model';
import type { StorageDb } from '../src/index.js';
import { Store } from '../src/store.js';
import { type Backend, countIterators, dec, enc, levelBackend, memoryBackend, type TestEnv, testEnv, tokenOf } from './helpers.js';

const KS = 'ks';
const row = (key: string, clustering?: string): RowAddress => ({ keyspace: KS, token: tokenOf(key), partition: enc(key), ...(clustering === undefined ? {} : { clustering: enc(clustering) }) });
const put = (key: string, value: string, ts: number, clustering?: string): Mutation => ({ ...row(key, clustering), cell: { value: enc(value), timestampMicros: ts } });
const del = (key: string, ts: number): Mutation => ({ ...row(key), cell: { tombstone: true, timestampMicros: ts } });
const delPartition = (key: string, ts: number): Mutation => ({ keyspace: KS, token: tokenOf(key), partition: enc(key), partitionDeletion: { timestampMicros: ts } });
const show = (c: Cell | undefined) => (c === undefined ? undefined : 'tombstone' in c ? `T@${c.timestampMicros}` : `${dec(c.value)}@${c.timestampMicros}`);

/** Runs a batch of point reads and collects each answer by its index (an Error when that read failed). */
async function pointReads(store: Store, reads: Array<{ address: RowAddress; digest: boolean }>): Promise<Array<Cell | Uint8Array | undefined | Error>> {
  const out: Array<Cell | Uint8Array | undefined | Error> = new Array(reads.length).fill(null);
  await store.pointReads(reads, (i, error, result) => {
    out[i] = error ?? result;
  });
  return out;
}

const backends: Array<() => Backend> = [memoryBackend, levelBackend];

// Each read of a batch through the store under test, with its heads read through the I/O pool (getMany) or on this thread (getSync).
const fromMemory = { blocksRead: () => 0 };
const cases = backends.flatMap((b) => [undefined, fromMemory].map((inline) => [`${b().name}, ${inline ? 'inline' : 'pool'}`, b, inline] as const));

describe.each(cases)('point reads of one turn: %s', (_name, makeBackend, inlinePointReads) => {
  const backend = makeBackend();
  let db: StorageDb;
  let env: TestEnv;
  afterAll(() => backend.cleanup());
  beforeEach(async () => {
    db = await backend.create();
    env = testEnv();
  });

  for (const cacheBytes of [0, 1 << 20]) {
    it(`answers a batch exactly as one getCell per row (row cache ${cacheBytes === 0 ? 'off' : 'on'})`, async () => {
      const store = new Store(db, { env, rowCacheBytes: cacheBytes, inlinePointReads });
      const writes: Mutation[] = [];
      for (let i = 0; i < 60; i++) {
        const k = `k${i}`;
        if (i % 5 === 0) continue; // absent
        writes.push(put(k, `v${i}`, 100 + i));
        if (i % 3 === 0) writes.push(put(k, `w${i}`, 200 + i)); // a newer version
        if (i % 7 === 0) writes.push(put(k, `old${i}`, 50)); // an older one
        if (i % 11 === 0) writes.push(del(k, 300)); // deleted
        if (i % 13 === 0) writes.push(delPartition(k, 250)); // partition deletion
        if (i % 4 === 0) writes.push(put(k, `c${i}`, 120, 'ck')); // another row of the partition
      }
      await store.apply(writes);
      // Read some rows first so a batch mixes hits and misses when the cache is on.
      for (let i = 0; i < 60; i += 2) await store.getCell(row(`k${i}`));
      const reads = [];
      for (let i = 59; i >= 0; i--) {
        reads.push({ address: row(`k${i}`), digest: i % 2 === 1 });
        if (i % 4 === 0) reads.push({ address: row(`k${i}`, 'ck'), digest: false });
      }
      reads.push({ address: row('k3'), digest: false }); // the same row twice in one batch
      const counter = countIterators(db);
      const got = await pointReads(store, reads);
      // Misses of the empty clustering key share an iterator per 16 (other rows read their partition's deletions apart: two each).
      const others = reads.filter((r) => r.address.clustering !== undefined).length;
      if (cacheBytes === 0) expect(counter.count).toBe(2 * others + Math.ceil((reads.length - others) / 16));
      for (let j = 0; j < reads.length; j++) {
        const expected = await new Store(db, { env, rowCacheBytes: 0 }).getCell(reads[j]!.address);
        if (reads[j]!.digest) expect(got[j]).toEqual(cellDigest(expected));
        else expect(show(got[j] as Cell | undefined)).toEqual(show(expected));
      }
      await store.close();
    });
  }

  it('answers a row asked twice in one batch twice, and caches what LevelDB holds', async () => {
    // The first row in key order bounds the shared iterator: reading it again must not seek below that bound.
    const store = await new Store(db, { env, inlinePointReads }).open();
    await store.apply([put('a', 'x', 1), put('b', 'y', 2)]);
    for (const key of ['a', 'b']) {
      const got = await pointReads(store, [
        { address: row(key), digest: false },
        { address: row(key), digest: true },
        { address: row(key), digest: false },
      ]);
      const expected = await new Store(db, { env, rowCacheBytes: 0 }).getCell(row(key));
      expect(show(got[0] as Cell)).toBe(show(expected));
      expect(got[1]).toEqual(cellDigest(expected));
      expect(show(got[2] as Cell)).toBe(show(expected));
      expect(show(await store.getCell(row(key)))).toBe(show(expected));
    }
    await store.close();
  });

  it('fails an invalid address alone and answers the rest', async () => {
    const store = await new Store(db, { env, inlinePointReads }).open();
    await store.apply([put('a', 'x', 1), put('b', 'y', 2)]);
    const got = await pointReads(store, [
      { address: row('a'), digest: false },
      { address: { keyspace: KS, token: tokenOf('c'), partition: new Uint8Array(0) }, digest: false },
      { address: row('b'), digest: true },
    ]);
    expect(show(got[0] as Cell)).toBe('x@1');
    expect(got[1]).toBeInstanceOf(EmptyPartitionKey);
    expect(got[2]).toEqual(cellDigest({ value: enc('y'), timestampMicros: 2 }));
    await store.close();
  });

  it('a digest of a cached row follows the writes that land on it', async () => {
    const store = await new Store(db, { env, inlinePointReads }).open();
    await store.apply([put('a', 'x', 1)]);
    expect(await store.digest(row('a'))).toEqual(cellDigest({ value: enc('x'), timestampMicros: 1 }));
    expect(await store.digest(row('a'))).toEqual(cellDigest({ value: enc('x'), timestampMicros: 1 }));
    await store.apply([put('a', 'y', 2)]);
    expect(await store.digest(row('a'))).toEqual(cellDigest({ value: enc('y'), timestampMicros: 2 }));
    await store.apply([delPartition('a', 3)]);
    const [d] = await pointReads(store, [{ address: row('a'), digest: true }]);
    expect(d).toEqual(cellDigest({ tombstone: true, timestampMicros: 3 }));
    await store.close();
  });
});

describe('point reads on the calling thread', () => {
  it('go back to the I/O pool for a while after a batch that waited on the disk, longer while the disk keeps them waiting', async () => {
    const db = await memoryBackend().create();
    let nowMs = 0;
    let blocksRead = 0;
    let fromDisk = false;
    const calls = { sync: 0, many: 0 };
    const getSync = db.getSync.bind(db);
    const getMany = db.getMany.bind(db);
    let slow = false;
    db.getSync = ((key: Uint8Array, options: object) => {
      calls.sync++;
      if (fromDisk) blocksRead += 8;
      if (slow) nowMs += 1;
      return getSync(key, options);
    }) as typeof db.getSync;
    db.getMany = ((keys: Uint8Array[], options: object) => {
      calls.many++;
      return getMany(keys, options);
    }) as typeof db.getMany;
    const env = testEnv();
    const clock = { ...env.clock, monotonicMs: () => nowMs };
    const store = await new Store(db, { env: { ...env, clock }, rowCacheBytes: 0, inlinePointReads: { blocksRead: () => blocksRead } }).open();
    await store.apply([put('a', 'x', 1), put('b', 'y', 2)]);
    const readBoth = () => pointReads(store, [{ address: row('a'), digest: false }, { address: row('b'), digest: false }]).then((cells) => cells.map((c) => show(c as Cell)));

    expect(await readBoth()).toEqual(['x@1', 'y@2']);
    expect(calls).toEqual({ sync: 2, many: 0 });
    // A slow batch that read nothing from the disk (the thread lost its core), or a fast one that did (a stray page fault), stays.
    slow = true;
    expect(await readBoth()).toEqual(['x@1', 'y@2']);
    slow = false;
    fromDisk = true;
    expect(await readBoth()).toEqual(['x@1', 'y@2']);
    expect(calls).toEqual({ sync: 6, many: 0 });

    slow = true;
    expect(await readBoth()).toEqual(['x@1', 'y@2']);
    expect(calls).toEqual({ sync: 8, many: 0 });
    // Pool for 1 s; a batch after the pause that waits on the disk again pauses for 2 s.
    nowMs += 900;
    expect(await readBoth()).toEqual(['x@1', 'y@2']);
    expect(calls).toEqual({ sync: 8, many: 1 });
    nowMs += 200;
    expect(await readBoth()).toEqual(['x@1', 'y@2']);
    expect(calls).toEqual({ sync: 10, many: 1 });
    nowMs += 1_900;
    expect(await readBoth()).toEqual(['x@1', 'y@2']);
    expect(calls).toEqual({ sync: 10, many: 2 });

    // Back in memory: the batch after the pause stays inline, and the next pause is 1 s again.
    slow = false;
    fromDisk = false;
    nowMs += 200;
    expect(await readBoth()).toEqual(['x@1', 'y@2']);
    expect(await readBoth()).toEqual(['x@1', 'y@2']);
    expect(calls).toEqual({ sync: 14, many: 2 });
    slow = true;
    fromDisk = true;
    expect(await readBoth()).toEqual(['x@1', 'y@2']);
    nowMs += 1_100;
    expect(await readBoth()).toEqual(['x@1', 'y@2']);
    expect(calls).toEqual({ sync: 18, many: 2 });
    await store.close();
  });
});
