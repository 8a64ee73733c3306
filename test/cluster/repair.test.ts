import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, chorus, scaled, stateOf } from './harness.js';

async function http(cluster: TestCluster, node: string, method: string, path: string, body?: string) {
  const response = await fetch(`http://${cluster.address(node)}${path}`, { method, body, signal: AbortSignal.timeout(scaled(10_000)) });
  const text = await response.text();
  return { status: response.status, text, json: () => JSON.parse(text) as Record<string, unknown> };
}

/** A node's own replica of a key, as one comparable string: value and timestamp, a tombstone, or nothing. */
async function local(cluster: TestCluster, node: string, key: string): Promise<string> {
  const got = await http(cluster, node, 'GET', `/v1/local/default/${key}`);
  if (got.status === 404) return 'absent';
  expect(got.status, got.text).toBe(200);
  const j = got.json() as { value: string | null; timestamp: number; tombstone?: boolean };
  return j.tombstone || j.value === null ? `tombstone@${j.timestamp}` : `${Buffer.from(j.value, 'base64').toString('utf8')}@${j.timestamp}`;
}

interface JobStatus {
  id: string;
  state: string;
  rangesTotal: number;
  rangesDone: number;
  rowsCompared: number;
  rowsStreamed: number;
  bytesStreamed: number;
}

const KEYS = Array.from({ length: 300 }, (_, i) => `key-${i}`);
const NAMES = ['n1', 'n2', 'n3'];

describe('anti-entropy repair on a three-node cluster (rf 3, hints off)', () => {
  const cluster = new TestCluster();
  beforeAll(() => cluster.start(3, ['--set', 'hinted_handoff_enabled=false']));
  afterAll(() => cluster.destroy());

  it('a replica that missed writes and deletes while it was down is identical to the others after `chorus repair --wait`; a second repair streams nothing', async () => {
    for (const k of KEYS) expect((await http(cluster, 'n1', 'PUT', `/v1/kv/default/${k}?consistency=ALL`, `${k}-v1`)).status).toBe(200);

    await cluster.stop('n3');
    await cluster.waitFor('n3 DN on n1', async () => (await stateOf(cluster, 'n1', 'n3'))?.state === 'DN', scaled(60_000));
    // While n3 is down: overwrites, new keys, and deletes of keys n3 still holds.
    const changed = KEYS.slice(0, 40);
    const deleted = KEYS.slice(40, 70);
    const added = Array.from({ length: 20 }, (_, i) => `added-${i}`);
    for (const k of [...changed, ...added]) expect((await http(cluster, 'n2', 'PUT', `/v1/kv/default/${k}?consistency=QUORUM`, `${k}-v2`)).status).toBe(200);
    for (const k of deleted) expect((await http(cluster, 'n1', 'DELETE', `/v1/kv/default/${k}?consistency=QUORUM`)).status).toBe(200);
    await cluster.restart();
    await cluster.waitForAllUp(NAMES);
    const all = [...KEYS, ...added];
    const stale = async () => {
      const out: string[] = [];
      for (const k of all) if (new Set(await Promise.all(NAMES.map((n) => local(cluster, n, k)))).size > 1) out.push(k);
      return out;
    };
    expect((await stale()).length).toBe(changed.length + deleted.length + added.length);

    const waited = await chorus(['repair', 'default', '--wait', '--json', '--host', cluster.address('n1')], scaled(300_000));
    const first = JSON.parse(waited) as JobStatus;
    expect(first, waited).toMatchObject({ state: 'done' });
    expect(first.rangesDone).toBe(first.rangesTotal);
    expect(first.rowsStreamed).toBe(changed.length + deleted.length + added.length);
    expect(first.rowsCompared).toBeGreaterThanOrEqual(all.length);
    expect(await stale()).toEqual([]);
    for (const k of deleted) {
      for (const n of NAMES) expect(await local(cluster, n, k)).toMatch(/^tombstone@/);
      expect((await http(cluster, 'n3', 'GET', `/v1/kv/default/${k}?consistency=ONE`)).status).toBe(404);
    }
    expect((await http(cluster, 'n3', 'GET', `/v1/kv/default/${changed[0]}?consistency=ONE`)).text).toBe(`${changed[0]}-v2`);

    // The job stays in the node's history, by HTTP and by the command.
    const byHttp = await http(cluster, 'n1', 'GET', `/v1/repair/${first.id}`);
    expect(byHttp.json()).toMatchObject({ id: first.id, state: 'done', rowsStreamed: first.rowsStreamed });
    expect(await chorus(['repair', 'status', '--host', cluster.address('n1')])).toContain(first.id);

    // Run from another node, over every range it holds: nothing differs any more.
    const again = JSON.parse(await chorus(['repair', 'default', '--wait', '--json', '--host', cluster.address('n2')], scaled(300_000))) as JobStatus;
    expect(again).toMatchObject({ state: 'done', rowsStreamed: 0, bytesStreamed: 0 });
    // Tombstones the first repair put on every replica may be left out now (tombstone_gc repair: they may be purged).
    expect(again.rowsCompared).toBeGreaterThanOrEqual(all.length - deleted.length);

    const metrics = await (await fetch(`http://${cluster.address('n1')}/metrics`)).text();
    expect(metrics).toMatch(/^chorus_repair_rows_streamed_total \d+/m);
  });

  it('a repair with a replica down fails at once, naming it; cancel and unknown jobs answer clearly', async () => {
    await cluster.stop('n2');
    await cluster.waitFor('n2 DN on n1', async () => (await stateOf(cluster, 'n1', 'n2'))?.state === 'DN', scaled(60_000));
    const failed = await chorus(['repair', 'default', '--wait', '--host', cluster.address('n1')], scaled(120_000)).then(
      () => undefined,
      (error: Error) => error.message,
    );
    expect(failed).toMatch(/replica .* is down/);
    await cluster.restart();
    await cluster.waitForAllUp(NAMES);
    const unknown = await http(cluster, 'n1', 'GET', '/v1/repair/no-such-job');
    expect(unknown.status).toBe(404);
    const started = await http(cluster, 'n1', 'POST', '/v1/repair', JSON.stringify({ keyspace: 'default' }));
    expect(started.status, started.text).toBe(200);
    const id = started.json().id as string;
    const cancelled = await http(cluster, 'n1', 'DELETE', `/v1/repair/${id}`);
    expect(cancelled.status).toBe(200);
    expect(['cancelled', 'done']).toContain(cancelled.json().state);
  });
});
