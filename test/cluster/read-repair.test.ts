import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, chorus, scaled, stateOf } from './harness.js';

async function http(cluster: TestCluster, node: string, method: string, path: string, body?: string) {
  const response = await fetch(`http://${cluster.address(node)}${path}`, { method, body, signal: AbortSignal.timeout(scaled(10_000)) });
  const text = await response.text();
  return { status: response.status, text, json: () => JSON.parse(text) as Record<string, unknown>, timestamp: response.headers.get('x-chorus-timestamp') };
}

/** What a node's own replica holds: the value as text, or null when it holds nothing. */
async function local(cluster: TestCluster, node: string, keyspace: string, key: string): Promise<string | null> {
  const got = await http(cluster, node, 'GET', `/v1/local/${keyspace}/${key}`);
  if (got.status === 404) return null;
  expect(got.status, got.text).toBe(200);
  const value = got.json().value as string | null;
  return value === null ? null : Buffer.from(value, 'base64').toString('utf8');
}

function metric(text: string, name: string): number {
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
}

const KEYS = Array.from({ length: 12 }, (_, i) => `rr-${i}`);
const READ = KEYS.slice(0, 6);
const UNREAD = KEYS.slice(6);

describe('blocking read repair on a three-node cluster (rf 3)', () => {
  const cluster = new TestCluster();
  // Hints would bring n3 up to date on their own after SIGCONT; this test is about what reads repair.
  beforeAll(() => cluster.start(3, ['--set', 'hinted_handoff_enabled=false']));
  afterAll(() => cluster.destroy());

  it('creates a keyspace without read repair from the command line and lists it', async () => {
    await chorus(['keyspace', 'create', 'norepair', '--rf', '3', '--read-repair', 'none', '--host', cluster.address('n1')]);
    await cluster.waitFor(
      'keyspace norepair on every node',
      async () => {
        for (const node of ['n1', 'n2', 'n3']) {
          const list = (await http(cluster, node, 'GET', '/v1/keyspaces')).json().keyspaces as Array<{ name: string; read_repair: string }>;
          if (list.find((k) => k.name === 'norepair')?.read_repair !== 'none') return false;
        }
        return true;
      },
      scaled(30_000),
    );
    const listed = JSON.parse(await chorus(['keyspace', 'list', '--json', '--host', cluster.address('n2')])) as { keyspaces: Array<{ name: string; read_repair: string }> };
    expect(listed.keyspaces.map((k) => [k.name, k.read_repair])).toEqual([['default', 'blocking'], ['norepair', 'none']]);
    expect(await chorus(['keyspace', 'list', '--host', cluster.address('n3')])).toMatch(/^norepair .*read_repair=none  tombstone_gc=repair$/m);
    const bad = await http(cluster, 'n1', 'PUT', '/v1/keyspaces/other', JSON.stringify({ replication: { class: 'SimpleStrategy', rf: 3 }, read_repair: 'sometimes' }));
    expect(bad.status).toBe(400);
    expect(bad.json()).toMatchObject({ error: 'InvalidRequest' });
  });

  it('QUORUM reads return the newest value and repair exactly the keys read on the stale replica', async () => {
    for (const k of KEYS) expect((await http(cluster, 'n1', 'PUT', `/v1/kv/default/${k}?consistency=ALL`, `${k}-old`)).status).toBe(200);
    expect((await http(cluster, 'n1', 'PUT', '/v1/kv/norepair/k?consistency=ALL', 'k-old')).status).toBe(200);

    // n3 misses the new values: it is frozen, and the others know it is down, so the writes do not go to it.
    const pid = cluster.pid('n3');
    const written = new Map<string, string>();
    process.kill(pid, 'SIGSTOP');
    try {
      await cluster.waitFor('n3 DN on n1 and n2', async () => (await stateOf(cluster, 'n1', 'n3'))?.state === 'DN' && (await stateOf(cluster, 'n2', 'n3'))?.state === 'DN', scaled(60_000));
      for (const k of KEYS) {
        const put = await http(cluster, 'n1', 'PUT', `/v1/kv/default/${k}?consistency=QUORUM`, `${k}-new`);
        expect(put.status, put.text).toBe(200);
        written.set(k, String(put.json().timestamp));
      }
      expect((await http(cluster, 'n1', 'PUT', '/v1/kv/norepair/k?consistency=QUORUM', 'k-new')).status).toBe(200);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await cluster.waitForAllUp(['n1', 'n2', 'n3']);
    for (const k of KEYS) expect(await local(cluster, 'n3', 'default', k)).toBe(`${k}-old`);

    // Through n3, a QUORUM read takes data from n3 itself (stale) and a digest from n1 or n2: a mismatch every time.
    for (const k of READ) {
      const got = await http(cluster, 'n3', 'GET', `/v1/kv/default/${k}?consistency=QUORUM`);
      expect(got.status, got.text).toBe(200);
      expect(got.text).toBe(`${k}-new`);
      expect(got.timestamp).toBe(written.get(k));
      // Blocking: the stale replica held the answer before the read returned it.
      expect(await local(cluster, 'n3', 'default', k)).toBe(`${k}-new`);
    }
    for (const k of UNREAD) expect(await local(cluster, 'n3', 'default', k)).toBe(`${k}-old`);
    const metrics = (await http(cluster, 'n3', 'GET', '/metrics')).text;
    expect(metric(metrics, 'chorus_read_repair_mismatches_total')).toBe(READ.length);
    expect(metric(metrics, 'chorus_read_repair_rows_repaired_total')).toBe(READ.length);
    expect(metric(metrics, 'chorus_read_repair_timeouts_total')).toBe(0);

    // read_repair none: the read still answers the newest value, but n3 keeps its old one. At ALL the read asks n3 for
    // certain (a QUORUM read may take its two answers from n1 and n2 when they answer faster).
    const norepair = await http(cluster, 'n3', 'GET', '/v1/kv/norepair/k?consistency=ALL');
    expect(norepair.text).toBe('k-new');
    expect(await local(cluster, 'n3', 'norepair', 'k')).toBe('k-old');
    const after = (await http(cluster, 'n3', 'GET', '/metrics')).text;
    expect(metric(after, 'chorus_read_repair_mismatches_total')).toBe(READ.length + 1);
    expect(metric(after, 'chorus_read_repair_rows_repaired_total')).toBe(READ.length);
  });
});
