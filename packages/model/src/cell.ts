import { hash } from 'node:crypto';
import { compareBytes, writeBinary } from './bytes.js';

/** A live value, optionally expiring at `expiresAtMicros` (wall-clock microseconds). */
export interface ValueCell {
  readonly value: Uint8Array;
  readonly timestampMicros: number;
  readonly expiresAtMicros?: number;
}

/** A deletion marker: it shadows every older value of its row. */
export interface TombstoneCell {
  readonly tombstone: true;
  readonly timestampMicros: number;
}

export type Cell = ValueCell | TombstoneCell;

export function isTombstone(c: Cell): c is TombstoneCell {
  return (c as TombstoneCell).tombstone === true;
}

/** A cell that reads as absent at `nowMicros`: a tombstone, or a value past its expiry. */
export function isDead(c: Cell, nowMicros: number): boolean {
  if (isTombstone(c)) return true;
  return c.expiresAtMicros !== undefined && c.expiresAtMicros <= nowMicros;
}

/**
 * Last-write-wins order, positive when `a` wins. It never looks at the clock,
 * so every replica picks the same winner whenever it merges:
 * 1. the higher timestamp;
 * 2. on a tie, a tombstone;
 * 3. then an expiring value over a non-expiring one, the earlier expiry first
 *    (it turns into a tombstone first, so it would win once expired anyway);
 * 4. then the greater value bytewise.
 * Two tombstones with equal timestamps are equal.
 */
export function compareCells(a: Cell, b: Cell): number {
  if (a.timestampMicros !== b.timestampMicros) return a.timestampMicros > b.timestampMicros ? 1 : -1;
  const at = isTombstone(a);
  const bt = isTombstone(b);
  if (at || bt) return at === bt ? 0 : at ? 1 : -1;
  const av = a as ValueCell;
  const bv = b as ValueCell;
  const ae = av.expiresAtMicros;
  const be = bv.expiresAtMicros;
  if (ae !== be) {
    if (ae === undefined) return -1;
    if (be === undefined) return 1;
    return ae < be ? 1 : -1;
  }
  return Math.sign(compareBytes(av.value, bv.value));
}

/** The winner of two versions of a row; `a` on a tie. */
export function mergeCells(a: Cell | undefined, b: Cell | undefined): Cell | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return compareCells(a, b) >= 0 ? a : b;
}

/**
 * Digest of a row's merged cell: timestamp, tombstone flag, expiry and value
 * (sha256, first 16 bytes). Two replicas agree on it exactly when they hold
 * the same version; an absent row has its own fixed digest.
 */
export function cellDigest(cell: Cell | undefined): Uint8Array {
  if (cell === undefined) return digestBytes(ABSENT_DIGEST);
  // One buffer hashed at once: the flag, the timestamp and the expiry (0 for none and for a tombstone), then the value.
  const tombstone = isTombstone(cell);
  const bytes = Buffer.allocUnsafe(17 + (tombstone ? 0 : cell.value.length));
  bytes[0] = tombstone ? 1 : cell.expiresAtMicros !== undefined ? 2 : 3;
  bytes.writeDoubleBE(cell.timestampMicros, 1);
  bytes.writeDoubleBE(tombstone ? 0 : (cell.expiresAtMicros ?? 0), 9);
  if (!tombstone) bytes.set(cell.value, 17);
  // As a 'binary' (latin1) string: a Buffer made by the hash is an ArrayBuffer of its own, which costs more than the hash.
  return digestBytes(hash('sha256', bytes, 'binary'));
}

const ABSENT_DIGEST = hash('sha256', new Uint8Array(0), 'binary');

/** A digest's first 16 bytes, in a new Uint8Array (one that size lives in the V8 heap). */
function digestBytes(binary: string): Uint8Array {
  const out = new Uint8Array(16);
  writeBinary(out, 0, binary, 16);
  return out;
}
