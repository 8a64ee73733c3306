import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { type Cell, type Mutation, type RowAddress } from '@chorus/model';
import type { StorageDb } from '../src/index.js';
import { decodeStored, tieLength, writeTie } from '../src/cell.js';
import { VERSION_TS_BYTES, isHeadKey, writeInvertedMicros } from '../src/keys.js';
import { Store } from '../src/store.js';
import { type Backend, countIterators, dec, delayBatchWrites, enc, holdBatches, levelBackend, memoryBackend, type TestEnv, testEnv, tokenOf } from './helpers.js';

/*
 * A head is a key-value row's newest version stored under the row's prefix
 * alone, which a batch of point reads takes with one getMany. These tests
 * make the cases where a head could be older than the row happen on
 * purpose, and check that reads never see an older version than the row
 * holds.
 */

const KS = 'ks';
const row = (key: string): RowAddress => ({ keyspace: KS, token: tokenOf(key), partition: enc(key) });
const put = (key: string, value: string, ts: number): Mutation => ({ ...row(key), cell: { value: enc(value), timestampMicros: ts } });
const delPartition = (key: string, ts: number): Mutation => ({ keyspace: KS, token: tokenOf(key), partition: enc(key), partitionDeletion: { timestampMicros: ts } });
const show = (c: Cell | Uint8Array | undefined | Error) =>
  c === undefined ? undefined : c instanceof Error ? c.message : c instanceof Uint8Array ? 'digest' : 'tombstone' in c ? `T@${c.timestampMicros}` : `${dec(c.value)}@${c.timestampMicros}`;

async function batchRead(store: Store, keys: string[]): Promise<Array<string | undefined>> {
  const out: Array<Cell | Uint8Array | undefined | Error> = new Array(keys.length).fill(null);
  await store.pointReads(
    keys.map((k) => ({ address: row(k), digest: false })),
    (i, error, result) => {
      out[i] = error ?? result;
    },
  );
  return out.map(show);
}

/**
 * Submits two writes of a row, the second while the first's batch is in flight (the first two batches `hold`
 * keeps), and lets both land: the second is stored as a version and marks the row.
 */
async function landTogether(store: Store, hold: { release(i: number): void }, first: Mutation, second: Mutation): Promise<void> {
  const landings = [store.submit([first]).landed, store.submit([second]).landed];
  hold.release(0);
  hold.release(1);
  await Promise.all(landings);
}

const backends: Array<() => Backend> = [memoryBackend, levelBackend];

describe.each(backends.map((b) => [b().name, b] as const))('heads: %s', (_name, makeBackend) => {
  const backend = makeBackend();
  let db: StorageDb;
  let env: TestEnv;
  afterAll(() => backend.cleanup());
  beforeEach(async () => {
    db = await backend.create();
    env = testEnv();
  });

  it('a batch of cold reads of key-value rows is answered from their heads, without an iterator', async () => {
    const store = await new Store(db, { env, rowCacheBytes: 0 }).open();
    await store.apply([put('a', 'one', 10), put('b', 'two', 11), put('a', 'three', 12)]);
    const counter = countIterators(db);
    expect(await batchRead(store, ['a', 'b'])).toEqual(['three@12', 'two@11']);
    expect(counter.count).toBe(0);
    await store.close();
  });

  it('an older write that arrives late (a hint, a repair) leaves the newer version the answer', async () => {
    const store = await new Store(db, { env, rowCacheBytes: 0 }).open();
    await store.apply([put('a', 'new', 20)]);
    await store.apply([put('a', 'late', 15)]);
    expect(await batchRead(store, ['a'])).toEqual(['new@20']);
    // A newer one after it puts the head back; the row keeps its marker, so reads take its entries.
    await store.apply([put('a', 'newest', 30)]);
    expect(await batchRead(store, ['a'])).toEqual(['newest@30']);
    // A row never marked is still read from its head alone.
    await store.apply([put('b', 'only', 30)]);
    const counter = countIterators(db);
    expect(await batchRead(store, ['b'])).toEqual(['only@30']);
    expect(counter.count).toBe(0);
    await store.close();
  });

  it('a partition deletion shadows the head of its key-value row, and a later write shows again', async () => {
    const store = await new Store(db, { env, rowCacheBytes: 0 }).open();
    await store.apply([put('a', 'v', 10)]);
    await store.apply([delPartition('a', 20)]);
    expect(await batchRead(store, ['a'])).toEqual(['T@20']);
    await store.apply([put('a', 'w', 30)]);
    expect(await batchRead(store, ['a'])).toEqual(['w@30']);
    await store.close();
  });

  it('a write while another batch puts the head of its row is kept as a version, whatever order they land in', async () => {
    const store = await new Store(db, { env, rowCacheBytes: 0 }).open();
    const hold = holdBatches(db);
    const first = store.submit([put('a', 'older', 20)]);
    const second = store.submit([put('a', 'newer', 30)]);
    // The newer write lands first, then the older one's, which holds the head.
    hold.release(1);
    await second.landed;
    expect(await batchRead(store, ['a'])).toEqual(['newer@30']);
    hold.release(0);
    await first.landed;
    expect(await batchRead(store, ['a'])).toEqual(['newer@30']);
    // The next newest write takes the head again.
    hold.release(2);
    await store.apply([put('a', 'latest', 40)]);
    expect(await batchRead(store, ['a'])).toEqual(['latest@40']);
    await store.close();
  });

  it('a head that lands after a newer partition deletion of its row does not hide the deletion', async () => {
    const store = await new Store(db, { env, rowCacheBytes: 0 }).open();
    const hold = holdBatches(db);
    await landTogether(store, hold, put('a', 'one', 10), put('a', 'three', 30));
    // The next newest write takes the head; the partition deletion after it lands first.
    const head = store.submit([put('a', 'four', 40)]);
    const deletion = store.submit([delPartition('a', 50)]);
    hold.release(3);
    await deletion.landed;
    hold.release(2);
    await head.landed;
    expect(await batchRead(store, ['a'])).toEqual(['T@50']);
    expect(show(await store.getCell(row('a')))).toBe('T@50');
    await store.close();
  });

  it('the gc sweep never deletes a head, even one a newer version shadows: a write in flight may put its key again', async () => {
    const store = await new Store(db, { env, rowCacheBytes: 0 }).open();
    const hold = holdBatches(db);
    // A head at 20 and, beside it, a newer version at 30.
    await landTogether(store, hold, put('a', 'head', 20), put('a', 'version', 30));
    for (let i = 2; i < 10; i++) hold.release(i);
    // Whatever the sweep deletes lands only after the next newest write, which puts the head again.
    const held = holdDeletesOfHeads(db);
    const sweeping = store.sweep();
    await store.apply([put('a', 'newest', 40)]);
    held.release();
    await sweeping;
    expect(await batchRead(store, ['a'])).toEqual(['newest@40']);
    await store.close();
  });

  it('after a restart, a write older than one stored before it does not become the head', async () => {
    if (backend.reopen === undefined) return;
    let store = await new Store(db, { env, rowCacheBytes: 0 }).open();
    await store.apply([put('a', 'before-restart', 50)]);
    await store.close();
    db = await backend.reopen(db);
    store = await new Store(db, { env, rowCacheBytes: 0 }).open();
    await store.apply([put('a', 'older-after-restart', 40)]);
    expect(await batchRead(store, ['a'])).toEqual(['before-restart@50']);
    await store.close();
  });

  it('a store written before heads finds the newest timestamp it holds when it first opens', async () => {
    if (backend.reopen === undefined) return;
    let store = await new Store(db, { env, rowCacheBytes: 0 }).open();
    await store.apply([put('a', 'stored-before', 50)]);
    await store.close();
    db = await backend.reopen(db);
    await toLayoutWithoutHeads(db);
    store = await new Store(db, { env, rowCacheBytes: 0 }).open();
    expect(await batchRead(store, ['a'])).toEqual(['stored-before@50']);
    await store.apply([put('a', 'older', 40)]);
    expect(await batchRead(store, ['a'])).toEqual(['stored-before@50']);
    await store.apply([put('a', 'newer', 60)]);
    expect(await batchRead(store, ['a'])).toEqual(['newer@60']);
    await store.close();
  });
});

const VIEW = { keyEncoding: 'view', valueEncoding: 'view' } as const;

/** Rewrites every head as a version and removes the bound and markers: a store as written before heads. */
async function toLayoutWithoutHeads(db: StorageDb): Promise<void> {
  const ops: Array<{ type: 'put' | 'del'; key: Uint8Array; value?: Uint8Array }> = [];
  for await (const [key, value] of db.iterator({ ...VIEW }) as AsyncIterable<[Uint8Array, Uint8Array]>) {
    if (key[0] === 0x6d && key[1] === 0x68) ops.push({ type: 'del', key });
    if (!isHeadKey(key)) continue;
    const cell = decodeStored(value).cell;
    const version = new Uint8Array(key.length + VERSION_TS_BYTES + tieLength(cell));
    version.set(key, 0);
    writeInvertedMicros(version, key.length, cell.timestampMicros);
    writeTie(version, key.length + VERSION_TS_BYTES, cell);
    ops.push({ type: 'del', key }, { type: 'put', key: version, value });
  }
  await db.batch(ops as never, VIEW);
}

/** Holds back every chained batch that deletes a head until released. */
function holdDeletesOfHeads(db: StorageDb): { release(): void } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  delayBatchWrites(db, (_i, deleted) => (deleted.some(isHeadKey) ? gate : undefined));
  return { release: open };
}
