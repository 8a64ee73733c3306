import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, scaled, stateOf } from './harness.js';

async function http(cluster: TestCluster, node: string, method: string, path: string, options: { body?: string; session?: string } = {}) {
  const headers: Record<string, string> = options.session === undefined ? {} : { 'x-chorus-session': options.session };
  const response = await fetch(`http://${cluster.address(node)}${path}`, { method, body: options.body, headers, signal: AbortSignal.timeout(scaled(10_000)) });
  const text = await response.text();
  return { status: response.status, text, session: response.headers.get('x-chorus-session'), json: () => JSON.parse(text) as Record<string, unknown> };
}

function metric(text: string, name: string): number {
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
}

describe('sessions over HTTP on a three-node cluster (rf 3)', () => {
  const cluster = new TestCluster();
  // Hints would bring n3 up to date on their own after SIGCONT; this test is about what a session read does.
  beforeAll(() => cluster.start(3, ['--set', 'hinted_handoff_enabled=false']));
  afterAll(() => cluster.destroy());

  it('a read at ONE through the replica that missed the session\'s write returns the write, and repairs it', async () => {
    expect((await http(cluster, 'n1', 'PUT', '/v1/kv/default/cart?consistency=ALL', { body: 'old' })).status).toBe(200);

    // n3 misses the session's write: it is frozen, and the others know it is down.
    const pid = cluster.pid('n3');
    let session: string;
    process.kill(pid, 'SIGSTOP');
    try {
      await cluster.waitFor('n3 DN on n1 and n2', async () => (await stateOf(cluster, 'n1', 'n3'))?.state === 'DN' && (await stateOf(cluster, 'n2', 'n3'))?.state === 'DN', scaled(60_000));
      const put = await http(cluster, 'n1', 'PUT', '/v1/kv/default/cart?consistency=ONE', { body: 'new', session: '0' });
      expect(put.status, put.text).toBe(200);
      expect(put.session).toMatch(new RegExp(`^${String(put.json().timestamp)},`));
      session = put.session!;
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await cluster.waitForAllUp(['n1', 'n2', 'n3']);

    // n3 coordinates, and a read at ONE asks its own replica first: without the session, that is the answer.
    const local = await http(cluster, 'n3', 'GET', '/v1/local/default/cart');
    expect(Buffer.from(local.json().value as string, 'base64').toString()).toBe('old');
    const read = await http(cluster, 'n3', 'GET', '/v1/kv/default/cart?consistency=ONE', { session });
    expect(read.status, read.text).toBe(200);
    expect(read.text).toBe('new');
    expect(read.session).toBe(session);
    const metrics = await (await fetch(`http://${cluster.address('n3')}/metrics`, { signal: AbortSignal.timeout(scaled(10_000)) })).text();
    expect(metric(metrics, 'chorus_session_floor_escalations_total')).toBe(1);
    expect(metric(metrics, 'chorus_session_floor_not_met_total')).toBe(0);
    // The session's read repaired n3 (at ONE it did not wait for that): a plain read there now finds the write too.
    await cluster.waitFor('n3 repaired', async () => (await http(cluster, 'n3', 'GET', '/v1/kv/default/cart?consistency=ONE')).text === 'new', scaled(10_000));

    const bad = await http(cluster, 'n2', 'GET', '/v1/kv/default/cart', { session: 'not a session' });
    expect(bad.status).toBe(400);
    expect(bad.json()).toMatchObject({ error: 'InvalidRequest', field: 'x-chorus-session' });
  });
});
