import { describe, expect, it } from 'vitest';
import type { ChorusNode } from '../src/index.js';
import { simCluster } from './sim-cluster.js';

const NAMES = ['n1', 'n2', 'n3'];
const GRACE_SECONDS = 2;
const SWEEP_MS = 500;

type Cell = Awaited<ReturnType<ChorusNode['coordinator']['local']>>;
const show = (cell: Cell) => (cell === undefined ? 'absent' : 'tombstone' in cell ? 'tombstone' : new TextDecoder().decode(cell.value));

/*
 * The resurrection that tombstone_gc: repair prevents. No hints, so a replica
 * that was down during a delete has only the old value; once the others purge
 * the tombstone, a read that asks it brings the value back. A repair keyspace
 * without repairs keeps its tombstones, so the delete holds.
 */
describe('tombstone gc per keyspace in the simulator', () => {
  it('seed 41: a delete a replica missed comes back in a grace keyspace once its tombstones are purged, never in a repair keyspace', async () => {
    const c = await simCluster(41, NAMES, { settings: { gcGraceSeconds: GRACE_SECONDS, gcSweepIntervalMs: SWEEP_MS, hintedHandoffEnabled: false } });
    await c.settle('all UN', c.allUp);
    await c.during(c.node('n1').putKeyspace('graceks', { class: 'SimpleStrategy', rf: 3 }, undefined, 'grace'));
    await c.during(c.node('n1').putKeyspace('repairks', { class: 'SimpleStrategy', rf: 3 }));
    await c.settle('schema everywhere', async () => (await Promise.all(NAMES.map((n) => c.node(n).keyspaces()))).every((k) => k.keyspaces.length === 2));
    expect((await c.during(c.node('n3').keyspaces())).keyspaces.map((k) => [k.name, k.tombstoneGc])).toEqual([['graceks', 'grace'], ['repairks', 'repair']]);

    for (const ks of ['graceks', 'repairks']) await c.during(c.node('n1').coordinator.put(ks, 'k', undefined, 'old', { consistency: 'ALL' }));
    c.sim.crash('n3');
    c.nodes.delete('n3');
    for (const ks of ['graceks', 'repairks']) await c.during(c.node('n1').coordinator.del(ks, 'k', undefined, { consistency: 'QUORUM' }));
    for (const n of ['n1', 'n2']) for (const ks of ['graceks', 'repairks']) expect(show(await c.during(c.node(n).coordinator.local(ks, 'k')))).toBe('tombstone');

    // Past grace and a few sweeps: the grace keyspace's tombstones are gone, the repair keyspace's stay.
    await c.sim.runFor(GRACE_SECONDS * 1_000 + 4 * SWEEP_MS);
    for (const n of ['n1', 'n2']) {
      expect(show(await c.during(c.node(n).coordinator.local('graceks', 'k')))).toBe('absent');
      expect(show(await c.during(c.node(n).coordinator.local('repairks', 'k')))).toBe('tombstone');
    }

    await c.sim.restart('n3');
    await c.settle('n3 restarted', async () => c.nodes.has('n3') && (await c.allUp()));
    // n3 still holds the old value in both keyspaces; a QUORUM read through it asks it first.
    const grace = await c.during(c.node('n3').coordinator.get('graceks', 'k', undefined, { consistency: 'QUORUM' }));
    expect(grace && new TextDecoder().decode(grace.value)).toBe('old');
    for (let sweep = 0; sweep < 4; sweep++) {
      for (const via of NAMES) expect(await c.during(c.node(via).coordinator.get('repairks', 'k', undefined, { consistency: 'QUORUM' }))).toBeUndefined();
      await c.sim.runFor(SWEEP_MS);
    }
  });
});
