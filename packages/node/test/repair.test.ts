import type { RepairRequest } from '@chorus/anti-entropy';
import { nodeId } from '@chorus/core';
import { type Cell, compareCells } from '@chorus/model';
import { describe, expect, it } from 'vitest';
import type { NodeSettings } from '../src/index.js';
import { simCluster } from './sim-cluster.js';

const NAMES = ['n1', 'n2', 'n3'];
const ids = (names: string[]) => names.map((n) => nodeId(n));

async function cluster(seed: number, extra: Partial<NodeSettings> = {}) {
  const c = await simCluster(seed, NAMES, { settings: extra });
  await c.settle('all UN', c.allUp);
  await c.during(c.node('n1').putKeyspace('app', { class: 'SimpleStrategy', rf: 3 }, 'none'));
  await c.settle('schema everywhere', async () => (await Promise.all(NAMES.map((n) => c.node(n).keyspaces()))).every((k) => k.keyspaces.some((x) => x.name === 'app')));
  const crash = (name: string) => {
    c.sim.crash(name);
    c.nodes.delete(name);
  };
  const restart = async (name: string) => {
    await c.sim.restart(name);
    await c.settle(`${name} restarted`, () => c.nodes.has(name));
  };
  const local = (name: string, key: string, clustering?: string) => c.during(c.node(name).coordinator.local('app', key, clustering));
  const job = (name: string, id: string) => c.node(name).repair.status(id)!;
  const repairAndWait = async (name: string, request: RepairRequest = { keyspace: 'app' }) => {
    const { id } = await c.during(c.node(name).repair.start(request));
    await c.settle(`repair ${id} ended`, () => c.nodes.has(name) && job(name, id).state !== 'running', 600_000);
    return job(name, id);
  };
  return { ...c, crash, restart, local, job, repairAndWait };
}

const show = (cell: Cell | undefined) => (cell === undefined ? 'absent' : 'tombstone' in cell ? `T@${cell.timestampMicros}` : `${new TextDecoder().decode(cell.value)}@${cell.timestampMicros}${cell.expiresAtMicros ? `~${cell.expiresAtMicros}` : ''}`);

describe('anti-entropy repair in the simulator', () => {
  it('seed 31: replicas that diverged both ways become identical, streaming only the rows that differ; a second repair streams nothing', async () => {
    const c = await cluster(31);
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    await c.during(Promise.all(keys.map((k) => c.node('n1').coordinator.put('app', k, undefined, `v-${k}`, { consistency: 'ALL' }))));
    await c.during(Promise.all(['c0', 'c1', 'c2'].map((ck) => c.node('n1').coordinator.put('app', 'wide', ck, `w-${ck}`, { consistency: 'ALL' }))));

    // n3 is cut off: the majority writes without it, and it takes writes of its own at ONE.
    c.sim.network.partition(ids(['n3']), ids(['n1', 'n2']));
    await c.during(Promise.all(keys.slice(0, 20).map((k) => c.node('n1').coordinator.put('app', k, undefined, `new-${k}`, { consistency: 'QUORUM' }))));
    await c.during(Promise.all(keys.slice(20, 40).map((k) => c.node('n2').coordinator.del('app', k, undefined, { consistency: 'QUORUM' }))));
    await c.during(c.node('n1').coordinator.put('app', 'short', undefined, 'brief', { consistency: 'QUORUM', ttlSeconds: 1 }));
    await c.during(c.node('n1').coordinator.deletePartition('app', 'wide', { consistency: 'QUORUM' }));
    await c.during(Promise.all(keys.slice(40, 45).map((k) => c.node('n3').coordinator.put('app', k, undefined, `n3-${k}`, { consistency: 'ONE' }))));
    await c.during(c.node('n3').coordinator.put('app', 'only-on-n3', undefined, 'mine', { consistency: 'ONE' }));
    c.sim.network.heal();
    await c.settle('all UN again', c.allUp);

    const all: Array<[string, string | undefined]> = [...keys, 'short', 'only-on-n3'].map((k) => [k, undefined]);
    all.push(...['c0', 'c1', 'c2'].map((ck): [string, string] => ['wide', ck]));
    const differing = async () => {
      let n = 0;
      for (const [k, ck] of all) {
        const cells = await Promise.all(NAMES.map((name) => c.local(name, k, ck)));
        if (new Set(cells.map(show)).size > 1) n++;
      }
      return n;
    };
    expect(await differing()).toBe(20 + 20 + 1 + 3 + 5 + 1);

    const first = await c.repairAndWait('n2');
    expect(first, `seed 31: ${JSON.stringify(first)}`).toMatchObject({ state: 'done', keyspaces: ['app'], rangesFailed: 0 });
    expect(first.rangesDone).toBe(first.rangesTotal);
    expect(first.rangesTotal).toBeGreaterThan(0);
    expect(await differing()).toBe(0);
    // n3 lacked 20 values, 20 tombstones, the TTL cell and the partition deletion (and its 3 rows still read live there);
    // n1 and n2 each lacked n3's 6 writes.
    expect(first.rowsStreamed).toBe(20 + 20 + 1 + 1 + 3 + 6 * 2);
    expect(first.bytesStreamed).toBeGreaterThan(0);
    expect(first.rowsCompared).toBeGreaterThanOrEqual(keys.length);
    // The newest version won everywhere, in both directions.
    expect(show(await c.local('n3', 'k0'))).toMatch(/^new-k0@/);
    expect(show(await c.local('n1', 'k40'))).toMatch(/^n3-k40@/);
    expect(show(await c.local('n2', 'k20'))).toMatch(/^T@/);
    expect(show(await c.local('n1', 'only-on-n3'))).toMatch(/^mine@/);
    expect(show(await c.local('n3', 'wide', 'c1'))).toMatch(/^T@/);

    const second = await c.repairAndWait('n3');
    expect(second).toMatchObject({ state: 'done', rowsStreamed: 0, bytesStreamed: 0 });
    expect(second.rowsCompared).toBeGreaterThan(0);
    expect(c.node('n3').repair.jobs().map((j) => j.id)).toContain(second.id);
  });

  it('seed 32: a range whose replica is down fails at once with the reason, and the job says which ranges failed', async () => {
    const c = await cluster(32);
    await c.during(c.node('n1').coordinator.put('app', 'k', undefined, 'v', { consistency: 'ALL' }));
    c.crash('n3');
    await c.settle('n3 DN on n1', async () => (await c.node('n1').status()).nodes.find((e) => e.name === 'n3')?.state === 'DN');
    const started = c.sim.now;
    const job = await c.repairAndWait('n1');
    expect(job.state).toBe('failed');
    expect(job.rangesFailed).toBe(job.rangesTotal);
    expect(job.error).toMatch(/range\(s\) failed; first: app .*replica n3 is down/);
    expect(job.failures![0]).toMatchObject({ keyspace: 'app', reason: 'replica n3 is down' });
    expect(c.sim.now - started).toBeLessThan(5_000);
    // A failed range is not recorded as repaired: repair-based tombstone GC must not trust it.
    expect(c.node('n1').repair.jobs()).toHaveLength(1);
  });

  it('seed 33: a cancelled job stops between sessions and says so; a bad request is refused before anything starts', async () => {
    const c = await cluster(33, { repairThrottleBytesPerSec: 2_000 });
    await c.during(Promise.all(Array.from({ length: 100 }, (_, i) => c.node('n1').coordinator.put('app', `k${i}`, undefined, 'x'.repeat(200), { consistency: 'ONE' }))));
    c.crash('n2');
    await c.during(Promise.all(Array.from({ length: 100 }, (_, i) => c.node('n1').coordinator.put('app', `k${i}`, undefined, 'y'.repeat(200), { consistency: 'ONE' }))));
    await c.restart('n2');
    await c.settle('all UN again', c.allUp);
    const { id } = await c.during(c.node('n1').repair.start({ keyspace: 'app' }));
    await c.sim.runFor(3_000);
    expect(c.job('n1', id).state).toBe('running');
    const cancelled = await c.during(c.node('n1').repair.cancel(id));
    expect(cancelled).toMatchObject({ id, state: 'cancelled', error: 'cancelled' });
    expect(cancelled!.rangesDone).toBeLessThan(cancelled!.rangesTotal);
    expect(await c.during(c.node('n1').repair.cancel('no-such-job'))).toBeUndefined();

    await expect(c.during(c.node('n1').repair.start({ keyspace: 'nope' }))).rejects.toMatchObject({ name: 'InvalidRequest' });
    await expect(c.during(c.node('n1').repair.start({ keyspace: 'system' }))).rejects.toMatchObject({ name: 'InvalidRequest' });
    await expect(c.during(c.node('n1').repair.start({ keyspace: 'app', startToken: '5' }))).rejects.toMatchObject({ name: 'InvalidRequest' });
    await expect(c.during(c.node('n1').repair.start({ keyspace: 'app', parallel: 99 }))).rejects.toMatchObject({ name: 'InvalidRequest' });
  });

  it('seed 34: a job running when its node crashes resumes after the restart with the ranges it had left', async () => {
    const c = await cluster(34, { repairThrottleBytesPerSec: 5_000 });
    await c.during(Promise.all(Array.from({ length: 120 }, (_, i) => c.node('n1').coordinator.put('app', `k${i}`, undefined, 'x'.repeat(300), { consistency: 'ALL' }))));
    c.crash('n3');
    await c.during(Promise.all(Array.from({ length: 120 }, (_, i) => c.node('n1').coordinator.put('app', `k${i}`, undefined, 'z'.repeat(300), { consistency: 'QUORUM' }))));
    await c.restart('n3');
    await c.settle('all UN again', c.allUp);
    const { id } = await c.during(c.node('n2').repair.start({ keyspace: 'app', parallel: 2 }));
    await c.settle('some ranges repaired', () => c.job('n2', id).rangesDone > 0);
    const before = c.job('n2', id);
    expect(before.state).toBe('running');
    c.crash('n2');
    await c.restart('n2');
    await c.settle('resumed job ended', () => c.nodes.has('n2') && c.job('n2', id)?.state !== 'running', 600_000);
    const after = c.job('n2', id);
    expect(after, `seed 34: ${JSON.stringify(after)}`).toMatchObject({ id, state: 'done', rangesFailed: 0 });
    expect(after.rangesDone).toBe(after.rangesTotal);
    for (let i = 0; i < 120; i++) expect(show(await c.local('n3', `k${i}`))).toMatch(/^z+@/);
  });

  it('seed 35: scheduled repair runs --pr on every node in turn, and finished jobs are kept up to repair_history_size, across restarts', async () => {
    const c = await cluster(35, { repairScheduleIntervalMs: 30_000, repairHistorySize: 2 });
    await c.during(c.node('n1').coordinator.put('app', 'k', undefined, 'v', { consistency: 'ALL' }));
    await c.sim.runFor(95_000);
    const scheduled = NAMES.map((name) => c.node(name).repair.jobs().filter((j) => j.scheduled));
    for (const [i, jobs] of scheduled.entries()) {
      expect(jobs.length, `seed 35: ${NAMES[i]} ran ${jobs.length} scheduled repairs`).toBe(2);
      for (const j of jobs) expect(j).toMatchObject({ state: 'done', rangesFailed: 0 });
    }
    // Three nodes, one interval: each starts a third of an interval after the one before it.
    const offsets = scheduled.map((jobs) => Math.round((jobs[0]!.startedAtMicros / 1000) % 30_000)).sort((a, b) => a - b);
    expect(offsets[1]! - offsets[0]!).toBeGreaterThanOrEqual(9_000);
    expect(offsets[2]! - offsets[1]!).toBeGreaterThanOrEqual(9_000);
    // --pr on every node covers each range once: the ranges of one round add up to the ring.
    expect(scheduled.reduce((n, jobs) => n + jobs[0]!.rangesTotal, 0)).toBe(3 * 16);

    const kept = c.node('n1').repair.jobs().map((j) => j.id);
    c.crash('n1');
    await c.restart('n1');
    expect(c.node('n1').repair.jobs().map((j) => j.id)).toEqual(kept);
  });

  for (const seed of [41, 42, 43]) {
    it(`seed ${seed}: under message loss and a replica crash mid-session, a job completes correctly or fails with reasons, and never leaves a replica older than it was`, async () => {
      const c = await cluster(seed, { repairThrottleBytesPerSec: 20_000 });
      const keys = Array.from({ length: 150 }, (_, i) => `k${i}`);
      await c.during(Promise.all(keys.map((k) => c.node('n1').coordinator.put('app', k, undefined, `a-${k}`, { consistency: 'ALL' }))));
      c.crash('n3');
      await c.during(Promise.all(keys.slice(0, 60).map((k, i) => (i % 3 === 0 ? c.node('n1').coordinator.del('app', k, undefined, { consistency: 'QUORUM' }) : c.node('n2').coordinator.put('app', k, undefined, `b-${k}`, { consistency: 'QUORUM' })))));
      await c.restart('n3');
      await c.settle('all UN again', c.allUp);
      const before = new Map<string, Array<Cell | undefined>>();
      for (const k of keys) before.set(k, await Promise.all(NAMES.map((n) => c.local(n, k))));

      c.sim.network.setDefaults({ loss: 0.03 });
      const { id } = await c.during(c.node('n1').repair.start({ keyspace: 'app', parallel: 2 }));
      await c.sim.runFor(1_500);
      c.crash('n2');
      await c.sim.runFor(3_000);
      await c.restart('n2');
      await c.settle(`job ${id} ended`, () => c.job('n1', id).state !== 'running', 1_800_000);
      c.sim.network.setDefaults({ loss: 0 });
      const job = c.job('n1', id);
      expect(['done', 'failed'], `seed ${seed}: ${JSON.stringify(job)}`).toContain(job.state);
      if (job.state === 'failed') {
        expect(job.failures!.length).toBeGreaterThan(0);
        for (const f of job.failures!) expect(f.reason.length).toBeGreaterThan(0);
      }
      for (const k of keys) {
        const now = await Promise.all(NAMES.map((n) => c.local(n, k)));
        now.forEach((cell, i) => {
          const was = before.get(k)![i];
          if (was !== undefined) expect(cell === undefined ? -1 : compareCells(cell, was), `seed ${seed}: ${k} on ${NAMES[i]} went back from ${show(was)} to ${show(cell)}`).toBeGreaterThanOrEqual(0);
        });
      }
      // Whatever the first job left, a repair without faults finishes the work.
      const clean = await c.repairAndWait('n1');
      expect(clean.state, `seed ${seed}: ${JSON.stringify(clean)}`).toBe('done');
      for (const k of keys) expect(new Set((await Promise.all(NAMES.map((n) => c.local(n, k)))).map(show)).size, `seed ${seed}: ${k}`).toBe(1);
    });
  }
});
