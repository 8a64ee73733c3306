import { Writable } from 'node:stream';
import { LIMITS } from '@chorus/model';
import type { ChorusNode } from '@chorus/node';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ChorusError } from '@chorus/core';
import { STARTING_RETRY_AFTER_SECONDS } from '../src/errors.js';
import { buildApi } from '../src/http-api.js';
import { RequestBudget } from '../src/request-budget.js';
import type { Metrics } from '../src/metrics.js';
import { MAX_SESSION_CHARS, MAX_SESSION_ROWS, floorOf, formatSessionToken, parseSessionToken, recordWrite, rowIdOf, sliceFloorsOf } from '../src/session-token.js';

const metrics = { contentType: 'text/plain; version=0.0.4', render: async () => '', timeRequest: () => () => undefined } as unknown as Metrics;

/** The HTTP API over a node that `node()` hands out, with the log lines it writes. */
function api(node: () => ChorusNode | undefined, budget?: RequestBudget) {
  const lines: Array<{ level: number; msg: string }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as { level: number; msg: string });
      done();
    },
  });
  const app = buildApi({ logger: pino({ level: 'info' }, sink), metrics, node, ...(budget ? { budget } : {}) });
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

  it('takes tombstone_gc and read_repair in a keyspace body, passes a left-out option on as left out, and shows both', async () => {
    const calls: unknown[][] = [];
    const view = { name: 'ks', replication: { class: 'SimpleStrategy', rf: 3 }, readRepair: 'blocking', tombstoneGc: 'grace' };
    const node = {
      putKeyspace: async (...args: unknown[]) => (calls.push(args), view),
      keyspaces: async () => ({ keyspaces: [view] }),
    } as unknown as ChorusNode;
    const { app } = api(() => node);
    apps.push(app);
    const put = await app.inject({ method: 'PUT', url: '/v1/keyspaces/ks', payload: JSON.stringify({ replication: { class: 'SimpleStrategy', rf: 3 }, tombstone_gc: 'grace' }) });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toEqual({ name: 'ks', replication: { class: 'SimpleStrategy', rf: 3 }, read_repair: 'blocking', tombstone_gc: 'grace' });
    await app.inject({ method: 'PUT', url: '/v1/keyspaces/ks', payload: JSON.stringify({ replication: { class: 'SimpleStrategy', rf: 3 }, read_repair: 'none' }) });
    expect(calls).toEqual([
      ['ks', { class: 'SimpleStrategy', rf: 3 }, undefined, 'grace'],
      ['ks', { class: 'SimpleStrategy', rf: 3 }, 'none', undefined],
    ]);
    const list = await app.inject({ method: 'GET', url: '/v1/keyspaces' });
    expect(list.json()).toEqual({ keyspaces: [{ name: 'ks', replication: { class: 'SimpleStrategy', rf: 3 }, read_repair: 'blocking', tombstone_gc: 'grace' }] });
  });

  it('POST /v1/removenode checks the body at the edge, answers 202 with the movement, and passes on the node\'s refusals', async () => {
    const asked: string[] = [];
    const live = 'c0000000-0000-4000-8000-000000000000';
    const node = {
      async removeNode(id: string) {
        asked.push(id);
        if (id === live) throw new ChorusError('RemoveNodeRefused', 'REMOVE_NODE_REFUSED', 'removenode refused: it is UP', { reason: 'alive' }, 409);
        return { movement: { id: 'removenode-1', kind: 'removenode', state: 'running' }, removed: new Promise(() => {}) };
      },
    } as unknown as ChorusNode;
    const { app, errors } = api(() => node);
    apps.push(app);
    for (const payload of ['', '{}', '{"hostId": 7}', '{"hostId": "n4"}', 'not json']) {
      const answer = await app.inject({ method: 'POST', url: '/v1/removenode', payload });
      expect(answer.statusCode, payload).toBe(400);
      expect(answer.json(), payload).toMatchObject({ error: 'InvalidRequest' });
    }
    expect(asked).toEqual([]);
    const ok = await app.inject({ method: 'POST', url: '/v1/removenode', payload: '{"hostId": "B0000000-0000-4000-8000-000000000000"}' });
    expect(ok.statusCode).toBe(202);
    expect(ok.json()).toMatchObject({ id: 'removenode-1', kind: 'removenode' });
    const refused = await app.inject({ method: 'POST', url: '/v1/removenode', payload: JSON.stringify({ hostId: live }) });
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ error: 'RemoveNodeRefused', reason: 'alive' });
    expect(asked).toEqual(['b0000000-0000-4000-8000-000000000000', live]);
    expect(errors()).toEqual([]);
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

  it("refuses a local read of keyspace system or of an unknown keyspace with 400 InvalidRequest, without reading the store", async () => {
    const asked: string[] = [];
    const node = {
      keyspaces: async () => ({ schemaAgreed: true, keyspaces: [{ name: 'default', replication: { class: 'SimpleStrategy', rf: 1 }, readRepair: 'blocking' }] }),
      coordinator: {
        async local(ks: string) {
          asked.push(ks);
          return { value: new TextEncoder().encode('v'), timestampMicros: 7 };
        },
      },
    } as unknown as ChorusNode;
    const { app, errors } = api(() => node);
    apps.push(app);
    for (const url of ['/v1/local/system/local', '/v1/local/system/local/host_id', '/v1/local/nope/k']) {
      const answer = await app.inject({ method: 'GET', url });
      expect(answer.statusCode, url).toBe(400);
      expect(answer.json(), url).toMatchObject({ error: 'InvalidRequest', field: 'keyspace' });
    }
    expect(asked).toEqual([]);
    const ok = await app.inject({ method: 'GET', url: '/v1/local/default/k' });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ value: Buffer.from('v').toString('base64'), timestamp: 7, tombstone: false });
    expect(asked).toEqual(['default']);
    expect(errors()).toEqual([]);
  });

  it('answers a local read of a keyspace unknown while its schema disagrees with a live peer\'s with the retryable 503 SchemaDisagreement', async () => {
    const node = {
      keyspaces: async () => ({ schemaAgreed: false, keyspaces: [{ name: 'default', replication: { class: 'SimpleStrategy', rf: 1 }, readRepair: 'blocking' }] }),
      coordinator: { local: async () => ({ value: new TextEncoder().encode('v'), timestampMicros: 7 }) },
    } as unknown as ChorusNode;
    const { app } = api(() => node);
    apps.push(app);
    const unknown = await app.inject({ method: 'GET', url: '/v1/local/later/k' });
    expect(unknown.statusCode).toBe(503);
    expect(unknown.json()).toMatchObject({ error: 'SchemaDisagreement', keyspace: 'later' });
    expect((await app.inject({ method: 'GET', url: '/v1/local/default/k' })).statusCode).toBe(200);
  });

  it('refuses a request past the node\'s in-flight bytes with 503 Overloaded and Retry-After, before reading its body, and keeps answering /health', async () => {
    const MiB = 1024 * 1024;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const node = {
      coordinator: {
        async put() {
          await gate;
          return { timestampMicros: 5 };
        },
      },
    } as unknown as ChorusNode;
    const budget = new RequestBudget(3 * MiB + 64 * 1024);
    const { app, errors } = api(() => node, budget);
    apps.push(app);
    const held = [0, 1, 2].map((i) => app.inject({ method: 'PUT', url: `/v1/kv/default/k${i}`, payload: Buffer.alloc(MiB) }));
    for (let i = 0; i < 50 && budget.held < 3 * MiB; i++) await new Promise((r) => setImmediate(r));
    expect(budget.held).toBeGreaterThanOrEqual(3 * MiB);
    const refused = await app.inject({ method: 'PUT', url: '/v1/kv/default/k3', payload: Buffer.alloc(MiB) });
    expect(refused.statusCode).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.json()).toMatchObject({ error: 'Overloaded', budgetBytes: 3 * MiB + 64 * 1024, requestBytes: expect.any(Number), heldBytes: expect.any(Number) });
    expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    open();
    for (const answer of await Promise.all(held)) expect(answer.statusCode).toBe(200);
    expect(budget.held).toBe(0);
    expect((await app.inject({ method: 'PUT', url: '/v1/kv/default/k4', payload: Buffer.alloc(MiB) })).statusCode).toBe(200);
    expect(errors()).toEqual([]);
  });

  it('answers an overloaded component deeper in (a full mailbox, on this node or a peer) as 503 Overloaded with Retry-After', async () => {
    const node = {
      coordinator: {
        async put() {
          throw new ChorusError('MailboxFull', 'OVERLOADED', 'mailbox of actor storage is full (capacity 50000)', { capacity: 50_000 }, 503);
        },
      },
    } as unknown as ChorusNode;
    const { app, errors } = api(() => node);
    apps.push(app);
    const answer = await app.inject({ method: 'PUT', url: '/v1/kv/default/k', payload: 'v' });
    expect(answer.statusCode).toBe(503);
    expect(answer.headers['retry-after']).toBe('1');
    expect(answer.json()).toMatchObject({ error: 'Overloaded', capacity: 50_000 });
    expect(errors()).toEqual([]);
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

/** A node whose coordinator keeps rows in memory, stamps with a counter, and records the options of every call. */
function sessionNode() {
  const calls: Array<{ op: string; key: string; options: Record<string, unknown> }> = [];
  const rows = new Map<string, { value: Uint8Array; ts: number }>();
  let clock = 1_000;
  let fail: Error | undefined;
  const id = (key: string, ck?: string) => `${key}/${ck ?? ''}`;
  const write = (op: string) => async (_ks: string, key: string, ck: string | undefined, ...rest: unknown[]) => {
    const options = (op === 'put' ? rest[1] : rest[0]) as Record<string, unknown>;
    calls.push({ op, key: id(key, ck), options });
    if (fail) throw fail;
    const ts = (options.timestampMicros as number | undefined) ?? Math.max(++clock, ((options.afterMicros as number | undefined) ?? 0) + 1);
    rows.set(id(key, ck), { value: new TextEncoder().encode(op), ts });
    return { timestampMicros: ts };
  };
  const coordinator = {
    put: write('put'),
    del: write('del'),
    async get(_ks: string, key: string, ck: string | undefined, options: Record<string, unknown>) {
      calls.push({ op: 'get', key: id(key, ck), options });
      if (fail) throw fail;
      const row = rows.get(id(key, ck));
      return row && { value: row.value, timestampMicros: row.ts };
    },
    async slice(_ks: string, partition: string, options: Record<string, unknown>) {
      calls.push({ op: 'slice', key: partition, options });
      return { rows: [{ clustering: new TextEncoder().encode('c'), value: new Uint8Array([1]), timestampMicros: 50_000 }] };
    },
  };
  return {
    node: { coordinator } as unknown as ChorusNode,
    calls,
    failWith(error: Error | undefined) {
      fail = error;
    },
  };
}

describe('sessions over HTTP (x-chorus-session)', () => {
  const apps: Array<{ close(): Promise<unknown> }> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
  });

  it('a write is stamped above the high-water mark; a read of a row the session wrote carries its floor', async () => {
    const fake = sessionNode();
    const { app } = api(() => fake.node);
    apps.push(app);
    // Without the header nothing changes.
    const plain = await app.inject({ method: 'PUT', url: '/v1/kv/default/a', payload: 'v' });
    expect(plain.headers['x-chorus-session']).toBeUndefined();
    expect(fake.calls.at(-1)!.options).not.toHaveProperty('afterMicros');

    const put = await app.inject({ method: 'PUT', url: '/v1/kv/default/a?consistency=ONE', payload: 'v', headers: { 'x-chorus-session': '0' } });
    expect(put.statusCode).toBe(200);
    const ts = put.json<{ timestamp: number }>().timestamp;
    let session = put.headers['x-chorus-session'] as string;
    expect(fake.calls.at(-1)!.options).toMatchObject({ consistency: 'ONE', afterMicros: 0 });
    expect(parseSessionToken(session)).toMatchObject({ highWater: ts, rows: [{ clustering: '', micros: ts }] });

    const get = await app.inject({ method: 'GET', url: '/v1/kv/default/a', headers: { 'x-chorus-session': session } });
    expect(get.statusCode).toBe(200);
    expect(fake.calls.at(-1)!.options).toEqual({ floorMicros: ts });
    // Another row: no floor; absent, and the answer still carries the session.
    const other = await app.inject({ method: 'GET', url: '/v1/kv/default/a/x', headers: { 'x-chorus-session': session } });
    expect(other.statusCode).toBe(404);
    expect(fake.calls.at(-1)!.options).toEqual({});
    expect(other.headers['x-chorus-session']).toBe(session);

    const del = await app.inject({ method: 'DELETE', url: '/v1/kv/default/p/c', headers: { 'x-chorus-session': session } });
    expect(fake.calls.at(-1)!.options).toEqual({ afterMicros: ts });
    session = del.headers['x-chorus-session'] as string;
    const slice = await app.inject({ method: 'GET', url: '/v1/rows/default/p?from=a', headers: { 'x-chorus-session': session } });
    expect(slice.statusCode).toBe(200);
    expect(fake.calls.at(-1)!.options).toMatchObject({ from: 'a', floors: [{ clustering: new TextEncoder().encode('c'), timestampMicros: del.json<{ timestamp: number }>().timestamp }] });
    // The rows read move the high-water mark.
    expect(parseSessionToken(slice.headers['x-chorus-session'] as string)!.highWater).toBe(50_000);
    // A client timestamp is the client's order, not the session's.
    await app.inject({ method: 'PUT', url: '/v1/kv/default/b?timestamp=5', payload: 'v', headers: { 'x-chorus-session': session } });
    expect(fake.calls.at(-1)!.options).toEqual({ timestampMicros: 5 });
  });

  it('errors carry the session too: SessionFloorNotMet is a 503, a timed-out write moves the high-water mark to its timestamp', async () => {
    const fake = sessionNode();
    const { app } = api(() => fake.node);
    apps.push(app);
    fake.failWith(new ChorusError('SessionFloorNotMet', 'SESSION_FLOOR_NOT_MET', 'too old', { consistency: 'ONE', floorMicros: 9, foundMicros: 3, answered: 2, alive: 2 }, 503));
    const read = await app.inject({ method: 'GET', url: '/v1/kv/default/a', headers: { 'x-chorus-session': '7' } });
    expect(read.statusCode).toBe(503);
    expect(read.json()).toMatchObject({ error: 'SessionFloorNotMet', floorMicros: 9, foundMicros: 3 });
    expect(read.headers['x-chorus-session']).toBe('7');
    fake.failWith(new ChorusError('WriteTimeout', 'WRITE_TIMEOUT', 'timed out', { consistency: 'QUORUM', required: 2, received: 1, timestampMicros: 123_456 }, 504));
    const write = await app.inject({ method: 'PUT', url: '/v1/kv/default/a', payload: 'v', headers: { 'x-chorus-session': '7' } });
    expect(write.statusCode).toBe(504);
    expect(write.headers['x-chorus-session']).toBe('123456');
  });

  it('refuses a malformed session with 400, and keeps the session within its bounds', async () => {
    const fake = sessionNode();
    const { app } = api(() => fake.node);
    apps.push(app);
    for (const bad of ['', 'x', '-1', '1,abc', '1,AAAAAAAAAAAAAAA..5', '1,AAAAAAAAAAAAAAAA..', `1,${'A'.repeat(16)}.x.1.2`, '9'.repeat(17), 'x'.repeat(MAX_SESSION_CHARS + 1)]) {
      const answer = await app.inject({ method: 'GET', url: '/v1/kv/default/a', headers: { 'x-chorus-session': bad } });
      expect(answer.statusCode, bad.slice(0, 40)).toBe(400);
      expect(answer.json()).toMatchObject({ error: 'InvalidRequest', field: 'x-chorus-session' });
    }
    let session = '0';
    for (let i = 0; i < MAX_SESSION_ROWS + 10; i++) {
      const answer = await app.inject({ method: 'PUT', url: `/v1/kv/default/p/${'c'.repeat(90)}${i}`, payload: 'v', headers: { 'x-chorus-session': session } });
      expect(answer.statusCode).toBe(200);
      session = answer.headers['x-chorus-session'] as string;
      expect(session.length).toBeLessThanOrEqual(MAX_SESSION_CHARS);
    }
    const token = parseSessionToken(session)!;
    expect(token.rows.length).toBeGreaterThan(5);
    expect(token.rows.length).toBeLessThan(MAX_SESSION_ROWS);
    // The most recent write is first, and its floor is the high-water mark.
    expect(token.rows[0]!.micros).toBe(token.highWater);
    // Short keys: the row count is the bound.
    const short = parseSessionToken('0')!;
    for (let i = 0; i < MAX_SESSION_ROWS + 6; i++) recordWrite(short, rowIdOf('default', `k${i}`), 10 + i);
    expect(short.rows).toHaveLength(MAX_SESSION_ROWS);
    expect(short.rows.at(-1)!.micros).toBe(16);
    // A row with a clustering key over 256 bytes is kept by its hash: a floor for point reads, not for slices.
    const t = parseSessionToken('0')!;
    const long = rowIdOf('default', 'q', 'l'.repeat(300));
    recordWrite(t, long, 77);
    expect(long.clustering).toMatch(/^~[A-Za-z0-9_-]{16}$/);
    expect(floorOf(parseSessionToken(formatSessionToken(t))!, rowIdOf('default', 'q', 'l'.repeat(300)))).toBe(77);
    expect(floorOf(t, rowIdOf('default', 'q', 'l'.repeat(301)))).toBeUndefined();
    expect(sliceFloorsOf(t, 'default', 'q')).toEqual([]);
  });
});
