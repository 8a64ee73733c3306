import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, chorus, scaled, stateOf } from './harness.js';

const GRACE_SECONDS = 2;
const SWEEP_MS = 500;
const NODES = ['n1', 'n2', 'n3'];

async function http(cluster: TestCluster, node: string, method: string, path: string, body?: string) {
  const response = await fetch(`http://${cluster.address(node)}${path}`, { method, body, signal: AbortSignal.timeout(scaled(10_000)) });
  const text = await response.text();
  return { status: response.status, text, json: () => JSON.parse(text) as Record<string, unknown> };
}

/** What a node's own replica holds for the key: its value, 'tombstone', or 'absent' once nothing is left (purged). */
async function local(cluster: TestCluster, node: string, keyspace: string, key: string): Promise<string> {
  const got = await http(cluster, node, 'GET', `/v1/local/${keyspace}/${key}`);
  if (got.status === 404) return 'absent';
  expect(got.status, got.text).toBe(200);
  const cell = got.json() as { value: string | null; tombstone: boolean };
  return cell.tombstone ? 'tombstone' : Buffer.from(cell.value!, 'base64').toString('utf8');
}

/*
 * What tombstone_gc is for. Hinted handoff is off, so n3, down during a
 * delete, keeps the old value until something repairs it. Once the other
 * replicas purge the tombstone, a QUORUM read that asks n3 finds the old
 * value alone and read repair spreads it: the delete is undone. In a
 * `repair` keyspace no repair has run, so the tombstones stay and the
 * delete holds, sweep after sweep, until a repair has put the tombstone on
 * every replica; then it is purged everywhere.
 */
describe('tombstone_gc per keyspace on a three-node cluster (rf 3, no hints)', () => {
  const cluster = new TestCluster();
  beforeAll(() =>
    cluster.start(3, ['--set', 'hinted_handoff_enabled=false', '--set', `gc_grace_seconds=${GRACE_SECONDS}`, '--set', `gc_sweep_interval=${SWEEP_MS}ms`]),
  );
  afterAll(() => cluster.destroy());

  it('creates keyspaces with --tombstone-gc (repair by default) and lists them', async () => {
    await chorus(['keyspace', 'create', 'gcgrace', '--rf', '3', '--tombstone-gc', 'grace', '--host', cluster.address('n1')]);
    await chorus(['keyspace', 'create', 'gcrepair', '--rf', '3', '--host', cluster.address('n2')]);
    await cluster.waitFor(
      'both keyspaces on every node',
      async () => {
        for (const node of NODES) {
          const list = (await http(cluster, node, 'GET', '/v1/keyspaces')).json().keyspaces as Array<{ name: string; tombstone_gc: string }>;
          if (list.find((k) => k.name === 'gcgrace')?.tombstone_gc !== 'grace' || list.find((k) => k.name === 'gcrepair')?.tombstone_gc !== 'repair') return false;
        }
        return true;
      },
      scaled(30_000),
    );
    const listed = JSON.parse(await chorus(['keyspace', 'list', '--json', '--host', cluster.address('n3')])) as { keyspaces: Array<{ name: string; tombstone_gc: string }> };
    expect(listed.keyspaces.map((k) => [k.name, k.tombstone_gc])).toEqual([['default', 'repair'], ['gcgrace', 'grace'], ['gcrepair', 'repair']]);
    expect(await chorus(['keyspace', 'list', '--host', cluster.address('n3')])).toMatch(/^gcgrace .*tombstone_gc=grace$/m);
    const bad = await http(cluster, 'n1', 'PUT', '/v1/keyspaces/other', JSON.stringify({ replication: { class: 'SimpleStrategy', rf: 3 }, tombstone_gc: 'never' }));
    expect(bad.status).toBe(400);
    expect(bad.json()).toMatchObject({ error: 'InvalidRequest', field: 'tombstone_gc' });
  });

  it('a delete n3 missed comes back in the grace keyspace once the tombstones are purged, and never in the repair keyspace', async () => {
    for (const ks of ['gcgrace', 'gcrepair']) expect((await http(cluster, 'n1', 'PUT', `/v1/kv/${ks}/k?consistency=ALL`, 'old')).status).toBe(200);
    await cluster.stop('n3');
    await cluster.waitFor('n3 DN on n1 and n2', async () => (await stateOf(cluster, 'n1', 'n3'))?.state === 'DN' && (await stateOf(cluster, 'n2', 'n3'))?.state === 'DN', scaled(60_000));
    for (const ks of ['gcgrace', 'gcrepair']) {
      const deleted = await http(cluster, 'n1', 'DELETE', `/v1/kv/${ks}/k?consistency=QUORUM`);
      expect(deleted.status, deleted.text).toBe(200);
      for (const node of ['n1', 'n2']) expect(await local(cluster, node, ks, 'k')).toBe('tombstone');
    }
    const deletedAt = Date.now();

    // gc grace, then a sweep: the grace keyspace's tombstones go; the repair keyspace's stay.
    await cluster.waitFor('the grace tombstones purged on n1 and n2', async () => (await local(cluster, 'n1', 'gcgrace', 'k')) === 'absent' && (await local(cluster, 'n2', 'gcgrace', 'k')) === 'absent', scaled(60_000));
    console.log(`grace keyspace: tombstones purged ${Date.now() - deletedAt} ms after the delete (gc_grace_seconds ${GRACE_SECONDS}, gc_sweep_interval ${SWEEP_MS} ms)`);
    expect(Date.now() - deletedAt).toBeGreaterThanOrEqual(GRACE_SECONDS * 1_000 - 100);
    for (const node of ['n1', 'n2']) expect(await local(cluster, node, 'gcrepair', 'k')).toBe('tombstone');

    await cluster.restart();
    await cluster.waitForAllUp(NODES);
    for (const ks of ['gcgrace', 'gcrepair']) expect(await local(cluster, 'n3', ks, 'k')).toBe('old');

    // Grace: through n3, a QUORUM read meets n3's old value and no tombstone anywhere. The deleted value is back.
    const resurrected = await http(cluster, 'n3', 'GET', '/v1/kv/gcgrace/k?consistency=QUORUM');
    expect(resurrected.status, resurrected.text).toBe(200);
    expect(resurrected.text).toBe('old');

    // Repair: the tombstones outlive every sweep, so the delete holds through any coordinator.
    await cluster.holds(
      'the deleted key in the repair keyspace reads as absent at QUORUM',
      async () => {
        for (const node of NODES) if ((await http(cluster, node, 'GET', '/v1/kv/gcrepair/k?consistency=QUORUM')).status !== 404) return false;
        return true;
      },
      scaled(8 * SWEEP_MS),
    );
    for (const node of ['n1', 'n2']) expect(await local(cluster, node, 'gcrepair', 'k')).toBe('tombstone');
  });

  it('after a repair of the repair keyspace its tombstone is on every replica, then purged everywhere, and the delete still holds', async () => {
    const job = JSON.parse(await chorus(['repair', 'gcrepair', '--wait', '--json', '--host', cluster.address('n1')], scaled(120_000))) as { state: string; rowsStreamed: number };
    expect(job).toMatchObject({ state: 'done' });
    // The read repair of the reads above may already have brought n3 the tombstone; if not, this repair did.
    expect(job.rowsStreamed).toBeLessThanOrEqual(1);
    // The repair started after every replica stored the tombstone: gc may purge it now, on every node.
    await cluster.waitFor(
      'the repair keyspace tombstone purged on every node',
      async () => {
        for (const node of NODES) if ((await local(cluster, node, 'gcrepair', 'k')) !== 'absent') return false;
        return true;
      },
      scaled(60_000),
    );
    for (const node of NODES) expect((await http(cluster, node, 'GET', '/v1/kv/gcrepair/k?consistency=ALL')).status).toBe(404);
  });
});
