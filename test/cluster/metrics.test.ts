import { spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChorusClient, Unavailable, connect } from '@chorus/client';
import { TestCluster, scaled, stateOf } from './harness.js';

const NODES = ['n1', 'n2', 'n3'];
/** How replicas catch up: hinted handoff, read repair and session reads, each exported from the start. */
const CONVERGENCE_FAMILIES: Record<string, string> = {
  chorus_hints_stored_total: 'counter',
  chorus_hints_delivered_total: 'counter',
  chorus_hints_replayed_bytes_total: 'counter',
  chorus_hint_replay_failures_total: 'counter',
  chorus_hints_dropped_total: 'counter',
  chorus_hints_pending: 'gauge',
  chorus_hints_pending_bytes: 'gauge',
  chorus_hints_oldest_age_seconds: 'gauge',
  chorus_hints_needs_repair: 'gauge',
  chorus_read_repair_mismatches_total: 'counter',
  chorus_read_repair_rows_repaired_total: 'counter',
  chorus_read_repair_timeouts_total: 'counter',
  chorus_session_floor_escalations_total: 'counter',
  chorus_session_floor_not_met_total: 'counter',
};
/** 100 µs to 10 s in 1-2-5 steps, as the node exports them. */
const BUCKETS = ['0.0001', '0.0002', '0.0005', '0.001', '0.002', '0.005', '0.01', '0.02', '0.05', '0.1', '0.2', '0.5', '1', '2', '5', '10', '+Inf'];

// Debian's `prometheus` package brings promtool; CI installs it, elsewhere the check is skipped with the reason printed.
const promtoolMissing = spawnSync('promtool', ['--version'], { stdio: 'ignore', timeout: scaled(10_000) }).error !== undefined;
if (promtoolMissing) console.log('metrics: promtool is not on PATH (apt-get install prometheus brings it); skipping the promtool check of /metrics');

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { samples, types };
}

/** Sum of the samples named `name` whose labels include `match`. */
function total(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);
}

function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'], timeout: scaled(20_000) });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}

describe('Prometheus metrics of a three-node cluster', () => {
  const cluster = new TestCluster();
  let client: ChorusClient | undefined;
  const scrapes = new Map<string, string>();
  let clientOps = 0;

  async function http(node: string, method: string, path: string, body?: string): Promise<number> {
    const response = await fetch(`http://${cluster.address(node)}${path}`, { method, body, signal: AbortSignal.timeout(scaled(10_000)) });
    await response.arrayBuffer();
    return response.status;
  }

  beforeAll(async () => {
    await cluster.start(3);
    expect(await http('n1', 'PUT', '/v1/keyspaces/single', JSON.stringify({ replication: { class: 'SimpleStrategy', rf: 1 } }))).toBe(200);
    const knows = async (node: string) => {
      const response = await fetch(`http://${cluster.address(node)}/v1/keyspaces`, { signal: AbortSignal.timeout(scaled(5_000)) });
      return ((await response.json()) as { keyspaces: Array<{ name: string }> }).keyspaces.some((k) => k.name === 'single');
    };
    await cluster.waitFor('keyspace single on every node', async () => (await Promise.all(NODES.map(knows))).every(Boolean), scaled(20_000));

    // Every node coordinates some successes, a miss, a slice, a refused level and an Unavailable (rf 1 cannot give TWO).
    for (const node of NODES) {
      for (let i = 0; i < 5; i++) {
        expect(await http(node, 'PUT', `/v1/kv/default/${node}-${i}`, `value ${i}`)).toBe(200);
        expect(await http(node, 'GET', `/v1/kv/default/${node}-${i}?consistency=all`)).toBe(200);
      }
      expect(await http(node, 'DELETE', `/v1/kv/default/${node}-0`)).toBe(200);
      expect(await http(node, 'GET', `/v1/kv/default/${node}-0`)).toBe(404);
      expect(await http(node, 'GET', `/v1/rows/default/${node}-1`)).toBe(200);
      expect(await http(node, 'PUT', `/v1/kv/default/${node}-x?consistency=sometimes`, 'v')).toBe(400);
      expect(await http(node, 'PUT', `/v1/kv/single/${node}-x?consistency=TWO`, 'v')).toBe(503);
    }

    // The client protocol is timed too; LOCAL_ONE is used by nothing else here, so its count is the client's.
    client = connect([cluster.address('n2')], { requestTimeoutMs: scaled(8_000) });
    await client.ready();
    for (let i = 0; i < 4; i++) {
      await client.put('default', `client-${i}`, `value ${i}`, { consistency: 'LOCAL_ONE' });
      await client.get('default', `client-${i}`, { consistency: 'LOCAL_ONE' });
      clientOps += 2;
    }

    for (const node of NODES) {
      const response = await fetch(`http://${cluster.address(node)}/metrics`, { signal: AbortSignal.timeout(scaled(10_000)) });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      scrapes.set(node, await response.text());
    }
  }, scaled(240_000));

  afterAll(async () => {
    await client?.close();
    await cluster.destroy();
  }, scaled(60_000));

  it('exports request latency as histograms in seconds, by operation, level and outcome', () => {
    for (const [node, text] of scrapes) {
      const { samples, types } = parse(text);
      expect(types.get('chorus_request_duration_seconds'), node).toBe('histogram');
      const les = [...new Set(samples.filter((s) => s.name === 'chorus_request_duration_seconds_bucket').map((s) => s.labels.le))];
      expect(les, node).toEqual(BUCKETS);
      const ok = { op: 'write', consistency: 'QUORUM', outcome: 'ok' };
      expect(total(samples, 'chorus_request_duration_seconds_count', ok), node).toBe(6);
      expect(total(samples, 'chorus_request_duration_seconds_bucket', { ...ok, le: '+Inf' }), node).toBe(6);
      expect(total(samples, 'chorus_request_duration_seconds_sum', ok), node).toBeGreaterThan(0);
      expect(total(samples, 'chorus_request_duration_seconds_count', { op: 'read', consistency: 'ALL', outcome: 'ok' }), node).toBe(5);
      expect(total(samples, 'chorus_request_duration_seconds_count', { op: 'read', consistency: 'QUORUM', outcome: 'ok' }), node).toBe(1);
      expect(total(samples, 'chorus_request_duration_seconds_count', { op: 'slice', consistency: 'QUORUM', outcome: 'ok' }), node).toBe(1);
      expect(total(samples, 'chorus_request_duration_seconds_count', { op: 'write', consistency: 'invalid', outcome: 'invalid' }), node).toBe(1);
      expect(total(samples, 'chorus_request_duration_seconds_count', { op: 'write', consistency: 'TWO', outcome: 'unavailable' }), node).toBe(1);
      expect(types.get('chorus_requests_total'), node).toBe('counter');
    }
    const everywhere = [...scrapes.values()].map((t) => parse(t).samples);
    const sum = (name: string, match: Record<string, string>) => everywhere.reduce((n, samples) => n + total(samples, name, match), 0);
    // The client picks its coordinator by token, so its requests are counted wherever they landed.
    expect(sum('chorus_request_duration_seconds_count', { consistency: 'LOCAL_ONE', outcome: 'ok' })).toBe(clientOps);
    // The coordinator's own count has no level, and a refused level never reaches it.
    expect(sum('chorus_requests_total', { op: 'write', outcome: 'ok' })).toBe(3 * 6 + clientOps / 2);
    expect(sum('chorus_requests_total', { op: 'read', outcome: 'ok' })).toBe(3 * 6 + clientOps / 2);
    expect(sum('chorus_requests_total', { op: 'write', outcome: 'unavailable' })).toBe(3);
  });

  it('names every family by the Prometheus naming guide and shows each node, peer traffic, clock skew and storage', () => {
    for (const [node, text] of scrapes) {
      const { samples, types } = parse(text);
      for (const [name, type] of types) {
        expect(name, node).toMatch(/^chorus_/);
        expect(name, node).not.toMatch(/_ms$|_ms_|chorus_process_process_/);
        if (name.endsWith('_total')) expect(type, `${node} ${name}`).toBe('counter');
        if (type === 'gauge') expect(samples.filter((s) => s.name === name && 'quantile' in s.labels), `${node} ${name}`).toEqual([]);
      }
      expect(types.get('chorus_process_cpu_seconds_total'), node).toBe('counter');
      expect(types.get('chorus_process_resident_memory_bytes'), node).toBe('gauge');
      expect(types.get('chorus_nodejs_heap_size_used_bytes'), node).toBe('gauge');
      const states = samples.filter((s) => s.name === 'chorus_node_state');
      expect(states.map((s) => `${s.labels.node} ${s.labels.state} ${s.value}`).sort(), node).toEqual(['n1 UN 1', 'n2 UN 1', 'n3 UN 1']);
      expect(total(samples, 'chorus_peers', { state: 'up' }), node).toBe(2);
      expect(total(samples, 'chorus_peer_bytes_total', { direction: 'sent' }), node).toBeGreaterThan(0);
      expect(samples.filter((s) => s.name === 'chorus_peer_clock_skew_seconds').length, node).toBe(2);
      expect(total(samples, 'chorus_storage_load_bytes'), node).toBeGreaterThan(0);
      expect(types.get('chorus_row_cache_requests_total'), node).toBe('counter');
      for (const [name, type] of Object.entries(CONVERGENCE_FAMILIES)) expect(types.get(name), `${node} ${name}`).toBe(type);
      // Nothing was missed, so no target has hints waiting.
      expect(samples.filter((s) => s.name.startsWith('chorus_hints_pending') || s.name === 'chorus_hints_oldest_age_seconds'), node).toEqual([]);
    }
  });

  it.skipIf(promtoolMissing)('passes promtool check metrics on every node with no findings', async () => {
    for (const [node, text] of scrapes) {
      const { code, output } = await promtoolCheck(text);
      expect(output, `promtool findings on ${node}`).toBe('');
      expect(code, node).toBe(0);
    }
  }, scaled(60_000));

  // Last: it takes n3 down and back, which the scrapes above must not see.
  it('shows hints waiting for a node that is down, how far their replay is behind, and their delivery once it is back', async () => {
    const HINTED = 20;
    const scrape = async () => {
      const response = await fetch(`http://${cluster.address('n1')}/metrics`, { signal: AbortSignal.timeout(scaled(10_000)) });
      const text = await response.text();
      return { text, samples: parse(text).samples };
    };
    const forN3 = { target: 'n3' };
    await cluster.kill('n3');
    await cluster.waitFor('n1 to see n3 down', async () => (await stateOf(cluster, 'n1', 'n3'))?.state === 'DN', scaled(60_000));
    // rf 3 on three nodes: every key has a replica on n3, so n1 hints each write for it.
    for (let i = 0; i < HINTED; i++) expect(await http('n1', 'PUT', `/v1/kv/default/hinted-${i}?consistency=ONE`, `value ${i}`)).toBe(200);
    let waiting = await scrape();
    await cluster.waitFor(`${HINTED} hints pending for n3 on n1`, async () => total((waiting = await scrape()).samples, 'chorus_hints_pending', forN3) >= HINTED, scaled(30_000));
    expect(total(waiting.samples, 'chorus_hints_pending_bytes', forN3)).toBeGreaterThan(0);
    expect(total(waiting.samples, 'chorus_hints_stored_total')).toBeGreaterThanOrEqual(HINTED);
    const hostIds = waiting.samples.filter((s) => s.name === 'chorus_hints_oldest_age_seconds').map((s) => `${s.labels.target} ${s.labels.host_id}`);
    expect(hostIds).toEqual([`n3 ${(await stateOf(cluster, 'n1', 'n3'))?.hostId}`]);
    const lag = total(waiting.samples, 'chorus_hints_oldest_age_seconds', forN3);
    expect(lag).toBeGreaterThanOrEqual(0);
    // The oldest hint stays the same while n3 is down, so its age only grows.
    const later = await scrape();
    expect(total(later.samples, 'chorus_hints_oldest_age_seconds', forN3)).toBeGreaterThanOrEqual(lag);

    await cluster.restart();
    let delivered = await scrape();
    await cluster.waitFor('n1 to deliver its hints to n3', async () => total((delivered = await scrape()).samples, 'chorus_hints_delivered_total') >= HINTED, scaled(60_000));
    await cluster.waitFor('no hint pending on n1', async () => (delivered = await scrape()).samples.every((s) => s.labels.target !== 'n3' || s.name === 'chorus_hints_needs_repair'), scaled(30_000));
    expect(total(delivered.samples, 'chorus_hints_replayed_bytes_total')).toBeGreaterThan(0);
    expect(delivered.samples.filter((s) => s.name === 'chorus_hints_needs_repair')).toEqual([]);

    if (promtoolMissing) return;
    for (const [when, { text }] of [['with hints pending', waiting], ['after delivery', delivered]] as const) {
      const { code, output } = await promtoolCheck(text);
      expect(output, `promtool findings on n1 ${when}`).toBe('');
      expect(code, when).toBe(0);
    }
  }, scaled(240_000));
});
