import { nodeId } from '@chorus/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Cell, cellDigest } from '@chorus/model';
import { digestsAgree, resolveCells, staleReplicas } from '../src/index.js';

describe('read resolution', () => {
  const v = (s: string, ts: number): Cell => ({ value: new TextEncoder().encode(s), timestampMicros: ts });
  it('picks the newest version; a tombstone wins a tie', () => {
    expect(resolveCells([v('a', 1), v('b', 3), undefined, v('c', 2)])).toEqual(v('b', 3));
    expect(resolveCells([v('a', 3), { tombstone: true, timestampMicros: 3 }])).toEqual({ tombstone: true, timestampMicros: 3 });
    expect(resolveCells([undefined, undefined])).toBeUndefined();
  });

  it('property: resolution is order-independent and digests agree exactly on equal versions', () => {
    const cell = fc.oneof(
      fc.constant(undefined),
      fc.record({ value: fc.uint8Array({ maxLength: 3 }), timestampMicros: fc.integer({ min: 0, max: 5 }) }),
      fc.record({ tombstone: fc.constant(true as const), timestampMicros: fc.integer({ min: 0, max: 5 }) }),
    );
    fc.assert(
      fc.property(fc.array(cell, { maxLength: 5 }), (cells) => {
        const a = resolveCells(cells);
        const b = resolveCells([...cells].reverse());
        expect(cellDigest(a)).toEqual(cellDigest(b));
        const stale = staleReplicas(a, new Map(cells.map((c, i) => [nodeId(`n${i}`), c])));
        // Exactly the replicas whose answer differs from the resolved version are stale.
        const differing = cells.flatMap((c, i) => (digestsAgree([cellDigest(c), cellDigest(a)]) ? [] : [nodeId(`n${i}`)]));
        expect(stale).toEqual(differing);
      }),
    );
  });
});
