import { MAX_TOKEN, MIN_TOKEN, token } from '@chorus/core';
import { type TokenRange, rangeContains } from '@chorus/ring';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { covers, intersect, requestedRange } from '../src/ranges.js';

const tokenArb = fc.oneof(fc.bigInt({ min: MIN_TOKEN, max: MAX_TOKEN }), fc.constantFrom(MIN_TOKEN, MAX_TOKEN, 0n, -1n, 1n)).map((t) => token(t));
const rangeArb = fc.tuple(tokenArb, tokenArb).map(([start, end]): TokenRange => ({ start, end }));

describe('token range arithmetic', () => {
  it('a token is in the intersection exactly when it is in both ranges', () => {
    fc.assert(
      fc.property(rangeArb, rangeArb, tokenArb, (a, b, t) => {
        const inBoth = rangeContains(a, t) && rangeContains(b, t);
        const parts = intersect(a, b);
        expect(parts.filter((p) => rangeContains(p, t)).length).toBe(inBoth ? 1 : 0);
        for (const p of parts) {
          expect(covers(a, p)).toBe(true);
          expect(covers(b, p)).toBe(true);
        }
      }),
      { numRuns: 3_000 },
    );
  });

  it('a range covers itself and its parts, not a wider one', () => {
    const r = { start: token(100n), end: token(-100n) };
    expect(covers(r, r)).toBe(true);
    expect(covers(r, { start: token(200n), end: token(MAX_TOKEN) })).toBe(true);
    expect(covers(r, { start: token(MAX_TOKEN), end: token(-200n) })).toBe(true);
    expect(covers(r, { start: token(50n), end: token(300n) })).toBe(false);
    expect(covers({ start: token(0n), end: token(0n) }, r)).toBe(true);
  });

  it('a requested token range is checked at the edge', () => {
    expect(requestedRange(undefined, undefined)).toBeUndefined();
    expect(requestedRange('-5', '10')).toEqual({ start: -5n, end: 10n });
    expect(() => requestedRange('1', undefined)).toThrow(/both a start token and an end token/);
    expect(() => requestedRange('x', '1')).toThrow(/startToken must be a signed 64-bit token/);
    expect(() => requestedRange('1', (2n ** 64n).toString())).toThrow(/endToken/);
  });
});
