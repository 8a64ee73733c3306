import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { Worker } from 'node:worker_threads';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TestCluster, openClientSocket, scaled } from './harness.js';

/**
 * The documented bound (README, How it behaves: memory) on a node's resident
 * memory while it is flooded with 1 MiB writes under the default byte
 * budgets, which are derived from max_heap_size and fit it; writes are
 * refused at the client budget long before the mailboxes fill.
 */
const RSS_BOUND_MIB = 512;
const MiB = 1024 * 1024;
const FLOOD_MS = scaled(15_000);
const HTTP_CONNECTIONS = 32;
const CLIENT_CONNECTIONS = 8;
/** Requests each client-protocol connection keeps in flight. */
const CLIENT_DEPTH = 8;

/** Asks GET /health every 250 ms until the deadline, each with its own connection; reports the answers. */
const HEALTH_PROBE = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const { target, deadline, timeoutMs } = workerData;
const at = target.lastIndexOf(':');
let checks = 0, failures = 0, slowestMs = 0;
function probe() {
  if (Date.now() >= deadline) return parentPort.postMessage({ checks, failures, slowestMs });
  const started = Date.now();
  checks++;
  let settled = false;
  const done = (ok) => {
    if (settled) return;
    settled = true;
    if (!ok) failures++;
    slowestMs = Math.max(slowestMs, Date.now() - started);
    setTimeout(probe, 250);
  };
  const req = http.request({ host: target.slice(0, at), port: Number(target.slice(at + 1)), path: '/health', agent: false, timeout: timeoutMs }, (res) => {
    res.resume();
    res.on('end', () => done(res.statusCode === 200));
  });
  req.on('error', () => done(false));
  req.on('timeout', () => { req.destroy(); done(false); });
  req.end();
}
probe();
`;

const packr = new Packr({ useRecords: false, mapsAsObjects: true });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A 1 MiB value that names its key, so a read can tell it from any other. */
function valueOf(key: string): Buffer {
  const value = Buffer.alloc(MiB, 0x61);
  value.write(`${key}|`, 0, 'utf8');
  return value;
}

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(/(\d+)/.exec(line ?? '')?.[1] ?? 0) / 1024;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function send(address: string, agent: Agent, method: string, path: string, body?: Buffer, timeoutMs = scaled(30_000)): Promise<Answer> {
  const at = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = request({ host: address.slice(0, at), port: Number(address.slice(at + 1)), method, path, agent, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.end(body);
  });
}

describe('a node flooded with 1 MiB writes', () => {
  const cluster = new TestCluster();
  beforeAll(() => cluster.start(3));
  afterAll(() => cluster.destroy());

  it(`keeps its memory under ${RSS_BOUND_MIB} MiB, answers /health throughout, refuses the excess with 503 Overloaded and Retry-After, and loses no acknowledged write`, async () => {
    const target = cluster.address('n1');
    const pid = cluster.pid('n1');
    const baseline = rssMiB(pid);
    const acknowledged: string[] = [];
    const counts = { ok: 0, overloaded: 0, overloadedWithRetryAfter: 0, timeouts: 0, other: 0, errors: 0, clientOk: 0, clientOverloaded: 0, clientRetryAfter: 0, clientOther: 0 };
    const otherStatuses = new Map<string, number>();
    let peakRss = baseline;
    let healthChecks = 0;
    let healthFailures = 0;
    let slowestHealthMs = 0;
    const deadline = Date.now() + FLOOD_MS;

    const sampler = (async () => {
      while (Date.now() < deadline) {
        peakRss = Math.max(peakRss, rssMiB(pid));
        await sleep(100);
      }
    })();

    // In a thread of its own: the writers keep this one busy, and their lag is not the node's.
    const health = new Promise<void>((resolve, reject) => {
      const worker = new Worker(HEALTH_PROBE, { eval: true, workerData: { target, deadline, timeoutMs: scaled(5_000) } });
      worker.once('message', (r: { checks: number; failures: number; slowestMs: number }) => {
        healthChecks = r.checks;
        healthFailures = r.failures;
        slowestHealthMs = r.slowestMs;
        resolve();
      });
      worker.once('error', reject);
    });

    const writer = async (w: number) => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      for (let i = 0; Date.now() < deadline; i++) {
        const key = `flood-h${w}-${i}`;
        try {
          const answer = await send(target, agent, 'PUT', `/v1/kv/default/${key}?consistency=QUORUM`, valueOf(key));
          if (answer.status === 200) {
            counts.ok++;
            acknowledged.push(key);
          } else if (answer.status === 503 && JSON.parse(answer.body.toString('utf8')).error === 'Overloaded') {
            counts.overloaded++;
            if (answer.headers['retry-after'] !== undefined) counts.overloadedWithRetryAfter++;
          } else if (answer.status === 504) counts.timeouts++;
          else {
            counts.other++;
            const name = `${answer.status} ${answer.body.toString('utf8').slice(0, 80)}`;
            otherStatuses.set(name, (otherStatuses.get(name) ?? 0) + 1);
          }
        } catch {
          // A connection the node closed after refusing a body: open another.
          counts.errors++;
        }
      }
      agent.destroy();
    };

    /** The client protocol: CLIENT_DEPTH puts in flight per connection, each answered before the next is sent. */
    const clientWriter = async (w: number) => {
      const ws = await openClientSocket(target);
      const waiting = new Map<number, { key: string; done: () => void }>();
      ws.on('message', (data: Buffer) => {
        const decoded = packr.unpack(data) as unknown;
        for (const a of (Array.isArray(decoded) ? decoded : [decoded]) as Array<{ id: number; ok?: unknown; error?: { name: string; retryAfterMs?: number } }>) {
          const pending = waiting.get(a.id);
          if (!pending) continue;
          waiting.delete(a.id);
          if (a.ok !== undefined) {
            counts.clientOk++;
            acknowledged.push(pending.key);
          } else if (a.error?.name === 'Overloaded') {
            counts.clientOverloaded++;
            if (typeof a.error.retryAfterMs === 'number') counts.clientRetryAfter++;
          } else counts.clientOther++;
          pending.done();
        }
      });
      let nextId = 1;
      const lane = async (l: number) => {
        for (let i = 0; Date.now() < deadline && ws.readyState === WebSocket.OPEN; i++) {
          const id = nextId++;
          const key = `flood-c${w}-${l}-${i}`;
          await new Promise<void>((done) => {
            waiting.set(id, { key, done });
            ws.send(packr.pack({ id, op: 'put', ks: 'default', key, value: valueOf(key), cl: 'QUORUM' }));
          });
        }
      };
      await Promise.all(Array.from({ length: CLIENT_DEPTH }, (_, l) => lane(l)));
      ws.close();
    };

    await Promise.all([
      ...Array.from({ length: HTTP_CONNECTIONS }, (_, w) => writer(w)),
      ...Array.from({ length: CLIENT_CONNECTIONS }, (_, w) => clientWriter(w)),
      sampler,
      health,
    ]);

    console.log(
      `flood of ${FLOOD_MS} ms, ${HTTP_CONNECTIONS} HTTP and ${CLIENT_CONNECTIONS}×${CLIENT_DEPTH} client-protocol writers of 1 MiB: ` +
        `RSS ${baseline.toFixed(0)} MiB before, peak ${peakRss.toFixed(0)} MiB (bound ${RSS_BOUND_MIB}); ` +
        `HTTP ${JSON.stringify({ ok: counts.ok, overloaded: counts.overloaded, timeouts: counts.timeouts, other: counts.other, connectionErrors: counts.errors })}, ` +
        `client ${JSON.stringify({ ok: counts.clientOk, overloaded: counts.clientOverloaded, other: counts.clientOther })}; ` +
        `/health ${healthChecks - healthFailures}/${healthChecks} answered, slowest ${slowestHealthMs} ms` +
        (otherStatuses.size > 0 ? `; other answers ${JSON.stringify(Object.fromEntries(otherStatuses))}` : ''),
    );
    expect(peakRss).toBeLessThan(RSS_BOUND_MIB);
    // A probe waits for its answer, then 250 ms: on a loaded machine, a few seconds each.
    expect(healthChecks).toBeGreaterThanOrEqual(5);
    expect(healthFailures).toBe(0);
    expect(counts.overloaded).toBeGreaterThan(0);
    expect(counts.overloadedWithRetryAfter).toBe(counts.overloaded);
    expect(counts.clientRetryAfter).toBe(counts.clientOverloaded);
    expect(counts.ok + counts.clientOk).toBeGreaterThan(0);

    // Every acknowledged write of a sample reads back, whole, at QUORUM through another node.
    const reader = new Agent({ keepAlive: true, maxSockets: 4 });
    const sample = acknowledged.filter((_, i) => i % Math.max(1, Math.floor(acknowledged.length / 60)) === 0);
    const lost: string[] = [];
    await Promise.all(
      sample.map(async (key) => {
        const answer = await send(cluster.address('n2'), reader, 'GET', `/v1/kv/default/${key}?consistency=QUORUM`);
        if (answer.status !== 200 || !answer.body.equals(valueOf(key))) lost.push(`${key}: ${answer.status}`);
      }),
    );
    reader.destroy();
    expect(sample.length).toBeGreaterThan(0);
    expect(lost).toEqual([]);
    // And the node is still whole: it answers a status after the flood.
    expect((await cluster.status('n1')).length).toBe(3);
  });
});
