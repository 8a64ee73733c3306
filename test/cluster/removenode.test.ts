import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, chorus, scaled } from './harness.js';

/** Keys written before the node dies; CHORUS_REMOVENODE_TEST_KEYS lowers it for a slow machine. */
const KEYS = Number(process.env.CHORUS_REMOVENODE_TEST_KEYS ?? 3_000);
const CONCURRENCY = 32;
const valueOf = (key: string) => `value-of-${key}-`.padEnd(200, 'x');

async function http(cluster: TestCluster, node: string, method: string, path: string, body?: string) {
  const response = await fetch(`http://${cluster.address(node)}${path}`, { method, body, signal: AbortSignal.timeout(scaled(20_000)) });
  return { status: response.status, text: await response.text() };
}

async function pool(n: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < n) await work(next++);
  }));
}

interface StatusLine {
  name: string;
  hostId: string;
  state: string;
  owns: number | null;
}

describe('removenode with real processes', () => {
  const cluster = new TestCluster();
  beforeAll(() => cluster.start(4, ['--rf', '2']));
  afterAll(() => cluster.destroy());

  it(`a killed node is removed: its ranges are re-replicated, all ${KEYS} keys read at ALL, ownership sums to rf, and the node cannot come back`, async () => {
    const keys = Array.from({ length: KEYS }, (_, i) => `rm-${i}`);
    await pool(keys.length, async (i) => {
      const put = await http(cluster, `n${(i % 4) + 1}`, 'PUT', `/v1/kv/default/${keys[i]}?consistency=QUORUM`, valueOf(keys[i]!));
      expect(put.status, put.text).toBe(200);
    });
    const before = JSON.parse(await chorus(['status', '--json', '--host', cluster.address('n1')])) as { nodes: StatusLine[] };
    const n4 = before.nodes.find((n) => n.name === 'n4')!;
    const n2 = before.nodes.find((n) => n.name === 'n2')!;

    await expect(chorus(['removenode', n2.hostId, '--host', cluster.address('n1')])).rejects.toThrow(/RemoveNodeRefused|is UP as the asked node sees it/);
    await cluster.kill('n4');
    await cluster.waitFor('n4 DN on n1', async () => (await cluster.status('n1')).some((n) => n.name === 'n4' && n.state === 'DN'), scaled(30_000));

    const started = Date.now();
    const out = JSON.parse(await chorus(['removenode', n4.hostId, '--host', cluster.address('n1'), '--json'], scaled(120_000))) as { streams: Array<{ kind: string; state: string; rowsStreamed: number; bytesStreamed: number; elapsedMs: number }> };
    const first = out.streams[0]!;
    expect(first).toMatchObject({ kind: 'removenode', state: 'done' });
    expect(first.rowsStreamed).toBeGreaterThan(0);
    console.log(`removenode: done after ${Date.now() - started} ms; streamed ${first.rowsStreamed} rows, ${(first.bytesStreamed / 1e6).toFixed(2)} MB in ${first.elapsedMs} ms (${(first.rowsStreamed / Math.max(0.001, first.elapsedMs / 1000)).toFixed(0)} rows/s); catch-up pass ${out.streams[1]?.rowsStreamed} rows`);

    for (const observer of ['n1', 'n2', 'n3']) {
      await cluster.waitFor(`n4 gone on ${observer}`, async () => (await cluster.status(observer)).every((n) => n.name !== 'n4'), scaled(30_000));
    }
    const after = JSON.parse(await chorus(['status', '--json', '--host', cluster.address('n2')])) as { nodes: StatusLine[] };
    expect(after.nodes.map((n) => `${n.name} ${n.state}`).sort()).toEqual(['n1 UN', 'n2 UN', 'n3 UN']);
    expect(after.nodes.reduce((s, n) => s + (n.owns ?? 0), 0)).toBeCloseTo(2, 3);

    const unreadable: string[] = [];
    await pool(keys.length, async (i) => {
      const got = await http(cluster, `n${(i % 3) + 1}`, 'GET', `/v1/kv/default/${keys[i]}?consistency=ALL`);
      if (got.status !== 200 || got.text !== valueOf(keys[i]!)) unreadable.push(`${keys[i]}: ${got.status} ${got.text.slice(0, 80)}`);
    });
    expect(unreadable.slice(0, 10), `${unreadable.length} keys unreadable at ALL`).toEqual([]);

    // The removed node, started again on its old data, learns that it was removed and exits with the reason.
    await expect(cluster.restart()).rejects.toThrow(/n4 exited/);
    expect(cluster.log('n4')).toMatch(/was removed from the ring/);
    expect((await cluster.status('n1')).map((n) => n.name).sort()).toEqual(['n1', 'n2', 'n3']);
  });
});
