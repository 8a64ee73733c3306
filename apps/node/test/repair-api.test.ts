import type { ChorusNode } from '@chorus/node';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApi } from '../src/http-api.js';
import type { Metrics } from '../src/metrics.js';
import type { RepairJobStatus, RepairService } from '../src/repair-api.js';
import { fakeRepair } from './fake-repair.js';

const metrics = { contentType: 'text/plain; version=0.0.4', render: async () => '', timeRequest: () => () => undefined } as unknown as Metrics;

function api(node: () => ChorusNode | undefined) {
  return buildApi({ logger: pino({ level: 'silent' }), metrics, node });
}

const nodeWith = (repair: RepairService | undefined) => ({ status: async () => ({ nodes: [] }), ...(repair ? { repair } : {}) }) as unknown as ChorusNode;
const post = (payload: unknown) => ({ method: 'POST' as const, url: '/v1/repair', payload: typeof payload === 'string' ? payload : JSON.stringify(payload), headers: { 'content-type': 'application/json' } });

describe('repair jobs over HTTP', () => {
  const apps: Array<{ close(): Promise<unknown> }> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
  });
  const serve = (repair: RepairService | undefined) => {
    const app = api(() => nodeWith(repair));
    apps.push(app);
    return app;
  };

  it('starts a job with the options of the request and answers its id', async () => {
    const fake = fakeRepair();
    const app = serve(fake.service);
    const answer = await app.inject(post({ keyspace: 'default', primaryRangeOnly: true, full: true, startToken: '-9223372036854775808', endToken: '9223372036854775807', parallel: 4 }));
    expect(answer.statusCode).toBe(200);
    expect(answer.json()).toEqual({ id: 'job-1' });
    expect(fake.started).toEqual([{ keyspace: 'default', primaryRangeOnly: true, full: true, startToken: '-9223372036854775808', endToken: '9223372036854775807', parallel: 4 }]);
    // No body, or an empty object: every keyspace but system, with the defaults.
    expect((await app.inject({ method: 'POST', url: '/v1/repair' })).json()).toEqual({ id: 'job-2' });
    expect((await app.inject(post({}))).json()).toEqual({ id: 'job-3' });
    expect(fake.started.slice(1)).toEqual([{}, {}]);
  });

  it.each([
    ['not JSON', '{"keyspace":', /body is not valid JSON/, undefined],
    ['not an object', '[1,2]', /body must be a JSON object/, undefined],
    ['an unknown field', { keyspace: 'default', pr: true }, /unknown field "pr"/, 'pr'],
    ['a keyspace that is not a name', { keyspace: 'no spaces' }, /keyspace must be a keyspace name/, 'keyspace'],
    ['a keyspace that is not a string', { keyspace: 7 }, /keyspace must be a keyspace name/, 'keyspace'],
    ['primaryRangeOnly not a boolean', { primaryRangeOnly: 'yes' }, /primaryRangeOnly must be true or false, got "yes"/, 'primaryRangeOnly'],
    ['full not a boolean', { full: 1 }, /full must be true or false/, 'full'],
    ['parallel 0', { parallel: 0 }, /parallel must be an integer from 1 to 16, got 0/, 'parallel'],
    ['parallel 17', { parallel: 17 }, /parallel must be an integer from 1 to 16, got 17/, 'parallel'],
    ['parallel 1.5', { parallel: 1.5 }, /parallel must be an integer from 1 to 16/, 'parallel'],
    ['a start token alone', { startToken: '0' }, /startToken and endToken go together/, 'endToken'],
    ['an end token alone', { endToken: '0' }, /startToken and endToken go together/, 'startToken'],
    ['a token that is not a number', { startToken: 'abc', endToken: '5' }, /startToken must be a token/, 'startToken'],
    ['a token as a JSON number', { startToken: 1, endToken: 5 }, /startToken must be a token/, 'startToken'],
    ['a token over 2^63-1', { startToken: '0', endToken: '9223372036854775808' }, /endToken must be a token.*-9223372036854775808 to 9223372036854775807/, 'endToken'],
    ['a token under -2^63', { startToken: '-9223372036854775809', endToken: '0' }, /startToken must be a token/, 'startToken'],
    ['an empty range', { startToken: '42', endToken: '42' }, /startToken and endToken must differ/, 'endToken'],
  ])('refuses %s with 400 InvalidRequest naming the field, before the service sees it', async (_what, body, message, field) => {
    const fake = fakeRepair();
    const app = serve(fake.service);
    const answer = await app.inject(post(body));
    expect(answer.statusCode).toBe(400);
    const json = answer.json<{ error: string; message: string; field?: string }>();
    expect(json.error).toBe('InvalidRequest');
    expect(json.message).toMatch(message);
    expect(json.message).not.toContain('\n');
    expect(json.field).toBe(field);
    expect(fake.started).toEqual([]);
  });

  it("passes on the service's own refusals with their status, name and numbers", async () => {
    const fake = fakeRepair();
    const app = serve(fake.service);
    const unknown = await app.inject(post({ keyspace: 'missing' }));
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json()).toEqual({ error: 'UnknownKeyspace', message: 'no keyspace missing', keyspace: 'missing' });
    fake.setBusy(true);
    const busy = await app.inject(post({}));
    expect(busy.statusCode).toBe(503);
    expect(busy.json()).toEqual({ error: 'TooManyRepairJobs', message: 'a repair job is already running', running: 1, limit: 1 });
  });

  it('lists jobs newest first, shows one, cancels one, and answers 404 NotFound for a job it does not know', async () => {
    const fake = fakeRepair();
    const app = serve(fake.service);
    await app.inject(post({ keyspace: 'a' }));
    await app.inject(post({ keyspace: 'b' }));
    fake.jobs[1]!.state = 'done';
    Object.assign(fake.jobs[1]!, { rangesDone: 48, rowsCompared: 1000, rowsStreamed: 3, bytesStreamed: 300, elapsedMs: 1500 });

    const list = await app.inject({ method: 'GET', url: '/v1/repair' });
    expect(list.statusCode).toBe(200);
    expect(list.json<{ jobs: RepairJobStatus[] }>().jobs.map((j) => [j.id, j.state])).toEqual([['job-2', 'running'], ['job-1', 'done']]);

    const one = await app.inject({ method: 'GET', url: '/v1/repair/job-1' });
    expect(one.statusCode).toBe(200);
    expect(one.json()).toEqual({ id: 'job-1', state: 'done', keyspaces: ['a'], rangesTotal: 48, rangesDone: 48, rangesFailed: 0, rowsCompared: 1000, rowsStreamed: 3, bytesStreamed: 300, elapsedMs: 1500, startedAtMicros: 1_700_000_000_000_000 });

    const cancelled = await app.inject({ method: 'DELETE', url: '/v1/repair/job-2' });
    expect(cancelled.statusCode).toBe(200);
    expect(cancelled.json()).toMatchObject({ id: 'job-2', state: 'cancelled' });
    // Cancelling a finished job changes nothing and answers its status.
    expect((await app.inject({ method: 'DELETE', url: '/v1/repair/job-1' })).json()).toMatchObject({ id: 'job-1', state: 'done' });

    for (const method of ['GET', 'DELETE'] as const) {
      const missing = await app.inject({ method, url: '/v1/repair/job-9' });
      expect(missing.statusCode, method).toBe(404);
      expect(missing.json()).toEqual({ error: 'NotFound', message: 'no repair job job-9 on this node' });
    }
  });

  it('answers 503 NodeStarting while the node starts, and 501 RepairNotAvailable on a node without a repair service', async () => {
    const starting = api(() => undefined);
    apps.push(starting);
    for (const request of [post({}), { method: 'GET' as const, url: '/v1/repair' }, { method: 'GET' as const, url: '/v1/repair/x' }, { method: 'DELETE' as const, url: '/v1/repair/x' }]) {
      const answer = await starting.inject(request);
      expect(answer.statusCode, `${request.method} ${request.url}`).toBe(503);
      expect(answer.json()).toMatchObject({ error: 'NodeStarting' });
    }
    const without = serve(undefined);
    const answer = await without.inject({ method: 'GET', url: '/v1/repair' });
    expect(answer.statusCode).toBe(501);
    expect(answer.json()).toEqual({ error: 'RepairNotAvailable', message: 'this node runs no repair service' });
  });
});
