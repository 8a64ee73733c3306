import { token } from '@chorus/core';
import type { Mutation } from '@chorus/model';
import { describe, expect, it } from 'vitest';
import { NEXT_SEQ_KEY, decodeHint, encodeHint, encodeSeq, encodeTarget, legacyHintKey, targetKey } from '../src/codec.js';
import { HintStore } from '../src/store.js';
import { HOST_A, HOST_B, NODE_A, NODE_B, manualEnv, memoryDb, write } from './helpers.js';

const HOUR_MS = 3_600_000;
const limits = { windowMicros: 3 * HOUR_MS * 1000, maxBytesPerHost: 0 };
const text = (m: Mutation | undefined) => new TextDecoder().decode((m as { cell: { value: Uint8Array } }).cell.value);

describe('hint records', () => {
  it('keep every kind of mutation exactly, timestamps and expiry included', () => {
    const bytes = new TextEncoder().encode('p');
    const mutations: Mutation[] = [
      write('k', 'v', 1_700_000_000_123_456),
      write('k', 'v', 17, { expiresAtMicros: 1_700_000_000_999_999, clustering: 'c' }),
      { keyspace: 'app', token: token(-(2n ** 63n)), partition: bytes, clustering: new Uint8Array(0), cell: { tombstone: true, timestampMicros: 5 } },
      { keyspace: 'app', token: token(2n ** 63n - 1n), partition: bytes, partitionDeletion: { timestampMicros: 9_007_199_254_740_991 } },
    ];
    for (const mutation of mutations) {
      const record = { createdAtMicros: 42, target: NODE_A, mutation };
      expect(decodeHint(encodeHint(record))).toEqual(record);
    }
  });

  it('refuse truncated or foreign bytes with CorruptHint', () => {
    const good = encodeHint({ createdAtMicros: 1, target: NODE_A, mutation: write('k', 'v', 1) });
    expect(() => decodeHint(good.subarray(0, good.length - 3))).toThrow(expect.objectContaining({ name: 'CorruptHint' }));
    expect(() => decodeHint(Uint8Array.of(9, 9, 9))).toThrow(expect.objectContaining({ name: 'CorruptHint' }));
  });
});

describe('HintStore', () => {
  it('keeps each target apart and pages its hints oldest first', async () => {
    const env = manualEnv();
    const store = await HintStore.open(memoryDb(), env, { syncEach: false });
    for (let i = 0; i < 10; i++) {
      await store.append([{ hostId: i % 2 ? HOST_B : HOST_A, node: i % 2 ? NODE_B : NODE_A, mutation: write(`k${i}`, `v${i}`, 1000 + i) }], limits);
      env.advanceMs(1);
    }
    const a = await store.page(HOST_A, 100, 1 << 20);
    expect(a.map((h) => text(h.mutation))).toEqual(['v0', 'v2', 'v4', 'v6', 'v8']);
    expect(a.map((h) => h.mutation && 'cell' in h.mutation && h.mutation.cell.timestampMicros)).toEqual([1000, 1002, 1004, 1006, 1008]);
    const firstTwo = await store.page(HOST_A, 2, 1 << 20);
    expect((await store.page(HOST_A, 100, 1 << 20, firstTwo.at(-1))).map((h) => text(h.mutation))).toEqual(['v4', 'v6', 'v8']);
    expect(store.summaries().map((t) => [t.hostId, t.hints])).toEqual([[HOST_A, 5], [HOST_B, 5]]);
  });

  it('measures the window from the oldest undelivered hint, across a reopen, and marks the target as needing repair', async () => {
    const env = manualEnv();
    const db = memoryDb();
    let store = await HintStore.open(db, env, { syncEach: false });
    const first = env.clock.nowMicros();
    await store.append([{ hostId: HOST_A, node: NODE_A, mutation: write('a', '1', 1) }], limits);
    env.advanceMs(2 * HOUR_MS);
    expect(await store.append([{ hostId: HOST_A, node: NODE_A, mutation: write('b', '2', 2) }], limits)).toEqual([{ stored: true }]);
    await store.close();

    // A restart of this node must not reset the window: it is read back from the oldest hint itself.
    store = await HintStore.open(db, env, { syncEach: false });
    expect(store.summary(HOST_A)).toMatchObject({ hints: 2, oldestMicros: first, needsRepair: false });
    env.advanceMs(HOUR_MS + 1);
    const refused = await store.append([{ hostId: HOST_A, node: NODE_A, mutation: write('c', '3', 3) }, { hostId: HOST_A, node: NODE_A, mutation: write('d', '4', 4) }, { hostId: HOST_B, node: NODE_B, mutation: write('e', '5', 5) }], limits);
    expect(refused).toEqual([{ stored: false, reason: 'window', newlyMarked: true }, { stored: false, reason: 'window', newlyMarked: false }, { stored: true }]);
    expect(store.summary(HOST_A)).toMatchObject({ hints: 2, needsRepair: true, needsRepairReason: 'window' });
    await store.close();
    store = await HintStore.open(db, env, { syncEach: false });
    expect(store.summary(HOST_A)).toMatchObject({ hints: 2, needsRepair: true });

    // Delivering the oldest hint moves the window's start to the next one.
    const [oldest] = await store.page(HOST_A, 1, 1 << 20);
    await store.remove(HOST_A, [oldest!]);
    expect(store.summary(HOST_A)).toMatchObject({ hints: 1, oldestMicros: first + 2 * HOUR_MS * 1000 });
    // Once every hint is delivered, the mark stays: what was refused is missing until a repair.
    const rest = await store.page(HOST_A, 10, 1 << 20);
    await store.remove(HOST_A, rest);
    expect(store.summary(HOST_A)).toMatchObject({ hints: 0, needsRepair: true });
    expect(store.summary(HOST_A)?.oldestMicros).toBeUndefined();
    expect(await store.append([{ hostId: HOST_A, node: NODE_A, mutation: write('f', '6', 6) }], limits)).toEqual([{ stored: true }]);
    await store.clearNeedsRepair(HOST_A);
    expect(store.summary(HOST_A)).toMatchObject({ hints: 1, needsRepair: false });
  });

  it('refuses hints past the per-target byte cap and marks the target', async () => {
    const env = manualEnv();
    const store = await HintStore.open(memoryDb(), env, { syncEach: false });
    const capped = { ...limits, maxBytesPerHost: 400 };
    const outcomes = [];
    for (let i = 0; i < 10; i++) outcomes.push(...(await store.append([{ hostId: HOST_A, node: NODE_A, mutation: write(`key-${i}`, 'x'.repeat(50), i) }], capped)));
    const stored = outcomes.filter((o) => o.stored).length;
    expect(stored).toBeGreaterThan(0);
    expect(stored).toBeLessThan(10);
    expect(outcomes.slice(stored).every((o) => !o.stored && o.reason === 'size')).toBe(true);
    const t = store.summary(HOST_A)!;
    expect(t.bytes).toBeLessThanOrEqual(400);
    expect(t).toMatchObject({ hints: stored, needsRepair: true, needsRepairReason: 'size' });
    // Another target is not affected.
    expect(await store.append([{ hostId: HOST_B, node: NODE_B, mutation: write('k', 'v', 1) }], capped)).toEqual([{ stored: true }]);
  });

  it('keeps what it acknowledged across a reopen, counters included, and never reuses a sequence number', async () => {
    const env = manualEnv();
    const db = memoryDb();
    let store = await HintStore.open(db, env, { syncEach: true });
    await store.append(Array.from({ length: 50 }, (_, i) => ({ hostId: HOST_A, node: NODE_A, mutation: write(`k${i}`, `v${i}`, i) })), limits);
    const before = store.summary(HOST_A)!;
    const hints = await store.page(HOST_A, 100, 1 << 20);
    const seqs = hints.map((h) => h.seq);
    await store.close();
    store = await HintStore.open(db, env, { syncEach: true });
    expect(store.summary(HOST_A)).toEqual(before);
    await store.remove(HOST_A, hints);
    await store.append([{ hostId: HOST_A, node: NODE_A, mutation: write('again', 'v', 1) }], limits);
    const [again] = await store.page(HOST_A, 10, 1 << 20);
    expect(again!.seq).toBeGreaterThan(Math.max(...seqs));
    expect(store.summary(HOST_A)).toMatchObject({ hints: 1 });
  });

  it('removes only what is still there, so a removal racing a drop counts nothing twice', async () => {
    const env = manualEnv();
    const store = await HintStore.open(memoryDb(), env, { syncEach: false });
    await store.append([1, 2, 3].map((i) => ({ hostId: HOST_A, node: NODE_A, mutation: write(`k${i}`, 'v', i) })), limits);
    const page = await store.page(HOST_A, 10, 1 << 20);
    expect(await store.remove(HOST_A, [page[0]!])).toMatchObject({ hints: 1 });
    expect(await store.remove(HOST_A, page)).toMatchObject({ hints: 2 });
    expect(store.summary(HOST_A)).toBeUndefined();
  });

  it('drops every hint of a host id, in bounded batches, and forgets it', async () => {
    const env = manualEnv();
    const db = memoryDb();
    const store = await HintStore.open(db, env, { syncEach: false });
    for (let i = 0; i < 5; i++) await store.append(Array.from({ length: 500 }, (_, j) => ({ hostId: HOST_A, node: NODE_A, mutation: write(`k${i}-${j}`, 'v', j) })), limits);
    await store.append([{ hostId: HOST_B, node: NODE_B, mutation: write('b', 'v', 1) }], limits);
    const result = await store.drop(HOST_A);
    expect(result.hints).toBe(2_500);
    expect(store.summary(HOST_A)).toBeUndefined();
    expect(await store.page(HOST_A, 10, 1 << 20)).toEqual([]);
    expect(store.summary(HOST_B)).toMatchObject({ hints: 1 });
    await store.close();
    const reopened = await HintStore.open(db, env, { syncEach: false });
    expect(reopened.summaries().map((t) => t.hostId)).toEqual([HOST_B]);
  });

  it('keeps hints taken over from another node with their original creation time, in creation order among its own, window and caps aside', async () => {
    const env = manualEnv();
    const db = memoryDb();
    let store = await HintStore.open(db, env, { syncEach: true });
    const t0 = env.clock.nowMicros();
    env.advanceMs(10 * HOUR_MS);
    const now = env.clock.nowMicros();
    await store.append([{ hostId: HOST_A, node: NODE_A, mutation: write('own', 'own', 5) }], limits);
    // Older than the window: they were accepted when written, so they are kept all the same.
    const adopted = await store.adopt([
      { hostId: HOST_A, node: NODE_A, createdAtMicros: t0 + 2, mutation: write('second', 'second', 2) },
      { hostId: HOST_A, node: NODE_A, createdAtMicros: t0 + 1, mutation: write('first', 'first', 1) },
      { hostId: HOST_B, node: NODE_B, createdAtMicros: t0, mutation: write('b', 'b', 1) },
    ]);
    expect(adopted).toBe(3);
    expect((await store.page(HOST_A, 10, 1 << 20)).map((h) => [text(h.mutation), h.createdAtMicros])).toEqual([['first', t0 + 1], ['second', t0 + 2], ['own', now]]);
    expect(store.summary(HOST_A)).toMatchObject({ hints: 3, oldestMicros: t0 + 1, needsRepair: false });
    const before = store.summaries();
    await store.close();
    store = await HintStore.open(db, env, { syncEach: true });
    expect(store.summaries()).toEqual(before);
    // The window runs from the oldest hint, adopted or not: past it, nothing new is stored.
    expect(await store.append([{ hostId: HOST_A, node: NODE_A, mutation: write('late', 'v', 9) }], limits)).toEqual([{ stored: false, reason: 'window', newlyMarked: true }]);
    const bytes = (await store.page(HOST_A, 10, 1 << 20)).reduce((n, h) => n + h.bytes, 0);
    expect(store.summary(HOST_A)?.bytes).toBe(bytes);
  });

  it('returns pages within their byte bound, a larger hint alone', async () => {
    const env = manualEnv();
    const store = await HintStore.open(memoryDb(), env, { syncEach: false });
    await store.append(Array.from({ length: 10 }, (_, i) => ({ hostId: HOST_A, node: NODE_A, mutation: write(`k${i}`, 'x'.repeat(i === 0 ? 5_000 : 100), i) })), limits);
    const all = await store.page(HOST_A, 100, 1 << 20);
    expect(all).toHaveLength(10);
    expect((await store.page(HOST_A, 100, 1_000)).map((h) => h.seq)).toEqual([all[0]!.seq]);
    const after = await store.page(HOST_A, 100, 1_000, all[0]);
    expect(after.reduce((n, h) => n + h.bytes, 0)).toBeLessThanOrEqual(1_000);
    expect(after.length).toBe(Math.floor(1_000 / all[1]!.bytes));
  });

  it('moves hints of the first key layout (ordered by sequence number) to creation order when it opens', async () => {
    const env = manualEnv();
    const db = memoryDb();
    const put = (key: Uint8Array, value: Uint8Array) => db.put(key, value, { keyEncoding: 'view', valueEncoding: 'view' });
    const t0 = env.clock.nowMicros();
    // Sequence order disagrees with creation order here, as it could after a clock stepped back.
    const records = [
      { seq: 1, createdAtMicros: t0 + 5, mutation: write('later', 'later', 2) },
      { seq: 2, createdAtMicros: t0 + 1, mutation: write('earlier', 'earlier', 1) },
    ];
    let legacyBytes = 0;
    for (const r of records) {
      const key = legacyHintKey(HOST_A, r.seq);
      const value = encodeHint({ createdAtMicros: r.createdAtMicros, target: NODE_A, mutation: r.mutation });
      legacyBytes += key.length + value.length;
      await put(key, value);
    }
    await put(targetKey(HOST_A), encodeTarget({ node: NODE_A, hints: 2, bytes: legacyBytes, needsRepair: false }));
    await put(NEXT_SEQ_KEY, encodeSeq(3));
    const store = await HintStore.open(db, env, { syncEach: false });
    const page = await store.page(HOST_A, 10, 1 << 20);
    expect(page.map((h) => [text(h.mutation), h.createdAtMicros, h.seq])).toEqual([['earlier', t0 + 1, 2], ['later', t0 + 5, 1]]);
    expect(store.summary(HOST_A)).toMatchObject({ hints: 2, oldestMicros: t0 + 1, bytes: page.reduce((n, h) => n + h.bytes, 0) });
    expect(await db.keys({ lt: Uint8Array.of(0x02), keyEncoding: 'view' }).all()).toEqual([]);
    await store.remove(HOST_A, page);
    expect(store.summary(HOST_A)).toBeUndefined();
  });
});
