import { describe, expect, it } from 'vitest';
import { type Cluster, settle, startCluster, str, text } from './helpers.js';
import type { ReadRepairEvent } from '../src/index.js';

const ks = { name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } } as const;

async function cluster(seed = 1): Promise<Cluster> {
  return startCluster({ seed, nodes: [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }, { name: 'n4' }], keyspaces: [ks] });
}

describe('coordinator basics', () => {
  it('writes, reads, deletes through any node at QUORUM', async () => {
    const c = await cluster();
    const put = await settle(c.sim, c.handle('n1').put('app', 'user:1', undefined, 'hello'));
    expect(put.ok).toBe(true);
    const got = await settle(c.sim, c.handle('n2').get('app', 'user:1'));
    expect(got.ok && str(got.value?.value)).toBe('hello');
    const del = await settle(c.sim, c.handle('n3').del('app', 'user:1'));
    expect(del.ok).toBe(true);
    const after = await settle(c.sim, c.handle('n4').get('app', 'user:1'));
    expect(after).toEqual({ ok: true, value: undefined });
    const cell = await settle(c.sim, c.handle('n4').getCell('app', 'user:1', undefined, { consistency: 'all' }));
    expect(cell.ok && cell.value && 'tombstone' in cell.value).toBe(true);
    expect(c.sim.network.stats().delivered).toBeGreaterThan(10);
    expect(c.rejectedFrames()).toBe(0);
  });

  it('works beside a node of an earlier build, which gets each mutation and digest read alone instead of in batches', async () => {
    const c = await startCluster({ seed: 2, nodes: [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }], keyspaces: [ks], earlierBuild: ['n3'] });
    for (const [writer, reader] of [['n1', 'n3'], ['n3', 'n2'], ['n2', 'n1']] as const) {
      const key = `mixed:${writer}`;
      expect((await settle(c.sim, c.handle(writer).put('app', key, undefined, writer, { consistency: 'ALL' }))).ok).toBe(true);
      for (const consistency of ['ALL', 'QUORUM'] as const) {
        const got = await settle(c.sim, c.handle(reader).get('app', key, undefined, { consistency }));
        expect(got.ok ? str(got.value?.value) : got.error).toBe(writer);
      }
    }
    // n3 would have dropped a batch it cannot read as a bad frame (and the requests would have timed out).
    expect(c.rejectedFrames()).toBe(0);
  });

  it('refuses unknown keyspaces, levels, and ANY for reads', async () => {
    const c = await cluster();
    const h = c.handle('n1');
    expect(await settle(c.sim, h.put('nope', 'k', undefined, 'v'))).toMatchObject({ ok: false, error: { name: 'InvalidRequest' } });
    expect(await settle(c.sim, h.put('app', 'k', undefined, 'v', { consistency: 'MOST' }))).toMatchObject({ ok: false, error: { name: 'InvalidRequest' } });
    expect(await settle(c.sim, h.get('app', 'k', undefined, { consistency: 'any' }))).toMatchObject({ ok: false, error: { name: 'InvalidRequest' } });
    expect(await settle(c.sim, h.put('app', '', undefined, 'v'))).toMatchObject({ ok: false, error: { name: 'InvalidRequest' } });
  });

  it('a coordinator behind on schema answers a keyspace it does not know with the retryable SchemaDisagreement, not InvalidRequest', async () => {
    let agreed = false;
    const c = await startCluster({ seed: 1, nodes: [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }, { name: 'n4' }], keyspaces: [ks], topology: (_node, base) => ({ ...base, schemaAgreed: () => agreed }) });
    const h = c.handle('n1');
    // Its schema differs from a live peer's: the keyspace may exist there, and nothing was done.
    for (const request of [() => h.put('later', 'k', undefined, 'v'), () => h.get('later', 'k'), () => h.slice('later', 'p')] as Array<() => Promise<unknown>>) {
      const answer = await settle(c.sim, request());
      expect(answer).toMatchObject({ ok: false, error: { name: 'SchemaDisagreement', httpStatus: 503, fields: { keyspace: 'later' } } });
    }
    // Once it agrees with every live peer, a keyspace it does not know does not exist: the request was wrong.
    agreed = true;
    expect(await settle(c.sim, h.put('later', 'k', undefined, 'v'))).toMatchObject({ ok: false, error: { name: 'InvalidRequest', fields: { reason: 'UNKNOWN_KEYSPACE' } } });
  });

  it('passes TTL through to the cell expiry and the value vanishes after it', async () => {
    const c = await cluster();
    const h = c.handle('n1');
    const put = await settle(c.sim, h.put('app', 'ttl', undefined, 'short', { ttlSeconds: 2, consistency: 'ALL' }));
    expect(put.ok).toBe(true);
    const cell = await settle(c.sim, h.getCell('app', 'ttl'));
    expect(cell.ok && cell.value && 'expiresAtMicros' in cell.value && cell.value.expiresAtMicros).toBeGreaterThan(0);
    expect((await settle(c.sim, h.get('app', 'ttl'))).ok).toBe(true);
    await c.sim.runFor(2_500);
    expect(await settle(c.sim, h.get('app', 'ttl'))).toEqual({ ok: true, value: undefined });
  });

  it('local() shows this node\'s raw replica, tombstones included', async () => {
    const c = await cluster();
    await settle(c.sim, c.handle('n1').put('app', 'x', undefined, 'v1', { consistency: 'ALL' }));
    await settle(c.sim, c.handle('n1').del('app', 'x', undefined, { consistency: 'ALL' }));
    const replicas = c.ring.naturalReplicas((await import('@chorus/ring')).tokenOf('x'), ks.replication);
    const local = await settle(c.sim, c.handle(replicas[0]!).local('app', 'x'));
    expect(local.ok && local.value && 'tombstone' in local.value).toBe(true);
  });

  it('rows of a wide partition and partition deletion', async () => {
    const c = await cluster();
    const h = c.handle('n2');
    for (const ck of ['a', 'b', 'c']) expect((await settle(c.sim, h.put('app', 'p', ck, `v-${ck}`))).ok).toBe(true);
    const b = await settle(c.sim, h.get('app', 'p', 'b'));
    expect(b.ok && str(b.value?.value)).toBe('v-b');
    expect((await settle(c.sim, h.deletePartition('app', 'p'))).ok).toBe(true);
    expect(await settle(c.sim, h.get('app', 'p', 'a'))).toEqual({ ok: true, value: undefined });
    expect((await settle(c.sim, h.put('app', 'p', 'd', 'after'))).ok).toBe(true);
    const d = await settle(c.sim, h.get('app', 'p', 'd'));
    expect(d.ok && str(d.value?.value)).toBe('after');
    void text;
  });

  it('digest mismatch: resolves the newest version across replicas, repairs the stale ones and tells the observer', async () => {
    const mismatches: ReadRepairEvent[] = [];
    const c = await startCluster({
      seed: 9,
      nodes: [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }, { name: 'n4' }],
      keyspaces: [ks],
      coordinator: { readRepair: (m) => void mismatches.push(m) },
    });
    const { tokenOf } = await import('@chorus/ring');
    const { nodeId } = await import('@chorus/core');
    const replicas = c.ring.naturalReplicas(tokenOf('dm'), ks.replication);
    const coordinator = ['n1', 'n2', 'n3', 'n4'].find((n) => !replicas.includes(nodeId(n)))!;
    const h = c.handle(coordinator);
    expect((await settle(c.sim, h.put('app', 'dm', undefined, 'old', { consistency: 'ALL' }))).ok).toBe(true);
    c.sim.crash(replicas[1]!);
    c.sim.crash(replicas[2]!);
    await c.sim.runFor(5);
    const written = await settle(c.sim, h.put('app', 'dm', undefined, 'new', { consistency: 'ONE' }));
    if (!written.ok) throw written.error;
    await c.sim.restart(replicas[1]!);
    await c.sim.restart(replicas[2]!);
    await c.sim.runFor(5);
    const r = await settle(c.sim, h.get('app', 'dm', undefined, { consistency: 'ALL' }));
    expect(r.ok && str(r.value?.value)).toBe('new');
    expect(h.stats().digestMismatches).toBe(1);
    expect(h.stats().readRepair).toEqual({ mismatches: 1, rowsRepaired: 2, timeouts: 0 });
    expect(mismatches).toHaveLength(1);
    expect(mismatches[0]).toMatchObject({ op: 'read', keyspace: 'app', mode: 'blocking' });
    expect(mismatches[0]!.repairs.map((r) => r.target).sort()).toEqual([replicas[1], replicas[2]].sort());
    // Each stale replica is sent the resolved version, unchanged: the write of 'new' with its own timestamp.
    for (const r of mismatches[0]!.repairs) {
      expect(r.mutations).toHaveLength(1);
      const m = r.mutations[0]!;
      expect('cell' in m && 'value' in m.cell && [str(m.cell.value), m.cell.timestampMicros]).toEqual(['new', written.value.timestampMicros]);
      expect(m).toMatchObject({ keyspace: 'app', token: tokenOf('dm') });
    }
    // Blocking: the read answered only after the stale replicas held it.
    for (const n of [replicas[1]!, replicas[2]!]) {
      const local = await settle(c.sim, c.handle(n).local('app', 'dm'));
      expect(local.ok && str(local.value && 'value' in local.value ? local.value.value : undefined)).toBe('new');
    }
  });
});
