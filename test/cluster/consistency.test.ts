import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, chorus, scaled, stateOf } from './harness.js';

const LEVELS = ['ONE', 'TWO', 'THREE', 'QUORUM', 'ALL', 'LOCAL_ONE', 'LOCAL_QUORUM', 'EACH_QUORUM'];

async function http(cluster: TestCluster, node: string, method: string, path: string, body?: string) {
  const response = await fetch(`http://${cluster.address(node)}${path}`, { method, body, signal: AbortSignal.timeout(scaled(10_000)) });
  const text = await response.text();
  return { status: response.status, text, json: () => JSON.parse(text) as Record<string, unknown>, timestamp: response.headers.get('x-chorus-timestamp') };
}

describe('tunable consistency on a three-node cluster (rf 3) over HTTP', () => {
  const cluster = new TestCluster();
  beforeAll(() => cluster.start(3));
  afterAll(() => cluster.destroy());

  it('writes and reads at every level through any coordinator', async () => {
    for (const [i, level] of LEVELS.entries()) {
      const writer = `n${(i % 3) + 1}`;
      const reader = `n${((i + 1) % 3) + 1}`;
      const put = await http(cluster, writer, 'PUT', `/v1/kv/default/key-${level}?consistency=${level.toLowerCase()}`, `value at ${level}`);
      expect(put.status, put.text).toBe(200);
      const written = put.json().timestamp as number;
      // Reads and writes at these levels overlap (R + W > rf) only when both need two or more replicas;
      // a ONE-class read may reach a replica the write has not reached yet, so only it may retry while the write spreads.
      const overlaps = !['ONE', 'LOCAL_ONE'].includes(level);
      let got = await http(cluster, reader, 'GET', `/v1/kv/default/key-${level}?consistency=${level}`);
      if (!overlaps && got.status === 404) {
        const convergedMs = await cluster.waitFor(
          `key-${level} readable at ${level}`,
          async () => (got = await http(cluster, reader, 'GET', `/v1/kv/default/key-${level}?consistency=${level}`)).status !== 404,
          scaled(10_000),
        );
        console.log(`a read at ${level} found the write after ${convergedMs} ms more`);
      }
      expect(got.status, got.text).toBe(200);
      expect(got.text).toBe(`value at ${level}`);
      expect(Number(got.timestamp)).toBe(written);
    }
    expect((await http(cluster, 'n1', 'PUT', '/v1/kv/default/any-key?consistency=ANY', 'v')).status).toBe(200);
    const metrics = (await http(cluster, 'n1', 'GET', '/metrics')).text;
    expect(Number(/^chorus_requests_total\{op="write",outcome="ok"\} (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    expect(metrics).toMatch(/^chorus_peer_frames_total\{direction="sent"\} [1-9]/m);
    expect(metrics).toMatch(/^chorus_peers\{state="up"\} 2$/m);
  });

  it('stores every write on all three replicas, and a delete shadows the value everywhere', async () => {
    await http(cluster, 'n1', 'PUT', '/v1/kv/default/everywhere?consistency=ALL', 'here');
    for (const n of ['n1', 'n2', 'n3']) {
      const local = await http(cluster, n, 'GET', '/v1/local/default/everywhere');
      expect(local.json()).toMatchObject({ value: Buffer.from('here').toString('base64'), tombstone: false });
    }
    expect((await http(cluster, 'n2', 'DELETE', '/v1/kv/default/everywhere?consistency=ALL')).status).toBe(200);
    expect((await http(cluster, 'n3', 'GET', '/v1/kv/default/everywhere')).status).toBe(404);
    expect((await http(cluster, 'n3', 'GET', '/v1/local/default/everywhere')).json()).toMatchObject({ value: null, tombstone: true });
  });

  it('keeps wide partitions sorted and pages through them', async () => {
    for (const c of ['c', 'a', 'e', 'b', 'd']) expect((await http(cluster, 'n1', 'PUT', `/v1/kv/default/wide/${c}`, `row ${c}`)).status).toBe(200);
    const first = (await http(cluster, 'n2', 'GET', '/v1/rows/default/wide?limit=2')).json() as { rows: Array<{ clustering: string }>; nextPage?: string };
    const seen = first.rows.map((r) => r.clustering);
    let page = first.nextPage;
    while (page) {
      const next = (await http(cluster, 'n3', 'GET', `/v1/rows/default/wide?limit=2&page=${page}`)).json() as { rows: Array<{ clustering: string }>; nextPage?: string };
      seen.push(...next.rows.map((r) => r.clustering));
      page = next.nextPage;
    }
    expect(seen).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect((await http(cluster, 'n1', 'GET', '/v1/kv/default/wide/d')).text).toBe('row d');
  });

  it('answers client mistakes with 4xx and a reason, never 500', async () => {
    expect((await http(cluster, 'n1', 'GET', '/v1/kv/default/k?consistency=SOMETIMES')).status).toBe(400);
    // A keyspace no node holds is the client's mistake once the schema agrees; while a keyspace created just before
    // is still spreading, the node cannot tell and answers the retryable SchemaDisagreement (503).
    let unknown: { error?: string } = {};
    await cluster.waitFor('a 400 for a keyspace no node holds', async () => (unknown = (await http(cluster, 'n1', 'GET', '/v1/kv/nokeyspace/k')).json() as { error?: string }).error !== 'SchemaDisagreement', scaled(10_000));
    expect(unknown).toMatchObject({ error: 'InvalidRequest' });
    expect((await http(cluster, 'n1', 'PUT', '/v1/kv/default/k?ttl=soon', 'v')).status).toBe(400);
    expect((await http(cluster, 'n1', 'PUT', `/v1/kv/default/k?timestamp=${(Date.now() + 60_000) * 1000}`, 'v')).json()).toMatchObject({ error: 'InvalidRequest' });
    expect((await http(cluster, 'n1', 'PUT', '/v1/kv/default/big', 'x'.repeat(1_100_000))).status).toBe(413);
    expect((await http(cluster, 'n1', 'GET', '/v1/nothing/here')).status).toBe(404);
    expect((await http(cluster, 'n1', 'PUT', '/v1/keyspaces/bad-name', '{"replication":{"class":"SimpleStrategy","rf":1}}')).status).toBe(400);
    // The node's own records (host id, tokens, generation) are not for clients, nor is a keyspace the schema lacks.
    for (const url of ['/v1/local/system/local/host_id', '/v1/local/nokeyspace/k']) expect((await http(cluster, 'n1', 'GET', url)).json(), url).toMatchObject({ error: 'InvalidRequest', field: 'keyspace' });
  });

  it('with one node killed: ONE and QUORUM still succeed, ALL answers 503 Unavailable with the counts', async () => {
    await cluster.kill('n3');
    await cluster.waitFor('n3 DN on n1 and n2', async () => (await stateOf(cluster, 'n1', 'n3'))?.state === 'DN' && (await stateOf(cluster, 'n2', 'n3'))?.state === 'DN', scaled(40_000));
    // With two replicas alive, a QUORUM read reaches both and a QUORUM write reached both, so each pair below overlaps.
    for (const [write, read] of [['ONE', 'QUORUM'], ['QUORUM', 'ONE']]) {
      expect((await http(cluster, 'n1', 'PUT', `/v1/kv/default/after-${write}?consistency=${write}`, write)).status).toBe(200);
      expect((await http(cluster, 'n2', 'GET', `/v1/kv/default/after-${write}?consistency=${read}`)).text).toBe(write);
    }
    const all = await http(cluster, 'n1', 'PUT', '/v1/kv/default/after-ALL?consistency=ALL', 'x');
    expect(all.status).toBe(503);
    expect(all.json()).toMatchObject({ error: 'Unavailable', consistency: 'ALL', required: 3, alive: 2 });
    const read = await http(cluster, 'n2', 'GET', '/v1/kv/default/after-ONE?consistency=ALL');
    expect(read.status).toBe(503);
    expect(read.json()).toMatchObject({ error: 'Unavailable', required: 3, alive: 2 });
    const cli = chorus(['put', 'k', 'v', '--consistency', 'ALL', '--host', cluster.address('n1')]);
    await expect(cli).rejects.toThrow(/chorus: Unavailable: .*required=3 alive=2/);
  });
});
