import { type NodeId, nodeId } from '@chorus/core';
import { describe, expect, it } from 'vitest';
import { type Proximity, sortByProximity } from '../src/snitch.js';

const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map(nodeId) as [NodeId, NodeId, NodeId, NodeId, NodeId];

/** `a` asks; `b` and `c` share its rack, `d` is in another rack, `e` in another datacenter. */
function proximity(latencies: Partial<Record<string, number>>): Proximity {
  const at: Record<string, { dc: string; rack: string }> = { a: { dc: 'dc1', rack: 'r1' }, b: { dc: 'dc1', rack: 'r1' }, c: { dc: 'dc1', rack: 'r1' }, d: { dc: 'dc1', rack: 'r2' }, e: { dc: 'dc2', rack: 'r1' } };
  return { self: a, localDc: 'dc1', localRack: 'r1', locate: (n) => at[n], latencyMs: (n) => latencies[n] };
}

describe('proximity order (the dynamic snitch)', () => {
  it('puts this node first, then its rack, its datacenter, the rest, whatever the latencies', () => {
    expect(sortByProximity([e, d, c, a], proximity({ e: 0.1, d: 0.2, c: 50 }))).toEqual([a, c, d, e]);
  });

  it('keeps ring order from this node on within a tier while latencies are alike, so each replica is the first peer of exactly one other', () => {
    const alike = proximity({ a: 5, b: 4, c: 7 });
    expect(sortByProximity([c, b, a], alike)).toEqual([a, c, b]);
    expect(sortByProximity([b, a, c], alike)).toEqual([a, c, b]);
    expect(sortByProximity([a, b, c], alike)).toEqual([a, b, c]);
    // In any natural order, whichever replica is primary, each replica asks a different one first.
    for (const order of [[a, b, c], [b, c, a], [c, a, b], [a, c, b]]) {
      const firstPeers = [a, b, c].map((self) => sortByProximity(order, { ...alike, self })[1]);
      expect(new Set(firstPeers).size, order.join('')).toBe(3);
    }
    // Every natural order of three replicas: each peer comes right after this node in half of them.
    const orders = [[a, b, c], [a, c, b], [b, a, c], [b, c, a], [c, a, b], [c, b, a]];
    const second = orders.map((o) => sortByProximity(o, alike)[1]);
    expect(second.filter((n) => n === b)).toHaveLength(3);
    expect(second.filter((n) => n === c)).toHaveLength(3);
  });

  it('orders a tier by latency once a replica is more than the threshold slower than its rank allows', () => {
    expect(sortByProximity([c, b, a], proximity({ b: 4, c: 8.5 }))).toEqual([a, b, c]);
    expect(sortByProximity([c, b, a], proximity({ b: 4, c: 5 }), 0.1)).toEqual([a, b, c]);
    expect(sortByProximity([c, b, a], proximity({ b: 4, c: 4.2 }), 0.1)).toEqual([a, c, b]);
  });

  it('keeps ring order in a tier while one of its replicas has no recent latency, so that it is asked and measured again', () => {
    expect(sortByProximity([c, b], proximity({ b: 30 }))).toEqual([c, b]);
    expect(sortByProximity([b, c], proximity({ b: 30 }))).toEqual([b, c]);
    expect(sortByProximity([c, b, d], proximity({ b: 4, c: 50 }))).toEqual([b, c, d]);
    expect(sortByProximity([c, b, d], proximity({ b: 4, c: 50, d: 1 }))).toEqual([b, c, d]);
    expect(sortByProximity([c, b], proximity({}))).toEqual([c, b]);
  });
});
