import { type NodeId, SeededRandom, nodeId, token } from '@chorus/core';
import { type KeyspaceDef, type RingMember, RingView, allocateTokens, rangeContains, rangeFraction } from '@chorus/ring';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rangesToFetch, rangesToHandOver } from '../src/index.js';

const n = (s: string): NodeId => nodeId(s);

function ringOf(count: number, seed: number, tokensEach = 8): RingView {
  const random = new SeededRandom(seed);
  let ring = RingView.empty();
  for (let i = 1; i <= count; i++) {
    const node = n(`n${i}`);
    const tokens = allocateTokens(ring, { node, dc: 'dc1' }, tokensEach, 2, random);
    ring = ring.with({ node, dc: 'dc1', rack: 'rack1', tokens, status: 'normal' });
  }
  return ring;
}

function joining(ring: RingView, name: string, seed: number): RingView {
  const node = n(name);
  const tokens = allocateTokens(ring, { node, dc: 'dc1' }, 8, 2, new SeededRandom(seed));
  return ring.with({ node, dc: 'dc1', rack: 'rack1', tokens, status: 'joining' });
}

const total = (ranges: Array<{ range: { start: bigint; end: bigint } }>) => ranges.reduce((s, r) => s + rangeFraction(r.range as never), 0);

describe('which ranges a topology change moves', () => {
  for (const rf of [1, 2, 3]) {
    it(`a joining node fetches exactly the ranges it will hold, each from the replica losing it first (rf ${rf})`, () => {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 1_000 }), fc.integer({ min: 3, max: 6 }), (seed, count) => {
          const before = joining(ringOf(count, seed), 'new', seed + 1);
          const after = before.afterPendingChanges();
          const ks: KeyspaceDef = { name: 'app', replication: { class: 'SimpleStrategy', rf } };
          const tasks = rangesToFetch(before, after, [ks], n('new'));
          // Together the tasks cover what the node will hold, nothing more.
          expect(total(tasks)).toBeCloseTo(total(after.rangesFor(n('new'), ks.replication).map((range) => ({ range }))), 9);
          for (const t of tasks) {
            expect(t.target).toBe('new');
            const was = before.naturalReplicas(t.range.end, ks.replication);
            const will = after.naturalReplicas(t.range.end, ks.replication);
            expect(will).toContain('new');
            // The losing replica comes first; every source held the range before.
            expect(was).not.toContain('new');
            expect(will).not.toContain(t.sources[0]);
            expect([...t.sources].sort()).toEqual([...was].sort());
            // The whole task has one replica list before and after.
            const mid = token(t.range.start < t.range.end ? t.range.start + (t.range.end - t.range.start) / 2n : t.range.end);
            expect(rangeContains(t.range, mid)).toBe(true);
            expect(before.naturalReplicas(mid, ks.replication)).toEqual(was);
          }
        }),
        { numRuns: 40 },
      );
    });
  }

  it('a leaving node hands each of its ranges to the node that gains it, itself the first source', () => {
    const ring = ringOf(4, 7);
    const member = ring.member(n('n2'))! as RingMember;
    const before = ring.with({ ...member, status: 'leaving' });
    const after = before.afterPendingChanges();
    const ks: KeyspaceDef = { name: 'app', replication: { class: 'SimpleStrategy', rf: 2 } };
    const tasks = rangesToHandOver(before, after, [ks], n('n2'));
    expect(tasks.length).toBeGreaterThan(0);
    for (const t of tasks) {
      expect(t.sources[0]).toBe('n2');
      expect(before.naturalReplicas(t.range.end, ks.replication)).not.toContain(t.target);
      expect(after.naturalReplicas(t.range.end, ks.replication)).toContain(t.target);
    }
    // Every range n2 held now has rf replicas among the others, each new one fed by a task.
    for (const range of before.rangesFor(n('n2'), ks.replication)) {
      const gained = after.naturalReplicas(range.end, ks.replication).filter((x) => !before.naturalReplicas(range.end, ks.replication).includes(x));
      for (const g of gained) expect(tasks.some((t) => t.target === g && rangeContains(t.range, range.end))).toBe(true);
    }
  });

  it('nothing moves when nothing changes', () => {
    const ring = ringOf(3, 9);
    expect(rangesToFetch(ring, ring, [{ name: 'app', replication: { class: 'SimpleStrategy', rf: 2 } }], n('n1'))).toEqual([]);
  });
});
