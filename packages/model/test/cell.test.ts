import { describe, expect, it } from 'vitest';
import { type Cell, cellDigest, compareCells, isDead, mergeCells } from '../src/index.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const v = (s: string, ts: number, exp?: number): Cell => (exp === undefined ? { value: enc(s), timestampMicros: ts } : { value: enc(s), timestampMicros: ts, expiresAtMicros: exp });
const t = (ts: number): Cell => ({ tombstone: true, timestampMicros: ts });

describe('last-write-wins merge', () => {
  it('higher timestamp wins, whatever the kind', () => {
    expect(compareCells(v('a', 2), v('z', 1))).toBe(1);
    expect(compareCells(v('a', 2), t(1))).toBe(1);
    expect(compareCells(t(1), v('a', 2))).toBe(-1);
  });
  it('on a tie a tombstone wins', () => {
    expect(compareCells(t(5), v('z', 5))).toBe(1);
    expect(compareCells(v('z', 5, 9), t(5))).toBe(-1);
    expect(compareCells(t(5), t(5))).toBe(0);
  });
  it('then an expiring value (earlier expiry first), then the greater value bytewise', () => {
    expect(compareCells(v('a', 5, 100), v('z', 5))).toBe(1);
    expect(compareCells(v('a', 5, 100), v('z', 5, 200))).toBe(1);
    expect(compareCells(v('b', 5), v('a', 5))).toBe(1);
    expect(compareCells(v('ab', 5), v('a', 5))).toBe(1);
    expect(compareCells(v('a', 5), v('a', 5))).toBe(0);
  });
  it('merge is commutative', () => {
    const cells = [v('a', 1), v('b', 1), t(1), v('a', 1, 50), v('c', 2), t(2), v('a', 2, 10)];
    for (const a of cells) for (const b of cells) expect(mergeCells(a, b)).toEqual(mergeCells(b, a));
  });
  it('expiry makes a value dead from its expiry on', () => {
    expect(isDead(v('a', 1, 100), 99)).toBe(false);
    expect(isDead(v('a', 1, 100), 100)).toBe(true);
    expect(isDead(t(1), 0)).toBe(true);
  });
});

describe('digests', () => {
  it('digests tell versions apart and agree on equal ones', () => {
    const ds = [undefined, v('a', 1), v('a', 2), v('b', 1), v('a', 1, 5), t(1), t(2)].map((c) => Buffer.from(cellDigest(c)).toString('hex'));
    expect(new Set(ds).size).toBe(ds.length);
    expect(cellDigest(v('a', 1))).toEqual(cellDigest(v('a', 1)));
    expect(cellDigest(v('a', 1)).length).toBe(16);
  });
  it('keeps its bytes from one build to the next: replicas of different builds compare them', () => {
    const hex = (c: Cell | undefined) => Buffer.from(cellDigest(c)).toString('hex');
    expect(hex(undefined)).toBe('e3b0c44298fc1c149afbf4c8996fb924');
    expect(hex(v('chorus', 1767225600000000))).toBe('ea5d93c157c74293a8ba14729e8142e4');
    expect(hex(v('chorus', 1767225600000000, 1767229200000000))).toBe('c03feeb5f980b9740e3398f9d8396e56');
    expect(hex(t(1767225600000001))).toBe('5935f909ef5d33805195f06497467ba2');
    expect(hex({ value: new Uint8Array(1000).fill(7), timestampMicros: 5 })).toBe('6065c626989eabe611f42aa4b32ff9a5');
  });
});
