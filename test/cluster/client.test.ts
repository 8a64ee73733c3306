import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChorusClient, ConnectionError, InvalidRequest, NoHostAvailable, Unavailable, connect } from '@chorus/client';
import { TestCluster, chorus, scaled, stateOf } from './harness.js';

const WRITE_LEVELS = ['ONE', 'TWO', 'THREE', 'QUORUM', 'ALL', 'ANY', 'LOCAL_ONE', 'LOCAL_QUORUM', 'EACH_QUORUM'];
const READ_LEVELS = WRITE_LEVELS.filter((l) => l !== 'ANY');
const text = (v: Uint8Array | undefined) => (v === undefined ? undefined : Buffer.from(v).toString('utf8'));

describe('@chorus/client against a three-node cluster of real processes', () => {
  const cluster = new TestCluster();
  const clients: ChorusClient[] = [];
  let client: ChorusClient;
  const open = (hosts: string[], options = {}) => {
    const c = connect(hosts, { requestTimeoutMs: scaled(8_000), ringRefreshMs: 2_000, ...options });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    await cluster.start(3);
    await chorus(['keyspace', 'create', 'single', '--rf', '1', '--host', cluster.address('n1')]);
    client = open([cluster.address('n1')]);
    await client.ready();
    // Schema travels by gossip: wait until every node and the client's ring know the rf-1 keyspace.
    await cluster.waitFor(
      'keyspace single everywhere',
      async () => {
        const lists = await Promise.all(['n1', 'n2', 'n3'].map(async (n) => (await fetch(`http://${cluster.address(n)}/v1/keyspaces`, { signal: AbortSignal.timeout(scaled(5_000)) })).json() as Promise<{ keyspaces: Array<{ name: string }> }>));
        const ring = await client.ring();
        return lists.every((l) => l.keyspaces.some((k) => k.name === 'single')) && ring.keyspaces.some((k) => k.name === 'single');
      },
      scaled(20_000),
    );
  });
  afterAll(async () => {
    for (const c of clients) await c.close();
    await cluster.destroy();
  });

  it('writes at every level and reads back at every level', async () => {
    for (const level of WRITE_LEVELS) {
      const { timestamp } = await client.put('default', `cl:${level}`, `value at ${level}`, { consistency: level });
      expect(timestamp).toBeGreaterThan(0);
    }
    for (const written of WRITE_LEVELS) {
      for (const level of READ_LEVELS) {
        const found = await client.get('default', `cl:${written}`, { consistency: level });
        expect(text(found?.value), `written at ${written}, read at ${level}`).toBe(`value at ${written}`);
      }
    }
    const anyRead = await client.get('default', 'cl:ONE', { consistency: 'ANY' }).catch((e: unknown) => e);
    expect(anyRead).toBeInstanceOf(InvalidRequest);
    const badLevel = await client.put('default', 'k', 'v', { consistency: 'SOMETIMES' }).catch((e: unknown) => e);
    expect(badLevel).toMatchObject({ name: 'InvalidRequest', field: 'consistency' });

    await client.put('default', 'wide', 'a', { clustering: 'c1' });
    await client.put('default', 'wide', 'b', { clustering: 'c2' });
    const slice = await client.slice('default', 'wide', { consistency: 'ALL' });
    expect(slice.rows.map((r) => `${text(r.clustering)}=${text(r.value)}`)).toEqual(['c1=a', 'c2=b']);
    await client.del('default', 'cl:ONE', { consistency: 'ALL' });
    expect(await client.get('default', 'cl:ONE', { consistency: 'ALL' })).toBeUndefined();
  });

  it('sends each key to its replica: with rf 1 the node that coordinated holds the value', async () => {
    // A client of its own whose ring is not refreshed meanwhile: a refresh is a request too, and would count as sent to a coordinator.
    const routing = open([cluster.address('n1')], { ringRefreshMs: 3_600_000 });
    await routing.ready();
    const nodes = ['n1', 'n2', 'n3'].map((n) => cluster.address(n));
    // The client opens a pool to every node of the ring it learnt; their hellos are sent before any key is counted.
    await cluster.waitFor('a connection to every node', () => Promise.resolve(nodes.every((n) => routing.stats().hosts[n]?.state === 'up')), scaled(10_000));
    const owners = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const key = `routed:${i}`;
      const [replica] = routing.replicasOf('single', key);
      expect(nodes).toContain(replica);
      owners.add(replica!);
      const before = routing.stats().hosts;
      await routing.put('single', key, `v${i}`, { consistency: 'ONE' });
      const after = routing.stats().hosts;
      const coordinators = nodes.filter((n) => (after[n]?.sent ?? 0) > (before[n]?.sent ?? 0));
      expect(coordinators, key).toEqual([replica]);
      // The server's side: only the replica's own store holds it.
      for (const n of nodes) {
        const cell = await routing.local(n, 'single', key);
        expect(text(cell?.value), `${key} on ${n}`).toBe(n === replica ? `v${i}` : undefined);
      }
    }
    expect(owners.size).toBe(3);
    expect(routing.stats().nonReplica).toBe(0);
  });

  it('chorus bench runs against the cluster and prints percentiles', async () => {
    const hosts = ['n1', 'n2', 'n3'].map((n) => cluster.address(n)).join(',');
    const report = JSON.parse(
      await chorus(['bench', '--host', hosts, '--workload', 'mixed', '--keys', '500', '--duration', '2', '--concurrency', '16', '--consistency', 'QUORUM', '--json']),
    ) as Record<string, unknown> & { ops: number; errorCount: number; errors: Record<string, number>; latencyMs: Record<string, number>; reads: { ops: number }; writes: { ops: number } };
    expect(report).toMatchObject({ workload: 'mixed', consistency: 'QUORUM', keys: 500, valueSize: 100, concurrency: 16 });
    console.log(`bench: ${report.ops} ops, errors ${JSON.stringify(report.errors)}`);
    // On a starved machine a request may miss its deadline; anything else (Unavailable, a refused request, a lost
    // connection) is a fault of a healthy cluster, and even timeouts must stay the exception.
    expect(Object.keys(report.errors).filter((name) => !['WriteTimeout', 'ReadTimeout', 'RequestTimeout'].includes(name)), 'errors other than timeouts').toEqual([]);
    expect(report.errorCount).toBe(Object.values(report.errors).reduce((a, b) => a + b, 0));
    expect(report.errorCount, 'timeouts').toBeLessThan(report.ops / 10);
    expect(report.ops).toBeGreaterThan(0);
    expect(report.opsPerSec).toBeGreaterThan(0);
    expect(report.reads.ops + report.writes.ops).toBe(report.ops);
    const l = report.latencyMs;
    for (const p of ['p50', 'p95', 'p99', 'p99.9', 'max', 'mean']) expect(typeof l[p]).toBe('number');
    expect(l.p50!).toBeLessThanOrEqual(l.p99!);
    expect(l.p99!).toBeLessThanOrEqual(l.max!);

    const human = await chorus(['bench', '--host', hosts, '--ops', '300', '--concurrency', '8', '--keys', '100']);
    expect(human).toMatch(/^throughput\s+[\d.]+ ops\/s$/m);
    expect(human).toMatch(/^latency ms\s+p50 [\d.]+\s+p95 [\d.]+\s+p99 [\d.]+\s+p99\.9 [\d.]+\s+max [\d.]+/m);
  });

  it('fails over when its node is killed; ONE and QUORUM go on, ALL is Unavailable {required 3, alive 2}', async () => {
    // A client that was given n3 only; it learns n1 and n2 from the ring.
    const c = open([cluster.address('n3')]);
    await c.ready();
    await c.put('default', 'before-kill', 'x', { consistency: 'ALL' });
    expect(c.stats().hosts[cluster.address('n3')]?.state).toBe('up');

    await cluster.kill('n3');
    // Straight away, before any failure detector has noticed: the client's connection to n3 broke, so it goes elsewhere.
    for (let i = 0; i < 20; i++) {
      await c.put('default', `after-kill:${i}`, 'y', { consistency: 'QUORUM' });
      expect(text((await c.get('default', `after-kill:${i}`, { consistency: 'QUORUM' }))?.value)).toBe('y');
    }
    expect(c.stats().hosts[cluster.address('n3')]?.state).toBe('down');

    await cluster.waitFor('n3 DN on n1 and n2', async () => (await Promise.all(['n1', 'n2'].map((o) => stateOf(cluster, o, 'n3')))).every((s) => s?.state === 'DN'), scaled(40_000));
    await c.put('default', 'down:ONE', 'ONE', { consistency: 'ONE' });
    await c.put('default', 'down:QUORUM', 'QUORUM', { consistency: 'QUORUM' });
    // With two replicas alive, a QUORUM read reaches both (so it sees the ONE write at once), and the QUORUM write reached both (so a ONE read sees it).
    expect(text((await c.get('default', 'down:ONE', { consistency: 'QUORUM' }))?.value)).toBe('ONE');
    expect(text((await c.get('default', 'down:QUORUM', { consistency: 'ONE' }))?.value)).toBe('QUORUM');
    const all = await c.put('default', 'down:ALL', 'z', { consistency: 'ALL' }).catch((e: unknown) => e);
    expect(all).toBeInstanceOf(Unavailable);
    expect(all).toMatchObject({ name: 'Unavailable', consistency: 'ALL', required: 3, alive: 2 });
    const allRead = await c.get('default', 'down:ONE', { consistency: 'ALL' }).catch((e: unknown) => e);
    expect(allRead).toMatchObject({ name: 'Unavailable', required: 3, alive: 2 });

    // Asking the dead node itself fails with the connection's error, not silently elsewhere.
    const local = await c.local(cluster.address('n3'), 'default', 'before-kill').catch((e: unknown) => e);
    expect(local instanceof ConnectionError || local instanceof NoHostAvailable).toBe(true);
  });
});
