import { MAX_TOKEN, MIN_TOKEN, type Token, token } from '@chorus/core';
import { type TokenRange, rangeContains } from '@chorus/ring';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_TREE_DEPTH, RangeTree, blockRange, depthFor, leafIndexOf, leafRange, rowHash } from '../src/merkle.js';

const tokenArb = fc.bigInt({ min: MIN_TOKEN, max: MAX_TOKEN }).map((t) => token(t));
const rangeArb = fc.tuple(tokenArb, tokenArb).map(([start, end]): TokenRange => ({ start, end }));
const hashOf = (t: Token, tag: string) => rowHash(t, new TextEncoder().encode(tag), undefined, new Uint8Array(16));

describe('Merkle trees over token ranges', () => {
  it('a token lies in exactly the leaf range of the leaf it maps to, at every depth', () => {
    fc.assert(
      fc.property(rangeArb, fc.integer({ min: 0, max: MAX_TREE_DEPTH }), tokenArb, (range, depth, t) => {
        if (!rangeContains(range, t)) return;
        const leaf = leafIndexOf(range, t, depth);
        expect(leaf).toBeGreaterThanOrEqual(0);
        expect(leaf).toBeLessThan(2 ** depth);
        expect(rangeContains(leafRange(range, depth, leaf)!, t)).toBe(true);
        const before = leaf > 0 ? leafRange(range, depth, leaf - 1) : undefined;
        if (before) expect(rangeContains(before, t)).toBe(false);
      }),
      { numRuns: 2_000 },
    );
  });

  it('a block of adjacent leaves is one range: the whole range at the root', () => {
    fc.assert(
      fc.property(rangeArb, (range) => {
        expect(blockRange(range, 0, 0, 1)).toEqual(range);
        expect(blockRange(range, 4, 0, 16)).toEqual(range);
        const left = blockRange(range, 4, 0, 8);
        const right = blockRange(range, 4, 8, 16);
        if (left && right) expect([left.end, right.start, right.end]).toEqual([right.start, left.end, range.end]);
      }),
    );
  });

  it('the depth gives leaves of about 16 rows, capped at 2^16 leaves', () => {
    expect([0, 16, 17, 32, 33, 1_000, 1_000_000, 10 ** 9].map(depthFor)).toEqual([0, 0, 1, 1, 2, 6, 16, 16]);
  });

  it('replicas with the same rows agree at the root whatever order they were read in; one row more differs in exactly its leaf', () => {
    const range: TokenRange = { start: token(-1000n), end: token(1000n) };
    const tokens = Array.from({ length: 300 }, (_, i) => token(BigInt(-999 + i * 6)));
    const a = new RangeTree(range);
    const b = new RangeTree(range);
    for (const t of tokens) a.add(t, hashOf(t, 'x'));
    for (const t of [...tokens].reverse()) b.add(t, hashOf(t, 'x'));
    const depth = depthFor(a.rows);
    expect(a.nodes(depth, 0, [0])).toEqual(b.nodes(depth, 0, [0]));
    expect(a.nodes(depth, 0, [0])[0]!.rows).toBe(300);

    const extra = token(7n);
    b.add(extra, hashOf(extra, 'y'));
    expect(Buffer.from(a.nodes(depth, 0, [0])[0]!.hash).equals(Buffer.from(b.nodes(depth, 0, [0])[0]!.hash))).toBe(false);
    const leaves = Array.from({ length: 2 ** depth }, (_, i) => i);
    const [la, lb] = [a.nodes(depth, depth, leaves), b.nodes(depth, depth, leaves)];
    const differing = leaves.filter((i) => !Buffer.from(la[i]!.hash).equals(Buffer.from(lb[i]!.hash)));
    expect(differing).toEqual([leafIndexOf(range, extra, depth)]);
    // An interior node's hash is the Merkle root of the leaves beneath it.
    const mid = a.nodes(depth, 1, [0, 1]);
    expect(mid[0]!.rows + mid[1]!.rows).toBe(300);
  });

  it('refuses nodes outside the tree', () => {
    const tree = new RangeTree({ start: token(0n), end: token(0n) });
    expect(() => tree.nodes(17, 0, [0])).toThrow(RangeError);
    expect(() => tree.nodes(3, 4, [0])).toThrow(RangeError);
    expect(() => tree.nodes(3, 2, [4])).toThrow(RangeError);
  });
});
