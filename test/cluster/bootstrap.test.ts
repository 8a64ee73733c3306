import { connect } from '@chorus/client';
import { nodeId, token } from '@chorus/core';
import { RingView, tokenOf } from '@chorus/ring';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, chorus, scaled } from './harness.js';

/** Keys written before the join; CHORUS_BOOTSTRAP_TEST_KEYS lowers it for a machine too slow for 10,000. */
const KEYS = Number(process.env.CHORUS_BOOTSTRAP_TEST_KEYS ?? 10_000);
const CONCURRENCY = 32;
/** Values of about this many bytes, so the stream has some volume to measure. */
const VALUE_BYTES = 200;

const valueOf = (key: string) => `value-of-${key}-`.padEnd(VALUE_BYTES, 'x');

async function http(cluster: TestCluster, node: string, method: string, path: string, body?: string) {
  const response = await fetch(`http://${cluster.address(node)}${path}`, { method, body, signal: AbortSignal.timeout(scaled(20_000)) });
  return { status: response.status, text: await response.text() };
}

async function pool(n: number, work: (i: number) => Promise<void>, concurrency = CONCURRENCY): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await work(next++);
  }));
}

/** Bulk loads and checks go through @chorus/client (pipelined over WebSockets), far cheaper than one HTTP request a key. */
async function withClient<T>(cluster: TestCluster, nodes: readonly string[], work: (client: ReturnType<typeof connect>) => Promise<T>): Promise<T> {
  const client = connect(nodes.map((n) => cluster.address(n)), { requestTimeoutMs: scaled(20_000) });
  try {
    return await work(client);
  } finally {
    await client.close();
  }
}
const BULK = 128;
const text = (v: Uint8Array | undefined) => (v === undefined ? undefined : Buffer.from(v).toString());

interface StreamView {
  kind: string;
  state: string;
  rangesTotal: number;
  rangesDone: number;
  rowsStreamed: number;
  bytesStreamed: number;
  percent: number;
  elapsedMs: number;
}

describe('bootstrap with real processes', () => {
  const cluster = new TestCluster();
  beforeAll(() => cluster.start(3, ['--rf', '2']));
  afterAll(() => cluster.destroy());

  it(`chorus cluster add streams ${KEYS} keys to a 4th node while a writer keeps writing at QUORUM; every key is then readable at ALL and the new node holds exactly its ranges`, async () => {
    const keys = Array.from({ length: KEYS }, (_, i) => `boot-${i}`);
    const writing = Date.now();
    await withClient(cluster, ['n1', 'n2', 'n3'], (client) => pool(keys.length, async (i) => void (await client.put('default', keys[i]!, valueOf(keys[i]!), { consistency: 'QUORUM' })), BULK));
    console.log(`bootstrap: ${KEYS} writes at QUORUM in ${Date.now() - writing} ms`);

    // A writer at QUORUM for the whole join, and a watcher of n4's state as n1 sees it.
    let joining = true;
    const during: string[] = [];
    const failures: string[] = [];
    const writer = Promise.all([1, 2, 3].map(async (w) => {
      for (let i = 0; joining; i++) {
        const key = `during-${w}-${i}`;
        const put = await http(cluster, `n${w}`, 'PUT', `/v1/kv/default/${key}?consistency=QUORUM`, valueOf(key)).catch((e: Error) => ({ status: 0, text: e.message }));
        if (put.status === 200) during.push(key);
        else failures.push(`${key}: ${put.status} ${put.text}`);
      }
    }));
    const states = new Set<string>();
    const watcher = (async () => {
      while (joining) {
        const n4 = await cluster.status('n1').then((nodes) => nodes.find((n) => n.name === 'n4'), () => undefined);
        if (n4) states.add(`${n4.state}${(n4 as { streaming?: number }).streaming === undefined ? '' : ` ${(n4 as { streaming?: number }).streaming}%`}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    const adding = Date.now();
    let added: { nodes: Array<{ name: string; state: string; owns: number | null }> };
    try {
      added = JSON.parse(await chorus(['cluster', 'add', '--dir', cluster.dir, '--json'], scaled(180_000))) as typeof added;
    } finally {
      joining = false;
      await writer;
      await watcher;
    }
    console.log(`bootstrap: chorus cluster add returned after ${Date.now() - adding} ms; n4 seen by n1 as ${[...states].join(' -> ')}; ${during.length} writes acknowledged during the join, ${failures.length} failed`);
    expect(failures, failures.slice(0, 5).join('\n')).toEqual([]);
    expect(during.length).toBeGreaterThan(0);
    expect(added.nodes.map((n) => `${n.name} ${n.state}`).sort()).toEqual(['n1 UN', 'n2 UN', 'n3 UN', 'n4 UN']);
    expect(added.nodes.find((n) => n.name === 'n4')!.owns).toBeGreaterThan(0.2);
    expect([...states].some((s) => s.startsWith('UJ'))).toBe(true);

    const streams = JSON.parse(await chorus(['streams', '--host', cluster.address('n4'), '--json'])) as { streams: StreamView[] };
    expect(streams.streams).toHaveLength(1);
    const s = streams.streams[0]!;
    expect(s).toMatchObject({ kind: 'bootstrap', state: 'done', percent: 100 });
    expect(s.rangesDone).toBe(s.rangesTotal);
    expect(s.rowsStreamed).toBeGreaterThan(KEYS / 4);
    const seconds = s.elapsedMs / 1000;
    console.log(`bootstrap: n4 streamed ${s.rowsStreamed} rows, ${(s.bytesStreamed / 1e6).toFixed(2)} MB in ${s.rangesTotal} ranges in ${s.elapsedMs.toFixed(0)} ms: ${(s.rowsStreamed / seconds).toFixed(0)} rows/s, ${(s.bytesStreamed / 1e6 / seconds).toFixed(2)} MB/s`);

    // n4's own replica, before any read at ALL repairs it: exactly the keys of its ranges.
    const ringJson = JSON.parse(await chorus(['ring', '--json', '--host', cluster.address('n1')])) as { tokens: Array<{ token: string; name: string }> };
    const byNode = new Map<string, string[]>();
    for (const t of ringJson.tokens) byNode.set(t.name, [...(byNode.get(t.name) ?? []), t.token]);
    const ring = RingView.of([...byNode].map(([name, tokens]) => ({ node: nodeId(name), dc: 'dc1', rack: 'rack1', tokens: tokens.map((t) => token(t)), status: 'normal' as const })));
    const all = [...keys, ...during];
    const wrong: string[] = [];
    let held = 0;
    await withClient(cluster, ['n1', 'n2', 'n3', 'n4'], (client) => pool(all.length, async (i) => {
      const key = all[i]!;
      const mine = ring.naturalReplicas(tokenOf(key), { class: 'SimpleStrategy', rf: 2 }).includes(nodeId('n4'));
      const got = await client.local(cluster.address('n4'), 'default', key);
      const has = text(got?.value) === valueOf(key);
      if (has) held++;
      if (mine !== has) wrong.push(`${key}: n4 ${has ? 'holds it but is no replica' : `is a replica but holds ${got === undefined ? 'nothing' : 'another version'}`}`);
    }, BULK));
    expect(wrong.slice(0, 10), `${wrong.length} keys wrong on n4`).toEqual([]);
    console.log(`bootstrap: n4 holds ${held} of ${all.length} keys, exactly those of its ranges`);

    // Every key, written before or during the join, at ALL.
    const unreadable: string[] = [];
    await withClient(cluster, ['n1', 'n2', 'n3', 'n4'], (client) => pool(all.length, async (i) => {
      const key = all[i]!;
      const got = await client.get('default', key, { consistency: 'ALL' }).catch((e: Error) => e);
      if (got instanceof Error || text(got?.value) !== valueOf(key)) unreadable.push(`${key}: ${got instanceof Error ? got.message : 'absent or another version'}`);
    }, BULK));
    expect(unreadable.slice(0, 10), `${unreadable.length} keys not readable at ALL`).toEqual([]);
  });

  it('chorus decommission moves a node\'s ranges to the others while a writer keeps writing at QUORUM; every key is then readable at ALL', async () => {
    const before = await cluster.status('n1');
    expect(before.filter((n) => n.state === 'UN')).toHaveLength(4);
    let leaving = true;
    const during: string[] = [];
    const failures: string[] = [];
    const writer = Promise.all([1, 2, 3].map(async (w) => {
      for (let i = 0; leaving; i++) {
        const key = `leaving-${w}-${i}`;
        const put = await http(cluster, `n${w}`, 'PUT', `/v1/kv/default/${key}?consistency=QUORUM`, valueOf(key)).catch((e: Error) => ({ status: 0, text: e.message }));
        if (put.status === 200) during.push(key);
        else failures.push(`${key}: ${put.status} ${put.text}`);
      }
    }));
    const started = Date.now();
    let done: { rowsStreamed: number; bytesStreamed: number; elapsedMs: number; state: string };
    try {
      done = JSON.parse(await chorus(['decommission', '--host', cluster.address('n2'), '--json'], scaled(180_000))) as typeof done;
      await cluster.waitFor('n2 gone from the views of n1, n3 and n4', async () => {
        for (const o of ['n1', 'n3', 'n4']) {
          const nodes = await cluster.status(o);
          if (nodes.some((n) => n.name === 'n2') || nodes.filter((n) => n.state === 'UN').length !== 3) return false;
        }
        return true;
      }, scaled(60_000));
    } finally {
      leaving = false;
      await writer;
    }
    console.log(`decommission: n2 left after ${Date.now() - started} ms, streaming ${done.rowsStreamed} rows, ${(done.bytesStreamed / 1e6).toFixed(2)} MB in ${done.elapsedMs.toFixed(0)} ms (${(done.rowsStreamed / (done.elapsedMs / 1000)).toFixed(0)} rows/s); ${during.length} writes acknowledged meanwhile, ${failures.length} failed`);
    expect(done.state).toBe('done');
    // Writes through n2 itself stop when it exits; the writers go through the nodes that stay.
    expect(failures.filter((f) => !f.startsWith('leaving-2-')), failures.slice(0, 5).join('\n')).toEqual([]);
    const all = [...Array.from({ length: KEYS }, (_, i) => `boot-${i}`), ...during];
    const stay = ['n1', 'n3', 'n4'];
    const unreadable: string[] = [];
    await withClient(cluster, stay, (client) => pool(all.length, async (i) => {
      const key = all[i]!;
      const got = await client.get('default', key, { consistency: 'ALL' }).catch((e: Error) => e);
      if (got instanceof Error || text(got?.value) !== valueOf(key)) unreadable.push(`${key}: ${got instanceof Error ? got.message : 'absent or another version'}`);
    }, BULK));
    expect(unreadable.slice(0, 10), `${unreadable.length} keys not readable at ALL`).toEqual([]);
    const status = JSON.parse(await chorus(['status', '--json', '--host', cluster.address('n1')])) as { nodes: Array<{ name: string; state: string; owns: number }> };
    expect(status.nodes.map((n) => `${n.name} ${n.state}`).sort()).toEqual(['n1 UN', 'n3 UN', 'n4 UN']);
    expect(status.nodes.reduce((sum, n) => sum + n.owns, 0)).toBeCloseTo(2, 5);
  });
});
