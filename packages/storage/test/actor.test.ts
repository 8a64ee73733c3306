import { afterEach, describe, expect, it } from 'vitest';
import { ActorSystem, MailboxFull } from '@chorus/actors';
import { Overloaded } from '@chorus/core';
import { type Mutation, InvalidTimestamp } from '@chorus/model';
import { type StorageDb, flush, readCell, spawnStorage, write, writeMany, type StorageHandle, type CommitSyncMode } from '../src/index.js';
import { mutationBytes } from '@chorus/model';
import { META, dec, enc, levelBackend, memoryBackend, testEnv, tokenOf } from './helpers.js';

const put = (key: string, value: string, ts: number): Mutation => ({ keyspace: 'ks', token: tokenOf(key), partition: enc(key), cell: { value: enc(value), timestampMicros: ts } });
const tick = () => new Promise((r) => setImmediate(r));

/** Polls `check` until it holds; the deadline is generous because a busy machine may run timers late. */
async function until(check: () => boolean | Promise<boolean>, deadlineMs = 20_000): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > deadlineMs) throw new Error(`condition not met within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Spy {
  /** Each batch written: the row versions it puts, and whether it was synced. */
  batches: Array<{ size: number; sync: boolean }>;
  syncPuts: number;
  hold(): void;
  release(): void;
}

/** Row versions among a batch's operations (heads and bookkeeping entries are not counted). */
const isVersionPut = (op: { type?: string; key: Uint8Array }) => op.type !== 'del' && op.key[0] === 0x64;

/** Wraps the db so a test can count batches (array or chained), the versions they write and their sync flag, and hold them back. */
function spy(db: StorageDb): Spy {
  const batch = db.batch.bind(db) as (...a: unknown[]) => unknown;
  const put = db.put.bind(db) as (k: unknown, v: unknown, o: { sync?: boolean }) => Promise<void>;
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  const s: Spy = {
    batches: [],
    syncPuts: 0,
    hold() {
      gate = new Promise((r) => (open = r));
    },
    release() {
      open?.();
      gate = undefined;
    },
  };
  (db as { batch: unknown }).batch = (...args: unknown[]) => {
    if (args.length > 0) {
      const [ops, o] = args as [Array<{ type: string; key: Uint8Array }>, { sync?: boolean } | undefined];
      s.batches.push({ size: ops.filter(isVersionPut).length, sync: o?.sync === true });
      return (async () => {
        if (gate) await gate;
        return batch(...args);
      })();
    }
    const chained = batch() as { put: (k: Uint8Array, ...rest: unknown[]) => unknown; write: (o?: { sync?: boolean }) => Promise<void> };
    let versions = 0;
    const chainedPut = chained.put.bind(chained);
    chained.put = (k: Uint8Array, ...rest: unknown[]) => {
      if (isVersionPut({ key: k })) versions++;
      return chainedPut(k, ...rest);
    };
    const write = chained.write.bind(chained);
    chained.write = async (o?: { sync?: boolean }) => {
      s.batches.push({ size: versions, sync: o?.sync === true });
      if (gate) await gate;
      return write(o);
    };
    return chained;
  };
  (db as { put: unknown }).put = async (k: Uint8Array, v: unknown, o: { sync?: boolean }) => {
    // The periodic sync's marker; any other put is a batch of one (see Batch).
    if (k[0] === META) {
      if (o?.sync) s.syncPuts++;
      return put(k, v, o);
    }
    s.batches.push({ size: isVersionPut({ key: k }) ? 1 : 0, sync: o?.sync === true });
    if (gate) await gate;
    return put(k, v, o);
  };
  return s;
}

describe('storage actor', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function start(opts: { commitSync?: CommitSyncMode; commitSyncPeriodMs?: number; sweepIntervalMs?: number; gcGraceSeconds?: number; mailboxCapacity?: number; mailboxBytes?: number; batchBytes?: number; level?: boolean } = {}) {
    const backend = opts.level ? levelBackend() : memoryBackend();
    const db = await backend.create();
    const env = testEnv();
    const sweepIntervalMs = opts.sweepIntervalMs;
    let sweepsScheduled = 0;
    const setTimer = env.scheduler.setTimer;
    env.scheduler.setTimer = (ms, fn) => {
      if (ms === sweepIntervalMs) sweepsScheduled++;
      return setTimer(ms, fn);
    };
    const s = spy(db);
    const system = new ActorSystem({ env });
    const { level: _l, ...rest } = opts;
    const handle: StorageHandle = spawnStorage(system, { db, env, ...rest });
    cleanups.push(async () => {
      await system.shutdown();
      await handle.close();
      await backend.cleanup();
    });
    return { handle, env, s, system, sweepsScheduled: () => sweepsScheduled };
  }

  it('acknowledges writes and serves reads', async () => {
    const { handle } = await start();
    await write(handle.ref, put('a', 'v', 10), 1000);
    // An older write is stored blind and acknowledged; reads never let it win.
    await write(handle.ref, put('a', 'old', 5), 1000);
    const cell = await readCell(handle.ref, { keyspace: 'ks', token: tokenOf('a'), partition: enc('a') }, 1000);
    expect(cell && 'value' in cell ? dec(cell.value) : undefined).toBe('v');
    expect(await readCell(handle.ref, { keyspace: 'ks', token: tokenOf('b'), partition: enc('b') }, 1000)).toBeUndefined();
    expect((await handle.reader.get({ keyspace: 'ks', token: tokenOf('a'), partition: enc('a') }))?.timestampMicros).toBe(10);
  });

  it('group commit: a burst becomes few batches, and nothing is acknowledged before its batch lands', async () => {
    const { handle, s } = await start({ commitSync: 'none' });
    s.hold();
    const acks: number[] = [];
    const all = Array.from({ length: 500 }, (_, i) => write(handle.ref, put(`k${i}`, 'v', 1), 5000).then(() => acks.push(i)));
    for (let i = 0; i < 20; i++) await tick();
    expect(s.batches.length).toBeGreaterThan(0);
    expect(acks).toEqual([]);
    s.release();
    await Promise.all(all);
    expect(acks).toHaveLength(500);
    expect(s.batches.length).toBeLessThanOrEqual(3);
    expect(s.batches.reduce((n, b) => n + b.size, 0)).toBe(500);
    // Every acknowledged write is readable straight from the store.
    expect(await handle.reader.get({ keyspace: 'ks', token: tokenOf('k499'), partition: enc('k499') })).toBeDefined();
  });

  it('batch mode fsyncs every batch before acknowledging', async () => {
    const { handle, s } = await start({ commitSync: 'batch', level: true });
    await Promise.all(Array.from({ length: 50 }, (_, i) => write(handle.ref, put(`k${i}`, 'v', 1), 5000)));
    expect(s.batches.length).toBeGreaterThan(0);
    expect(s.batches.every((b) => b.sync)).toBe(true);
  });

  it('periodic mode writes without sync and syncs on a timer; none never syncs', async () => {
    const periodic = await start({ commitSync: 'periodic', commitSyncPeriodMs: 20 });
    const none = await start({ commitSync: 'none', commitSyncPeriodMs: 20 });
    await write(periodic.handle.ref, put('a', 'v', 1), 1000);
    await write(none.handle.ref, put('a', 'v', 1), 1000);
    expect(periodic.s.batches.every((b) => !b.sync)).toBe(true);
    // Both run on the same 20 ms period: once the periodic store has synced twice, the other has had its chances to.
    await until(() => periodic.s.syncPuts >= 2);
    expect(none.s.syncPuts).toBe(0);
    expect(none.s.batches.every((b) => !b.sync)).toBe(true);
    await flush(none.handle.ref, 1000);
    expect(none.s.syncPuts).toBe(1);
  });

  it('schedules the gc sweep through the env scheduler', async () => {
    const { handle, env, sweepsScheduled } = await start({ sweepIntervalMs: 10, gcGraceSeconds: 1 });
    await write(handle.ref, { keyspace: 'ks', token: tokenOf('a'), partition: enc('a'), cell: { tombstone: true, timestampMicros: 1 } }, 1000);
    const addr = { keyspace: 'ks', token: tokenOf('a'), partition: enc('a') };
    // A sweep is rescheduled only after the previous one finished: three schedules mean two whole sweeps ran within grace.
    const before = sweepsScheduled();
    await until(() => sweepsScheduled() >= before + 3);
    expect(await handle.reader.getCell(addr)).toBeDefined();
    env.advanceSeconds(2);
    await until(async () => (await handle.reader.getCell(addr)) === undefined);
  });

  it('writes many mutations in one message: one batch with single writes beside them, an outcome each, a bad one failing alone', async () => {
    const { handle, s } = await start({ commitSync: 'none' });
    s.hold();
    const single = write(handle.ref, put('s', 'v', 1), 5000);
    const mutations = [put('a', 'v', 1), put('b', 'v', -1), put('c', 'v', 2)];
    const many = writeMany(handle.ref, mutations, mutations.reduce((n, m) => n + mutationBytes(m), 0), 5000);
    const after = write(handle.ref, put('t', 'v', 1), 5000);
    for (let i = 0; i < 5; i++) await tick();
    s.release();
    const outcomes = await many;
    await Promise.all([single, after]);
    expect(outcomes.map((o) => o?.constructor.name)).toEqual([undefined, 'InvalidTimestamp', undefined]);
    expect(s.batches.reduce((n, b) => n + b.size, 0)).toBe(4);
    for (const key of ['s', 'a', 'c', 't']) expect(await handle.reader.get({ keyspace: 'ks', token: tokenOf(key), partition: enc(key) })).toBeDefined();
    expect(await handle.reader.get({ keyspace: 'ks', token: tokenOf('b'), partition: enc('b') })).toBeUndefined();
  });

  it('rejects bad input with its typed error, and overload with MailboxFull', async () => {
    const { handle, s } = await start({ mailboxCapacity: 10, commitSync: 'none' });
    await expect(write(handle.ref, put('a', 'v', -1), 1000)).rejects.toBeInstanceOf(InvalidTimestamp);
    s.hold();
    const pending: Array<Promise<unknown>> = [];
    let rejected: unknown;
    for (let i = 0; i < 40 && rejected === undefined; i++) {
      try {
        pending.push(write(handle.ref, put(`k${i}`, 'v', 1), 5000).catch((e: unknown) => e));
      } catch (e) {
        rejected = e;
      }
    }
    const settled = [rejected, ...(await (async () => {
      s.release();
      return Promise.all(pending);
    })())].filter((e) => e instanceof Error);
    expect(settled.length).toBeGreaterThan(0);
    expect(settled[0]).toBeInstanceOf(MailboxFull);
    expect(settled[0]).toBeInstanceOf(Overloaded);
  });

  it('bounds memory by bytes: a batch holds at most batchBytes of values, and writes past mailboxBytes are refused as Overloaded', async () => {
    const MiB = 1024 * 1024;
    const big = (key: string): Mutation => ({ keyspace: 'ks', token: tokenOf(key), partition: enc(key), cell: { value: new Uint8Array(MiB), timestampMicros: 1 } });
    const { handle, s } = await start({ commitSync: 'none', batchBytes: 3 * MiB, mailboxBytes: 8 * MiB });
    s.hold();
    const outcomes = Array.from({ length: 20 }, (_, i) => write(handle.ref, big(`k${i}`), 10_000).then(() => 'ok', (e: unknown) => e));
    for (let i = 0; i < 20; i++) await tick();
    s.release();
    const settled = await Promise.all(outcomes);
    const refused = settled.filter((o) => o !== 'ok');
    // The first write is taken at once, and the mailbox then holds at most 8 of the others: the rest is refused, not queued.
    expect(refused.length).toBeGreaterThanOrEqual(20 - 1 - 8 - 2);
    for (const e of refused) expect(e).toMatchObject({ name: 'MailboxFull', code: 'OVERLOADED', fields: expect.objectContaining({ budgetBytes: 8 * MiB }) });
    expect(s.batches.every((b) => b.size <= 3)).toBe(true);
    expect(s.batches.reduce((n, b) => n + b.size, 0)).toBe(20 - refused.length);
  });

  it('survives a restart on LevelDB: acknowledged writes are there after close and reopen', async () => {
    const backend = levelBackend();
    const env = testEnv();
    const db = await backend.create();
    const system = new ActorSystem({ env });
    const h = spawnStorage(system, { db, env, commitSync: 'periodic' });
    await Promise.all(Array.from({ length: 200 }, (_, i) => write(h.ref, put(`k${i}`, `v${i}`, 1), 5000)));
    await h.close();
    await system.shutdown();
    const { Level } = await import('level');
    const db2 = new Level<Uint8Array, Uint8Array>((db as unknown as { location: string }).location, { keyEncoding: 'view', valueEncoding: 'view' });
    const system2 = new ActorSystem({ env });
    const h2 = spawnStorage(system2, { db: db2, env });
    const cell = await readCell(h2.ref, { keyspace: 'ks', token: tokenOf('k199'), partition: enc('k199') }, 5000);
    expect(cell && 'value' in cell ? dec(cell.value) : undefined).toBe('v199');
    await h2.close();
    await system2.shutdown();
    await backend.cleanup();
  });
});
