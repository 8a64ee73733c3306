import { MIN_TOKEN } from '@chorus/core';
import { type Cell, type Mutation, type RowWrite, cellDigest, compareCells } from '@chorus/model';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeStored } from '../src/cell.js';
import type { StorageDb } from '../src/index.js';
import { decodeKey, rowKeyPrefix, writeInvertedMicros } from '../src/keys.js';
import { Store } from '../src/store.js';
import { type Backend, dec, enc, levelBackend, memoryBackend, testEnv, tokenOf } from './helpers.js';

/*
 * Two 14-byte values whose ties under the previous key layout (a rank byte and
 * a 56-bit murmur3-style hash) are equal: found in seconds by cycle finding
 * over the hash, as any client could. Written with one timestamp, the second
 * to arrive replaced the first in LevelDB, so a replica that received them in
 * the other order kept another value, and nothing ever reconciled them.
 */
const A = '3721928d9b133b';
const B = 'd15fb15b7c46a1';
const KS = 'ks';
const TS = 1_700_000_000_000_000;
const row = (key: string) => ({ keyspace: KS, token: tokenOf(key), partition: enc(key) });
const put = (key: string, value: string, ts = TS, expiresAtMicros?: number): RowWrite => ({
  ...row(key),
  cell: expiresAtMicros === undefined ? { value: enc(value), timestampMicros: ts } : { value: enc(value), timestampMicros: ts, expiresAtMicros },
});
const show = (c: Cell | undefined) => (c === undefined ? undefined : 'tombstone' in c ? `T@${c.timestampMicros}` : `${dec(c.value)}@${c.timestampMicros}`);
const WHOLE_RING = { start: MIN_TOKEN, end: MIN_TOKEN };

/** The previous layout's tie, kept here only to write stores as earlier versions did. */
function legacyTie(out: Uint8Array, at: number, cell: Cell): void {
  const mix = (h: number, k: number): number => {
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    return (Math.imul(h, 5) + 0xe6546b64) | 0;
  };
  const fmix = (h: number): number => {
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  };
  if ('tombstone' in cell) {
    out.fill(0, at, at + 8);
    return;
  }
  const v = cell.value;
  const n = v.length;
  let h1 = 0x9747b28c ^ n;
  let h2 = 0x5bd1e995 ^ n;
  const e = cell.expiresAtMicros;
  if (e !== undefined) {
    const hi = Math.floor(e / 0x1_0000_0000) | 0;
    const lo = e | 0;
    h1 = mix(mix(h1, hi), lo);
    h2 = mix(mix(h2, lo), hi);
  }
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const k = v[i]! | (v[i + 1]! << 8) | (v[i + 2]! << 16) | (v[i + 3]! << 24);
    h1 = mix(h1, k);
    h2 = mix(h2, k ^ 0x27d4eb2f);
  }
  let k = 0;
  for (let s = 0; i < n; i++, s += 8) k |= v[i]! << s;
  h1 = fmix(mix(h1, k) ^ h2);
  h2 = fmix(mix(h2, k ^ 0x165667b1) ^ h1);
  out[at] = e === undefined ? 2 : 1;
  out[at + 1] = h1 >>> 24;
  out[at + 2] = (h1 >>> 16) & 0xff;
  out[at + 3] = (h1 >>> 8) & 0xff;
  out[at + 4] = h1 & 0xff;
  out[at + 5] = h2 >>> 24;
  out[at + 6] = (h2 >>> 16) & 0xff;
  out[at + 7] = (h2 >>> 8) & 0xff;
}

/** Writes a row version straight into `db` under the previous key layout (`~timestamp:8 | tie:8`). */
async function putLegacy(db: StorageDb, m: RowWrite, deletionTimeMicros = TS): Promise<void> {
  const prefix = rowKeyPrefix(m.keyspace, m.token, m.partition, m.clustering ?? new Uint8Array(0));
  const key = new Uint8Array(prefix.length + 16);
  key.set(prefix, 0);
  writeInvertedMicros(key, prefix.length, m.cell.timestampMicros);
  legacyTie(key, prefix.length + 8, m.cell);
  await db.put(key, encodeStored(m.cell, deletionTimeMicros), { keyEncoding: 'view', valueEncoding: 'view' });
}

async function entries(db: StorageDb): Promise<number> {
  return (await db.keys({ gte: Uint8Array.of(0x64), lt: Uint8Array.of(0x65), keyEncoding: 'view' }).all()).length;
}

/** What every read path of the store says about `key`. */
async function everyRead(store: Store, key: string) {
  const slice = await store.slice(KS, tokenOf(key), enc(key), { includeDead: true });
  const scanned: string[] = [];
  for await (const e of store.scanRange(KS, WHOLE_RING)) if (e.type === 'row' && dec(e.partition) === key) scanned.push(show(e.cell)!);
  return {
    get: show(await store.get(row(key))),
    getCell: show(await store.getCell(row(key))),
    digest: Buffer.from(await store.digest(row(key))).toString('hex'),
    slice: slice.rows.map((r) => show(r.cell)),
    scan: scanned,
  };
}

const backends: Array<() => Backend> = [memoryBackend, levelBackend];

describe.each(backends.map((b) => [b().name, b] as const))('versions with equal timestamps: %s', (_name, makeBackend) => {
  const backend = makeBackend();
  afterAll(() => backend.cleanup());

  it.each([
    ['with the row cache', undefined],
    ['without the row cache', 0],
  ])('keeps two values whose previous-layout ties collide, so replicas that got them in either order agree (%s)', async (_label, rowCacheBytes) => {
    const winner = compareCells({ value: enc(A), timestampMicros: TS }, { value: enc(B), timestampMicros: TS }) > 0 ? A : B;
    const expected = {
      get: `${winner}@${TS}`,
      getCell: `${winner}@${TS}`,
      digest: Buffer.from(cellDigest({ value: enc(winner), timestampMicros: TS })).toString('hex'),
      slice: [`${winner}@${TS}`],
      scan: [`${winner}@${TS}`],
    };
    for (const order of [
      [A, B],
      [B, A],
    ]) {
      const db = await backend.create();
      const store = new Store(db, { env: testEnv(TS), ...(rowCacheBytes === undefined ? {} : { rowCacheBytes }) });
      for (const value of order) await store.write(put('k', value));
      expect(await everyRead(store, 'k'), `arrived ${order.join(' then ')}`).toEqual(expected);
      expect(await entries(db)).toBe(2);
      // Compaction keeps the winner, whichever arrived last.
      await store.purge();
      expect(await entries(db)).toBe(1);
      expect(await everyRead(store, 'k'), `arrived ${order.join(' then ')}, after the sweep`).toEqual(expected);
      await store.close();
    }
  });

  it('reads a store written with the previous key layout, and reconciles its versions with new ones', async () => {
    const db = await backend.create();
    const old = [put('a', 'old-a', TS - 10), put('a', 'old-a2', TS - 5), put('b', 'b-value-longer-than-thirty-two-bytes..', TS), put('c', 'c', TS, TS + 10 ** 12)];
    for (const m of old) await putLegacy(db, m);
    await putLegacy(db, { ...row('d'), cell: { tombstone: true, timestampMicros: TS } });
    // The key decoder knows the previous layout's keys as row versions.
    const legacyKeys = await db.keys({ gte: Uint8Array.of(0x64), lt: Uint8Array.of(0x65), keyEncoding: 'view' }).all();
    expect(legacyKeys.map((k) => decodeKey(k)?.timestampMicros).sort()).toEqual([TS - 10, TS - 5, TS, TS, TS].sort());
    const store = new Store(db, { env: testEnv(TS) });
    expect(show(await store.get(row('a')))).toBe(`old-a2@${TS - 5}`);
    expect(show(await store.get(row('b')))).toBe(`b-value-longer-than-thirty-two-bytes..@${TS}`);
    expect(show(await store.get(row('c')))).toBe(`c@${TS}`);
    expect(show(await store.getCell(row('d')))).toBe(`T@${TS}`);
    const scanned: string[] = [];
    for await (const e of store.scanRange(KS, WHOLE_RING)) if (e.type === 'row') scanned.push(`${dec(e.partition)}=${show(e.cell)}`);
    expect(scanned.sort()).toEqual([`a=old-a2@${TS - 5}`, `b=b-value-longer-than-thirty-two-bytes..@${TS}`, `c=c@${TS}`, `d=T@${TS}`]);

    // The same versions written again by this version (a hint replay, a repair) read the same, and the sweep keeps one of each.
    for (const m of old) await store.write(m);
    await store.write({ ...row('d'), cell: { tombstone: true, timestampMicros: TS } });
    // A newer write wins over the old layout's versions; an equal timestamp with a greater value too.
    await store.write(put('a', 'new-a', TS));
    await store.write(put('b', 'c-greater', TS));
    expect(show(await store.get(row('a')))).toBe(`new-a@${TS}`);
    expect(show(await store.get(row('b')))).toBe(`c-greater@${TS}`);
    const page = await store.slice(KS, tokenOf('c'), enc('c'));
    expect(page.rows.map((r) => show(r.cell))).toEqual([`c@${TS}`]);
    await store.purge();
    expect(await entries(db)).toBe(4);
    expect(show(await store.get(row('a')))).toBe(`new-a@${TS}`);
    expect(show(await store.get(row('b')))).toBe(`c-greater@${TS}`);
    expect(show(await store.getCell(row('c')))).toBe(`c@${TS}`);
    expect(show(await store.getCell(row('d')))).toBe(`T@${TS}`);
    await store.close();
  });

  it('keeps every distinct version of one timestamp apart, short values, long values, expiring values and a tombstone', async () => {
    const db = await backend.create();
    const store = new Store(db, { env: testEnv(TS), rowCacheBytes: 0 });
    const long = 'x'.repeat(40);
    const versions: Mutation[] = [
      put('k', ''),
      put('k', 'v'),
      put('k', 'v\u0000'),
      put('k', 'x'.repeat(32)),
      put('k', 'x'.repeat(33)),
      put('k', long),
      put('k', `${long}y`),
      put('k', 'v', TS, TS + 1),
      put('k', 'v', TS, TS + 2),
      { ...row('k'), cell: { tombstone: true, timestampMicros: TS } },
    ];
    for (const m of versions) await store.write(m);
    expect(await entries(db)).toBe(versions.length);
    expect(show(await store.getCell(row('k')))).toBe(`T@${TS}`);
    // The read queued the deletes of the nine shadowed versions: let them land, or the first rewrite's batch carries them too and the delete wins.
    await store.settled();
    // Writing them all again adds nothing: the same version always has the same key.
    for (const m of versions) await store.write(m);
    expect(await entries(db)).toBe(versions.length);
    await store.close();
  });
});
