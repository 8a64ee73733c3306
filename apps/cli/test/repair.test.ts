import { execFile } from 'node:child_process';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { RepairJobStatus } from '@chorus/server';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { formatRepairJob, formatRepairJobs, repairEtaSeconds, repairOutcome, repairProgressLine } from '../src/format.js';

const main = fileURLToPath(new URL('../dist/main.js', import.meta.url));
/** As the shared test settings stretch every limit on a slow or busy machine. */
const TIME_SCALE = Math.max(1, Number(process.env.CHORUS_TEST_TIME_SCALE ?? 1) || 1);

function chorus(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [main, ...args], { timeout: 20_000 * TIME_SCALE }, (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stdout, stderr }));
  });
}

const job = (fields: Partial<RepairJobStatus> = {}): RepairJobStatus => ({
  id: 'r1',
  state: 'running',
  keyspaces: ['default'],
  rangesTotal: 4,
  rangesDone: 0,
  rangesFailed: 0,
  rowsCompared: 0,
  rowsStreamed: 0,
  bytesStreamed: 0,
  elapsedMs: 0,
  startedAtMicros: 1_700_000_000_000_000,
  ...fields,
});

/**
 * A node's repair API on a loopback port: each job answers the statuses of its
 * script in turn, one per GET, then stays at the last one.
 */
class FakeNode {
  readonly posted: unknown[] = [];
  scripts = new Map<string, RepairJobStatus[]>();
  nextId = 'r1';
  refuse: { status: number; body: unknown } | undefined;
  private server: Server | undefined;

  async listen(): Promise<string> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server!.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const path = req.url ?? '';
    if (req.method === 'POST' && path === '/v1/repair') {
      this.posted.push(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined);
      if (this.refuse) return send(this.refuse.status, this.refuse.body);
      return send(200, { id: this.nextId });
    }
    if (req.method === 'GET' && path === '/v1/repair') return send(200, { jobs: [...this.scripts.values()].map((s) => s[0]) });
    const id = decodeURIComponent(/^\/v1\/repair\/(.+)$/.exec(path)?.[1] ?? '');
    const script = this.scripts.get(id);
    if (!script) return send(404, { error: 'NotFound', message: `no repair job ${id} on this node` });
    if (req.method === 'DELETE') {
      const cancelled = { ...script.at(-1)!, state: script.at(-1)!.state === 'running' ? 'cancelled' : script.at(-1)!.state };
      this.scripts.set(id, [cancelled as RepairJobStatus]);
      return send(200, cancelled);
    }
    return send(200, script.length > 1 ? script.shift() : script[0]);
  }
}

describe('chorus repair', () => {
  const node = new FakeNode();
  let host = '';
  beforeAll(async () => {
    host = await node.listen();
  });
  afterAll(() => node.close());
  beforeEach(() => {
    node.posted.splice(0);
    node.scripts.clear();
    node.refuse = undefined;
    node.nextId = 'r1';
  });

  it('starts a job with the flags as a repair request and prints its id', async () => {
    const r = await chorus(['repair', 'default', '--pr', '--full', '--start-token', '-9223372036854775808', '--end-token', '0', '--parallel', '4', '--host', host]);
    expect(r).toMatchObject({ code: 0, stdout: 'r1\n', stderr: '' });
    expect(node.posted).toEqual([{ keyspace: 'default', primaryRangeOnly: true, full: true, startToken: '-9223372036854775808', endToken: '0', parallel: 4 }]);
    const all = await chorus(['repair', '--host', host, '--json']);
    expect(all).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(all.stdout)).toEqual({ id: 'r1' });
    expect(node.posted[1]).toEqual({});
  });

  it("prints the node's refusal as one line and exits non-zero", async () => {
    node.refuse = { status: 400, body: { error: 'InvalidRequest', message: 'parallel must be an integer from 1 to 16, got 17', field: 'parallel' } };
    const r = await chorus(['repair', '--parallel', '17', '--host', host]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('chorus: InvalidRequest: parallel must be an integer from 1 to 16, got 17 (field=parallel)\n');
    const bad = await chorus(['repair', '--parallel', 'many', '--host', host]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('chorus: --parallel must be an integer, got "many"\n');
    const half = await chorus(['repair', '--start-token', '5', '--host', host]);
    expect(half.code).toBe(1);
    expect(half.stderr).toBe('chorus: --start-token and --end-token go together: a range, start exclusive, end inclusive\n');
  });

  it('--wait follows the job to its end with plain progress lines when stderr is not a terminal, and exits 0 when it is done', async () => {
    node.scripts.set('r1', [
      job({ rangesDone: 0, elapsedMs: 10 }),
      job({ rangesDone: 2, rowsCompared: 500, rowsStreamed: 3, bytesStreamed: 3072, elapsedMs: 2000 }),
      job({ state: 'done', rangesDone: 4, rowsCompared: 1000, rowsStreamed: 5, bytesStreamed: 5120, elapsedMs: 4000 }),
    ]);
    const r = await chorus(['repair', 'default', '--wait', '--poll-interval', '20', '--host', host]);
    expect(r.code).toBe(0);
    const out = r.stdout.trim().split('\n');
    expect(out[0]).toBe('r1');
    expect(out[1]).toBe('repair r1 done: 4/4 ranges, 1000 rows compared, 5 rows streamed (5.00 KiB) in 4s');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toEqual([
      'repair r1: 0/4 ranges, 0 rows streamed (0 B)',
      'repair r1: 2/4 ranges, 3 rows streamed (3.00 KiB), ETA 2s',
    ]);
  });

  it('--wait exits non-zero with one line naming the error and the failed ranges when the job fails or is cancelled', async () => {
    const failures = [
      { keyspace: 'default', start: '-100', end: '0', reason: 'replica 127.0.0.1:7102 is down' },
      { keyspace: 'default', start: '0', end: '100', reason: 'replica 127.0.0.1:7102 is down' },
    ];
    node.scripts.set('r1', [job({ rangesDone: 1 }), job({ state: 'failed', rangesDone: 2, rangesFailed: 2, error: '2 of 4 ranges failed', failures, elapsedMs: 900 })]);
    const r = await chorus(['repair', '--wait', '--poll-interval', '20', '--host', host]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines.at(-1)).toBe('chorus: repair r1 failed: 2 of 4 ranges failed; default (-100,0]: replica 127.0.0.1:7102 is down; default (0,100]: replica 127.0.0.1:7102 is down');
    expect(r.stdout).toBe('r1\n');

    node.nextId = 'r2';
    node.scripts.set('r2', [job({ id: 'r2', state: 'cancelled', rangesDone: 1 })]);
    const cancelled = await chorus(['repair', '--wait', '--json', '--poll-interval', '20', '--host', host]);
    expect(cancelled.code).toBe(1);
    expect(cancelled.stderr).toBe('chorus: repair r2 cancelled after 1/4 ranges\n');
    // --json: the final status is the one JSON document.
    expect(JSON.parse(cancelled.stdout)).toMatchObject({ id: 'r2', state: 'cancelled' });
  });

  it('--wait ends with a one-line reason when the node no longer knows the job', async () => {
    node.nextId = 'gone';
    const r = await chorus(['repair', '--wait', '--poll-interval', '20', '--host', host]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`chorus: ${host} no longer knows repair job gone (did the node restart?)\n`);
  });

  it('status lists recent jobs as a table or shows one; cancel stops one', async () => {
    node.scripts.set('r2', [job({ id: 'r2', keyspaces: ['a', 'b'], rangesDone: 1, rowsStreamed: 7, elapsedMs: 65_000 })]);
    node.scripts.set('r1', [job({ state: 'done', rangesDone: 4, rowsCompared: 10, elapsedMs: 1_500 })]);
    const list = await chorus(['repair', 'status', '--host', host]);
    expect(list.code).toBe(0);
    const rows = list.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^ID\s+State\s+Keyspaces\s+Ranges\s+Failed\s+Compared\s+Streamed\s+Bytes\s+Elapsed$/);
    expect(rows[1]).toMatch(/^r2\s+running\s+a,b\s+1\/4\s+0\s+0\s+7\s+0 B\s+1m05s$/);
    expect(rows[2]).toMatch(/^r1\s+done\s+default\s+4\/4\s+0\s+10\s+0\s+0 B\s+1s$/);
    const listJson = await chorus(['repair', 'status', '--json', '--host', host]);
    expect(JSON.parse(listJson.stdout).jobs).toHaveLength(2);

    const one = await chorus(['repair', 'status', 'r1', '--host', host, '--json']);
    expect(one.code).toBe(0);
    expect(JSON.parse(one.stdout)).toMatchObject({ id: 'r1', state: 'done' });
    const text = await chorus(['repair', 'status', 'r1', '--host', host]);
    expect(text.stdout).toContain('state:          done');
    const missing = await chorus(['repair', 'status', 'nope', '--host', host]);
    expect(missing).toMatchObject({ code: 1, stdout: '', stderr: `chorus: no repair job nope on ${host}\n` });

    const cancel = await chorus(['repair', 'cancel', 'r2', '--host', host]);
    expect(cancel).toMatchObject({ code: 0, stdout: 'repair r2 cancelled after 1/4 ranges\n' });
    const again = await chorus(['repair', 'cancel', 'r1', '--host', host]);
    expect(again).toMatchObject({ code: 0, stdout: 'repair r1 had already ended: done\n' });
    expect((await chorus(['repair', 'cancel', 'nope', '--host', host])).stderr).toBe(`chorus: no repair job nope on ${host}\n`);
  });
});

describe('repair output', () => {
  it('estimates the time left from the ranges finished so far', () => {
    expect(repairEtaSeconds(job({ rangesDone: 0, elapsedMs: 5000 }))).toBeUndefined();
    expect(repairEtaSeconds(job({ rangesDone: 1, elapsedMs: 5000 }))).toBe(15);
    // Failed ranges are finished too.
    expect(repairEtaSeconds(job({ rangesDone: 1, rangesFailed: 1, elapsedMs: 5000 }))).toBe(5);
    expect(repairEtaSeconds(job({ state: 'done', rangesDone: 4, elapsedMs: 5000 }))).toBe(0);
  });

  it('says in one line how a job ended, with at most three failed ranges', () => {
    const failures = Array.from({ length: 5 }, (_, i) => ({ keyspace: 'k', start: String(i), end: String(i + 1), reason: 'timeout' }));
    expect(repairOutcome(job({ state: 'failed', rangesFailed: 5, failures }))).toBe('repair r1 failed: 5 of 4 ranges failed; k (0,1]: timeout; k (1,2]: timeout; k (2,3]: timeout; and 2 more');
    expect(repairOutcome(job({ state: 'failed', error: 'the node is stopping' }))).toBe('repair r1 failed: the node is stopping');
    expect(repairOutcome(job({ state: 'done', rangesDone: 4, rowsCompared: 1_000_000, elapsedMs: 3_725_000 }))).toBe('repair r1 done: 4/4 ranges, 1000000 rows compared, 0 rows streamed (0 B) in 1h02m');
    expect(repairProgressLine(job({ rangesDone: 1, rangesFailed: 1, elapsedMs: 1000 }))).toBe('repair r1: 2/4 ranges (1 failed), 0 rows streamed (0 B), ETA 1s');
  });

  it('shows one job with its failures and an empty list plainly', () => {
    const text = formatRepairJob(job({ state: 'failed', error: 'boom', failures: [{ keyspace: 'k', start: '1', end: '2', reason: 'timeout' }] }));
    expect(text).toContain('error:          boom');
    expect(text).toContain('  k (1,2]: timeout');
    expect(formatRepairJobs([])).toBe('no repair jobs');
  });
});
