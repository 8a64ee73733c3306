import type { NodeId } from '@chorus/core';
import { nodeId } from '@chorus/core';
import type { KeyspaceDef } from '@chorus/ring';
import { describe, expect, it } from 'vitest';
import { CONSISTENCY_LEVELS, type ConsistencyLevel } from '../src/index.js';
import { type Cluster, findKey, settle, startCluster } from './helpers.js';

const simple: KeyspaceDef = { name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } };
const twoDc: KeyspaceDef = { name: 'geo', replication: { class: 'NetworkTopologyStrategy', dcs: { dc1: 3, dc2: 3 } } };

/** Cassandra's counts for rf 3 in one datacenter (SimpleStrategy: LOCAL_* and EACH_QUORUM count the whole rf). */
const REQUIRED_RF3: Record<ConsistencyLevel, number> = { ANY: 1, ONE: 1, TWO: 2, THREE: 3, QUORUM: 2, ALL: 3, LOCAL_ONE: 1, LOCAL_QUORUM: 2, EACH_QUORUM: 2 };

type Expect = { ok: true } | { ok: false; name: string; fields?: Record<string, unknown> };

async function attempt(c: Cluster, coordinator: string, ks: string, key: string, level: ConsistencyLevel, op: 'write' | 'read') {
  const h = c.handle(coordinator);
  const sentBefore = c.sim.network.stats().sent;
  const r = await settle(c.sim, op === 'write' ? h.put(ks, key, undefined, 'v', { consistency: level }) : h.get(ks, key, undefined, { consistency: level }));
  return { r, sent: c.sim.network.stats().sent - sentBefore };
}

function check(label: string, got: Awaited<ReturnType<typeof attempt>>, want: Expect): void {
  if (want.ok) {
    expect([label, got.r.ok, got.r.ok ? undefined : got.r.error.message]).toEqual([label, true, undefined]);
    return;
  }
  expect([label, got.r.ok]).toEqual([label, false]);
  if (got.r.ok) return;
  expect([label, got.r.error.name]).toEqual([label, want.name]);
  if (want.fields) expect([label, got.r.error.fields]).toEqual([label, want.fields]);
  // Unavailable is decided from the plan: nothing went on the wire.
  if (want.name === 'Unavailable') expect([label, got.sent]).toEqual([label, 0]);
}

describe('availability table, rf 3 in one datacenter', () => {
  for (const down of [0, 1, 2, 3]) {
    it(`with ${down} of 3 replicas down, every level succeeds or is Unavailable as in Cassandra`, async () => {
      const seed = 100 + down;
      const c = await startCluster({ seed, nodes: ['n1', 'n2', 'n3', 'n4'].map((name) => ({ name })), keyspaces: [simple] });
      const key = findKey(c.ring, simple, (r) => !r.includes(nodeId('n4')));
      const replicas = c.ring.naturalReplicas((await import('@chorus/ring')).tokenOf(key), simple.replication);
      for (const n of replicas.slice(0, down)) c.sim.crash(n);
      await c.sim.runFor(5);
      const alive = 3 - down;
      for (const level of CONSISTENCY_LEVELS) {
        for (const op of ['write', 'read'] as const) {
          const label = `seed ${seed} ${op} ${level} down ${down}`;
          const got = await attempt(c, 'n4', 'app', key, level, op);
          const required = REQUIRED_RF3[level];
          if (op === 'read' && level === 'ANY') check(label, got, { ok: false, name: 'InvalidRequest' });
          else if (alive >= required) check(label, got, { ok: true });
          else check(label, got, { ok: false, name: 'Unavailable', fields: { consistency: level, required, alive } });
        }
      }
      expect(c.rejectedFrames()).toBe(0);
    });
  }
});

describe('availability table, dc1:3 dc2:3, coordinator in dc1', () => {
  const cases: Array<[number, number]> = [[0, 0], [1, 0], [2, 0], [3, 0], [0, 1], [0, 2], [0, 3], [1, 1], [1, 2], [2, 2]];
  for (const [d1, d2] of cases) {
    it(`with ${d1} down in dc1 and ${d2} in dc2`, async () => {
      const seed = 200 + d1 * 10 + d2;
      const nodes = [
        ...['a1', 'a2', 'a3', 'a4'].map((name) => ({ name, dc: 'dc1' })),
        ...['b1', 'b2', 'b3'].map((name) => ({ name, dc: 'dc2' })),
      ];
      const c = await startCluster({ seed, nodes, keyspaces: [twoDc] });
      const key = findKey(c.ring, twoDc, (r) => !r.includes(nodeId('a4')));
      const replicas = c.ring.naturalReplicas((await import('@chorus/ring')).tokenOf(key), twoDc.replication);
      const inDc = (dc: string) => replicas.filter((n) => c.ring.member(n)!.dc === dc);
      for (const n of [...inDc('dc1').slice(0, d1), ...inDc('dc2').slice(0, d2)]) c.sim.crash(n);
      await c.sim.runFor(5);
      const alive1 = 3 - d1;
      const alive2 = 3 - d2;
      const total = alive1 + alive2;
      const want = (level: ConsistencyLevel): Expect => {
        const plain = (required: number, alive: number): Expect =>
          alive >= required ? { ok: true } : { ok: false, name: 'Unavailable', fields: { consistency: level, required, alive } };
        switch (level) {
          case 'ANY':
          case 'ONE':
            return plain(1, total);
          case 'TWO':
            return plain(2, total);
          case 'THREE':
            return plain(3, total);
          case 'QUORUM':
            return plain(4, total);
          case 'ALL':
            return plain(6, total);
          case 'LOCAL_ONE':
            return plain(1, alive1);
          case 'LOCAL_QUORUM':
            return plain(2, alive1);
          case 'EACH_QUORUM':
            if (alive1 < 2) return { ok: false, name: 'Unavailable', fields: { consistency: level, required: 2, alive: alive1, dc: 'dc1' } };
            if (alive2 < 2) return { ok: false, name: 'Unavailable', fields: { consistency: level, required: 2, alive: alive2, dc: 'dc2' } };
            return { ok: true };
        }
      };
      for (const level of CONSISTENCY_LEVELS) {
        for (const op of ['write', 'read'] as const) {
          const label = `seed ${seed} ${op} ${level} down ${d1}+${d2}`;
          const got = await attempt(c, 'a4', 'geo', key, level, op);
          check(label, got, op === 'read' && level === 'ANY' ? { ok: false, name: 'InvalidRequest' } : want(level));
        }
      }
    });
  }
});

describe('timeouts', () => {
  async function slowCluster(seed: number, slow: number) {
    const c = await startCluster({ seed, nodes: ['n1', 'n2', 'n3', 'n4'].map((name) => ({ name })), keyspaces: [simple] });
    const key = findKey(c.ring, simple, (r) => !r.includes(nodeId('n4')));
    const replicas = c.ring.naturalReplicas((await import('@chorus/ring')).tokenOf(key), simple.replication);
    const slowOnes = replicas.slice(replicas.length - slow) as NodeId[];
    for (const n of slowOnes) {
      c.sim.network.setLink(nodeId('n4'), n, { latencyMs: 3_000 });
      c.sim.network.setLink(n, nodeId('n4'), { latencyMs: 3_000 });
    }
    return { c, key };
  }

  it('a replica slower than write_request_timeout: ALL times out with 2 of 3, QUORUM succeeds', async () => {
    const { c, key } = await slowCluster(300, 1);
    const t0 = c.sim.now;
    const all = await settle(c.sim, c.handle('n4').put('app', key, undefined, 'v', { consistency: 'ALL' }));
    expect(all).toMatchObject({ ok: false, error: { name: 'WriteTimeout', fields: { consistency: 'ALL', required: 3, received: 2, writeType: 'SIMPLE' } } });
    expect(c.sim.now - t0).toBeGreaterThanOrEqual(2_000);
    expect(c.sim.now - t0).toBeLessThan(2_100);
    if (!all.ok) expect(all.error.message).toMatch(/may have been applied/);
    expect((await settle(c.sim, c.handle('n4').put('app', key, undefined, 'v', { consistency: 'QUORUM' }))).ok).toBe(true);
  });

  it('two slow replicas: QUORUM write times out with 1 of 2; ALL read times out with 1 of 3, data present', async () => {
    const { c, key } = await slowCluster(301, 2);
    const q = await settle(c.sim, c.handle('n4').put('app', key, undefined, 'v', { consistency: 'QUORUM' }));
    expect(q).toMatchObject({ ok: false, error: { name: 'WriteTimeout', fields: { consistency: 'QUORUM', required: 2, received: 1 } } });
    const t0 = c.sim.now;
    const r = await settle(c.sim, c.handle('n4').get('app', key, undefined, { consistency: 'ALL' }));
    expect(r).toMatchObject({ ok: false, error: { name: 'ReadTimeout', fields: { consistency: 'ALL', required: 3, received: 1, dataPresent: true } } });
    expect(c.sim.now - t0).toBeGreaterThanOrEqual(5_000);
    const one = await settle(c.sim, c.handle('n4').get('app', key, undefined, { consistency: 'ONE' }));
    expect(one.ok).toBe(true);
  });

  it('EACH_QUORUM write with dc2 slow: received counts each datacenter up to its quorum', async () => {
    const nodes = [...['a1', 'a2', 'a3', 'a4'].map((name) => ({ name, dc: 'dc1' })), ...['b1', 'b2', 'b3'].map((name) => ({ name, dc: 'dc2' }))];
    const c = await startCluster({ seed: 302, nodes, keyspaces: [twoDc] });
    const key = findKey(c.ring, twoDc, (r) => !r.includes(nodeId('a4')));
    for (const b of ['b1', 'b2']) {
      c.sim.network.setLink(nodeId('a4'), nodeId(b), { latencyMs: 3_000 });
      c.sim.network.setLink(nodeId(b), nodeId('a4'), { latencyMs: 3_000 });
    }
    const w = await settle(c.sim, c.handle('a4').put('geo', key, undefined, 'v', { consistency: 'EACH_QUORUM' }));
    expect(w).toMatchObject({ ok: false, error: { name: 'WriteTimeout', fields: { consistency: 'EACH_QUORUM', required: 4, received: 3 } } });
    expect((await settle(c.sim, c.handle('a4').put('geo', key, undefined, 'v', { consistency: 'LOCAL_QUORUM' }))).ok).toBe(true);
  });
});
