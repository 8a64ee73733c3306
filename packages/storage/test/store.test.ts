import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ChorusError, InvalidRequest, MAX_TOKEN, MIN_TOKEN, token, type Token } from '@chorus/core';
import { type Cell, EmptyPartitionKey, InvalidKeyspaceName, InvalidTimestamp, InvalidTtl, KeyTooLarge, LIMITS, type Mutation, ValueTooLarge, expiryFromTtl } from '@chorus/model';
import { InvalidSlice, type ScanEntry, type StorageDb, StorageClosed, positionOf } from '../src/index.js';
import { Store } from '../src/store.js';
import { type Backend, dec, enc, holdBatches, levelBackend, memoryBackend, type TestEnv, testEnv, tokenOf } from './helpers.js';

const KS = 'ks';
const pk = (s: string) => enc(s);
const row = (key: string, clustering?: string) => ({ keyspace: KS, token: tokenOf(key), partition: pk(key), ...(clustering === undefined ? {} : { clustering: enc(clustering) }) });
const put = (key: string, value: string, ts: number, clustering?: string, expiresAtMicros?: number): Mutation => ({
  ...row(key, clustering),
  cell: expiresAtMicros === undefined ? { value: enc(value), timestampMicros: ts } : { value: enc(value), timestampMicros: ts, expiresAtMicros },
});
const del = (key: string, ts: number, clustering?: string): Mutation => ({ ...row(key, clustering), cell: { tombstone: true, timestampMicros: ts } });
const delPartition = (key: string, ts: number): Mutation => ({ keyspace: KS, token: tokenOf(key), partition: pk(key), partitionDeletion: { timestampMicros: ts } });
const show = (c: Cell | undefined) => (c === undefined ? undefined : 'tombstone' in c ? `T@${c.timestampMicros}` : `${dec(c.value)}@${c.timestampMicros}`);

/** Entries physically stored in the data space (every version counts). */
async function physical(db: StorageDb): Promise<number> {
  return (await db.keys({ gte: Uint8Array.of(0x64), lt: Uint8Array.of(0x65), keyEncoding: 'view' }).all()).length;
}

async function* take(it: AsyncGenerator<ScanEntry>, n: number): AsyncGenerator<ScanEntry> {
  if (n <= 0) return;
  for await (const e of it) {
    yield e;
    if (--n === 0) break;
  }
}

async function collect(it: AsyncIterable<ScanEntry>): Promise<ScanEntry[]> {
  const out: ScanEntry[] = [];
  for await (const e of it) out.push(e);
  return out;
}

const backends: Array<() => Backend> = [memoryBackend, levelBackend];

describe.each(backends.map((b) => [b().name, b] as const))('storage compliance: %s', (_name, makeBackend) => {
  const backend = makeBackend();
  let db: StorageDb;
  let env: TestEnv;
  let store: Store;
  beforeEach(async () => {
    db = await backend.create();
    env = testEnv();
    store = new Store(db, { env, gcGraceSeconds: 100 });
    return async () => {
      await store.close();
    };
  });
  afterAll(() => backend.cleanup());

  describe('writes and merge', () => {
    it('reads back a write; the clustering key defaults to empty', async () => {
      await store.write(put('a', 'one', 10));
      expect(show(await store.get(row('a')))).toBe('one@10');
      expect(show(await store.get(row('a', '')))).toBe('one@10');
      expect(await store.get(row('b'))).toBeUndefined();
      expect(await store.getCell(row('b'))).toBeUndefined();
    });

    it('a newer write replaces, an older one is a no-op', async () => {
      await store.write(put('a', 'v2', 20));
      await store.write(put('a', 'v1', 10));
      expect(show(await store.get(row('a')))).toBe('v2@20');
      await store.write(put('a', 'v3', 30));
      expect(show(await store.get(row('a')))).toBe('v3@30');
    });

    it('on equal timestamps a tombstone wins, then the greater value', async () => {
      await store.write(put('a', 'b', 10));
      await store.write(put('a', 'a', 10));
      expect(show(await store.get(row('a')))).toBe('b@10');
      await store.write(put('a', 'c', 10));
      expect(show(await store.get(row('a')))).toBe('c@10');
      await store.write(del('a', 10));
      await store.write(put('a', 'z', 10));
      expect(await store.get(row('a'))).toBeUndefined();
      expect(show(await store.getCell(row('a')))).toBe('T@10');
    });

    it('large tied versions and long partition keys: reads see every version, however LevelDB pages them', async () => {
      // classic-level cuts an iterator page short at 16 KiB; a short page is not the end of the row.
      const cold = new Store(db, { env, gcGraceSeconds: 100, rowCacheBytes: 0 });
      const big = (c: string) => c.repeat(20_000);
      await cold.write(put('tie', big('a'), 10));
      await cold.write(put('tie', big('b'), 10));
      expect(dec((await cold.get(row('tie')))!.value)).toBe(big('b'));
      const longKey = 'p'.repeat(6_000);
      for (const ts of [10, 20, 30]) await cold.write(delPartition(longKey, ts));
      await cold.write(put(longKey, 'after the deletions', 100));
      expect(show(await cold.getCell(row(longKey)))).toBe('after the deletions@100');
    });

    it('merges several writes to one row within one batch, in any order', async () => {
      const r1 = await store.apply([put('a', 'new', 20), put('a', 'old', 10), put('b', 'x', 5), put('b', 'y', 6)]);
      expect(r1).toEqual([{ ok: true }, { ok: true }, { ok: true }, { ok: true }]);
      expect(show(await store.get(row('a')))).toBe('new@20');
      expect(show(await store.get(row('b')))).toBe('y@6');
      await store.apply([del('c', 5), put('c', 'v', 5), delPartition('d', 9), put('d', 'shadowed', 9), put('d', 'live', 10, 'k')]);
      expect(show(await store.getCell(row('c')))).toBe('T@5');
      expect(show(await store.getCell(row('d')))).toBe('T@9');
      expect(show(await store.get(row('d', 'k')))).toBe('live@10');
    });

    it('row deletion shadows older values and yields to newer ones', async () => {
      await store.write(put('a', 'v', 10, 'r1'));
      await store.write(del('a', 15, 'r1'));
      expect(await store.get(row('a', 'r1'))).toBeUndefined();
      await store.write(put('a', 'late', 12, 'r1'));
      expect(await store.get(row('a', 'r1'))).toBeUndefined();
      expect(show(await store.getCell(row('a', 'r1')))).toBe('T@15');
      await store.write(put('a', 'again', 16, 'r1'));
      expect(show(await store.get(row('a', 'r1')))).toBe('again@16');
    });

    it('partition deletion shadows every row at or before its timestamp', async () => {
      await store.apply([put('p', 'a', 10, 'a'), put('p', 'b', 20, 'b'), put('p', 'c', 30, 'c'), put('q', 'other', 5)]);
      await store.write(delPartition('p', 20));
      expect(await store.get(row('p', 'a'))).toBeUndefined();
      expect(await store.get(row('p', 'b'))).toBeUndefined();
      expect(show(await store.get(row('p', 'c')))).toBe('c@30');
      expect(show(await store.getCell(row('p', 'a')))).toBe('T@20');
      expect(show(await store.getCell(row('p', 'never')))).toBe('T@20');
      expect(show(await store.get(row('q')))).toBe('other@5');
      await store.write(put('p', 'old', 20, 'a'));
      await store.write(delPartition('p', 15));
      expect(await store.get(row('p', 'a'))).toBeUndefined();
      expect(show(await store.get(row('p', 'c')))).toBe('c@30');
      expect((await store.slice(KS, tokenOf('p'), pk('p'))).partitionDeletedAtMicros).toBe(20);
      await store.write(put('p', 'new', 21, 'a'));
      expect(show(await store.get(row('p', 'a')))).toBe('new@21');
      const page = await store.slice(KS, tokenOf('p'), pk('p'));
      expect(page.rows.map((r) => dec(r.clustering))).toEqual(['a', 'c']);
      expect(page.partitionDeletedAtMicros).toBe(20);
    });

    it('digests follow the merged row', async () => {
      await store.write(put('a', 'v', 10));
      const d1 = await store.digest(row('a'));
      await store.write(put('a', 'v', 9));
      expect(await store.digest(row('a'))).toEqual(d1);
      await store.write(put('a', 'v', 11));
      expect(await store.digest(row('a'))).not.toEqual(d1);
      expect(await store.digest(row('nothing'))).toEqual(await store.digest(row('nothing-else')));
    });
  });

  describe('blind writes, reconciled reads', () => {
    it('an older write arriving after a newer one never wins, in any batch, after a sweep and after a restart', async () => {
      await store.write(put('a', 'new', 20));
      await store.write(put('a', 'old', 10));
      await store.apply([put('a', 'older', 5), del('a', 15)]);
      expect(await physical(db)).toBe(4);
      expect(show(await store.getCell(row('a')))).toBe('new@20');
      await store.settled();
      await store.purge();
      expect(await physical(db)).toBe(1);
      await store.write(put('a', 'late', 19));
      expect(show(await store.get(row('a')))).toBe('new@20');
      if (backend.reopen !== undefined) {
        await store.close();
        db = await backend.reopen(db);
        store = new Store(db, { env, gcGraceSeconds: 100 });
        await store.write(put('a', 'after-restart', 18));
        expect(show(await store.get(row('a')))).toBe('new@20');
        await store.purge();
        expect(show(await store.get(row('a')))).toBe('new@20');
        expect(await physical(db)).toBe(1);
      }
    });

    const FAR = 4_000_000_000_000_000;
    it('equal timestamps: the tie-break picks the same winner whatever the arrival order, and keeps both until a sweep', async () => {
      // Without the row cache: writes to a cached row delete the versions they shadow at once.
      const store = new Store(db, { env, gcGraceSeconds: 100, rowCacheBytes: 0 });
      const orders = [
        [put('a', 'x', 7), put('a', 'y', 7), put('a', 'e', 7, undefined, FAR)],
        [put('b', 'e', 7, undefined, FAR), put('b', 'y', 7), put('b', 'x', 7)],
      ];
      for (const ms of orders) for (const m of ms) await store.write(m);
      await store.apply([put('c', 'y', 7), put('c', 'x', 7), put('c', 'e', 7, undefined, FAR)]);
      for (const k of ['a', 'b', 'c']) expect(await store.getCell(row(k))).toMatchObject({ timestampMicros: 7, expiresAtMicros: FAR });
      await store.write(del('a', 7));
      await store.write(put('a', 'z', 7));
      expect(await physical(db)).toBe(3 + 3 + 3 + 2);
      // Rewriting the very same version is idempotent: same key.
      await store.write(put('b', 'y', 7));
      expect(await physical(db)).toBe(11);
      expect(show(await store.getCell(row('a')))).toBe('T@7');
      await store.settled();
      await store.purge();
      expect(await physical(db)).toBe(3);
      expect(show(await store.getCell(row('a')))).toBe('T@7');
    });

    it('the sweep removes shadowed versions and deletions, and reads stay the same', async () => {
      for (let ts = 1; ts <= 10; ts++) await store.write(put('a', `v${ts}`, ts, 'r'));
      await store.write(put('a', 'other', 3, 's'));
      await store.write(delPartition('a', 2));
      await store.write(delPartition('a', 4));
      expect(await physical(db)).toBe(13);
      const before = await store.slice(KS, tokenOf('a'), pk('a'));
      expect(before.rows.map((r) => show(r.cell))).toEqual(['v10@10']);
      await store.settled();
      await store.purge();
      expect(await physical(db)).toBe(2); // the newest deletion and the newest version of r
      expect(await store.slice(KS, tokenOf('a'), pk('a'))).toEqual(before);
      expect(show(await store.getCell(row('a', 's')))).toBe('T@4');
    });

    it('a heavily overwritten row reads its newest value, and reads compact it', async () => {
      // Without the row cache, whose hits would skip LevelDB (writes to a cached row compact it instead: row-cache.test.ts).
      const store = new Store(db, { env, gcGraceSeconds: 100, rowCacheBytes: 0 });
      for (let ts = 1; ts <= 300; ts++) await store.write(put('a', `v${ts}`, ts % 2 === 0 ? ts : 600 - ts));
      expect(await physical(db)).toBe(300);
      expect(show(await store.get(row('a')))).toBe('v1@599');
      // The read deleted (in a later batch) the shadowed versions it met, up to a bound per read.
      await store.settled();
      expect(await physical(db)).toBeLessThan(300 - 200);
      for (let i = 0; i < 5 && (await physical(db)) > 1; i++) {
        expect(show(await store.get(row('a')))).toBe('v1@599');
        await store.settled();
      }
      expect(await physical(db)).toBe(1);
      expect(show(await store.get(row('a')))).toBe('v1@599');
      expect((await store.slice(KS, tokenOf('a'), pk('a'))).rows.map((r) => show(r.cell))).toEqual(['v1@599']);
    });
  });

  describe('TTL and gc', () => {
    it('expired cells read as absent but stay visible raw', async () => {
      const now = env.clock.nowMicros();
      await store.write(put('a', 'short', now, undefined, expiryFromTtl(now, 5)));
      expect(show(await store.get(row('a')))).toBe(`short@${now}`);
      env.advanceSeconds(5);
      expect(await store.get(row('a'))).toBeUndefined();
      expect(show(await store.getCell(row('a')))).toBe(`short@${now}`);
      const slice = await store.slice(KS, tokenOf('a'), pk('a'));
      expect(slice.rows).toEqual([]);
      expect((await store.slice(KS, tokenOf('a'), pk('a'), { includeDead: true })).rows).toHaveLength(1);
      // A newer write revives the row.
      await store.write(put('a', 'back', now + 1));
      expect(show(await store.get(row('a')))).toBe(`back@${now + 1}`);
    });

    it('purges tombstones only after gc grace', async () => {
      await store.write(del('a', 10));
      await store.write(put('b', 'live', 10));
      env.advanceSeconds(99);
      expect(await store.purge()).toBe(0);
      expect(show(await store.getCell(row('a')))).toBe('T@10');
      env.advanceSeconds(1);
      expect(await store.purge()).toBe(1);
      expect(await store.getCell(row('a'))).toBeUndefined();
      expect(show(await store.get(row('b')))).toBe('live@10');
    });

    it('a purge does not stall writes that keep arriving while it waits for the batches in flight', async () => {
      // Slow every batch down so one is always landing when the next is handed over, as in a loaded node.
      const slowDb = db as StorageDb & { _batch: (...args: unknown[]) => unknown };
      const realBatch = slowDb._batch.bind(slowDb);
      slowDb._batch = (...args: unknown[]) => {
        const callback = args.at(-1);
        if (typeof callback === 'function') {
          setTimeout(() => realBatch(...args), 20);
          return undefined;
        }
        return new Promise((resolve) => setTimeout(resolve, 20)).then(() => realBatch(...args));
      };
      await store.write(del('gone', 10));
      env.advanceSeconds(101);
      const first = store.write(put('w', '1', 20));
      const sweep = store.purge();
      await new Promise((r) => setTimeout(r, 5));
      const second = store.write(put('w', '2', 30));
      const all = Promise.all([first, sweep, second]);
      const outcome = await Promise.race([all.then(() => 'done'), new Promise((r) => setTimeout(() => r('stalled'), 3_000))]);
      expect(outcome).toBe('done');
      expect(show(await store.get(row('w')))).toBe('2@30');
      expect(await store.getCell(row('gone'))).toBeUndefined();
    });

    it('purges expired cells gc grace after their expiry', async () => {
      const now = env.clock.nowMicros();
      await store.write(put('a', 'ttl', now, undefined, now + 10_000_000));
      env.advanceSeconds(10 + 99);
      expect(await store.purge()).toBe(0);
      env.advanceSeconds(1);
      expect(await store.purge()).toBe(1);
      expect(await store.getCell(row('a'))).toBeUndefined();
    });

    it('drops rows shadowed by a partition deletion at once, the deletion itself after grace, even in one-key steps', async () => {
      await store.apply([put('p', 'a', 10, 'a'), put('p', 'b', 10, 'b'), put('p', 'c', 30, 'c'), put('z', 'z', 1)]);
      await store.write(delPartition('p', 20));
      let r = await store.sweep(undefined, 1);
      let purged = r.purged;
      while (r.next) {
        r = await store.sweep(r.next, 1);
        purged += r.purged;
      }
      expect(purged).toBe(2);
      expect(show(await store.getCell(row('p', 'a')))).toBe('T@20');
      env.advanceSeconds(100);
      r = await store.sweep(undefined, 1);
      purged = r.purged;
      while (r.next) {
        // A shadowed row must never reappear between steps.
        expect(await store.get(row('p', 'a'))).toBeUndefined();
        r = await store.sweep(r.next, 1);
        purged += r.purged;
      }
      expect(purged).toBe(1);
      expect(await store.getCell(row('p', 'a'))).toBeUndefined();
      expect(show(await store.get(row('p', 'c')))).toBe('c@30');
      expect(show(await store.get(row('z')))).toBe('z@1');
    });

    /** Runs `during` right after the sweep's scan has started (its first iterator). */
    const duringScan = (during: () => void): (() => void) => {
      const realIterator = db.iterator.bind(db) as (o: unknown) => ReturnType<StorageDb['iterator']>;
      let scans = 0;
      (db as { iterator: unknown }).iterator = (o: unknown) => {
        const it = realIterator(o);
        if (++scans === 1) during();
        return it;
      };
      return () => ((db as { iterator: unknown }).iterator = realIterator);
    };

    it('a purge re-reads the row alone: a newer write that slipped in after the scan survives', async () => {
      await store.write(del('a', 10));
      env.advanceSeconds(200);
      const restore = duringScan(() => void store.write(put('a', 'newer', 20)));
      await store.purge();
      restore();
      expect(show(await store.getCell(row('a')))).toBe('newer@20');
      expect(await physical(db)).toBe(1);
    });

    it('a purge re-reads the row alone: an older write that slipped in after the scan goes with the tombstone', async () => {
      await store.write(del('a', 10));
      env.advanceSeconds(200);
      const restore = duringScan(() => void store.write(put('a', 'late', 5)));
      expect(await store.purge()).toBe(2);
      restore();
      expect(await store.getCell(row('a'))).toBeUndefined();
      expect(await physical(db)).toBe(0);
    });
  });

  describe('slices', () => {
    const key = 'wide';
    beforeEach(async () => {
      const ms: Mutation[] = [];
      for (let i = 0; i < 20; i++) ms.push(put(key, `v${i}`, 10, `c${String(i).padStart(2, '0')}`));
      ms.push(del(key, 11, 'c05'));
      ms.push(put('wide2', 'x', 10, 'c00'));
      await store.apply(ms);
    });
    const names = (rows: Array<{ clustering: Uint8Array }>) => rows.map((r) => dec(r.clustering));

    it('reads rows in clustering order, skipping deleted ones', async () => {
      const page = await store.slice(KS, tokenOf(key), pk(key));
      expect(page.rows).toHaveLength(19);
      expect(names(page.rows).slice(0, 6)).toEqual(['c00', 'c01', 'c02', 'c03', 'c04', 'c06']);
      expect(page.nextPage).toBeUndefined();
    });

    it('honours inclusive from/to, reverse and limit', async () => {
      expect(names((await store.slice(KS, tokenOf(key), pk(key), { from: enc('c03'), to: enc('c07') })).rows)).toEqual(['c03', 'c04', 'c06', 'c07']);
      expect(names((await store.slice(KS, tokenOf(key), pk(key), { from: enc('c03'), to: enc('c07'), reverse: true })).rows)).toEqual([
        'c07',
        'c06',
        'c04',
        'c03',
      ]);
      const p = await store.slice(KS, tokenOf(key), pk(key), { limit: 3 });
      expect(names(p.rows)).toEqual(['c00', 'c01', 'c02']);
      expect(dec(p.nextPage!)).toBe('c02');
      expect(names((await store.slice(KS, tokenOf(key), pk(key), { includeDead: true, from: enc('c05'), limit: 1 })).rows)).toEqual(['c05']);
    });

    it('pages through a partition forwards and backwards', async () => {
      for (const reverse of [false, true]) {
        const seen: string[] = [];
        let after: Uint8Array | undefined;
        for (let i = 0; i < 20; i++) {
          const p = await store.slice(KS, tokenOf(key), pk(key), { limit: 4, reverse, from: enc('c02'), to: enc('c17'), ...(after ? { after } : {}) });
          seen.push(...names(p.rows));
          if (!p.nextPage) break;
          after = p.nextPage;
        }
        const expected = Array.from({ length: 16 }, (_, i) => `c${String(i + 2).padStart(2, '0')}`).filter((c) => c !== 'c05');
        expect(seen).toEqual(reverse ? expected.reverse() : expected);
      }
    });

    it('rejects bad limits', async () => {
      await expect(store.slice(KS, tokenOf(key), pk(key), { limit: 0 })).rejects.toBeInstanceOf(InvalidSlice);
      await expect(store.slice(KS, tokenOf(key), pk(key), { limit: LIMITS.maxSliceLimit + 1 })).rejects.toBeInstanceOf(InvalidSlice);
    });
  });

  describe('token range scans', () => {
    const at = (t: bigint, p: string, ts = 10): Mutation => ({ keyspace: KS, token: token(t), partition: enc(p), cell: { value: enc(p), timestampMicros: ts } });
    beforeEach(async () => {
      await store.apply([
        at(MIN_TOKEN, 'min'),
        at(-100n, 'm100'),
        at(-1n, 'm1'),
        at(0n, 'zero'),
        at(0n, 'zero-b'),
        at(1n, 'p1'),
        at(100n, 'p100'),
        at(MAX_TOKEN, 'max'),
        { keyspace: 'other', token: token(0n), partition: enc('elsewhere'), cell: { value: enc('x'), timestampMicros: 1 } },
      ]);
    });
    const scan = async (start: bigint, end: bigint, chunkSize = 2) =>
      (await collect(store.scanRange(KS, { start: token(start), end: token(end) }, { chunkSize }))).map((e) => (e.type === 'row' ? dec(e.partition) : 'DEL'));

    it('reads (start, end] in token order', async () => {
      expect(await scan(-100n, 1n)).toEqual(['m1', 'zero', 'zero-b', 'p1']);
      expect(await scan(MIN_TOKEN, MAX_TOKEN)).toEqual(['m100', 'm1', 'zero', 'zero-b', 'p1', 'p100', 'max']);
      expect(await scan(0n, 99n)).toEqual(['p1']);
    });

    it('wraps around when start ≥ end', async () => {
      expect(await scan(100n, -100n)).toEqual(['max', 'min', 'm100']);
      expect(await scan(MAX_TOKEN, -1n)).toEqual(['min', 'm100', 'm1']);
      expect(await scan(0n, 0n)).toEqual(['p1', 'p100', 'max', 'min', 'm100', 'm1', 'zero', 'zero-b']);
    });

    it('streams: a consumer can stop early and no more than a chunk is read ahead', async () => {
      const it = store.scanRange(KS, { start: token(MIN_TOKEN), end: token(MAX_TOKEN) }, { chunkSize: 1 });
      const first = await it.next();
      expect(first.done).toBe(false);
      await it.return(undefined);
      const types = (await collect(store.scanRange(KS, { start: token(MIN_TOKEN), end: token(MAX_TOKEN) }))).map((e) => (e.type === 'row' ? e.token : null));
      expect(types[0]).toBe(-100n);
    });

    it('carries tombstones and partition deletions unless asked for live rows only', async () => {
      await store.apply([delPartitionAt(1n, 'p1', 20), { keyspace: KS, token: token(100n), partition: enc('p100'), cell: { tombstone: true, timestampMicros: 20 } }]);
      const all = await collect(store.scanRange(KS, { start: token(0n), end: token(100n) }));
      expect(all.map((e) => e.type)).toEqual(['partition-deletion', 'row', 'row']);
      expect(all.map((e) => (e.type === 'row' ? show(e.cell) : e.timestampMicros))).toEqual([20, 'T@20', 'T@20']);
      expect(await collect(store.scanRange(KS, { start: token(0n), end: token(100n) }, { includeDead: false }))).toEqual([]);
    });
    const delPartitionAt = (t: bigint, p: string, ts: number): Mutation => ({ keyspace: KS, token: token(t), partition: enc(p), partitionDeletion: { timestampMicros: ts } });

    it('resumes after any entry, one page at a time, as one scan would have read them', async () => {
      const wide = (c: string, ts: number): Mutation => ({ keyspace: KS, token: token(0n), partition: enc('zero'), clustering: enc(c), cell: { value: enc(c), timestampMicros: ts } });
      await store.apply([delPartitionAt(0n, 'zero', 15), wide('a', 10), wide('b', 20), wide('c', 30)]);
      const label = (e: ScanEntry) => (e.type === 'row' ? `${dec(e.partition)}/${dec(e.clustering)}=${show(e.cell)}` : `DEL ${dec(e.partition)}@${e.timestampMicros}`);
      for (const [start, end] of [[MIN_TOKEN, MAX_TOKEN], [100n, 1n], [0n, 0n]] as const) {
        const whole = (await collect(store.scanRange(KS, { start: token(start), end: token(end) }))).map(label);
        const paged: string[] = [];
        let after: ReturnType<typeof positionOf> | undefined;
        for (;;) {
          const page = await collect(take(store.scanRange(KS, { start: token(start), end: token(end) }, { chunkSize: 1, ...(after ? { after } : {}) }), 1));
          if (page.length === 0) break;
          paged.push(...page.map(label));
          after = positionOf(page[page.length - 1]!);
        }
        expect(paged).toEqual(whole);
      }
      // A page that resumes inside the deleted partition still applies its deletion to the rows after.
      const resumed = await collect(store.scanRange(KS, { start: token(-1n), end: token(0n) }, { after: { token: token(0n), partition: enc('zero'), clustering: enc('a') } }));
      expect(resumed.map(label)).toEqual(['zero/b=b@20', 'zero/c=c@30', 'zero-b/=zero-b@10']);
    });
  });

  describe('bad input', () => {
    const expectRejected = async (m: Mutation, cls: new (...a: never[]) => Error) => {
      const [r] = await store.apply([m]);
      expect(r!.ok).toBe(false);
      if (!r!.ok) expect(r!.error).toBeInstanceOf(cls);
      await expect(store.write(m)).rejects.toBeInstanceOf(cls);
    };
    it('rejects malformed mutations with typed errors, each on its own', async () => {
      await expectRejected({ ...put('a', 'v', 1), keyspace: '1bad' }, InvalidKeyspaceName);
      await expectRejected({ ...put('a', 'v', 1), keyspace: 'a'.repeat(49) }, InvalidKeyspaceName);
      await expectRejected({ ...put('a', 'v', 1), partition: new Uint8Array(0) }, EmptyPartitionKey);
      await expectRejected({ ...put('a', 'v', 1), partition: new Uint8Array(LIMITS.maxPartitionKeyBytes + 1) }, KeyTooLarge);
      await expectRejected({ ...put('a', 'v', 1), clustering: new Uint8Array(LIMITS.maxClusteringKeyBytes + 1) }, KeyTooLarge);
      await expectRejected({ ...row('a'), cell: { value: new Uint8Array(LIMITS.maxValueBytes + 1), timestampMicros: 1 } }, ValueTooLarge);
      await expectRejected(put('a', 'v', -1), InvalidTimestamp);
      await expectRejected(put('a', 'v', 1.5), InvalidTimestamp);
      await expectRejected(put('a', 'v', 1, undefined, -5), InvalidTimestamp);
      await expectRejected(delPartition('a', Number.NaN), InvalidTimestamp);
      const results = await store.apply([put('a', 'ok', 1), put('b', 'v', -1)]);
      expect(results[0]).toEqual({ ok: true });
      expect(results[1]!.ok).toBe(false);
      expect(show(await store.get(row('a')))).toBe('ok@1');
    });
    it('errors are InvalidRequest (400) or ValueTooLarge (413) with stable names', async () => {
      const e1 = await store.write(put('a', 'v', -1)).catch((e: unknown) => e as ChorusError);
      expect(e1).toBeInstanceOf(InvalidRequest);
      expect((e1 as ChorusError).toJSON()).toMatchObject({ error: 'InvalidRequest', reason: 'INVALID_TIMESTAMP' });
      const e2 = new ValueTooLarge(2, 1);
      expect([e2.name, e2.code, e2.httpStatus]).toEqual(['ValueTooLarge', 'VALUE_TOO_LARGE', 413]);
      expect(() => expiryFromTtl(0, 0)).toThrow(InvalidTtl);
      expect(() => expiryFromTtl(0, 1.5)).toThrow(InvalidTtl);
      expect(() => expiryFromTtl(0, LIMITS.maxTtlSeconds + 1)).toThrow(InvalidTtl);
      expect(expiryFromTtl(1_000, 2)).toBe(2_001_000);
      await expect(store.get({ keyspace: 'bad-name', token: token(0n), partition: enc('a') })).rejects.toBeInstanceOf(InvalidKeyspaceName);
    });
  });

  it('keeps keyspaces apart', async () => {
    await store.write(put('a', 'in-ks', 1));
    await store.write({ ...put('a', 'in-ks2', 1), keyspace: 'ks2' });
    expect(show(await store.get(row('a')))).toBe('in-ks@1');
    expect(show(await store.get({ ...row('a'), keyspace: 'ks2' }))).toBe('in-ks2@1');
    expect(await collect(store.scanRange('ks2', { start: MIN_TOKEN as Token, end: MIN_TOKEN as Token }))).toHaveLength(1);
  });

  it('refuses writes once closed', async () => {
    await store.close();
    await expect(store.write(put('a', 'v', 1))).rejects.toBeInstanceOf(StorageClosed);
  });

  it.runIf(backend.reopen !== undefined)('survives a close and reopen with its data intact', async () => {
    await store.apply([put('a', 'v', 10, 'r'), del('b', 11), delPartition('c', 12), put('d', 'ttl', 13, undefined, 99)]);
    await store.sync();
    await store.close();
    db = await backend.reopen!(db);
    store = new Store(db, { env, gcGraceSeconds: 100 });
    expect(show(await store.get(row('a', 'r')))).toBe('v@10');
    expect(show(await store.getCell(row('b')))).toBe('T@11');
    expect(show(await store.getCell(row('c', 'x')))).toBe('T@12');
    expect(await store.getCell(row('d'))).toMatchObject({ expiresAtMicros: 99 });
    await store.write(put('a', 'older', 9, 'r'));
    expect(show(await store.get(row('a', 'r')))).toBe('v@10');
  });
});

describe('pipelined batches', () => {
  it('a batch submitted while the previous one is still being written lands too, and an older write never wins', async () => {
    const db = await memoryBackend().create();
    const store = new Store(db, { env: testEnv() });
    const hold = holdBatches(db);
    const first = store.submit([put('a', 'new', 20)]);
    await first.merged;
    const second = store.submit([put('a', 'old', 10), put('b', 'x', 1)]);
    await second.merged;
    // The second (older) write may land first: it must not matter.
    hold.release(1);
    expect(await second.landed).toEqual([{ ok: true }, { ok: true }]);
    expect(show(await store.get(row('a')))).toBe('old@10');
    hold.release(0);
    expect(await first.landed).toEqual([{ ok: true }]);
    expect(show(await store.get(row('a')))).toBe('new@20');
    expect(show(await store.get(row('b')))).toBe('x@1');
    hold.release(2); // the delete of the version the cached row 'a' saw shadowed
    await store.close();
  });
});
