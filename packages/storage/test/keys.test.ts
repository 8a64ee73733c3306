import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MAX_TOKEN, MIN_TOKEN, token } from '@chorus/core';
import { compareBytes, decodeKey, decodeToken, encodeToken, partitionDeletionKey, prefixEnd, rowKey } from '../src/keys.js';

const tokenArb = fc.bigInt({ min: MIN_TOKEN, max: MAX_TOKEN }).map((t) => token(t));
// Small alphabets with many zero bytes exercise the escaping.
const bytesArb = fc.uint8Array({ maxLength: 6 }).map((b) => b.map((x) => (x % 3 === 0 ? 0 : x % 5 === 0 ? 0xff : x)));
const pkArb = bytesArb.filter((b) => b.length > 0);
const sign = (n: number): number => Math.sign(n);

describe('token encoding', () => {
  it('round-trips and keeps numeric order as byte order', () => {
    fc.assert(
      fc.property(tokenArb, tokenArb, (a, b) => {
        expect(decodeToken(encodeToken(a))).toBe(a);
        expect(sign(compareBytes(encodeToken(a), encodeToken(b)))).toBe(a < b ? -1 : a > b ? 1 : 0);
      }),
    );
    expect(Array.from(encodeToken(MIN_TOKEN))).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(Array.from(encodeToken(MAX_TOKEN))).toEqual([255, 255, 255, 255, 255, 255, 255, 255]);
    expect(compareBytes(encodeToken(token(-1n)), encodeToken(token(0n)))).toBeLessThan(0);
  });
});

describe('row keys', () => {
  it('sort by token, then partition bytewise, then deletion record, then clustering bytewise', () => {
    const tuple = fc.tuple(tokenArb, pkArb, fc.boolean(), bytesArb);
    fc.assert(
      fc.property(tuple, tuple, ([ta, pa, da, ca], [tb, pb, db, cb]) => {
        const ka = da ? partitionDeletionKey('ks', ta, pa) : rowKey('ks', ta, pa, ca);
        const kb = db ? partitionDeletionKey('ks', tb, pb) : rowKey('ks', tb, pb, cb);
        let expected = ta < tb ? -1 : ta > tb ? 1 : sign(compareBytes(pa, pb));
        if (expected === 0) {
          if (da !== db) expected = da ? -1 : 1;
          else if (!da) expected = sign(compareBytes(ca, cb));
        }
        expect(sign(compareBytes(ka, kb))).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('decode inverts encode', () => {
    fc.assert(
      fc.property(tokenArb, pkArb, bytesArb, (t, p, c) => {
        const k = decodeKey(rowKey('Users_1', t, p, c))!;
        expect(k.keyspace).toBe('Users_1');
        expect(k.token).toBe(t);
        expect(Array.from(k.partition)).toEqual(Array.from(p));
        expect(Array.from(k.clustering)).toEqual(Array.from(c));
      }),
    );
  });

  it('a partition key that is a prefix of another never captures its rows', () => {
    const t = token(5n);
    const short = rowKey('ks', t, Uint8Array.of(1), Uint8Array.of(0xff, 0xff));
    const long = rowKey('ks', t, Uint8Array.of(1, 0), new Uint8Array(0));
    const shortEnd = prefixEnd(rowKey('ks', t, Uint8Array.of(1), new Uint8Array(0)))!;
    expect(compareBytes(short, shortEnd)).toBeLessThan(0);
    expect(compareBytes(long, shortEnd)).toBeGreaterThan(0);
  });

  it('keyspace prefixes do not overlap', () => {
    const a = rowKey('ks', MAX_TOKEN, Uint8Array.of(0xff), Uint8Array.of(0xff));
    const b = rowKey('ks2', MIN_TOKEN, Uint8Array.of(0), new Uint8Array(0));
    const endA = prefixEnd(rowKey('ks', MIN_TOKEN, Uint8Array.of(0), new Uint8Array(0)).subarray(0, 4))!;
    expect(compareBytes(a, endA)).toBeLessThan(0);
    expect(compareBytes(b, endA)).toBeGreaterThan(0);
  });
});
