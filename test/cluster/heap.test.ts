import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, freeBasePort, openClientSocket, scaled, spawnChorus, tempDir } from './harness.js';

/**
 * The smallest heap a node may have: 48 MiB for the node itself and 16 MiB for the byte budgets derived from
 * it, with the row cache off so that no room the cache has not filled yet is left over for the flood
 * (README, How it behaves: the heap).
 */
const SMALLEST_HEAP_MIB = 64;
const MiB = 1024 * 1024;
const FLOOD_MS = scaled(15_000);
/** 1 MiB HTTP writes, one at a time per connection. */
const HTTP_CONNECTIONS = 16;
/** Client-protocol connections, each keeping many small writes in flight, far past its own budget. */
const CLIENT_CONNECTIONS = 8;
const CLIENT_IN_FLIGHT = 2_048;
const SMALL_VALUE = Buffer.alloc(1024, 0x62);

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

interface Answer {
  status: number;
  body: Buffer;
}

function send(address: string, agent: Agent, method: string, path: string, body?: Buffer): Promise<Answer> {
  const at = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = request({ host: address.slice(0, at), port: Number(address.slice(at + 1)), method, path, agent, timeout: scaled(30_000) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.end(body);
  });
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe(`a node with the smallest heap allowed (max_heap_size=${SMALLEST_HEAP_MIB}MiB, no row cache) driven past its byte budgets`, () => {
  const cluster = new TestCluster();
  beforeAll(() => cluster.start(3, ['--set', `max_heap_size=${SMALLEST_HEAP_MIB}MiB`, '--set', 'row_cache_size=0', '--set', 'io_threads=2', '--set', 'gc_threads=2']));
  afterAll(() => cluster.destroy());

  it('runs with that heap, answers the excess with Overloaded, and lives on to serve', async () => {
    const target = cluster.address('n1');
    const pid = cluster.pid('n1');
    // The node process itself, not a wrapper, has the heap and V8's thread pool of its settings.
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    expect(cmdline).toContain(`--max-old-space-size=${SMALLEST_HEAP_MIB}`);
    expect(cmdline).toContain('--v8-pool-size=2');
    // And the I/O pool of io_threads (libuv reads its size from the environment the process started with).
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')).toContain('UV_THREADPOOL_SIZE=2');

    const counts = { httpOk: 0, httpOverloaded: 0, httpOther: 0, httpErrors: 0, clientOk: 0, clientOverloaded: 0, clientOther: 0 };
    const deadline = Date.now() + FLOOD_MS;

    const httpWriter = async (w: number) => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      const value = Buffer.alloc(MiB, 0x61);
      for (let i = 0; Date.now() < deadline; i++) {
        try {
          const answer = await send(target, agent, 'PUT', `/v1/kv/default/heap-h${w}-${i}?consistency=QUORUM`, value);
          if (answer.status === 200) counts.httpOk++;
          else if (answer.status === 503 && JSON.parse(answer.body.toString('utf8')).error === 'Overloaded') counts.httpOverloaded++;
          else counts.httpOther++;
        } catch {
          // A connection the node closed after refusing a body: open another.
          counts.httpErrors++;
        }
      }
      agent.destroy();
    };

    /** Keeps CLIENT_IN_FLIGHT small writes outstanding: each answer sends the next. */
    const clientWriter = async (w: number) => {
      const ws = await openClientSocket(target);
      let nextId = 1;
      let outstanding = 0;
      let finished: () => void = () => {};
      const done = new Promise<void>((resolve) => (finished = resolve));
      const sendMore = () => {
        const batch: unknown[] = [];
        while (outstanding < CLIENT_IN_FLIGHT && Date.now() < deadline) {
          const id = nextId++;
          batch.push({ id, op: 'put', ks: 'default', key: `heap-c${w}-${id}`, value: SMALL_VALUE, cl: 'QUORUM' });
          outstanding++;
        }
        for (const message of batch) ws.send(packr.pack(message));
        if (outstanding === 0) finished();
      };
      ws.on('message', (data: Buffer) => {
        const decoded = packr.unpack(data) as unknown;
        for (const a of (Array.isArray(decoded) ? decoded : [decoded]) as Array<{ id: number; ok?: unknown; error?: { name: string } }>) {
          outstanding--;
          if (a.ok !== undefined) counts.clientOk++;
          else if (a.error?.name === 'Overloaded') counts.clientOverloaded++;
          else counts.clientOther++;
        }
        sendMore();
      });
      ws.once('close', () => finished());
      sendMore();
      // A connection paused by its budget may hold answers past the deadline; they come, or the node closes it.
      await Promise.race([done, new Promise((r) => setTimeout(r, FLOOD_MS + scaled(30_000)))]);
      ws.close();
    };

    await Promise.all([...Array.from({ length: HTTP_CONNECTIONS }, (_, w) => httpWriter(w)), ...Array.from({ length: CLIENT_CONNECTIONS }, (_, w) => clientWriter(w))]);
    console.log(`flood of ${FLOOD_MS} ms at max_heap_size=${SMALLEST_HEAP_MIB}MiB: ${JSON.stringify(counts)}`);

    expect(alive(pid)).toBe(true);
    expect(cluster.log('n1')).not.toMatch(/heap out of memory|FATAL ERROR|Allocation failed/i);
    expect(counts.httpOverloaded + counts.clientOverloaded).toBeGreaterThan(0);
    expect(counts.httpOk + counts.clientOk).toBeGreaterThan(0);
    // Still serving: healthy, a write and its read back, the whole cluster in its view.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    await cluster.waitFor('n1 healthy', async () => (await send(target, agent, 'GET', '/health')).status === 200, scaled(30_000));
    await cluster.waitFor(
      'a write through n1 after the flood',
      async () => (await send(target, agent, 'PUT', '/v1/kv/default/after-flood?consistency=QUORUM', Buffer.from('still here'))).status === 200,
      scaled(30_000),
    );
    const read = await send(target, agent, 'GET', '/v1/kv/default/after-flood?consistency=QUORUM');
    agent.destroy();
    expect(read.status).toBe(200);
    expect(read.body.toString('utf8')).toBe('still here');
    expect((await cluster.status('n1')).length).toBe(3);
  });
});

describe('a node whose byte budgets set do not fit its heap', () => {
  it('refuses to start, with one line naming the settings and the heap it would need, and exit code 1', async () => {
    const dir = tempDir('heap-');
    const child = spawnChorus(['node', 'start', '--name', 'n1', '--listen', '127.0.0.1:1', '--seeds', '127.0.0.1:1', '--data', join(dir, 'n1'), '--secret', 'sesame-sesame', '--set', 'max_mailbox_bytes=256MiB']);
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.stdout?.resume();
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(1);
    expect(stderr).toMatch(/^chorus: config: the byte budgets do not fit max_heap_size \d+ MiB: .*max_mailbox_bytes 256 MiB × 2.*raise max_heap_size to at least \d+(\.\d)? MiB/);
    expect(stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('a node started by hand, without its heap flags or its thread pools', () => {
  it('runs itself again with its heap, io_threads and gc_threads, and dies with the process that was started', async () => {
    const dir = tempDir('heap-by-hand-');
    const address = `127.0.0.1:${await freeBasePort(1)}`;
    const child = spawnChorus(['node', 'start', '--name', 'n1', '--listen', address, '--data', join(dir, 'n1'), '--secret', 'sesame-sesame', '--set', 'max_heap_size=256MiB', '--set', 'io_threads=3', '--set', 'gc_threads=1'], { env: { UV_THREADPOOL_SIZE: '7' } });
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr?.resume();
    const servingLine = () => stdout.split('\n').find((line) => line.includes('"node serving"'));
    await until('the node to serve', async () => servingLine() !== undefined, scaled(30_000));
    const serving = JSON.parse(servingLine()!) as { heapLimitMiB: number; ioThreads: number; gcThreads: number };
    // The settings, not the environment the process was started with, size the pools the node runs with.
    expect(serving.ioThreads).toBe(3);
    expect(serving.gcThreads).toBe(1);
    // V8's limit is the old space asked for plus the young generation (three 32 MiB semi-spaces: 96 MiB).
    expect(serving.heapLimitMiB).toBeGreaterThanOrEqual(256);
    expect(serving.heapLimitMiB).toBeLessThan(256 + 128);
    const agent = new Agent({ keepAlive: false });
    expect((await send(address, agent, 'GET', '/health')).status).toBe(200);
    // What a pid file or `kill -9` by hand holds is the process started; the node must not outlive it.
    child.kill('SIGKILL');
    await until('the node to go with the process started', () => send(address, agent, 'GET', '/health').then(() => false, () => true), scaled(15_000));
    agent.destroy();
  });
});
