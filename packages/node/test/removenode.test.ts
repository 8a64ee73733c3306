import { isChorusError, nodeId } from '@chorus/core';
import type { Cell } from '@chorus/model';
import { tokenOf } from '@chorus/ring';
import { describe, expect, it } from 'vitest';
import { DEFAULT_KEYSPACE, ringOf } from '../src/index.js';
import { type WriteRecord, compareVersions, describeCell, newestAcknowledged, untraceable } from '@chorus/history';
import { simCluster } from './sim-cluster.js';

const NAMES = ['n1', 'n2', 'n3', 'n4'];
const STAY = ['n1', 'n2', 'n3'];
const KS = DEFAULT_KEYSPACE;
const show = (cell: Cell | undefined) => describeCell(cell).slice(0, 60);

type Cluster = Awaited<ReturnType<typeof simCluster>>;

async function crashForGood(c: Cluster, name: string): Promise<string> {
  const hostId = c.node(name).hostId;
  c.sim.crash(name);
  c.nodes.delete(name);
  await c.settle(`${name} DN everywhere`, async () => (await Promise.all(STAY.map((n) => c.node(n).status()))).every((v) => v.nodes.some((e) => e.name === name && e.state === 'DN')));
  return hostId;
}

describe("removenode: the ring re-replicates a dead node's ranges from the surviving replicas", () => {
  it('seed 81: while clients write at QUORUM, every acknowledged key ends on rf replicas of the new ring and reads at ALL; a live node or an unknown host id is refused', async () => {
    const c = await simCluster(81, NAMES, { hints: true, settings: { streamThroughputBytesPerSec: 40_000 } });
    await c.settle('all UN', c.allUp);
    await c.during(c.node('n1').putKeyspace(KS, { class: 'SimpleStrategy', rf: 2 }));
    await c.settle('schema everywhere', async () => (await Promise.all(NAMES.map((n) => c.node(n).keyspaces()))).every((k) => k.keyspaces.some((x) => x.name === KS)));
    const writes: WriteRecord[] = [];
    let seq = 0;
    const put = async (via: string, key: string) => {
      const rec: WriteRecord = { id: writes.length + 1, op: 'put', key, consistency: 'QUORUM', via, startMs: c.sim.now, startSeq: ++seq, outcome: 'unknown', value: `${key}#${writes.length + 1}:${'x'.repeat(400)}` };
      writes.push(rec);
      try {
        rec.timestampMicros = (await c.node(via).coordinator.put(KS, key, undefined, rec.value!, { consistency: 'QUORUM' })).timestampMicros;
        rec.outcome = 'ok';
      } catch (error) {
        rec.outcome = isChorusError(error) && error.name === 'Unavailable' ? 'failed' : 'unknown';
      }
      rec.endMs = c.sim.now;
      rec.endSeq = ++seq;
    };
    const keys = Array.from({ length: 300 }, (_, i) => `k${i}`);
    for (let at = 0; at < keys.length; at += 50) await c.during(Promise.all(keys.slice(at, at + 50).map((k, i) => put(NAMES[i % 4]!, k))));
    expect(writes.every((w) => w.outcome === 'ok')).toBe(true);

    const dead = await crashForGood(c, 'n4');
    await expect(c.during(c.node('n1').removeNode(c.node('n2').hostId))).rejects.toMatchObject({ name: 'RemoveNodeRefused', httpStatus: 409, fields: { reason: 'alive' } });
    await expect(c.during(c.node('n1').removeNode(c.node('n1').hostId))).rejects.toMatchObject({ name: 'RemoveNodeRefused', httpStatus: 409, fields: { reason: 'self' } });
    await expect(c.during(c.node('n1').removeNode('00000000-0000-4000-8000-000000000000'))).rejects.toMatchObject({ name: 'UnknownHostId', httpStatus: 404 });

    let removing = true;
    const sleep = (ms: number) => new Promise<void>((resolve) => c.sim.at(c.sim.now + ms, 'client sleep', resolve));
    const client = async (i: number) => {
      for (let n = 0; removing; n++) {
        await sleep(40 + ((i * 7 + n) % 5) * 10);
        await put(STAY[(i + n) % 3]!, n % 2 === 0 ? `c${i}-${n}` : keys[(i * 31 + n * 17) % keys.length]!);
      }
    };
    const clients = Promise.all([0, 1, 2].map(client));
    const { movement, removed } = await c.during(c.node('n1').removeNode(dead));
    expect(movement).toMatchObject({ kind: 'removenode', targets: expect.any(Array) });
    expect(movement.sources).not.toContain('n4');
    const done = await c.during(removed);
    await c.settle('n4 gone from every view', async () => (await Promise.all(STAY.map((n) => c.node(n).status()))).every((v) => v.nodes.every((e) => e.name !== 'n4') && v.nodes.filter((e) => e.state === 'UN').length === 3), 600_000);
    removing = false;
    await c.during(clients);
    expect(done, JSON.stringify(done)).toMatchObject({ kind: 'removenode', state: 'done', percent: 100 });
    expect(done.rowsStreamed).toBeGreaterThan(0);
    expect((await c.node('n1').streams()).streams.map((s) => `${s.kind} ${s.state}`)).toEqual(['removenode done', 'removenode done']);
    expect(writes.filter((w) => w.key.startsWith('c') && w.outcome === 'ok').length, 'new keys acknowledged during the removal').toBeGreaterThan(20);

    const status = await c.node('n2').status();
    const owns = status.nodes.reduce((n, e) => n + (e.owns ?? 0), 0);
    expect(owns).toBeCloseTo(2, 5);
    const ring = ringOf(c.node('n1').membership());
    expect(ring.members.map((m) => `${m.node}:${m.status}`)).toEqual(['n1:normal', 'n2:normal', 'n3:normal']);
    const replication = { class: 'SimpleStrategy' as const, rf: 2 };
    const newest = newestAcknowledged(writes);
    const problems: string[] = [];
    // Each replica's own copy first, before any read repairs it.
    for (const [key, best] of newest) {
      const replicas = ring.naturalReplicas(tokenOf(key), replication);
      if (replicas.length !== 2) problems.push(`${key}: ${replicas.length} replicas`);
      for (const r of replicas) {
        const cell = await c.during(c.node(r).coordinator.local(KS, key));
        if (compareVersions(cell, best.cell) < 0) problems.push(`${key}: ${r} holds ${show(cell)}, older than the acknowledged ${show(best.cell)}`);
      }
    }
    for (const key of newest.keys()) {
      const cell = await c.during(c.node('n3').coordinator.getCell(KS, key, undefined, { consistency: 'ALL' }));
      const best = newest.get(key)!;
      if (compareVersions(cell, best.cell) < 0) problems.push(`${key}: read at ALL returned ${show(cell)}, older than ${show(best.cell)}`);
      const why = untraceable(writes, key, cell);
      if (why !== undefined) problems.push(why);
    }
    expect(problems).toEqual([]);
    // No hints are kept for a host id that is gone for good.
    for (const n of STAY) expect((await c.node(n).hints()).targets.filter((t) => t.hostId === dead)).toEqual([]);
  });
});

describe('a removed node stays removed', () => {
  it('seed 82: an observer restarted alone still knows the removal, does not take the node back, and the removed node refuses to start', async () => {
    let refusal: unknown;
    const c = await simCluster(82, NAMES, { onStartFailed: (_name, error) => (refusal = error) });
    await c.settle('all UN', c.allUp);
    const dead = await crashForGood(c, 'n4');
    const { removed } = await c.during(c.node('n1').removeNode(dead));
    await c.during(removed);
    await c.settle('n4 gone from every view', async () => (await Promise.all(STAY.map((n) => c.node(n).status()))).every((v) => v.nodes.every((e) => e.name !== 'n4')));
    // Every observer goes down; the seed comes back alone, with nothing but its own disk to remember the removal by.
    for (const n of STAY) {
      c.sim.crash(n);
      c.nodes.delete(n);
    }
    await c.sim.runFor(5_000);
    await c.sim.restart('n1');
    await c.settle('n1 serving again', () => c.nodes.has('n1'), 200_000);
    await c.sim.restart('n4');
    await c.settle('n4 refused', () => refusal !== undefined || c.nodes.has('n4'), 200_000);
    expect(c.nodes.has('n4')).toBe(false);
    expect(refusal).toMatchObject({ name: 'NodeRemoved' });
    expect((refusal as Error).message).toMatch(/^this node \(host id [0-9a-f-]+\) was removed from the ring/);
    await c.sim.runFor(10_000);
    expect((await c.during(c.node('n1').status())).nodes.filter((e) => e.name === 'n4')).toEqual([]);
    expect(c.node('n1').membership().isAlive(nodeId('n4'))).toBe(false);
  });
});
