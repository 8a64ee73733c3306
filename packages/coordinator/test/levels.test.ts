import { InvalidRequest, type NodeId, nodeId, token } from '@chorus/core';
import { RingView, type ReplicationSpec } from '@chorus/ring';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CONSISTENCY_LEVELS, Unavailable, blockFor, countAnswers, isSatisfied, parseConsistency, planRead, planWrite, quorumOf } from '../src/index.js';
import { PlanCache, countDistinct, isSatisfiedByDistinct, isSatisfiedByEither } from '../src/plan.js';

const simple3: ReplicationSpec = { class: 'SimpleStrategy', rf: 3 };
const nts33: ReplicationSpec = { class: 'NetworkTopologyStrategy', dcs: { dc1: 3, dc2: 3 } };
const nts32: ReplicationSpec = { class: 'NetworkTopologyStrategy', dcs: { dc1: 3, dc2: 2 } };

describe('consistency levels', () => {
  it('parses case-insensitively and refuses unknown names', () => {
    expect(parseConsistency('quorum')).toBe('QUORUM');
    expect(parseConsistency('Local_Quorum')).toBe('LOCAL_QUORUM');
    expect(parseConsistency(' each_quorum ')).toBe('EACH_QUORUM');
    for (const l of CONSISTENCY_LEVELS) expect(parseConsistency(l.toLowerCase())).toBe(l);
    for (const bad of ['', 'QUORUMS', 'SERIAL', 3, undefined, null]) expect(() => parseConsistency(bad)).toThrow(InvalidRequest);
  });

  it('counts as Cassandra does', () => {
    const table: Array<[string, ReplicationSpec, number]> = [
      ['ANY', simple3, 1], ['ONE', simple3, 1], ['TWO', simple3, 2], ['THREE', simple3, 3],
      ['QUORUM', simple3, 2], ['ALL', simple3, 3], ['LOCAL_ONE', simple3, 1], ['LOCAL_QUORUM', simple3, 2], ['EACH_QUORUM', simple3, 2],
      ['QUORUM', nts33, 4], ['ALL', nts33, 6], ['LOCAL_QUORUM', nts33, 2], ['EACH_QUORUM', nts33, 4], ['LOCAL_ONE', nts33, 1],
      ['QUORUM', nts32, 3], ['ALL', nts32, 5], ['EACH_QUORUM', nts32, 4],
      ['QUORUM', { class: 'SimpleStrategy', rf: 1 }, 1], ['QUORUM', { class: 'SimpleStrategy', rf: 2 }, 2], ['QUORUM', { class: 'SimpleStrategy', rf: 5 }, 3],
    ];
    for (const [level, spec, n] of table) expect([level, blockFor(parseConsistency(level), spec, 'dc1')]).toEqual([level, n]);
    // LOCAL_QUORUM of the coordinator's datacenter only.
    expect(blockFor('LOCAL_QUORUM', nts32, 'dc2')).toBe(2);
  });

  it('quorum is a strict majority: two quorums always intersect', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 64 }), (rf) => {
      const q = quorumOf(rf);
      expect(2 * q).toBeGreaterThan(rf);
      expect(q).toBeLessThanOrEqual(rf);
    }));
  });
});

/** The fields of the Unavailable that `plan` throws; fails the test when it throws nothing or something else. */
function unavailableOf(plan: () => unknown): unknown {
  try {
    plan();
  } catch (e) {
    expect(e).toBeInstanceOf(Unavailable);
    return (e as Unavailable).fields;
  }
  throw new Error('expected Unavailable, but the plan succeeded');
}

function ringOf(dcs: Record<string, number>, status: (i: number, dc: string) => 'normal' | 'joining' = () => 'normal'): RingView {
  const members = [];
  let t = 0n;
  for (const [dc, n] of Object.entries(dcs)) {
    for (let i = 0; i < n; i++) {
      t += 1000n;
      members.push({ node: nodeId(`${dc}n${i}`), dc, rack: 'r1', tokens: [token(t)], status: status(i, dc) });
    }
  }
  return RingView.of(members);
}

describe('replica plan', () => {
  const ring = ringOf({ dc1: 3, dc2: 3 });
  const dcOf = (n: NodeId) => ring.member(n)?.dc;
  const base = { token: token(500n), ring, localDc: 'dc1', dcOf };

  it('throws Unavailable with required and alive before anything is sent', () => {
    const dead = new Set(['dc1n0', 'dc1n1']);
    const isAlive = (n: NodeId) => !dead.has(n);
    expect(unavailableOf(() => planWrite({ ...base, consistency: 'LOCAL_QUORUM', replication: nts33, isAlive }))).toEqual({ consistency: 'LOCAL_QUORUM', required: 2, alive: 1 });
    expect(unavailableOf(() => planRead({ ...base, consistency: 'EACH_QUORUM', replication: nts33, isAlive }))).toEqual({ consistency: 'EACH_QUORUM', required: 2, alive: 1, dc: 'dc1' });
    const q = planWrite({ ...base, consistency: 'QUORUM', replication: nts33, isAlive });
    expect(q.blockFor).toBe(4);
    expect(q.contacts).toHaveLength(4);
    expect(() => planWrite({ ...base, consistency: 'ALL', replication: nts33, isAlive })).toThrow(Unavailable);
  });

  it('reads contact only as many replicas as needed, closest first, local ones for LOCAL_*', () => {
    const isAlive = () => true;
    const byProximity = (nodes: readonly NodeId[]) => [...nodes].sort().reverse();
    const one = planRead({ ...base, consistency: 'ONE', replication: nts33, isAlive, byProximity });
    expect(one.contacts).toEqual(['dc2n2']);
    expect(one.extras).toHaveLength(5);
    const local = planRead({ ...base, consistency: 'LOCAL_QUORUM', replication: nts33, isAlive, byProximity });
    expect(local.contacts.every((n) => n.startsWith('dc1'))).toBe(true);
    expect(local.contacts).toHaveLength(2);
    expect(local.extras).toEqual(['dc1n0']);
    const each = planRead({ ...base, consistency: 'EACH_QUORUM', replication: nts33, isAlive, byProximity });
    expect(each.contacts.filter((n) => n.startsWith('dc1'))).toHaveLength(2);
    expect(each.contacts.filter((n) => n.startsWith('dc2'))).toHaveLength(2);
    expect(isSatisfied(each, ['dc2n0', 'dc2n1', 'dc2n2'].map(nodeId))).toBe(false);
    expect(isSatisfied(each, ['dc2n0', 'dc2n1', 'dc1n0', 'dc1n2'].map(nodeId))).toBe(true);
    expect(countAnswers(each, ['dc2n0', 'dc2n1', 'dc2n2', 'dc1n0'].map(nodeId))).toBe(3);
  });

  it('pending replicas are written to and add to blockFor; reads ignore them', () => {
    const joining = ringOf({ dc1: 4 }, (i) => (i === 3 ? 'joining' : 'normal'));
    const input = { token: token(3500n), ring: joining, localDc: 'dc1', dcOf: (n: NodeId) => joining.member(n)?.dc, isAlive: () => true };
    const pending = joining.pendingReplicas(input.token, simple3);
    expect(pending.length).toBe(1);
    const w = planWrite({ ...input, consistency: 'QUORUM', replication: simple3 });
    expect(w.blockFor).toBe(3);
    expect(w.contacts).toHaveLength(4);
    const r = planRead({ ...input, consistency: 'QUORUM', replication: simple3 });
    expect(r.blockFor).toBe(2);
    expect(r.contacts).not.toContain(pending[0]);
    // With the pending node down, ALL cannot be met: 4 required, 3 alive.
    expect(() => planWrite({ ...input, consistency: 'ALL', replication: simple3, isAlive: (n) => n !== pending[0] })).toThrow(/4 replicas required, 3 alive/);
  });

  it('property: a plan is never built with fewer live replicas than it blocks for, and its contacts can satisfy it', () => {
    fc.assert(
      fc.property(fc.constantFrom(...CONSISTENCY_LEVELS), fc.constantFrom(simple3, nts33, nts32), fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }), fc.boolean(), (level, spec, alive, read) => {
        const names = ['dc1n0', 'dc1n1', 'dc1n2', 'dc2n0', 'dc2n1', 'dc2n2'];
        const isAlive = (n: NodeId) => alive[names.indexOf(n)] ?? false;
        if (read && level === 'ANY') return;
        try {
          const plan = (read ? planRead : planWrite)({ ...base, consistency: level, replication: spec, isAlive });
          expect(plan.contacts.every(isAlive)).toBe(true);
          expect(isSatisfied(plan, plan.contacts)).toBe(true);
          expect(Object.isFrozen(plan)).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(Unavailable);
          expect((e as Unavailable).alive).toBeLessThan((e as Unavailable).required);
        }
      }),
    );
  });

  it('property: two disjoint sets of answers satisfy a plan exactly when their union does', () => {
    fc.assert(
      fc.property(fc.constantFrom(...CONSISTENCY_LEVELS), fc.constantFrom(simple3, nts33, nts32), fc.array(fc.constantFrom(0, 1, 2), { minLength: 6, maxLength: 6 }), (level, spec, sides) => {
        const plan = planWrite({ ...base, consistency: level, replication: spec, isAlive: () => true });
        const names = ['dc1n0', 'dc1n1', 'dc1n2', 'dc2n0', 'dc2n1', 'dc2n2'].map(nodeId);
        // Each node is in the first set, the second, or neither.
        const a = names.filter((_, i) => sides[i] === 1);
        const b = names.filter((_, i) => sides[i] === 2);
        expect(isSatisfiedByEither(plan, a, b)).toBe(isSatisfied(plan, [...a, ...b]));
      }),
    );
  });

  it('property: a list of distinct answers counts and satisfies a plan as the general functions do', () => {
    fc.assert(
      fc.property(fc.constantFrom(...CONSISTENCY_LEVELS), fc.constantFrom(simple3, nts33, nts32), fc.subarray(['dc1n0', 'dc1n1', 'dc1n2', 'dc2n0', 'dc2n1', 'dc2n2', 'elsewhere']), (level, spec, names) => {
        const plan = planWrite({ ...base, consistency: level, replication: spec, isAlive: () => true });
        const answered = names.map(nodeId);
        expect(countDistinct(plan, answered)).toBe(countAnswers(plan, answered));
        expect(isSatisfiedByDistinct(plan, answered)).toBe(isSatisfied(plan, answered));
      }),
    );
  });
});

describe('plan cache', () => {
  const ring = ringOf({ dc1: 3 });
  const dcOf = (n: NodeId) => ring.member(n)?.dc;
  const natural = ring.naturalReplicas(token(500n), simple3);

  it('shares a plan while the ring, the live replicas and its age allow, and makes a new one otherwise', () => {
    const cache = new PlanCache('read', 100);
    const down = new Set<NodeId>();
    const isAlive = (n: NodeId) => !down.has(n);
    let made = 0;
    const plan = (r: RingView, at: number) =>
      cache.plan(r, r.naturalReplicas(token(500n), simple3), 'QUORUM', isAlive, at, () => {
        made++;
        return planRead({ token: token(500n), ring: r, localDc: 'dc1', dcOf, consistency: 'QUORUM', replication: simple3, isAlive });
      });
    const first = plan(ring, 0);
    expect(plan(ring, 50)).toBe(first);
    expect(made).toBe(1);
    // A replica went down: the plan of the same set is made again, without it.
    down.add(natural[0]!);
    const second = plan(ring, 60);
    expect(made).toBe(2);
    expect(second.live).not.toContain(natural[0]);
    // Older than its age: made again even though nothing else changed.
    expect(plan(ring, 200)).not.toBe(second);
    expect(made).toBe(3);
    // Another ring view: made again.
    plan(ringOf({ dc1: 3 }), 210);
    expect(made).toBe(4);
    // Shared plans cannot be changed by the request that gets one.
    expect(Object.isFrozen(second.extras) && Object.isFrozen(second.contacts)).toBe(true);
  });

  it('keeps no plan that throws Unavailable, and none for writes while the ring has pending changes', () => {
    const reads = new PlanCache('read', 1_000);
    const none = () => false;
    const tries = () => reads.plan(ring, natural, 'QUORUM', none, 0, () => planRead({ token: token(500n), ring, localDc: 'dc1', dcOf, consistency: 'QUORUM', replication: simple3, isAlive: none }));
    expect(tries).toThrow(Unavailable);
    expect(reads.plan(ring, natural, 'QUORUM', () => true, 1, () => planRead({ token: token(500n), ring, localDc: 'dc1', dcOf, consistency: 'QUORUM', replication: simple3, isAlive: () => true })).live).toHaveLength(3);
    const joining = ringOf({ dc1: 4 }, (i) => (i === 3 ? 'joining' : 'normal'));
    const writes = new PlanCache('write', 1_000);
    let made = 0;
    for (let i = 0; i < 2; i++) {
      writes.plan(joining, joining.naturalReplicas(token(500n), simple3), 'QUORUM', () => true, i, () => {
        made++;
        return planWrite({ token: token(500n), ring: joining, localDc: 'dc1', dcOf: (n) => joining.member(n)?.dc, consistency: 'QUORUM', replication: simple3, isAlive: () => true });
      });
    }
    expect(made).toBe(2);
  });
});
