import { nodeId } from '@chorus/core';
import { describe, expect, it } from 'vitest';
import { tokenOf } from '@chorus/ring';
import { ringOf } from '../src/index.js';
import { simCluster } from './sim-cluster.js';

const TIME_SCALE = Math.max(1, Number(process.env.CHORUS_TEST_TIME_SCALE ?? 1) || 1);
const KS = 'ks';
const NAMES = ['n1', 'n2', 'n3', 'n4'];
const STAY = ['n1', 'n2', 'n3'];

/** Four nodes, rf 2, a few keys; n4 starts to decommission and the simulation stops the moment n4 has announced LEFT, before any gossip round could carry it. */
async function leavingUntilLeft(seed: number, onStartFailed?: (name: string, error: unknown) => void) {
  const c = await simCluster(seed, NAMES, { hints: true, ...(onStartFailed ? { onStartFailed } : {}) });
  await c.settle('all UN', c.allUp);
  await c.during(c.node('n1').putKeyspace(KS, { class: 'SimpleStrategy', rf: 2 }));
  await c.settle('schema everywhere', async () => (await Promise.all(NAMES.map((n) => c.node(n).keyspaces()))).every((k) => k.keyspaces.some((x) => x.name === KS)));
  await c.during(Promise.all(Array.from({ length: 40 }, (_, i) => c.node(NAMES[i % 4]!).coordinator.put(KS, `k${i}`, undefined, `v${i}`))));
  const n4 = c.node('n4');
  const { left } = await c.during(n4.decommission());
  let settled: 'resolved' | 'rejected' | undefined;
  left.then(
    () => (settled = 'resolved'),
    () => (settled = 'rejected'),
  );
  const announcedLeft = () => n4.membership().endpoint(nodeId('n4'))?.status === 'LEFT';
  await c.sim.run({ stopWhen: announcedLeft, untilMs: c.sim.now + 600_000 });
  expect(announcedLeft(), `seed ${seed}: n4 announced LEFT`).toBe(true);
  const statusOn = (o: string, of = 'n4') => c.node(o).membership().endpoint(nodeId(of))?.status;
  return { c, left, settled: () => settled, statusOn };
}

describe('decommission: the ring hears that a node left', () => {
  it('seed 874: a leaving node cut off from every peer as it announces LEFT does not finish until, healed, the peers have heard it', async () => {
    const { c, left, settled, statusOn } = await leavingUntilLeft(874);
    c.sim.network.partition([nodeId('n4')], STAY.map((n) => nodeId(n)));
    await c.sim.runFor(60_000);
    expect(STAY.map((o) => statusOn(o)), 'no peer heard LEFT through the partition').toEqual(['LEAVING', 'LEAVING', 'LEAVING']);
    expect(settled(), 'decommission returned while no peer had heard LEFT').toBeUndefined();
    expect(c.nodes.has('n4')).toBe(true);
    c.sim.network.heal();
    const done = await c.during(left);
    expect(done).toMatchObject({ kind: 'decommission', state: 'done', percent: 100 });
    // Every live peer heard it before decommission returned, from n4 itself.
    expect(STAY.map((o) => statusOn(o))).toEqual(['LEFT', 'LEFT', 'LEFT']);
    c.sim.crash('n4');
    c.nodes.delete('n4');
    await c.settle('n4 gone from every ring', async () => (await Promise.all(STAY.map((o) => c.node(o).status()))).every((v) => v.nodes.every((e) => e.name !== 'n4') && v.nodes.filter((e) => e.state === 'UN').length === 3), 120_000);
    for (const o of STAY) expect(ringOf(c.node(o).membership()).members.map((m) => m.node)).toEqual(STAY);
  }, 120_000 * TIME_SCALE);

  it('seed 1420: once it announced LEFT, the node answers no replica request, so a coordinator that has not heard it yet cannot count it', async () => {
    const { c, statusOn } = await leavingUntilLeft(1420);
    // n2 still holds n4 LEAVING: its ring has n4 as a natural replica of the key, beside one other.
    const replication = { class: 'SimpleStrategy' as const, rf: 2 };
    const key = Array.from({ length: 40 }, (_, i) => `k${i}`).find((k) => ringOf(c.node('n2').membership()).naturalReplicas(tokenOf(k), replication).includes(nodeId('n4')))!;
    expect(statusOn('n2')).toBe('LEAVING');
    const read = await c.during(c.node('n2').coordinator.get(KS, key, undefined, { consistency: 'ALL' }).then(() => 'answered', (error: { name: string }) => error.name));
    expect(read, 'a read at ALL counted the answer of a node that left').toBe('ReadTimeout');
  }, 120_000 * TIME_SCALE);

  it('seed 947: a node that crashed right after announcing LEFT and restarts at once gossips LEFT again, refuses to serve, and leaves every ring', async () => {
    const failures: unknown[] = [];
    const { c, statusOn } = await leavingUntilLeft(947, (name, error) => failures.push({ name, error }));
    c.sim.crash('n4');
    c.nodes.delete('n4');
    await c.sim.restart('n4');
    const seen = new Set<string>();
    await c.settle(
      'the restart refused',
      () => {
        for (const o of STAY) seen.add(`${statusOn(o)}`);
        return failures.length > 0 || c.nodes.has('n4');
      },
      120_000,
    );
    expect(c.nodes.has('n4'), 'the node that left serves again').toBe(false);
    expect(failures).toHaveLength(1);
    const { name, error } = failures[0] as { name: string; error: { name: string; message: string; fields: Record<string, unknown> } };
    expect(name).toBe('n4');
    expect(error).toMatchObject({ name: 'NodeRemoved', fields: { status: 'LEFT' } });
    expect(error.message).toMatch(/^this node \(host id [0-9a-f-]+\) left the ring, as n[123] reports;/);
    expect([...seen].includes('NORMAL'), `n4 came back NORMAL: ${[...seen].join(', ')}`).toBe(false);
    expect(STAY.map((o) => statusOn(o))).toEqual(['LEFT', 'LEFT', 'LEFT']);
    await c.settle('n4 gone from every ring', async () => (await Promise.all(STAY.map((o) => c.node(o).status()))).every((v) => v.nodes.every((e) => e.name !== 'n4') && v.nodes.filter((e) => e.state === 'UN').length === 3), 120_000);
    // Its data stays on its disk, untouched: a restart again is refused the same way.
    failures.length = 0;
    c.sim.crash('n4');
    await c.sim.restart('n4');
    await c.settle('the second restart refused', () => failures.length > 0 || c.nodes.has('n4'), 120_000);
    expect(c.nodes.has('n4')).toBe(false);
    expect(failures[0]).toMatchObject({ name: 'n4', error: { name: 'NodeRemoved' } });
  }, 120_000 * TIME_SCALE);
});
