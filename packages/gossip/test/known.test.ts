import { type NodeId, type Token, hostId, token } from '@chorus/core';
import { describe, expect, it } from 'vitest';
import { type EndpointState, type GossipOptions, gossipStats, membership } from '../src/index.js';
import { harness, id, names, until } from './helpers.js';

const TOKENS: Record<string, Token> = { n1: token(-6e18), n2: token(-2e18), n3: token(2e18), n4: token(6e18) };

/** What each node of a 4-node ring publishes, and a record of the ring states it is told to keep. */
function ringNode(name: string, kept: Map<string, Map<NodeId, EndpointState>>, told: { count: number } = { count: 0 }): Partial<GossipOptions> {
  const mine = new Map<NodeId, EndpointState>();
  kept.set(name, mine);
  return {
    initialState: { hostId: hostId(`0000000${name.slice(1)}-0000-4000-8000-000000000000`), status: 'NORMAL', tokens: [TOKENS[name]!], dc: 'dc1', rack: 'r1' },
    // Read at each start, as a node reads its disk: what the last run kept.
    get known() {
      return [...mine].map(([node, state]) => ({ node, state }));
    },
    onRingState: (node, state) => {
      told.count++;
      if (state === undefined) mine.delete(node);
      else mine.set(node, state);
    },
  };
}

/** A state as another node's disk might hold it. */
function stored(generation: number, extra: Record<string, string> = {}): EndpointState {
  const app: Record<string, { value: string; version: number }> = {
    STATUS: { value: 'NORMAL', version: 3 },
    TOKENS: { value: '42', version: 2 },
    HOST_ID: { value: '00000009-0000-4000-8000-000000000000', version: 1 },
  };
  let v = 3;
  for (const [k, value] of Object.entries(extra)) app[k] = { value, version: ++v };
  return { heartbeat: { generation, version: 10 }, app };
}

describe('endpoint states known from before a restart', () => {
  it('every peer restarts while n3 is down: each still holds n3 in the ring, DOWN, with its tokens; relayed last heartbeats do not bring it UP; its next run does (seed 262)', async () => {
    const kept = new Map<string, Map<NodeId, EndpointState>>();
    const told = { count: 0 };
    const h = await harness(262);
    for (const n of names(4)) await h.add(n, ringNode(n, kept, told));
    expect(await until(h, () => h.all((v) => v.liveNodes().length === 4), 60_000), 'seed 262: no convergence').toBeDefined();
    // Heartbeats and other states are not reported: thirty rounds of a steady ring tell nothing.
    await h.sim.runFor(2_000);
    const settled = told.count;
    await h.sim.runFor(30_000);
    expect(told.count).toBe(settled);
    // Each node was told the ring state of every peer, once per change rather than once per heartbeat.
    for (const n of names(4)) expect([...kept.get(n)!.keys()].sort(), n).toEqual(names(4).filter((o) => o !== n));
    const n3 = h.views.get('n1')!.endpoint(id('n3'))!;

    h.sim.crash('n3');
    expect(await until(h, () => h.all((v) => !v.isAlive(id('n3'))), 60_000), 'seed 262: n3 not convicted').toBeDefined();
    await h.sim.runFor(5_000);
    // n1 and n2 restart while n4 still holds n3's last heartbeat, which is past the one n1 and n2 kept.
    for (const n of ['n1', 'n2']) {
      h.sim.crash(n);
      await h.sim.restart(n);
      await h.sim.runFor(1);
      const view = h.views.get(n)!;
      expect(view.endpoint(id('n3')), `${n} right after its restart`).toMatchObject({ liveness: 'DOWN', status: 'NORMAL', tokens: [TOKENS.n3], generation: n3.generation, hostId: n3.hostId, dc: 'dc1', rack: 'r1' });
    }
    await h.sim.runFor(60_000);
    // n4 restarts too: now no running node has heard n3 in this run.
    h.sim.crash('n4');
    await h.sim.restart('n4');
    await h.sim.runFor(60_000);
    for (const n of ['n1', 'n2', 'n4']) {
      const view = (await settleAsk(h, membership(h.gossipers.get(n)!)))!;
      expect(view.endpoint(id('n3')), `${n}: n3 after every peer restarted`).toMatchObject({ liveness: 'DOWN', status: 'NORMAL', tokens: [TOKENS.n3], generation: n3.generation });
      expect(h.events.get(n)!.some((e) => e.kind === 'up' && e.node === 'n3'), `${n} took n3 for UP`).toBe(false);
      expect(view.liveNodes().length, n).toBe(3);
    }
    // The failure detector never convicted anyone after the restarts: n3 was never UP, and the others never silent.
    for (const n of ['n1', 'n2', 'n4']) expect((await settleAsk(h, gossipStats(h.gossipers.get(n)!)))!.convictions, n).toBe(0);

    // n3's next run, with a newer generation, replaces what was kept of it.
    await h.sim.restart('n3');
    expect(await until(h, () => h.all((v) => v.liveNodes().length === 4), 60_000), 'seed 262: n3 not back UP').toBeDefined();
    expect(h.views.get('n1')!.endpoint(id('n3'))!.generation).toBeGreaterThan(n3.generation);
  }, 60_000);

  it('a kept state is replaced by a newer generation of its node, never by an older one (seed 263)', async () => {
    const h = await harness(263);
    // Two disks kept different runs of n9, which is down: the later run wins on both nodes, and n9 stays DOWN.
    await h.add('n1', { known: [{ node: id('n9'), state: stored(1_000) }] });
    await h.add('n3', { known: [{ node: id('n9'), state: stored(2_000) }] });
    await h.sim.runFor(1);
    expect(h.views.get('n1')!.endpoint(id('n9'))).toMatchObject({ liveness: 'DOWN', generation: 1_000, tokens: [token(42)], status: 'NORMAL' });
    await h.sim.runFor(30_000);
    for (const n of ['n1', 'n3']) {
      expect(h.views.get(n)!.endpoint(id('n9')), n).toMatchObject({ liveness: 'DOWN', generation: 2_000 });
      expect(h.events.get(n)!.some((e) => e.kind === 'up' && e.node === 'n9'), n).toBe(false);
    }

    // n4 knows n2 from an earlier run: n2's live generation replaces it, and n2 comes UP.
    await h.add('n2');
    expect(await until(h, () => h.all((v) => v.isAlive(id('n2')) && v.isAlive(id('n1')), ['n1', 'n3']), 30_000)).toBeDefined();
    const live = h.views.get('n1')!.endpoint(id('n2'))!.generation;
    await h.add('n4', { known: [{ node: id('n2'), state: stored(live - 1_000) }] });
    await h.sim.runFor(1);
    expect(h.views.get('n4')!.endpoint(id('n2'))).toMatchObject({ liveness: 'DOWN', generation: live - 1_000 });
    expect(await until(h, () => h.views.get('n4')!.isAlive(id('n2')), 30_000), 'seed 263: n2 not UP on n4').toBeDefined();
    expect(h.views.get('n4')!.endpoint(id('n2'))!.generation).toBe(live);
    expect(h.views.get('n4')!.endpoint(id('n2'))!.tokens).toEqual([]);
  }, 30_000);

  it('a kept state is checked as a peer state: self, far-future generations, gone statuses and bad keys stay out (seed 264)', async () => {
    const h = await harness(264, undefined, { maxEndpoints: 4 });
    const now = Math.floor(1_767_225_600 + h.sim.now / 1000);
    await h.add('n1', {
      known: [
        { node: id('n1'), state: stored(1) },
        { node: id('n5'), state: stored(now + 2 * 365 * 24 * 3600) },
        { node: id('n6'), state: { ...stored(5), app: { ...stored(5).app, STATUS: { value: 'LEFT', version: 3 } } } },
        { node: id('n7'), state: { ...stored(5), app: { ...stored(5).app, TOKENS: { value: '1,two', version: 2 }, lower: { value: 'x', version: 9 } } } },
        { node: id('n8'), state: stored(5) },
        { node: id('n9'), state: stored(5) },
        { node: id('n10'), state: stored(5) },
      ],
    });
    await h.sim.runFor(1);
    const view = h.views.get('n1')!;
    expect(view.endpoint(id('n1'))!.generation).toBeGreaterThan(1);
    expect(view.endpoint(id('n5'))).toBeUndefined();
    expect(view.endpoint(id('n6'))).toBeUndefined();
    // A malformed value hides only itself.
    expect(view.endpoint(id('n7'))).toMatchObject({ liveness: 'DOWN', status: 'NORMAL', tokens: [], generation: 5 });
    // Four endpoints at most, self included.
    expect(view.endpoints().map((e) => e.node)).toEqual(['n1', 'n7', 'n8', 'n9']);
    expect(h.logs.some((l) => l.level === 'warn' && l.msg === 'ignored an endpoint state with a generation far in the future')).toBe(true);
  });
});

async function settleAsk<T>(h: Awaited<ReturnType<typeof harness>>, p: Promise<T>): Promise<T | undefined> {
  let value: T | undefined;
  p.then((v) => (value = v)).catch(() => undefined);
  await h.sim.run({ stopWhen: () => value !== undefined, untilMs: h.sim.now + 5_000 });
  return value;
}
