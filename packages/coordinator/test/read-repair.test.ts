import { type NodeId, nodeId } from '@chorus/core';
import { type Cell, isTombstone } from '@chorus/model';
import { type KeyspaceDef, type ReadRepairMode, tokenOf } from '@chorus/ring';
import { describe, expect, it } from 'vitest';
import type { ReadRepairEvent } from '../src/index.js';
import { type Cluster, findKey, settle, startCluster, str } from './helpers.js';

const keyspace = (readRepair: ReadRepairMode): KeyspaceDef => ({ name: 'app', replication: { class: 'SimpleStrategy', rf: 3 }, readRepair });
const n = nodeId;

/** What a node's own replica holds for a row: its value, `tombstone`, or `absent`. */
async function localOf(c: Cluster, node: string, key: string, clustering?: string): Promise<string> {
  const got = await settle(c.sim, c.handle(node).local('app', key, clustering));
  if (!got.ok) throw got.error;
  return show(got.value);
}

function show(cell: Cell | undefined): string {
  if (cell === undefined) return 'absent';
  return isTombstone(cell) ? 'tombstone' : str(cell.value)!;
}

async function ok<T>(c: Cluster, p: Promise<T>): Promise<T> {
  const r = await settle(c.sim, p);
  if (!r.ok) throw r.error;
  return r.value;
}

/**
 * Three nodes, all replicas (rf 3). n1 and n3 share a rack, n2 is in another,
 * so a read coordinated by n3 asks n3 itself for data and n1 for a digest.
 */
async function threeNodes(seed: number, mode: ReadRepairMode, events: ReadRepairEvent[] = []): Promise<Cluster> {
  return startCluster({
    seed,
    nodes: [{ name: 'n1', rack: 'r1' }, { name: 'n2', rack: 'r2' }, { name: 'n3', rack: 'r1' }],
    keyspaces: [keyspace(mode)],
    coordinator: { readRepair: (e) => void events.push(e) },
  });
}

/** n3 is cut off while `work` runs (the others count it down), then the partition heals. */
async function whileCutOff(c: Cluster, node: string, work: () => Promise<void>): Promise<void> {
  const others = ['n1', 'n2', 'n3', 'n4'].filter((x) => x !== node && c.handles.has(x)).map(n);
  c.sim.network.partition([n(node)], others);
  await work();
  c.sim.network.heal();
  await c.sim.runFor(5);
}

const KEYS = Array.from({ length: 10 }, (_, i) => `k${i}`);

describe('blocking read repair', () => {
  it('seed 900: each QUORUM read repairs the stale replica that answered before it answers; unread keys stay stale', async () => {
    const events: ReadRepairEvent[] = [];
    const c = await threeNodes(900, 'blocking', events);
    for (const k of KEYS) await ok(c, c.handle('n1').put('app', k, undefined, `${k}-v1`, { consistency: 'ALL' }));
    // n3 misses the second round of writes: half at QUORUM, half at ONE, through different coordinators.
    await whileCutOff(c, 'n3', async () => {
      for (const [i, k] of KEYS.entries()) {
        if (i < 5) await ok(c, c.handle('n1').put('app', k, undefined, `${k}-v2`, { consistency: 'QUORUM' }));
        else await ok(c, c.handle('n2').put('app', k, undefined, `${k}-v2`, { consistency: 'ONE' }));
      }
    });
    // Deletes are versions too: n3 misses one.
    await whileCutOff(c, 'n3', () => ok(c, c.handle('n2').del('app', 'k9', undefined, { consistency: 'QUORUM' })).then(() => undefined));
    for (const k of KEYS) expect(await localOf(c, 'n3', k)).toBe(`${k}-v1`);

    const n3 = c.handle('n3');
    const read = [...KEYS.slice(0, 7), 'k9'];
    for (const k of read) {
      const got = await ok(c, n3.getCell('app', k, undefined, { consistency: 'QUORUM' }));
      expect(show(got)).toBe(k === 'k9' ? 'tombstone' : `${k}-v2`);
      // Blocking: by the time the read answered, the stale replica held the version it returned.
      expect(await localOf(c, 'n3', k)).toBe(show(got));
    }
    // Exactly the keys read were repaired on n3; the others wait for another read, hints or repair.
    for (const k of ['k7', 'k8']) expect(await localOf(c, 'n3', k)).toBe(`${k}-v1`);
    expect(n3.stats().readRepair).toEqual({ mismatches: read.length, rowsRepaired: read.length, timeouts: 0 });
    expect(events.map((e) => [e.op, e.mode, e.repairs.map((r) => r.target)])).toEqual(read.map(() => ['read', 'blocking', [n('n3')]]));
    // A repaired tombstone is sent as a tombstone, with the delete's own timestamp.
    const k9 = events.at(-1)!.repairs[0]!.mutations[0]!;
    expect('cell' in k9 && isTombstone(k9.cell)).toBe(true);

    // Read again: the replicas agree now, nothing left to repair.
    const mismatches = n3.stats().digestMismatches;
    for (const k of read) await ok(c, n3.get('app', k, undefined, { consistency: 'QUORUM' }));
    expect(n3.stats().digestMismatches).toBe(mismatches);
    expect(c.rejectedFrames()).toBe(0);
  });

  it('seed 901: repairs only replicas that answered the read, never the others', async () => {
    const c = await threeNodes(901, 'blocking');
    await ok(c, c.handle('n1').put('app', 'solo', undefined, 'v1', { consistency: 'ALL' }));
    // Only n1 takes v2: n2 and n3 are both cut off.
    c.sim.network.partition([n('n1')], [n('n2'), n('n3')]);
    await ok(c, c.handle('n1').put('app', 'solo', undefined, 'v2', { consistency: 'ONE' }));
    c.sim.network.heal();
    await c.sim.runFor(5);
    // n3 reads from itself and n1 (same rack): n2 is not asked, so it is not repaired.
    const got = await ok(c, c.handle('n3').get('app', 'solo', undefined, { consistency: 'QUORUM' }));
    expect(str(got?.value)).toBe('v2');
    expect(await localOf(c, 'n3', 'solo')).toBe('v2');
    expect(await localOf(c, 'n2', 'solo')).toBe('v1');
  });

  it('seed 902: with read_repair none, reads answer the newest version and repair nothing', async () => {
    const events: ReadRepairEvent[] = [];
    const c = await threeNodes(902, 'none', events);
    await ok(c, c.handle('n1').put('app', 'k', undefined, 'v1', { consistency: 'ALL' }));
    await whileCutOff(c, 'n3', () => ok(c, c.handle('n1').put('app', 'k', undefined, 'v2')).then(() => undefined));
    const got = await ok(c, c.handle('n3').get('app', 'k', undefined, { consistency: 'QUORUM' }));
    expect(str(got?.value)).toBe('v2');
    expect(await localOf(c, 'n3', 'k')).toBe('v1');
    expect(c.handle('n3').stats().readRepair).toEqual({ mismatches: 1, rowsRepaired: 0, timeouts: 0 });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ op: 'read', mode: 'none' });
  });

  it('seed 903: slices repair the rows they cover (dead ones too) and the partition deletion, page by page', async () => {
    const c = await threeNodes(903, 'blocking');
    const h1 = c.handle('n1');
    for (const ck of ['a', 'b', 'c', 'd', 'e', 'f']) await ok(c, h1.put('app', 'wide', ck, `${ck}1`, { consistency: 'ALL' }));
    for (const ck of ['x', 'y']) await ok(c, h1.put('app', 'gone', ck, `${ck}1`, { consistency: 'ALL' }));
    await whileCutOff(c, 'n3', async () => {
      for (const ck of ['b', 'e']) await ok(c, h1.put('app', 'wide', ck, `${ck}2`));
      await ok(c, h1.del('app', 'wide', 'c'));
      await ok(c, h1.deletePartition('app', 'gone'));
    });
    const n3 = c.handle('n3');
    const first = await ok(c, n3.slice('app', 'wide', { limit: 3, consistency: 'QUORUM' }));
    // Replica pages hold a, b, c (c deleted on n1): a page of a and b, resuming after c.
    expect(first.rows.map((r) => `${str(r.clustering)}=${str(r.value)}`)).toEqual(['a=a1', 'b=b2']);
    expect(str(first.nextPage)).toBe('c');
    // The rows it covered are repaired on n3 (the tombstone of c too, or n3 would go on returning c1); e is not yet.
    expect(await Promise.all(['b', 'c', 'e'].map((ck) => localOf(c, 'n3', 'wide', ck)))).toEqual(['b2', 'tombstone', 'e1']);
    const second = await ok(c, n3.slice('app', 'wide', { limit: 3, page: first.nextPage!, consistency: 'QUORUM' }));
    expect(second.rows.map((r) => `${str(r.clustering)}=${str(r.value)}`)).toEqual(['d=d1', 'e=e2', 'f=f1']);
    expect(await localOf(c, 'n3', 'wide', 'e')).toBe('e2');
    expect(n3.stats().readRepair).toMatchObject({ mismatches: 2, rowsRepaired: 3, timeouts: 0 });

    // A partition deletion n3 missed: the slice is empty, and n3 gets the deletion itself.
    const empty = await ok(c, n3.slice('app', 'gone', { consistency: 'QUORUM' }));
    expect(empty.rows).toEqual([]);
    for (const ck of ['x', 'y']) expect(await localOf(c, 'n3', 'gone', ck)).toBe('tombstone');
  });

  /**
   * Four nodes: the coordinator n4 is no replica of the key; the stale
   * replica X shares its rack, so a QUORUM read through n4 asks X for data
   * and one of the others (A, B) for a digest.
   */
  async function raceCluster(seed: number, events: ReadRepairEvent[], onRepair?: (c: Cluster, e: ReadRepairEvent) => void) {
    let cluster: Cluster | undefined;
    const probe = await startCluster({ seed, nodes: ['n1', 'n2', 'n3', 'n4'].map((name) => ({ name })), keyspaces: [keyspace('blocking')] });
    const key = findKey(probe.ring, keyspace('blocking'), (r) => !r.includes(n('n4')));
    const [x, a, b] = probe.ring.naturalReplicas(tokenOf(key), keyspace('blocking').replication) as [NodeId, NodeId, NodeId];
    const c = await startCluster({
      seed,
      nodes: ['n1', 'n2', 'n3', 'n4'].map((name) => ({ name, rack: name === 'n4' || name === x ? 'near' : 'far' })),
      keyspaces: [keyspace('blocking')],
      coordinator: {
        readTimeoutMs: 1_000,
        readRepair: (e) => {
          events.push(e);
          onRepair?.(cluster!, e);
        },
      },
    });
    cluster = c;
    // Same seed, same tokens: the racks do not move the key's replicas.
    expect(c.ring.naturalReplicas(tokenOf(key), keyspace('blocking').replication)).toEqual([x, a, b]);
    await ok(c, c.handle('n4').put('app', key, undefined, 'v1', { consistency: 'ALL' }));
    await whileCutOff(c, x, () => ok(c, c.handle('n4').put('app', key, undefined, 'v2', { consistency: 'QUORUM' })).then(() => undefined));
    return { c, key, x, a, b };
  }

  it('seed 904: a repair racing a newer write never overwrites it (the repair carries the old version\'s timestamp)', async () => {
    const events: ReadRepairEvent[] = [];
    let newer: Promise<{ timestampMicros: number }> | undefined;
    const { c, key, x, a } = await raceCluster(904, events, (cluster, e) => {
      // The read has resolved v2 and is about to send its repair to X: that repair crawls, and a newer
      // write goes through A, whose link to X is fast.
      cluster.sim.network.setLink(n('n4'), e.repairs[0]!.target, { latencyMs: 200 });
      newer = cluster.handle(a).put('app', e.partition, undefined, 'v3', { consistency: 'ONE' });
    });
    const got = await ok(c, c.handle('n4').get('app', key, undefined, { consistency: 'QUORUM' }));
    expect(str(got?.value)).toBe('v2');
    expect(events.map((e) => e.repairs.map((r) => r.target))).toEqual([[x]]);
    const v3 = await ok(c, newer!);
    const repairTs = events[0]!.repairs[0]!.mutations[0]!;
    expect('cell' in repairTs && repairTs.cell.timestampMicros).toBeLessThan(v3.timestampMicros);
    // The repair reached X after v3 did, and lost to it by last-write-wins.
    await c.sim.runFor(1_000);
    expect(await localOf(c, x, key)).toBe('v3');
    const after = await ok(c, c.handle('n4').get('app', key, undefined, { consistency: 'ALL' }));
    expect(str(after?.value)).toBe('v3');
  });

  it('seed 905: a repair write that cannot reach the level in time fails the read with ReadTimeout', async () => {
    const events: ReadRepairEvent[] = [];
    const { c, key, x } = await raceCluster(905, events, (cluster, e) => {
      // The stale replica answered the first read; that read's repair is lost on the way.
      if (events.length === 1) cluster.sim.network.setLink(n('n4'), e.repairs[0]!.target, { loss: 1 });
    });
    const started = c.sim.now;
    const r = await settle(c.sim, c.handle('n4').get('app', key, undefined, { consistency: 'QUORUM' }));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    // Never a silent answer: the version it resolved is on one replica of the two the level needs.
    expect(r.error).toMatchObject({ name: 'ReadTimeout', consistency: 'QUORUM', required: 2, received: 1, dataPresent: true });
    expect(r.error.message).toMatch(/read repair/);
    expect(c.sim.now - started).toBeGreaterThanOrEqual(1_000);
    expect(c.handle('n4').stats().readRepair).toEqual({ mismatches: 1, rowsRepaired: 1, timeouts: 1 });
    expect(c.handle('n4').stats().read.timeouts).toBe(1);
    expect(await localOf(c, x, key)).toBe('v1');
    // With the link back, the next read repairs and answers.
    c.sim.network.setLink(n('n4'), x, { loss: 0 });
    const again = await ok(c, c.handle('n4').get('app', key, undefined, { consistency: 'QUORUM' }));
    expect(str(again?.value)).toBe('v2');
    expect(await localOf(c, x, key)).toBe('v2');
  });
});
