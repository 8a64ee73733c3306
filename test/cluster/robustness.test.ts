import { randomBytes } from 'node:crypto';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import WebSocket from 'ws';
import { TestCluster, scaled } from './harness.js';

/** The fuzz is reproducible: a failure prints its seed, and CHORUS_SEED=<seed> replays it. */
const SEED = process.env.CHORUS_SEED !== undefined ? Number(process.env.CHORUS_SEED) >>> 0 : randomBytes(4).readUInt32LE(0);

/** mulberry32: a tiny PRNG, good enough to pick fuzz bytes and lengths from a seed. */
function seededRandom(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Outcome {
  closedBy: 'node' | 'us';
  code?: number;
  reason?: string;
}

/** Opens a raw WebSocket to a node, sends `frames`, and resolves when the connection closes or after `waitMs`. */
function throwAt(url: string, frames: Array<Buffer | string>, waitMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, { handshakeTimeout: scaled(5_000) });
    const timer = setTimeout(() => {
      socket.terminate();
      resolve({ closedBy: 'us' });
    }, waitMs);
    socket.on('open', () => {
      for (const f of frames) socket.send(f);
    });
    socket.on('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ closedBy: 'node', code, reason: reason.toString('utf8') });
    });
    socket.on('error', () => {});
  });
}

/** What the node's log says about refused peers since `from` (a length of the log). */
function refusals(log: string, from: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of log.slice(from).split('\n')) {
    const msg = /"msg":"([^"]*)"/.exec(line)?.[1];
    if (msg && (msg.startsWith('refused a peer: ') || msg.startsWith('peer sent too much before authenticating'))) counts.set(msg, (counts.get(msg) ?? 0) + 1);
  }
  return counts;
}

describe('a live node under hostile input', () => {
  const cluster = new TestCluster();
  beforeAll(() => cluster.start(2));
  afterAll(() => cluster.destroy());

  it('survives garbage, mutated handshakes and oversized messages on the peer port, refusing each for its reason, and keeps serving', async () => {
    onTestFailed(() => console.log(`robustness fuzz seed ${SEED}; replay with CHORUS_SEED=${SEED}`));
    const random = seededRandom(SEED);
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
    const url = `ws://${cluster.address('n1')}/peer`;
    const packr = new Packr({ useRecords: false });
    const malformed: Outcome = { closedBy: 'node', code: 4005, reason: 'malformed handshake' };
    const attempts: Array<{ what: string; frames: Array<Buffer | string>; expected: Outcome }> = [
      { what: 'random bytes', frames: [bytes(64)], expected: malformed },
      { what: 'a text message', frames: ['not msgpack at all'], expected: malformed },
      { what: 'a hello of another protocol version', frames: [packr.pack({ t: 'hello', v: 99, cluster: 'x', node: 'evil', nonce: bytes(32) })], expected: { closedBy: 'node', code: 4001, reason: 'protocol version' } },
      { what: 'a frame before any handshake', frames: [packr.pack({ t: 'msg', to: 'gossiper', k: 1, b: { cluster: 'c', digests: [] } })], expected: malformed },
      // Deep nesting, and over the pre-authentication byte budget: the node cuts the connection without a word.
      { what: '200 kB before authenticating', frames: [Buffer.alloc(200_000, 0x91)], expected: { closedBy: 'node', code: 1006, reason: '' } },
    ];
    for (let i = 0; i < 20; i++) attempts.push({ what: `fuzz ${i}`, frames: [bytes(1 + Math.floor(random() * 2048)), bytes(16)], expected: malformed });
    const logFrom = cluster.log('n1').length;

    for (const { what, frames, expected } of attempts) expect(await throwAt(url, frames, scaled(10_000)), what).toEqual(expected);
    // Over maxPayload: ws refuses it from the header with 1009 Message Too Big, and the same bytes also exceed the
    // pre-authentication budget, which cuts the socket; which of the two the client sees first is a race.
    const tooBig = await throwAt(url, [Buffer.alloc(9 * 1024 * 1024)], scaled(10_000));
    expect(tooBig.closedBy, '9 MiB message').toBe('node');
    expect([1006, 1009], '9 MiB message').toContain(tooBig.code);

    // Each refusal is logged with its reason (the log is written as the node goes, so give it a moment).
    const expectedLog = new Map([
      ['refused a peer: malformed handshake', attempts.filter((a) => a.expected.code === 4005).length],
      ['refused a peer: protocol version', 1],
      ['peer sent too much before authenticating; connection cut', 1],
    ]);
    await cluster.waitFor(
      'every refusal in the log of n1',
      async () => [...expectedLog].every(([msg, count]) => (refusals(cluster.log('n1'), logFrom).get(msg) ?? 0) >= count),
      scaled(10_000),
    ).catch((error: Error) => {
      throw new Error(`${error.message}; logged: ${JSON.stringify(Object.fromEntries(refusals(cluster.log('n1'), logFrom)))}`);
    });
    const logged = refusals(cluster.log('n1'), logFrom);
    expect([...logged.keys()].filter((msg) => !expectedLog.has(msg)), 'refusals for other reasons').toEqual([]);
    // One refusal per connection; the byte budget may cut the 9 MiB connection too.
    expect(logged.get('refused a peer: malformed handshake')).toBe(expectedLog.get('refused a peer: malformed handshake'));
    expect(logged.get('refused a peer: protocol version')).toBe(1);

    const health = await fetch(`http://${cluster.address('n1')}/health`, { signal: AbortSignal.timeout(scaled(5_000)) });
    expect(health.status).toBe(200);
    const view = await cluster.status('n2');
    expect(view.map((n) => `${n.name} ${n.state}`).sort()).toEqual(['n1 UN', 'n2 UN']);
    expect((await fetch(`http://${cluster.address('n1')}/v1/kv/default/still?consistency=ALL`, { method: 'PUT', body: 'alive', signal: AbortSignal.timeout(scaled(10_000)) })).status).toBe(200);
    expect(await (await fetch(`http://${cluster.address('n2')}/v1/kv/default/still?consistency=ALL`, { signal: AbortSignal.timeout(scaled(10_000)) })).text()).toBe('alive');
  });

  it('answers malformed HTTP requests with 4xx, never 500', async () => {
    const base = `http://${cluster.address('n1')}`;
    const cases: Array<[string, RequestInit]> = [
      ['/v1/keyspaces/x', { method: 'PUT', body: '{not json' }],
      ['/v1/keyspaces/x', { method: 'PUT', body: '{"replication": {"class": "Nope"}}' }],
      ['/v1/keyspaces/x', { method: 'PUT', body: '{"replication": {"class": "SimpleStrategy", "rf": 0}}' }],
      ['/v1/kv/default/k?consistency=%00%ff', { method: 'GET' }],
      ['/v1/kv/default/k?timestamp=12abc', { method: 'PUT', body: 'v' }],
      ['/v1/rows/default/p?limit=-1', { method: 'GET' }],
      ['/v1/rows/default/p?page=***', { method: 'GET' }],
      [`/v1/kv/default/${'k'.repeat(70_000)}`, { method: 'PUT', body: 'v' }],
    ];
    for (const [path, init] of cases) {
      const response = await fetch(base + path, { ...init, signal: AbortSignal.timeout(scaled(10_000)) });
      expect(response.status, `${init.method} ${path.slice(0, 60)}`).toBeGreaterThanOrEqual(400);
      expect(response.status, `${init.method} ${path.slice(0, 60)}`).toBeLessThan(500);
    }
    expect((await fetch(`${base}/health`, { signal: AbortSignal.timeout(scaled(5_000)) })).status).toBe(200);
  });
});
