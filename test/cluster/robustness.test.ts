import { randomBytes } from 'node:crypto';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TestCluster } from './harness.js';

/** Opens a raw WebSocket to a node, sends `frames`, and resolves when the node closes it or after `waitMs`. */
function throwAt(url: string, frames: Array<Buffer | string>, waitMs = 1_000): Promise<{ closedBy: 'node' | 'us'; code?: number }> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, { handshakeTimeout: 5_000 });
    const timer = setTimeout(() => {
      socket.terminate();
      resolve({ closedBy: 'us' });
    }, waitMs);
    socket.on('open', () => {
      for (const f of frames) socket.send(f);
    });
    socket.on('close', (code) => {
      clearTimeout(timer);
      resolve({ closedBy: 'node', code });
    });
    socket.on('error', () => {});
  });
}

describe('a live node under hostile input', () => {
  const cluster = new TestCluster();
  beforeAll(() => cluster.start(2));
  afterAll(() => cluster.destroy());

  it('survives garbage, mutated handshakes and oversized messages on the peer port, and keeps serving', async () => {
    const url = `ws://${cluster.address('n1')}/peer`;
    const packr = new Packr({ useRecords: false });
    const attempts: Array<Array<Buffer | string>> = [
      [randomBytes(64)],
      ['not msgpack at all'],
      [packr.pack({ type: 'hello', version: 99, cluster: 'x', node: 'evil', nonce: randomBytes(32) })],
      [packr.pack({ t: 'msg', to: 'gossiper', k: 1, b: { cluster: 'c', digests: [] } })], // a frame before any handshake
      [Buffer.alloc(200_000, 0x91)], // deep nesting, and over the pre-authentication byte budget
      [Buffer.alloc(9 * 1024 * 1024)], // over maxPayload
    ];
    for (let i = 0; i < 20; i++) attempts.push([randomBytes(1 + Math.floor(Math.random() * 2048)), randomBytes(16)]);
    for (const frames of attempts) await throwAt(url, frames, 500);

    const health = await fetch(`http://${cluster.address('n1')}/health`);
    expect(health.status).toBe(200);
    const view = await cluster.status('n2');
    expect(view.map((n) => `${n.name} ${n.state}`).sort()).toEqual(['n1 UN', 'n2 UN']);
    expect((await fetch(`http://${cluster.address('n1')}/v1/kv/default/still?consistency=ALL`, { method: 'PUT', body: 'alive' })).status).toBe(200);
    expect(await (await fetch(`http://${cluster.address('n2')}/v1/kv/default/still?consistency=ALL`)).text()).toBe('alive');
    expect(cluster.log('n1')).toMatch(/handshake/i);
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
      const response = await fetch(base + path, init);
      expect(response.status, `${init.method} ${path.slice(0, 60)}`).toBeGreaterThanOrEqual(400);
      expect(response.status, `${init.method} ${path.slice(0, 60)}`).toBeLessThan(500);
    }
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });
});
