import { type Token, hostId } from '@chorus/core';
import type { Simulation } from '@chorus/sim';
import { describe, expect, it } from 'vitest';
import { CannotRemoveNode, type EndpointState, type GossipMsg, type MembershipEvent, gossipStats, membership, peersHoldingOwnStatus, removeNode, setApplicationState } from '../src/index.js';
import { INTERVAL, converged, harness, id, names, until } from './helpers.js';

/** Runs the simulation until the promise settles and returns its outcome. */
async function settle<T>(sim: Simulation, p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  p.then((value) => (outcome = { ok: true, value }), (error: unknown) => (outcome = { ok: false, error }));
  await sim.run({ stopWhen: () => outcome !== undefined, untilMs: sim.now + 10_000 });
  if (!outcome) throw new Error('promise never settled');
  return outcome;
}

const rounds = (ms: number) => Math.ceil(ms / INTERVAL);

describe('convergence grows like log N', () => {
  const measured: Array<{ n: number; change: number; join: number }> = [];
  for (const [n, seed] of [[10, 11], [50, 12], [100, 13]] as const) {
    it(`${n} nodes learn an application state change and a new node (seed ${seed})`, async () => {
      const h = await converged(seed, n);
      // An application state change on one node.
      const origin = names(n)[Math.floor(n / 2)]!;
      setApplicationState(h.gossipers.get(origin)!, { load: 424_242 });
      const change = await until(h, () => h.all((v) => v.endpoint(id(origin))?.load === 424_242), 60_000);
      expect(change, `seed ${seed}: the change did not reach every node`).toBeDefined();
      // A new node joins through the seed.
      const newcomer = `n${n + 1}`;
      await h.add(newcomer);
      const join = await until(h, () => h.all((v) => v.isAlive(id(newcomer)) && v.liveNodes().length === n + 1), 60_000);
      expect(join, `seed ${seed}: the new node was not seen UP everywhere`).toBeDefined();
      measured.push({ n, change: rounds(change!), join: rounds(join!) });
      console.log(`convergence, ${n} nodes (seed ${seed}): app state change everywhere in ${rounds(change!)} rounds (${Math.round(change!)} ms), new node UP everywhere in ${rounds(join!)} rounds (${Math.round(join!)} ms)`);
      const bound = 3 * Math.log2(n) + 5;
      expect(rounds(change!), `seed ${seed}`).toBeLessThanOrEqual(bound);
      expect(rounds(join!), `seed ${seed}`).toBeLessThanOrEqual(bound);
    }, 60_000);
  }
});

describe('failure detection', () => {
  it('every node marks a crashed node DOWN (seed 21)', async () => {
    const h = await converged(21, 20);
    await h.sim.runFor(30_000); // let the windows fill with real intervals
    h.sim.crash('n7');
    const detectedAt = new Map<string, number>();
    const start = h.sim.now;
    const took = await until(h, () => {
      for (const n of h.running()) if (!detectedAt.has(n) && !h.views.get(n)!.isAlive(id('n7'))) detectedAt.set(n, h.sim.now - start);
      return detectedAt.size === 19;
    }, 120_000);
    expect(took, 'seed 21: not every node convicted n7').toBeDefined();
    const times = [...detectedAt.values()].sort((a, b) => a - b);
    console.log(`crash detection, 20 nodes (seed 21): first ${Math.round(times[0]!)} ms, median ${Math.round(times[9]!)} ms, last ${Math.round(times[18]!)} ms`);
    expect(times[0]!, 'seed 21: convicted implausibly early').toBeGreaterThan(5_000);
    expect(times[18]!, 'seed 21').toBeLessThan(40_000);
    for (const n of h.running()) {
      expect(h.events.get(n)!.some((e) => e.kind === 'down' && e.node === 'n7' && e.reason === 'convicted'), `seed 21: ${n}`).toBe(true);
    }
  }, 30_000);

  it('with the transport reporting the dead link, convicts within a few intervals instead of waiting for phi (seed 24)', async () => {
    const h = await harness(24, { latencyMs: 2, jitterMs: 3 }, {}, { linkReports: true });
    for (const n of names(5)) await h.add(n);
    expect(await until(h, () => h.all((v) => v.liveNodes().length === 5), 60_000), 'seed 24: no convergence').toBeDefined();
    await h.sim.runFor(10_000);
    h.sim.crash('n4');
    const took = await until(h, () => h.all((v) => !v.isAlive(id('n4'))), 30_000);
    console.log(`crash detection with link reports, 5 nodes (seed 24): all survivors after ${took} ms`);
    expect(took, 'seed 24: not every node convicted n4').toBeDefined();
    expect(took!, 'seed 24').toBeLessThanOrEqual(5 * INTERVAL);
  });

  it('a partitioned minority is marked DOWN on both sides and comes back UP after heal (seed 22)', async () => {
    const h = await converged(22, 7);
    await h.sim.runFor(20_000);
    const minority = ['n6', 'n7'];
    const majority = names(5);
    h.sim.network.partition(minority.map(id), majority.map(id));
    const split = await until(
      h,
      () => h.all((v) => minority.every((m) => !v.isAlive(id(m))), majority) && h.all((v) => majority.every((m) => !v.isAlive(id(m))), minority),
      120_000,
    );
    expect(split, 'seed 22: the sides did not mark each other DOWN').toBeDefined();
    h.sim.network.heal();
    const healed = await until(h, () => h.all((v) => v.liveNodes().length === 7), 60_000);
    expect(healed, 'seed 22: not all UP after heal').toBeDefined();
    console.log(`partition, 5 | 2 nodes (seed 22): both sides DOWN after ${Math.round(split!)} ms; all UP ${Math.round(healed!)} ms after heal`);
  }, 30_000);

  it('convicts no one under 50 ms jitter and 1% loss over 10 minutes with 15 nodes (seed 23)', async () => {
    const h = await converged(23, 15, { latencyMs: 2, jitterMs: 50, loss: 0.01 });
    await h.sim.runFor(600_000);
    const downs = [...h.events.values()].flat().filter((e) => e.kind === 'down');
    expect(downs.map((e) => `${e.view.self} saw ${(e as { node: string }).node} down`), 'seed 23').toEqual([]);
    expect(h.all((v) => v.liveNodes().length === 15), 'seed 23').toBe(true);
    const stats = await settle(h.sim, gossipStats(h.gossipers.get('n1')!));
    expect(stats.ok && stats.value.convictions).toBe(0);
    console.log(`no false conviction (seed 23): 15 nodes, 600 s, ${h.sim.network.stats().dropped} frames lost, 0 convictions`);
  }, 60_000);
});

describe('restarts, shutdown and removal', () => {
  it('a restarted node comes back UP with a higher generation (seed 31)', async () => {
    const h = await converged(31, 5);
    const before = h.views.get('n1')!.endpoint(id('n3'))!.generation;
    h.sim.crash('n3');
    expect(await until(h, () => h.all((v) => !v.isAlive(id('n3'))), 60_000), 'seed 31').toBeDefined();
    await h.sim.runFor(5_000);
    await h.sim.restart('n3');
    const back = await until(h, () => h.all((v) => v.isAlive(id('n3')) && v.endpoint(id('n3'))!.generation > before && v.liveNodes().length === 5), 30_000);
    expect(back, 'seed 31: n3 not back UP everywhere').toBeDefined();
    expect(h.events.get('n1')!.some((e) => e.kind === 'restarted' && e.node === 'n3' && e.previousGeneration === before)).toBe(true);
  }, 30_000);

  it('tells the node each generation it takes, so one ahead of the recorded generation is recorded too (seed 35)', async () => {
    const h = await harness(35);
    const seen = new Map<string, number[]>();
    const record = (name: string) => (g: number) => void seen.set(name, [...(seen.get(name) ?? []), g]);
    await h.add('n1', { onGeneration: record('n1') });
    // A recorded generation ahead of the clock (the clock stepped back): the next one is one more.
    await h.add('n2', { previousGeneration: 4_000_000_000, onGeneration: record('n2') });
    await h.sim.runFor(100);
    expect(seen.get('n2')).toEqual([4_000_000_001]);
    // Otherwise the clock's seconds.
    expect(seen.get('n1')).toHaveLength(1);
    expect(seen.get('n1')![0]).toBeGreaterThan(1_000_000_000);
    expect(seen.get('n1')![0]).toBeLessThan(4_000_000_000);
  });

  it('a node that shuts down is marked DOWN at once and stays down (seed 32)', async () => {
    const h = await converged(32, 5);
    await h.sim.runFor(5_000);
    const start = h.sim.now;
    await h.systems.get('n5')!.shutdown();
    const took = await until(h, () => h.all((v) => !v.isAlive(id('n5')), names(4)), 5_000);
    h.sim.crash('n5');
    expect(took, 'seed 32').toBeDefined();
    expect(h.sim.now - start).toBeLessThan(100);
    for (const n of names(4)) expect(h.events.get(n)!.some((e) => e.kind === 'down' && e.node === 'n5' && e.reason === 'shutdown'), n).toBe(true);
    await h.sim.runFor(30_000);
    expect(h.all((v) => !v.isAlive(id('n5')) && v.endpoint(id('n5'))!.status === 'shutdown', names(4)), 'seed 32').toBe(true);
  }, 30_000);

  it('a shutdown announced by one peer for another is ignored: only a node itself can say it is going away (seed 34)', async () => {
    const h = await converged(34, 4);
    await h.sim.runFor(5_000);
    const generation = h.views.get('n2')!.endpoint(id('n1'))!.generation;
    // n4 is a member (it passed the handshake) but says that n1, which is fine, shut down.
    h.systems.get('n4')!.ref<GossipMsg>({ node: id('n2'), name: 'gossiper' }).tell({ type: 'gossip.shutdown', node: 'n1', generation });
    await h.sim.runFor(2_000);
    expect(h.events.get('n2')!.some((e) => e.kind === 'down' && e.node === 'n1'), 'seed 34: n2 took n4 at its word').toBe(false);
    expect(h.views.get('n2')!.isAlive(id('n1'))).toBe(true);
    expect(h.logs.some((l) => l.level === 'warn' && (l.obj as { node?: string; peer?: string }).node === 'n2' && (l.obj as { peer?: string }).peer === 'n4')).toBe(true);
    expect(h.all((v) => v.liveNodes().length === 4)).toBe(true);
  }, 30_000);

  it('a removed node spreads as REMOVED, is evicted after quarantine, and stale gossip does not resurrect it (seed 33)', async () => {
    const h = await converged(33, 5, undefined, { quarantineMs: 20_000 });
    setApplicationState(h.gossipers.get('n4')!, { status: 'NORMAL' });
    await h.sim.runFor(5_000);
    const generation = h.views.get('n1')!.endpoint(id('n4'))!.generation;
    const up = await settle(h.sim, removeNode(h.gossipers.get('n1')!, id('n2')));
    expect(up.ok === false && up.error instanceof CannotRemoveNode).toBe(true);

    h.sim.crash('n4');
    expect(await until(h, () => h.all((v) => !v.isAlive(id('n4'))), 60_000), 'seed 33').toBeDefined();
    expect((await settle(h.sim, removeNode(h.gossipers.get('n1')!, id('n4')))).ok).toBe(true);
    expect(await until(h, () => h.all((v) => v.endpoint(id('n4'))?.status === 'REMOVED'), 10_000), 'seed 33: REMOVED did not spread').toBeDefined();

    // A peer that still holds n4's old NORMAL state, with versions far ahead, gossips it.
    const stale: EndpointState = { heartbeat: { generation, version: 1_000_000 }, app: { STATUS: { value: 'NORMAL', version: 1_000_000 } } };
    h.gossipers.get('n2')!.tell({ type: 'gossip.ack2', states: { n4: stale } });
    await h.sim.runFor(3_000);
    expect(h.all((v) => v.endpoint(id('n4'))?.status === 'REMOVED' && !v.isAlive(id('n4'))), 'seed 33: resurrected before eviction').toBe(true);

    expect(await until(h, () => h.all((v) => v.endpoint(id('n4')) === undefined), 40_000), 'seed 33: not evicted').toBeDefined();
    h.gossipers.get('n3')!.tell({ type: 'gossip.ack2', states: { n4: stale } });
    await h.sim.runFor(30_000);
    expect(h.all((v) => v.endpoint(id('n4')) === undefined), 'seed 33: resurrected after eviction').toBe(true);
    expect(h.events.get('n5')!.map((e) => (e.kind !== 'snapshot' && e.node === 'n4' ? e.kind : '')).filter((k) => ['removed', 'evicted'].includes(k))).toEqual(['removed', 'evicted']);

    // The same node started again is a new generation: a node rejoining, which is allowed.
    await h.sim.restart('n4');
    expect(await until(h, () => h.all((v) => v.isAlive(id('n4'))), 30_000), 'seed 33: n4 could not rejoin with a new generation').toBeDefined();
  }, 30_000);

  it('a removed node that comes back with its host id is not taken back, and is told it was removed (seed 36)', async () => {
    const gone: Array<{ observer: string; node: string; status: string | undefined }> = [];
    const h = await harness(36);
    for (const [i, n] of names(4).entries()) {
      await h.add(n, {
        initialState: { hostId: hostId(`0000000${i + 1}-0000-4000-8000-000000000000`), status: 'NORMAL' },
        onGone: (node, state) => gone.push({ observer: n, node, status: state.app.STATUS?.value }),
      });
    }
    expect(await until(h, () => h.all((v) => v.liveNodes().length === 4), 60_000), 'seed 36: no convergence').toBeDefined();
    h.sim.crash('n4');
    expect(await until(h, () => h.all((v) => !v.isAlive(id('n4'))), 60_000), 'seed 36').toBeDefined();
    expect((await settle(h.sim, removeNode(h.gossipers.get('n1')!, id('n4')))).ok).toBe(true);
    expect(await until(h, () => h.all((v) => v.endpoint(id('n4'))?.status === 'REMOVED'), 10_000), 'seed 36: REMOVED did not spread').toBeDefined();
    // Each observer is told once, to keep it on disk.
    expect(gone.map((g) => `${g.observer} ${g.node} ${g.status}`).sort()).toEqual(['n1 n4 REMOVED', 'n2 n4 REMOVED', 'n3 n4 REMOVED']);

    // Well past the old 60 s quarantine, n4 comes back with a new generation and the same host id.
    await h.sim.runFor(120_000);
    await h.sim.restart('n4');
    const told = await until(h, () => h.events.get('n4')!.some((e) => e.kind === 'removedSelf'), 30_000);
    expect(told, 'seed 36: n4 was not told it was removed').toBeDefined();
    expect(h.events.get('n4')!.find((e) => e.kind === 'removedSelf')).toMatchObject({ kind: 'removedSelf', node: 'n4', status: 'REMOVED' });
    await h.sim.runFor(20_000);
    const observers = names(3);
    expect(h.all((v) => !v.isAlive(id('n4')) && v.endpoint(id('n4'))?.status === 'REMOVED', observers), 'seed 36: n4 was taken back').toBe(true);
  }, 30_000);
  it('a removal made on an older generation wins over a later run another peer heard, once they meet (seed 38)', async () => {
    const h = await harness(38);
    for (const [i, n] of names(4).entries()) await h.add(n, { initialState: { hostId: hostId(`0000000${i + 1}-0000-4000-8000-000000000000`), status: 'NORMAL' } });
    expect(await until(h, () => h.all((v) => v.liveNodes().length === 4), 60_000), 'seed 38: no convergence').toBeDefined();
    const first = h.views.get('n2')!.endpoint(id('n4'))!.generation;
    // n2 and n3 are cut off while n4 dies, runs again (only n1 hears the new run) and dies for good.
    h.sim.network.partition([id('n2'), id('n3')], [id('n1'), id('n4')]);
    h.sim.crash('n4');
    await h.sim.runFor(2_000);
    await h.sim.restart('n4');
    expect(await until(h, () => (h.views.get('n1')!.endpoint(id('n4'))?.generation ?? 0) > first && h.views.get('n1')!.isAlive(id('n4')), 30_000), 'seed 38: n1 never heard the new run').toBeDefined();
    h.sim.crash('n4');
    expect(await until(h, () => h.all((v) => !v.isAlive(id('n4'))), 60_000), 'seed 38').toBeDefined();
    // n2 removes n4 as it knows it: the first run.
    expect((await settle(h.sim, removeNode(h.gossipers.get('n2')!, id('n4')))).ok).toBe(true);
    h.sim.network.heal();
    const spread = await until(h, () => h.all((v) => v.endpoint(id('n4'))?.status === 'REMOVED'), 30_000);
    expect(spread, `seed 38: n4 as n1 holds it: ${JSON.stringify(h.views.get('n1')!.endpoint(id('n4')))}`).toBeDefined();
  }, 30_000);
});

describe('which peers hold a node\'s own status', () => {
  it('only peers that showed it, through their digests or by sending it back, count; a restart is counted by peers that hold the earlier LEFT (seed 37)', async () => {
    const h = await harness(37);
    const ids = names(4).map((_, i) => hostId(`0000000${i + 1}-0000-4000-8000-000000000000`));
    const n4Options = { initialState: { hostId: ids[3]!, status: 'NORMAL' as 'NORMAL' | 'LEFT' } };
    for (const [i, n] of names(3).entries()) await h.add(n, { initialState: { hostId: ids[i]!, status: 'NORMAL' } });
    await h.add('n4', n4Options);
    expect(await until(h, () => h.all((v) => v.liveNodes().length === 4), 60_000), 'seed 37: no convergence').toBeDefined();
    const heard = async () => {
      const answer = await settle(h.sim, peersHoldingOwnStatus(h.gossipers.get('n4')!));
      if (!answer.ok) throw answer.error;
      return answer.value;
    };
    await h.sim.runFor(10_000);
    expect(await heard()).toEqual(['n1', 'n2', 'n3']);
    // n4 reaches only n1: n1 passes LEFT on, but only n1 has shown n4 that it holds it.
    h.sim.network.partition([id('n4')], [id('n2'), id('n3')]);
    setApplicationState(h.gossipers.get('n4')!, { status: 'LEFT' });
    expect(await heard()).toEqual([]);
    expect(await until(h, () => h.all((v) => v.endpoint(id('n4'))?.status === 'LEFT', names(3)), 30_000), 'seed 37: LEFT did not spread').toBeDefined();
    await h.sim.runFor(10_000);
    expect(await heard()).toEqual(['n1']);
    h.sim.network.heal();
    await h.sim.runFor(20_000);
    expect(await heard()).toEqual(['n1', 'n2', 'n3']);
    // Started again, LEFT with a new generation: the peers keep the earlier LEFT and send it back, which counts too.
    h.sim.crash('n4');
    n4Options.initialState = { hostId: ids[3]!, status: 'LEFT' };
    await h.sim.restart('n4');
    await h.sim.runFor(1);
    expect(await heard()).toEqual([]);
    await h.sim.runFor(20_000);
    expect(await heard()).toEqual(['n1', 'n2', 'n3']);
  }, 30_000);

  it('a peer that restarts no longer counts until its new run shows it holds the status (seed 39)', async () => {
    const h = await harness(39);
    const ids = names(4).map((_, i) => hostId(`0000000${i + 1}-0000-4000-8000-000000000000`));
    for (const [i, n] of names(4).entries()) await h.add(n, { initialState: { hostId: ids[i]!, status: 'NORMAL' } });
    expect(await until(h, () => h.all((v) => v.liveNodes().length === 4), 60_000), 'seed 39: no convergence').toBeDefined();
    setApplicationState(h.gossipers.get('n4')!, { status: 'LEFT' });
    await h.sim.runFor(20_000);
    const heard = async () => {
      const answer = await settle(h.sim, peersHoldingOwnStatus(h.gossipers.get('n4')!));
      if (!answer.ok) throw answer.error;
      return answer.value;
    };
    expect(await heard()).toEqual(['n1', 'n2', 'n3']);
    // n2 loses power and comes back (its news reaches n4 through a peer) without what it held of n4.
    const generation = h.views.get('n4')!.endpoint(id('n2'))!.generation;
    h.sim.crash('n2');
    const restarted: EndpointState = { heartbeat: { generation: generation + 1, version: 2 }, app: { STATUS: { value: 'NORMAL', version: 1 }, HOST_ID: { value: ids[1]!, version: 1 } } };
    h.gossipers.get('n4')!.tell({ type: 'gossip.ack2', states: { n2: restarted } });
    await h.sim.runFor(1);
    expect(await heard()).toEqual(['n1', 'n3']);
  }, 30_000);
});

describe('cluster name, events and schema', () => {
  it('ignores a SYN from another cluster, with a log line (seed 41)', async () => {
    const h = await converged(41, 4);
    await h.add('x1', { clusterName: 'other' });
    await h.sim.runFor(20_000);
    expect(h.all((v) => v.endpoint(id('x1')) === undefined, names(4)), 'seed 41').toBe(true);
    expect(h.views.get('x1')!.endpoints().map((e) => e.node)).toEqual(['x1']);
    const stats = await settle(h.sim, gossipStats(h.gossipers.get('n1')!));
    expect(stats.ok && stats.value.foreignSyns).toBeGreaterThan(0);
    expect(h.logs.some((l) => l.level === 'warn' && l.msg === 'ignored a gossip SYN from another cluster' && (l.obj as { cluster?: string }).cluster === 'other')).toBe(true);
  }, 30_000);

  it('delivers a snapshot, then joined, up, changed and schemaMismatch events; the view decodes typed states (seed 42)', async () => {
    const h = await harness(42);
    await h.add('n1', { initialState: { schema: 'v1', status: 'NORMAL', tokens: [-3n, 7n] as Token[] } });
    await h.add('n2', { initialState: { schema: 'v1', dc: 'dc1', rack: 'r1' } });
    await h.add('n3', { initialState: { schema: 'v2' } });
    expect(await until(h, () => h.all((v) => v.liveNodes().length === 3), 30_000), 'seed 42').toBeDefined();
    const n2 = h.events.get('n2')!;
    expect(n2[0]!.kind).toBe('snapshot');
    const of = (kind: MembershipEvent['kind'], node: string) => n2.filter((e) => e.kind === kind && 'node' in e && e.node === node);
    expect(of('joined', 'n1')).toHaveLength(1);
    expect(of('up', 'n1')).toHaveLength(1);
    expect(of('schemaMismatch', 'n3')).toMatchObject([{ theirs: 'v2', ours: 'v1' }]);
    expect(of('schemaMismatch', 'n1')).toEqual([]);

    setApplicationState(h.gossipers.get('n1')!, { status: 'LEAVING', load: 99 });
    // Every node, n3 (asked below) included: n2 hearing first says nothing about n3.
    expect(await until(h, () => h.all((v) => v.endpoint(id('n1'))?.status === 'LEAVING'), 30_000)).toBeDefined();
    expect(of('changed', 'n1').filter((e) => e.kind === 'changed' && e.key === 'STATUS')).toMatchObject([{ oldValue: 'NORMAL', newValue: 'LEAVING' }]);

    const snap = await settle(h.sim, membership(h.gossipers.get('n3')!));
    if (!snap.ok) throw snap.error;
    const view = snap.value;
    expect(Object.isFrozen(view)).toBe(true);
    expect(view.self).toBe('n3');
    expect(view.liveNodes()).toEqual(['n1', 'n2', 'n3']);
    expect(view.endpoint(id('n1'))).toMatchObject({ status: 'LEAVING', load: 99, tokens: [-3n, 7n], schema: 'v1', name: 'n1', liveness: 'UP', isSelf: false });
    expect(view.endpoint(id('n2'))).toMatchObject({ dc: 'dc1', rack: 'r1' });
    expect(view.endpoint(id('n3'))).toMatchObject({ isSelf: true, liveness: 'UP' });
    // n3 catches up on the schema: the others stop seeing a mismatch, n3 sees none.
    setApplicationState(h.gossipers.get('n3')!, { schema: 'v1' });
    await h.sim.runFor(10_000);
    expect(h.events.get('n3')!.filter((e) => e.kind === 'schemaMismatch')).toHaveLength(2);
  }, 30_000);

  it('replays the same history from the same seed (seed 43)', async () => {
    const run = async () => {
      const h = await converged(43, 10, { latencyMs: 2, jitterMs: 20, loss: 0.02 });
      h.sim.crash('n4');
      await h.sim.runFor(30_000);
      return h.sim.traceHash();
    };
    expect(await run()).toBe(await run());
  }, 30_000);
});
