import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ChorusError, InvalidRequest, MAX_TOKEN, MIN_TOKEN, token, type Token } from '@chorus/core';
import {
  type Cell,
  EmptyPartitionKey,
  InvalidKeyspaceName,
  InvalidSlice,
  InvalidTimestamp,
  InvalidTtl,
  KeyTooLarge,
  LIMITS,
  type Mutation,
  type ScanEntry,
  type StorageDb,
  Store,
  ValueTooLarge,
  expiryFromTtl,
  StorageClosed,
} from '../src/index.js';
import { type Backend, dec, enc, levelBackend, memoryBackend, type TestEnv, testEnv, tokenOf } from './helpers.js';

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
      expect(await store.write(put('a', 'one', 10))).toBe(true);
      expect(show(await store.get(row('a')))).toBe('one@10');
      expect(show(await store.get(row('a', '')))).toBe('one@10');
      expect(await store.get(row('b'))).toBeUndefined();
      expect(await store.getCell(row('b'))).toBeUndefined();
    });

    it('a newer write replaces, an older one is a no-op', async () => {
      await store.write(put('a', 'v2', 20));
      expect(await store.write(put('a', 'v1', 10))).toBe(false);
      expect(show(await store.get(row('a')))).toBe('v2@20');
      expect(await store.write(put('a', 'v3', 30))).toBe(true);
      expect(show(await store.get(row('a')))).toBe('v3@30');
    });

    it('on equal timestamps a tombstone wins, then the greater value', async () => {
      await store.write(put('a', 'b', 10));
      expect(await store.write(put('a', 'a', 10))).toBe(false);
      expect(await store.write(put('a', 'c', 10))).toBe(true);
      expect(show(await store.get(row('a')))).toBe('c@10');
      expect(await store.write(del('a', 10))).toBe(true);
      expect(await store.write(put('a', 'z', 10))).toBe(false);
      expect(await store.get(row('a'))).toBeUndefined();
      expect(show(await store.getCell(row('a')))).toBe('T@10');
    });

    it('merges several writes to one row within one batch, in any order', async () => {
      const r1 = await store.apply([put('a', 'new', 20), put('a', 'old', 10), put('b', 'x', 5), put('b', 'y', 6)]);
      expect(r1).toEqual([
        { ok: true, applied: true },
        { ok: true, applied: false },
        { ok: true, applied: true },
        { ok: true, applied: true },
      ]);
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
      expect(await store.write(put('a', 'late', 12, 'r1'))).toBe(false);
      expect(await store.write(put('a', 'again', 16, 'r1'))).toBe(true);
      expect(show(await store.get(row('a', 'r1')))).toBe('again@16');
    });

    it('partition deletion shadows every row at or before its timestamp', async () => {
      await store.apply([put('p', 'a', 10, 'a'), put('p', 'b', 20, 'b'), put('p', 'c', 30, 'c'), put('q', 'other', 5)]);
      expect(await store.write(delPartition('p', 20))).toBe(true);
      expect(await store.get(row('p', 'a'))).toBeUndefined();
      expect(await store.get(row('p', 'b'))).toBeUndefined();
      expect(show(await store.get(row('p', 'c')))).toBe('c@30');
      expect(show(await store.getCell(row('p', 'a')))).toBe('T@20');
      expect(show(await store.getCell(row('p', 'never')))).toBe('T@20');
      expect(show(await store.get(row('q')))).toBe('other@5');
      expect(await store.write(put('p', 'old', 20, 'a'))).toBe(false);
      expect(await store.write(delPartition('p', 15))).toBe(false);
      expect(await store.write(put('p', 'new', 21, 'a'))).toBe(true);
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

    it('a sweep leaves alone an entry rewritten since it was scanned', async () => {
      await store.write(del('a', 10));
      env.advanceSeconds(200);
      const realBatch = db.batch.bind(db);
      let first = true;
      // Slip a newer write in right before the sweep's deletion batch.
      (db as { getMany: unknown }).getMany = new Proxy(db.getMany, {
        apply(target, self, args) {
          if (first && args[0].length === 1) {
            first = false;
            return realBatch([{ type: 'put', key: args[0][0], value: new Uint8Array([0, 0x40, 0x24, 0, 0, 0, 0, 0, 0, 0x6e]) }], {
              keyEncoding: 'view',
              valueEncoding: 'view',
            }).then(() => Reflect.apply(target, self, args));
          }
          return Reflect.apply(target, self, args);
        },
      });
      expect(await store.purge()).toBe(0);
      expect(await store.getCell(row('a'))).toBeDefined();
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
      expect(results[0]).toEqual({ ok: true, applied: true });
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
    expect(await store.write(put('a', 'older', 9, 'r'))).toBe(false);
  });
});

describe('pipelined batches', () => {
  it('a batch merged while the previous one is still being written sees its rows, and lands after it', async () => {
    const db = await memoryBackend().create();
    const store = new Store(db, { env: testEnv() });
    const real = db.batch.bind(db) as (ops: unknown[], o: unknown) => Promise<void>;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const landedOrder: number[] = [];
    let n = 0;
    (db as { batch: unknown }).batch = async (ops: unknown[], o: unknown) => {
      const id = n++;
      if (id === 0) await gate;
      await real(ops, o);
      landedOrder.push(id);
    };
    const first = store.submit([put('a', 'new', 20)]);
    await first.merged;
    const second = store.submit([put('a', 'old', 10), put('b', 'x', 1)]);
    await second.merged;
    release();
    expect(await first.landed).toEqual([{ ok: true, applied: true }]);
    expect(await second.landed).toEqual([
      { ok: true, applied: false },
      { ok: true, applied: true },
    ]);
    expect(landedOrder).toEqual([0, 1]);
    expect(show(await store.get(row('a')))).toBe('new@20');
    await store.close();
  });
});
