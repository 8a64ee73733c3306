import { MAX_TOKEN, MIN_TOKEN, nodeId, token, type NodeId } from '@chorus/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DuplicateMember,
  RingView,
  TokenConflict,
  rangeContains,
  rangeWidth,
  replicationShortfalls,
  type ReplicationSpec,
  type RingMember,
} from '../src/index.js';
import { owning, ringArb, tokenArb } from './arbitraries.js';

const simple = (rf: number): ReplicationSpec => ({ class: 'SimpleStrategy', rf });
const member = (name: string, tokens: Array<bigint | number>, extra: Partial<RingMember> = {}): RingMember => ({
  node: nodeId(name),
  dc: 'dc1',
  rack: 'r1',
  tokens: tokens.map((t) => token(t)),
  status: 'normal',
  ...extra,
});

describe('ring lookups', () => {
  const ring = RingView.of([member('a', [-100]), member('b', [0]), member('c', [100])]);

  it('gives each token to the first node token at or after it, wrapping past the top', () => {
    expect(ring.primaryOwnerOf(token(-100))).toBe('a');
    expect(ring.primaryOwnerOf(token(-99))).toBe('b');
    expect(ring.primaryOwnerOf(token(0))).toBe('b');
    expect(ring.primaryOwnerOf(token(100))).toBe('c');
    expect(ring.primaryOwnerOf(token(101))).toBe('a');
    expect(ring.primaryOwnerOf(MAX_TOKEN)).toBe('a');
    expect(ring.primaryOwnerOf(MIN_TOKEN)).toBe('a');
  });

  it('walks clockwise for SimpleStrategy replicas', () => {
    expect(ring.naturalReplicas(token(50), simple(2))).toEqual(['c', 'a']);
    expect(ring.naturalReplicas(token(500), simple(3))).toEqual(['a', 'b', 'c']);
    expect(ring.naturalReplicas(token(500), simple(5))).toEqual(['a', 'b', 'c']);
  });

  it('gives ranges with the same replicas in the same order one shared list', () => {
    // Two vnodes each: the ranges ending at a's two tokens have the same replicas, and so on.
    const vnodes = RingView.of([member('a', [-200, 200]), member('b', [-100, 300]), member('c', [0, 400])]);
    expect(vnodes.naturalReplicas(token(-150), simple(2))).toBe(vnodes.naturalReplicas(token(250), simple(2)));
    expect(vnodes.naturalReplicas(token(-150), simple(2))).toEqual(['b', 'c']);
    expect(vnodes.naturalReplicas(token(-250), simple(2))).not.toBe(vnodes.naturalReplicas(token(-150), simple(2)));
    // Another replication factor has lists of its own, even where the content would match.
    expect(vnodes.naturalReplicas(token(-150), simple(3))).not.toBe(vnodes.naturalReplicas(token(-150), simple(2)));
  });

  it('describes ranges as (start, end] with the wrapping range ending at the first token', () => {
    expect(ring.primaryRanges(nodeId('a'))).toEqual([{ start: 100n, end: -100n }]);
    expect(ring.primaryRanges(nodeId('b'))).toEqual([{ start: -100n, end: 0n }]);
    expect(ring.rangesFor(nodeId('a'), simple(2))).toEqual([
      { start: 100n, end: -100n },
      { start: 0n, end: 100n },
    ]);
    const wrap = { start: token(100), end: token(-100) };
    expect(rangeContains(wrap, MAX_TOKEN)).toBe(true);
    expect(rangeContains(wrap, MIN_TOKEN)).toBe(true);
    expect(rangeContains(wrap, token(-100))).toBe(true);
    expect(rangeContains(wrap, token(100))).toBe(false);
    expect(rangeWidth(wrap)).toBe(2n ** 64n - 200n);
  });

  it('treats a one-token ring as one range covering everything', () => {
    const one = RingView.of([member('solo', [7])]);
    const [range] = one.primaryRanges(nodeId('solo'));
    expect(range).toEqual({ start: 7n, end: 7n });
    expect(rangeWidth(range!)).toBe(2n ** 64n);
    expect(rangeContains(range!, MIN_TOKEN)).toBe(true);
    expect(one.ownership(simple(3)).get(nodeId('solo'))).toBe(1);
  });

  it('has no replicas and no ranges when nobody owns tokens', () => {
    const empty = RingView.of([member('j', [5], { status: 'joining' })]);
    expect(empty.naturalReplicas(token(1), simple(3))).toEqual([]);
    expect(empty.replicatedRanges(simple(3))).toEqual([]);
    expect(empty.pendingReplicas(token(1), simple(3))).toEqual(['j']);
  });

  it('refuses a token claimed twice and a node listed twice', () => {
    expect(() => RingView.of([member('a', [1]), member('b', [1])])).toThrow(TokenConflict);
    expect(() => RingView.of([member('a', [1]), member('a', [2])])).toThrow(DuplicateMember);
  });

  it('returns the same replica list object for a range, computed once', () => {
    const first = ring.naturalReplicas(token(1), simple(2));
    expect(ring.naturalReplicas(token(99), simple(2))).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
  });

  it('reports datacenters and racks with fewer nodes than asked', () => {
    const two = RingView.of([member('a', [1]), member('b', [2], { dc: 'dc2' })]);
    expect(replicationShortfalls(two, simple(3))).toEqual([{ rf: 3, nodes: 2 }]);
    expect(replicationShortfalls(two, { class: 'NetworkTopologyStrategy', dcs: { dc1: 1, dc2: 2, dc3: 1 } })).toEqual([
      { dc: 'dc2', rf: 2, nodes: 1 },
      { dc: 'dc3', rf: 1, nodes: 0 },
    ]);
  });
});

describe('NetworkTopologyStrategy', () => {
  it('spreads over racks first, then fills from used racks, per datacenter', () => {
    // Clockwise: a(r1) b(r1) c(r2) d(r1) e(dc2) f(r3)
    const ring = RingView.of([
      member('a', [10]),
      member('b', [20]),
      member('c', [30], { rack: 'r2' }),
      member('d', [40]),
      member('e', [50], { dc: 'dc2' }),
      member('f', [60], { rack: 'r3' }),
    ]);
    const nts = (dc1: number, dc2 = 1): ReplicationSpec => ({ class: 'NetworkTopologyStrategy', dcs: { dc1, dc2 } });
    expect(ring.naturalReplicas(token(5), nts(2))).toEqual(['a', 'c', 'e']);
    expect(ring.naturalReplicas(token(5), nts(3))).toEqual(['a', 'c', 'e', 'f']);
    // Once every rack has a replica, b (skipped on r1) comes before d.
    expect(ring.naturalReplicas(token(5), nts(4))).toEqual(['a', 'c', 'e', 'f', 'b']);
    expect(ring.naturalReplicas(token(5), nts(9, 0))).toEqual(['a', 'c', 'f', 'b', 'd']);
  });
});

const rfArb = fc.integer({ min: 1, max: 5 });

describe('ring properties', () => {
  it('gives every token exactly min(rf, nodes) distinct SimpleStrategy replicas', () => {
    fc.assert(
      fc.property(ringArb({ statuses: ['normal', 'joining', 'leaving'] }), rfArb, tokenArb, (ring, rf, t) => {
        const replicas = ring.naturalReplicas(t, simple(rf));
        expect(new Set(replicas).size).toBe(replicas.length);
        expect(replicas.length).toBe(Math.min(rf, owning(ring).length));
        for (const n of replicas) expect(ring.member(n)!.status).not.toBe('joining');
      }),
    );
  });

  it('gives NetworkTopologyStrategy its count per datacenter and as many racks as possible', () => {
    fc.assert(
      fc.property(ringArb({ maxNodes: 12, dcs: 3, racks: 3 }), rfArb, rfArb, tokenArb, (ring, rf1, rf2, t) => {
        const dcs = { dc1: rf1, dc2: rf2 };
        const replicas = ring.naturalReplicas(t, { class: 'NetworkTopologyStrategy', dcs });
        expect(new Set(replicas).size).toBe(replicas.length);
        for (const [dc, rf] of Object.entries(dcs)) {
          const inDc = owning(ring).filter((m) => m.dc === dc);
          const chosen = replicas.map((n) => ring.member(n)!).filter((m) => m.dc === dc);
          expect(chosen.length).toBe(Math.min(rf, inDc.length));
          const racks = new Set(inDc.map((m) => m.rack)).size;
          expect(new Set(chosen.map((m) => m.rack)).size).toBe(Math.min(rf, racks));
        }
        expect(replicas.every((n) => ring.member(n)!.dc in dcs)).toBe(true);
      }),
    );
  });

  it('splits the ring into ranges that cover it without overlap', () => {
    fc.assert(
      fc.property(ringArb(), fc.array(tokenArb, { maxLength: 20 }), (ring, probes) => {
        const ranges = ring.replicatedRanges(simple(2)).map((r) => r.range);
        expect(ranges.reduce((sum, r) => sum + rangeWidth(r), 0n)).toBe(2n ** 64n);
        ranges.forEach((r, i) => expect(ranges[(i + 1) % ranges.length]!.start).toBe(r.end));
        for (const t of [...probes, MIN_TOKEN, MAX_TOKEN, ...ring.tokens]) {
          expect(ranges.filter((r) => rangeContains(r, t)).length).toBe(1);
        }
      }),
    );
  });

  it("gives a token the replicas of the range that contains it", () => {
    fc.assert(
      fc.property(ringArb({ dcs: 2 }), rfArb, tokenArb, (ring, rf, t) => {
        for (const spec of [simple(rf), { class: 'NetworkTopologyStrategy', dcs: { dc1: rf, dc2: 1 } } as const]) {
          const containing = ring.replicatedRanges(spec).find((r) => rangeContains(r.range, t))!;
          expect(ring.naturalReplicas(t, spec)).toEqual(containing.replicas);
        }
      }),
    );
  });

  it('has no pending replicas when nobody joins or leaves', () => {
    fc.assert(
      fc.property(ringArb(), rfArb, tokenArb, (ring, rf, t) => {
        expect(ring.pendingReplicas(t, simple(rf))).toEqual([]);
        expect(ring.afterPendingChanges()).toBe(ring);
      }),
    );
  });

  it('makes a joining node pending exactly where it will be a replica, and never a current replica pending', () => {
    fc.assert(
      fc.property(ringArb({ statuses: ['normal', 'normal', 'joining', 'leaving'] }), rfArb, tokenArb, (ring, rf, t) => {
        const spec = simple(rf);
        const natural = ring.naturalReplicas(t, spec);
        const pending = ring.pendingReplicas(t, spec);
        const future = ring.afterPendingChanges().naturalReplicas(t, spec);
        expect(pending.some((n) => natural.includes(n))).toBe(false);
        expect(new Set([...natural, ...pending])).toEqual(new Set([...natural, ...future]));
        for (const m of ring.members.filter((x) => x.status === 'joining')) {
          expect(pending.includes(m.node)).toBe(future.includes(m.node));
        }
      }),
    );
  });

  it('adds ownership up to the replicas per token, and agrees with the ranges of each node', () => {
    fc.assert(
      fc.property(ringArb(), rfArb, (ring, rf) => {
        const spec = simple(rf);
        const ownership = ring.ownership(spec);
        const total = [...ownership.values()].reduce((a, b) => a + b, 0);
        expect(total).toBeCloseTo(Math.min(rf, owning(ring).length), 9);
        for (const [node, share] of ownership) {
          const width = ring.rangesFor(node as NodeId, spec).reduce((sum, r) => sum + rangeWidth(r), 0n);
          expect(Number(width) / 2 ** 64).toBeCloseTo(share, 9);
        }
      }),
    );
  });
});
