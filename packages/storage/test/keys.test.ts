import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MAX_TOKEN, MIN_TOKEN, token } from '@chorus/core';
import { compareBytes, type Cell, compareCells } from '@chorus/model';
import { decodeKey, decodeToken, deletionVersionKey, encodeToken, partitionKey, prefixEnd, rowKeyPrefix, writeInvertedMicros } from '../src/keys.js';
import { tieLength, writeTie } from '../src/cell.js';

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

/** The stored key of a row version, as the store writes it. */
function versionKey(ks: string, t: bigint, p: Uint8Array, c: Uint8Array, cell: Cell): Uint8Array {
  const prefix = rowKeyPrefix(ks, t, p, c);
  const out = new Uint8Array(prefix.length + 8 + tieLength(cell));
  out.set(prefix, 0);
  writeInvertedMicros(out, prefix.length, cell.timestampMicros);
  writeTie(out, prefix.length + 8, cell);
  return out;
}

const tsArb = fc.oneof(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
// Values past 32 bytes are keyed by their digest, shorter ones by themselves: both forms, and values that differ in one byte.
const valueArb = fc.oneof(bytesArb, fc.tuple(fc.integer({ min: 28, max: 40 }), fc.nat(39), fc.nat(3)).map(([n, at, x]) => new Uint8Array(n).map((_, i) => (i === at % n ? x : 7))));
const cellArb: fc.Arbitrary<Cell> = fc.oneof(
  tsArb.map((ts) => ({ tombstone: true as const, timestampMicros: ts })),
  fc.record({ value: valueArb, timestampMicros: tsArb }),
  fc.record({ value: valueArb, timestampMicros: tsArb, expiresAtMicros: fc.integer({ min: 0, max: 50 }) }),
);

describe('row keys', () => {
  it('sort by token, then partition bytewise, then deletions, then clustering bytewise, then newest version first', () => {
    const tuple = fc.tuple(tokenArb, pkArb, fc.boolean(), bytesArb, cellArb);
    fc.assert(
      fc.property(tuple, tuple, ([ta, pa, da, ca, xa], [tb, pb, db, cb, xb]) => {
        const ka = da ? deletionVersionKey(partitionKey('ks', ta, pa), xa.timestampMicros) : versionKey('ks', ta, pa, ca, xa);
        const kb = db ? deletionVersionKey(partitionKey('ks', tb, pb), xb.timestampMicros) : versionKey('ks', tb, pb, cb, xb);
        let expected = ta < tb ? -1 : ta > tb ? 1 : sign(compareBytes(pa, pb));
        if (expected === 0) {
          if (da !== db) expected = da ? -1 : 1;
          else if (!da) expected = sign(compareBytes(ca, cb));
        }
        if (expected === 0) {
          // Same row (or same partition's deletions): newer first.
          const dt = xb.timestampMicros - xa.timestampMicros;
          if (dt !== 0) expected = sign(dt);
          else if (!da && compareCells(xa, xb) !== 0) {
            // Equal timestamps, different content: distinct keys; a tombstone first, then an expiring value.
            expect(compareBytes(ka, kb)).not.toBe(0);
            const rank = (c: Cell) => ('tombstone' in c ? 0 : c.expiresAtMicros !== undefined ? 1 : 2);
            if (rank(xa) !== rank(xb)) expect(sign(compareBytes(ka, kb))).toBe(sign(rank(xa) - rank(xb)));
            return;
          }
        }
        expect(sign(compareBytes(ka, kb))).toBe(expected);
      }),
      { numRuns: 3000 },
    );
  });

  it('the same version always has the same key', () => {
    fc.assert(
      fc.property(tokenArb, pkArb, bytesArb, cellArb, (t, p, c, x) => {
        expect(versionKey('ks', t, p, c, x)).toEqual(versionKey('ks', t, p, c, structuredClone(x)));
      }),
    );
  });

  it('decode inverts encode', () => {
    fc.assert(
      fc.property(tokenArb, pkArb, bytesArb, cellArb, (t, p, c, x) => {
        const k = decodeKey(versionKey('Users_1', t, p, c, x))!;
        expect(k.keyspace).toBe('Users_1');
        expect(k.token).toBe(t);
        expect(Array.from(k.partition)).toEqual(Array.from(p));
        expect(Array.from(k.clustering)).toEqual(Array.from(c));
        expect(k.timestampMicros).toBe(x.timestampMicros);
        const d = decodeKey(deletionVersionKey(partitionKey('ks', t, p), x.timestampMicros))!;
        expect([d.kind, d.timestampMicros, Array.from(d.partition)]).toEqual([0, x.timestampMicros, Array.from(p)]);
      }),
    );
  });

  it('a partition key that is a prefix of another never captures its rows', () => {
    const t = token(5n);
    const v: Cell = { value: Uint8Array.of(1), timestampMicros: 1 };
    const short = versionKey('ks', t, Uint8Array.of(1), Uint8Array.of(0xff, 0xff), v);
    const long = versionKey('ks', t, Uint8Array.of(1, 0), new Uint8Array(0), v);
    const shortEnd = prefixEnd(partitionKey('ks', t, Uint8Array.of(1)))!;
    expect(compareBytes(short, shortEnd)).toBeLessThan(0);
    expect(compareBytes(long, shortEnd)).toBeGreaterThan(0);
  });

  it('a clustering key that is a prefix of another never captures its versions', () => {
    const t = token(5n);
    const v: Cell = { value: Uint8Array.of(1), timestampMicros: 1 };
    const rowA = rowKeyPrefix('ks', t, Uint8Array.of(1), Uint8Array.of(7));
    const longer = versionKey('ks', t, Uint8Array.of(1), Uint8Array.of(7, 0), v);
    const own = versionKey('ks', t, Uint8Array.of(1), Uint8Array.of(7), v);
    expect(compareBytes(own, prefixEnd(rowA)!)).toBeLessThan(0);
    expect(compareBytes(longer, prefixEnd(rowA)!)).toBeGreaterThan(0);
  });

  it('keyspace prefixes do not overlap', () => {
    const v: Cell = { value: Uint8Array.of(1), timestampMicros: 1 };
    const a = versionKey('ks', MAX_TOKEN, Uint8Array.of(0xff), Uint8Array.of(0xff), v);
    const b = versionKey('ks2', MIN_TOKEN, Uint8Array.of(0), new Uint8Array(0), v);
    const endA = prefixEnd(partitionKey('ks', MIN_TOKEN, Uint8Array.of(0)).subarray(0, 4))!;
    expect(compareBytes(a, endA)).toBeLessThan(0);
    expect(compareBytes(b, endA)).toBeGreaterThan(0);
  });
});
