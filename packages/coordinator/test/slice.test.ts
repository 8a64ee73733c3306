import { nodeId } from '@chorus/core';
import { type KeyspaceDef, tokenOf } from '@chorus/ring';
import { MAX_FRAME_BYTES, wireCodec } from '@chorus/wire';
import { describe, expect, it } from 'vitest';
import { LIMITS } from '@chorus/model';
import type { CoordinatorHandle, SliceRequest } from '../src/index.js';
import { type Cluster, findKey, settle, startCluster, str } from './helpers.js';

const ks: KeyspaceDef = { name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } };
const ck = (i: number) => `row${String(i).padStart(3, '0')}`;

async function readAll(c: Cluster, h: CoordinatorHandle, partition: string, options: SliceRequest) {
  const rows: string[] = [];
  let page: Uint8Array | undefined;
  let pages = 0;
  do {
    const r = await settle(c.sim, h.slice('app', partition, page === undefined ? options : { ...options, page }));
    if (!r.ok) throw r.error;
    rows.push(...r.value.rows.map((row) => `${str(row.clustering)}=${str(row.value)}`));
    page = r.value.nextPage;
    pages++;
  } while (page !== undefined && pages < 100);
  return { rows, pages };
}

describe('slices', () => {
  it('pages through a wide partition at every read level, skipping deleted rows', async () => {
    const c = await startCluster({ seed: 500, nodes: ['n1', 'n2', 'n3', 'n4'].map((name) => ({ name })), keyspaces: [ks] });
    const h = c.handle('n4');
    for (let i = 0; i < 45; i++) expect((await settle(c.sim, h.put('app', 'wide', ck(i), `v${i}`))).ok).toBe(true);
    for (const i of [3, 10, 11, 12, 40]) expect((await settle(c.sim, h.del('app', 'wide', ck(i)))).ok).toBe(true);
    const expected = Array.from({ length: 45 }, (_, i) => i).filter((i) => ![3, 10, 11, 12, 40].includes(i)).map((i) => `${ck(i)}=v${i}`);
    for (const consistency of ['ONE', 'QUORUM', 'ALL', 'LOCAL_QUORUM'] as const) {
      const { rows, pages } = await readAll(c, h, 'wide', { limit: 10, consistency });
      expect([consistency, rows]).toEqual([consistency, expected]);
      expect(pages).toBeGreaterThanOrEqual(4);
    }
    const reversed = await readAll(c, h, 'wide', { limit: 7, reverse: true });
    expect(reversed.rows).toEqual([...expected].reverse());
    const bounded = await readAll(c, h, 'wide', { from: ck(5), to: ck(14), limit: 3 });
    expect(bounded.rows).toEqual(expected.filter((r) => r >= ck(5) && r <= `${ck(14)}~`));
  });

  it('merges divergent replicas row by row: newest version wins, tombstones on one replica hide rows on others', async () => {
    const c = await startCluster({ seed: 501, nodes: ['n1', 'n2', 'n3', 'n4'].map((name) => ({ name })), keyspaces: [ks] });
    const h = c.handle('n4');
    const replicas = c.ring.naturalReplicas(tokenOf('p'), ks.replication).filter((n) => n !== nodeId('n4'));
    for (let i = 0; i < 10; i++) expect((await settle(c.sim, h.put('app', 'p', ck(i), `old${i}`, { consistency: 'ALL' }))).ok).toBe(true);
    // One replica misses newer writes and a delete: it is down while they happen at ONE.
    c.sim.crash(replicas[0]!);
    await c.sim.runFor(5);
    expect((await settle(c.sim, h.put('app', 'p', ck(2), 'new2', { consistency: 'ONE' }))).ok).toBe(true);
    expect((await settle(c.sim, h.del('app', 'p', ck(5), { consistency: 'ONE' }))).ok).toBe(true);
    expect((await settle(c.sim, h.put('app', 'p', ck(20), 'added', { consistency: 'ONE' }))).ok).toBe(true);
    await c.sim.restart(replicas[0]!);
    await c.sim.runFor(5);
    const { rows } = await readAll(c, h, 'p', { limit: 4, consistency: 'ALL' });
    expect(rows).toEqual([
      ...[0, 1].map((i) => `${ck(i)}=old${i}`),
      `${ck(2)}=new2`,
      ...[3, 4, 6, 7, 8, 9].map((i) => `${ck(i)}=old${i}`),
      `${ck(20)}=added`,
    ]);
    // A partition deletion through the write path hides every row.
    expect((await settle(c.sim, h.deletePartition('app', 'p', { consistency: 'QUORUM' }))).ok).toBe(true);
    expect((await readAll(c, h, 'p', { limit: 4, consistency: 'QUORUM' })).rows).toEqual([]);
  });

  it('seed 502: pages of values near the size limit stay under the wire frame limit (the replica cuts its page by bytes)', async () => {
    const seed = 502;
    const c = await startCluster({ seed, nodes: ['n1', 'n2', 'n3', 'n4'].map((name) => ({ name })), keyspaces: [ks] });
    const h = c.handle('n4');
    // n4 is no replica, so every page crosses the (simulated) wire and its codec.
    const partition = findKey(c.ring, ks, (r) => !r.includes(nodeId('n4')), 'big');
    const big = (i: number) => new Uint8Array(LIMITS.maxValueBytes).fill(65 + i);
    for (let i = 0; i < 7; i++) expect((await settle(c.sim, h.put('app', partition, ck(i), big(i), { consistency: 'ALL' }))).ok, `seed ${seed}`).toBe(true);
    for (const reverse of [false, true]) {
      const seen: number[] = [];
      let page: Uint8Array | undefined;
      let pages = 0;
      do {
        const r = await settle(c.sim, h.slice('app', partition, { limit: 10, consistency: 'QUORUM', reverse, ...(page === undefined ? {} : { page }) }));
        expect(r.ok ? 'ok' : r.error.message, `seed ${seed}`).toBe('ok');
        if (!r.ok) return;
        for (const row of r.value.rows) {
          expect(row.value.length).toBe(LIMITS.maxValueBytes);
          seen.push(row.value[0]! - 65);
        }
        page = r.value.nextPage;
        pages++;
      } while (page !== undefined && pages < 20);
      expect([seed, reverse, seen]).toEqual([seed, reverse, reverse ? [6, 5, 4, 3, 2, 1, 0] : [0, 1, 2, 3, 4, 5, 6]]);
      expect(pages).toBeGreaterThan(1);
    }
    expect(c.rejectedFrames()).toBe(0);
  });

  it('the largest replica.data answer fits one wire frame', () => {
    const codec = wireCodec();
    const frame = codec.encode({
      t: 'ok',
      id: 1,
      run: 2 ** 48 - 1,
      v: { type: 'replica.data', state: 'value', value: new Uint8Array(LIMITS.maxValueBytes), timestampMicros: 2 ** 52, expiresAtMicros: 2 ** 52, hlc: 2 ** 52, wallMicros: 2 ** 52 },
    });
    expect(frame.byteLength).toBeLessThan(MAX_FRAME_BYTES);
    expect(() => codec.decode(frame)).not.toThrow();
  });
});
