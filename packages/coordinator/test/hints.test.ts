import { type HintSink, type NodeId, nodeId } from '@chorus/core';
import type { Mutation } from '@chorus/model';
import { type KeyspaceDef, tokenOf } from '@chorus/ring';
import { describe, expect, it } from 'vitest';
import { findKey, settle, startCluster } from './helpers.js';

const ks: KeyspaceDef = { name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } };
const NODES = ['n1', 'n2', 'n3', 'n4'].map((name) => ({ name }));

interface Offer {
  target: NodeId;
  mutation: Mutation;
  atMs: number;
}

/** Four nodes whose coordinators record what they offer to their hint sink; `accept` decides what the sink answers. */
async function cluster(seed: number, accept: (target: NodeId) => boolean = () => true) {
  const offers: Offer[] = [];
  let now = () => 0;
  const hints: HintSink<Mutation> = {
    offer: (target, mutation) => {
      offers.push({ target, mutation, atMs: now() });
      return Promise.resolve(accept(target));
    },
  };
  const c = await startCluster({ seed, nodes: NODES, keyspaces: [ks], coordinator: { hints } });
  now = () => c.sim.now;
  /** A node that is not a replica of the key, so every replica is reached over the network. */
  const coordinatorFor = (key: string) => NODES.map((n) => n.name).find((n) => !c.ring.naturalReplicas(tokenOf(key), ks.replication).includes(nodeId(n)))!;
  return { c, offers, coordinatorFor };
}

describe('hint sink', () => {
  it('seed 900: a write offers the mutation for a replica that was down when it started, and for no other', async () => {
    const { c, offers, coordinatorFor } = await cluster(900);
    const key = findKey(c.ring, ks, () => true);
    const replicas = c.ring.naturalReplicas(tokenOf(key), ks.replication);
    const h = c.handle(coordinatorFor(key));
    const all = await settle(c.sim, h.put('app', key, undefined, 'v1', { consistency: 'ALL' }));
    expect(all.ok).toBe(true);
    await c.sim.runFor(3_000);
    expect(offers).toEqual([]);
    c.sim.crash(replicas[2]!);
    await c.sim.runFor(5);
    const w = await settle(c.sim, h.put('app', key, undefined, 'v2', { consistency: 'QUORUM' }));
    expect(w.ok).toBe(true);
    await c.sim.runFor(3_000);
    expect(offers.map((o) => o.target)).toEqual([replicas[2]]);
    const m = offers[0]!.mutation;
    expect('cell' in m && new TextDecoder().decode((m.cell as { value: Uint8Array }).value)).toBe('v2');
    expect('cell' in m && m.cell.timestampMicros).toBe(w.ok && w.value.timestampMicros);
  });

  it('seed 901: a replica silent until the deadline is offered after the write was answered, at the deadline', async () => {
    const { c, offers, coordinatorFor } = await cluster(901);
    const key = findKey(c.ring, ks, () => true);
    const replicas = c.ring.naturalReplicas(tokenOf(key), ks.replication);
    const coordinator = coordinatorFor(key);
    // The slow replica's answers take far longer than the write timeout (2 s).
    c.sim.network.setLink(replicas[2]!, nodeId(coordinator), { latencyMs: 5_000 });
    const startedAt = c.sim.now;
    const w = await settle(c.sim, c.handle(coordinator).put('app', key, undefined, 'v', { consistency: 'QUORUM' }));
    expect(w.ok).toBe(true);
    const answeredAt = c.sim.now;
    expect(answeredAt - startedAt).toBeLessThan(100);
    expect(offers).toEqual([]);
    // Answered, so no longer in flight, but still held until the silent replica's deadline.
    expect(c.handle(coordinator).stats()).toMatchObject({ inFlight: 0, open: 1 });
    await c.sim.runFor(10_000);
    expect(c.handle(coordinator).stats()).toMatchObject({ inFlight: 0, open: 0 });
    expect(offers.map((o) => o.target)).toEqual([replicas[2]]);
    expect(offers[0]!.atMs - startedAt).toBeGreaterThanOrEqual(2_000);
    expect(offers[0]!.atMs - startedAt).toBeLessThan(2_100);
  });

  it('seed 902: a write every replica refused exists nowhere, so nothing is offered', async () => {
    const { c, offers } = await cluster(902);
    c.sim.setClockSkew('n1', 1_500_000); // n1 runs 1.5 s fast
    const h = c.handle('n1');
    const theirs = findKey(c.ring, ks, (r) => !r.includes(nodeId('n1')));
    const ts = h.clock.peek() + 900_000; // 2.4 s ahead of the replicas
    const refused = await settle(c.sim, h.put('app', theirs, undefined, 'v', { timestampMicros: ts, consistency: 'ONE' }));
    expect(refused).toMatchObject({ ok: false, error: { name: 'InvalidRequest', fields: { reason: 'TIMESTAMP_IN_FUTURE' } } });
    await c.sim.runFor(3_000);
    expect(offers).toEqual([]);
  });

  it('seed 903: a replica down at the start is offered as soon as the write exists, not at the deadline', async () => {
    const { c, offers, coordinatorFor } = await cluster(903);
    const key = findKey(c.ring, ks, () => true);
    const replicas = c.ring.naturalReplicas(tokenOf(key), ks.replication);
    c.sim.crash(replicas[0]!);
    await c.sim.runFor(5);
    const startedAt = c.sim.now;
    const w = await settle(c.sim, c.handle(coordinatorFor(key)).put('app', key, undefined, 'v', { consistency: 'ONE' }));
    expect(w.ok).toBe(true);
    await c.sim.runFor(50);
    expect(offers.map((o) => o.target)).toEqual([replicas[0]]);
    expect(offers[0]!.atMs - startedAt).toBeLessThan(100);
  });

  it('seed 904: ANY with every replica down succeeds once a hint is stored, and offers one for each replica', async () => {
    const { c, offers, coordinatorFor } = await cluster(904);
    const key = findKey(c.ring, ks, () => true);
    const replicas = c.ring.naturalReplicas(tokenOf(key), ks.replication);
    for (const r of replicas) c.sim.crash(r);
    await c.sim.runFor(5);
    const h = c.handle(coordinatorFor(key));
    expect(await settle(c.sim, h.put('app', key, undefined, 'v', { consistency: 'ONE' }))).toMatchObject({ ok: false, error: { name: 'Unavailable' } });
    expect(offers).toEqual([]);
    const startedAt = c.sim.now;
    const w = await settle(c.sim, h.put('app', key, undefined, 'v', { consistency: 'ANY' }));
    expect(w.ok).toBe(true);
    expect(c.sim.now - startedAt).toBeLessThan(100);
    expect(new Set(offers.map((o) => o.target))).toEqual(new Set(replicas));
    const ts = w.ok ? w.value.timestampMicros : 0;
    expect(offers.every((o) => 'cell' in o.mutation && o.mutation.cell.timestampMicros === ts)).toBe(true);
  });

  it('seed 905: ANY with every replica down is Unavailable when no hint can be stored', async () => {
    const { c, offers, coordinatorFor } = await cluster(905, () => false);
    const key = findKey(c.ring, ks, () => true);
    const replicas = c.ring.naturalReplicas(tokenOf(key), ks.replication);
    for (const r of replicas) c.sim.crash(r);
    await c.sim.runFor(5);
    const w = await settle(c.sim, c.handle(coordinatorFor(key)).put('app', key, undefined, 'v', { consistency: 'ANY' }));
    expect(w).toMatchObject({ ok: false, error: { name: 'Unavailable', fields: { consistency: 'ANY', required: 1, alive: 0 } } });
    expect(offers).toHaveLength(3);
    expect(c.handle(coordinatorFor(key)).stats().write.unavailable).toBe(1);
  });

  it('seed 906: without a hint sink, ANY needs a live replica, as ONE', async () => {
    const c = await startCluster({ seed: 906, nodes: NODES, keyspaces: [ks] });
    const key = findKey(c.ring, ks, () => true);
    const replicas = c.ring.naturalReplicas(tokenOf(key), ks.replication);
    const coordinator = NODES.map((n) => n.name).find((n) => !replicas.includes(nodeId(n)))!;
    for (const r of replicas.slice(1)) c.sim.crash(r);
    await c.sim.runFor(5);
    expect(await settle(c.sim, c.handle(coordinator).put('app', key, undefined, 'v', { consistency: 'ANY' }))).toMatchObject({ ok: true });
    c.sim.crash(replicas[0]!);
    await c.sim.runFor(5);
    expect(await settle(c.sim, c.handle(coordinator).put('app', key, undefined, 'v', { consistency: 'ANY' }))).toMatchObject({ ok: false, error: { name: 'Unavailable', fields: { required: 1, alive: 0 } } });
  });
});
