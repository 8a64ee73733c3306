import { ActorSystem } from '@chorus/actors';
import type { Token } from '@chorus/core';
import type { Cell, Mutation } from '@chorus/model';
import { afterEach, describe, expect, it } from 'vitest';
import { type StorageDb, spawnStorage, write } from '../src/index.js';
import { Store } from '../src/store.js';
import { dec, enc, memoryBackend, type TestEnv, testEnv, tokenOf } from './helpers.js';

/*
 * Purge horizons per keyspace and token: what a node with `tombstone_gc:
 * grace` and `repair` keyspaces hands its store. The store only applies the
 * horizon it is given; which horizon each mode gives is the node's.
 */

const GRACE = 'graceks';
const REPAIR = 'repairks';
const GRACE_SECONDS = 100;

const row = (keyspace: string, key: string, clustering?: string) => ({ keyspace, token: tokenOf(key), partition: enc(key), ...(clustering === undefined ? {} : { clustering: enc(clustering) }) });
const put = (keyspace: string, key: string, value: string, ts: number, expiresAtMicros?: number, clustering?: string): Mutation => ({
  ...row(keyspace, key, clustering),
  cell: expiresAtMicros === undefined ? { value: enc(value), timestampMicros: ts } : { value: enc(value), timestampMicros: ts, expiresAtMicros },
});
const del = (keyspace: string, key: string, ts: number): Mutation => ({ ...row(keyspace, key), cell: { tombstone: true, timestampMicros: ts } });
const delPartition = (keyspace: string, key: string, ts: number): Mutation => ({ keyspace, token: tokenOf(key), partition: enc(key), partitionDeletion: { timestampMicros: ts } });
const show = (c: Cell | undefined) => (c === undefined ? undefined : 'tombstone' in c ? `T@${c.timestampMicros}` : `${dec(c.value)}@${c.timestampMicros}`);

async function physical(db: StorageDb): Promise<number> {
  return (await db.keys({ gte: Uint8Array.of(0x64), lt: Uint8Array.of(0x65), keyEncoding: 'view' }).all()).length;
}

/** Keys whose tokens fall on either side of 0: one half of the ring repaired, the other not. */
function keysBySign(count: number): { low: string[]; high: string[] } {
  const low: string[] = [];
  const high: string[] = [];
  for (let i = 0; low.length < count || high.length < count; i++) {
    const key = `k${i}`;
    if (tokenOf(key) <= 0n) {
      if (low.length < count) low.push(key);
    } else if (high.length < count) high.push(key);
  }
  return { low, high };
}

/** A whole sweep in steps of one entry, so every partition and row is met across a cursor. */
async function sweepInSteps(store: Store): Promise<number> {
  let r = await store.sweep(undefined, 1);
  let purged = r.purged;
  while (r.next !== undefined) {
    r = await store.sweep(r.next, 1);
    purged += r.purged;
  }
  return purged;
}

describe('purge horizons per keyspace and token', () => {
  const stores: Store[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
  });

  async function open(env: TestEnv, purgeHorizon: (keyspace: string, t: Token) => number): Promise<{ store: Store; db: StorageDb }> {
    const db = await memoryBackend().create();
    const store = new Store(db, { env, gcGraceSeconds: GRACE_SECONDS, purgeHorizon });
    stores.push(store);
    return { store, db };
  }

  /** Every kind of dead data, and one live row, in `keyspace`. */
  async function deadData(store: Store, keyspace: string, now: number): Promise<void> {
    await store.apply([
      put(keyspace, 'deleted', 'v', 10),
      del(keyspace, 'deleted', 20),
      put(keyspace, 'expired', 'ttl', now, now + 1_000_000),
      put(keyspace, 'wide', 'a', 10, undefined, 'a'),
      delPartition(keyspace, 'wide', 20),
      put(keyspace, 'live', 'here', 10),
    ]);
  }

  it('a grace keyspace purges after gc grace; a repair keyspace with no repair recorded purges nothing, however old', async () => {
    const env = testEnv();
    // The node's rule for each mode: grace is now - gc grace; repair without a recorded repair purges nothing.
    const { store, db } = await open(env, (keyspace) => (keyspace === GRACE ? env.clock.nowMicros() - GRACE_SECONDS * 1_000_000 : -Infinity));
    const now = env.clock.nowMicros();
    await deadData(store, GRACE, now);
    await deadData(store, REPAIR, now);
    // The sweep drops shadowed versions (the value under the tombstone, the row under the partition deletion) at once.
    await store.purge();
    const afterCompaction = await physical(db);

    env.advanceSeconds(10 * GRACE_SECONDS);
    await store.purge();
    expect(await store.getCell(row(GRACE, 'deleted'))).toBeUndefined();
    expect(await store.getCell(row(GRACE, 'expired'))).toBeUndefined();
    expect(await store.getCell(row(GRACE, 'wide', 'a'))).toBeUndefined();
    expect(show(await store.get(row(GRACE, 'live')))).toBe('here@10');

    expect(show(await store.getCell(row(REPAIR, 'deleted')))).toBe('T@20');
    expect(await store.getCell(row(REPAIR, 'expired'))).toMatchObject({ expiresAtMicros: now + 1_000_000 });
    expect(show(await store.getCell(row(REPAIR, 'wide', 'a')))).toBe('T@20');
    expect(show(await store.get(row(REPAIR, 'live')))).toBe('here@10');
    // Exactly the grace keyspace's three dead entries went: the tombstone, the expired value, the partition deletion.
    expect(await physical(db)).toBe(afterCompaction - 3);
  });

  it('a repair keyspace purges only dead data stored before the recorded repair of its token, in whole sweeps and one-entry steps', async () => {
    const env = testEnv();
    const { low, high } = keysBySign(2);
    // Repairs recorded for tokens ≤ 0 only; a test moves the time they started.
    let repairedLowAt: number | undefined;
    const asked: string[] = [];
    const { store } = await open(env, (keyspace, t) => {
      asked.push(keyspace);
      if (keyspace !== REPAIR) return -Infinity;
      return t <= 0n && repairedLowAt !== undefined ? repairedLowAt : -Infinity;
    });
    const early = env.clock.nowMicros();
    await store.apply([del(REPAIR, low[0]!, 10), del(REPAIR, high[0]!, 10), put(REPAIR, 'live', 'v', 10), put('other', 'live', 'v', 10)]);
    env.advanceSeconds(60);
    repairedLowAt = env.clock.nowMicros();
    env.advanceSeconds(60);
    // Stored after the repair started: that repair may not have seen it.
    await store.apply([del(REPAIR, low[1]!, 10), del(REPAIR, high[1]!, 10)]);
    env.advanceSeconds(10 * GRACE_SECONDS);

    asked.length = 0;
    await sweepInSteps(store);
    expect(await store.getCell(row(REPAIR, low[0]!))).toBeUndefined();
    expect(show(await store.getCell(row(REPAIR, low[1]!)))).toBe('T@10');
    expect(show(await store.getCell(row(REPAIR, high[0]!)))).toBe('T@10');
    expect(show(await store.getCell(row(REPAIR, high[1]!)))).toBe('T@10');
    // Cheap: asked only for the partitions holding dead data, never for live rows.
    expect(asked.filter((k) => k === 'other')).toEqual([]);
    expect(asked.length).toBeLessThanOrEqual(4);
    expect(asked.length).toBeGreaterThanOrEqual(3);

    // A later repair of the same range covers the tombstone stored after the first one.
    repairedLowAt = env.clock.nowMicros();
    await store.purge();
    expect(await store.getCell(row(REPAIR, low[1]!))).toBeUndefined();
    expect(show(await store.getCell(row(REPAIR, high[0]!)))).toBe('T@10');
    expect(early).toBeLessThan(repairedLowAt);
  });

  it('the storage actor sweeps with the horizon it is given', async () => {
    const env = testEnv();
    const db = await memoryBackend().create();
    const system = new ActorSystem({ env });
    const handle = spawnStorage(system, { db, env, gcGraceSeconds: 0, sweepIntervalMs: 5, purgeHorizon: (keyspace) => (keyspace === GRACE ? env.clock.nowMicros() : -Infinity) });
    try {
      await write(handle.ref, del(GRACE, 'a', 10), 1_000);
      await write(handle.ref, del(REPAIR, 'a', 10), 1_000);
      env.advanceSeconds(1);
      const deadline = Date.now() + 5_000;
      while ((await handle.reader.getCell(row(GRACE, 'a'))) !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(await handle.reader.getCell(row(GRACE, 'a'))).toBeUndefined();
      expect(show(await handle.reader.getCell(row(REPAIR, 'a')))).toBe('T@10');
    } finally {
      await system.shutdown();
      await handle.close();
    }
  });
});
