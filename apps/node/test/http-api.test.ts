import { Writable } from 'node:stream';
import { LIMITS } from '@chorus/model';
import type { ChorusNode } from '@chorus/node';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { STARTING_RETRY_AFTER_SECONDS } from '../src/errors.js';
import { buildApi } from '../src/http-api.js';
import type { Metrics } from '../src/metrics.js';

const metrics = { contentType: 'text/plain; version=0.0.4', render: async () => '' } as unknown as Metrics;

/** The HTTP API over a node that `node()` hands out, with the log lines it writes. */
function api(node: () => ChorusNode | undefined) {
  const lines: Array<{ level: number; msg: string }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as { level: number; msg: string });
      done();
    },
  });
  const app = buildApi({ logger: pino({ level: 'info' }, sink), metrics, node });
  return { app, errors: () => lines.filter((l) => l.level >= 50) };
}

describe('the HTTP API', () => {
  const apps: Array<{ close(): Promise<unknown> }> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
  });

  it('answers 503 NodeStarting with Retry-After while the node starts, and logs no error', async () => {
    const { app, errors } = api(() => undefined);
    apps.push(app);
    const requests = [
      { method: 'GET', url: '/v1/status' },
      { method: 'GET', url: '/v1/ring' },
      { method: 'GET', url: '/v1/hints' },
      { method: 'GET', url: '/v1/keyspaces' },
      { method: 'PUT', url: '/v1/keyspaces/ks', payload: JSON.stringify({ replication: { class: 'SimpleStrategy', rf: 1 } }) },
      { method: 'PUT', url: '/v1/kv/default/k?consistency=ONE', payload: 'v' },
      { method: 'GET', url: '/v1/kv/default/k' },
      { method: 'DELETE', url: '/v1/kv/default/p/c' },
      { method: 'GET', url: '/v1/rows/default/p?limit=10' },
      { method: 'GET', url: '/v1/local/default/k' },
    ] as const;
    for (const request of requests) {
      const answer = await app.inject(request);
      expect(answer.statusCode, `${request.method} ${request.url}`).toBe(503);
      expect(answer.headers['retry-after']).toBe(String(STARTING_RETRY_AFTER_SECONDS));
      expect(answer.json()).toEqual({ error: 'NodeStarting', message: 'the node is starting; try another node' });
    }
    const health = await app.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(503);
    expect(health.json()).toEqual({ status: 'starting' });
    expect(errors()).toEqual([]);
  });

  it('serves once the node has started', async () => {
    let node: ChorusNode | undefined;
    const { app } = api(() => node);
    apps.push(app);
    expect((await app.inject({ method: 'GET', url: '/v1/status' })).statusCode).toBe(503);
    node = { status: async () => ({ nodes: [] }) } as unknown as ChorusNode;
    const answer = await app.inject({ method: 'GET', url: '/v1/status' });
    expect(answer.statusCode).toBe(200);
    expect(answer.headers['retry-after']).toBeUndefined();
    expect(answer.json()).toEqual({ nodes: [] });
  });

  it('serves the hints the node holds per target', async () => {
    const targets = [{ hostId: 'b0000000-0000-4000-8000-000000000000', name: 'n2', address: '127.0.0.1:7101', hints: 3, bytes: 420, oldestMicros: 1_700_000_000_000_000, needsRepair: false }];
    const node = { hints: async () => ({ targets }) } as unknown as ChorusNode;
    const { app } = api(() => node);
    apps.push(app);
    const answer = await app.inject({ method: 'GET', url: '/v1/hints' });
    expect(answer.statusCode).toBe(200);
    expect(answer.json()).toEqual({ targets });
  });

  it('answers a body over its limit with 413 ValueTooLarge, and an unexpected failure with a logged 500', async () => {
    const node = {
      status: async () => {
        throw new Error('disk on fire');
      },
    } as unknown as ChorusNode;
    const { app, errors } = api(() => node);
    apps.push(app);
    const limit = 2 * LIMITS.maxValueBytes;
    const big = await app.inject({ method: 'PUT', url: '/v1/kv/default/k', payload: Buffer.alloc(limit + 1) });
    expect(big.statusCode).toBe(413);
    expect(big.json()).toMatchObject({ error: 'ValueTooLarge', limit });
    expect(errors()).toEqual([]);

    const failed = await app.inject({ method: 'GET', url: '/v1/status' });
    expect(failed.statusCode).toBe(500);
    expect(failed.json()).toEqual({ error: 'InternalError', message: 'disk on fire' });
    expect(errors().map((l) => l.msg)).toEqual(['request failed']);
  });
});
