import { createHash } from 'node:crypto';
import { compareBytes } from './bytes.js';

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

const ABSENT = new Uint8Array(0);

/**
 * Digest of a row's merged cell: timestamp, tombstone flag, expiry and value
 * (sha256, first 16 bytes). Two replicas agree on it exactly when they hold
 * the same version; an absent row has its own fixed digest.
 */
export function cellDigest(cell: Cell | undefined): Uint8Array {
  const h = createHash('sha256');
  if (cell === undefined) h.update(ABSENT);
  else {
    const head = new Uint8Array(17);
    const dv = new DataView(head.buffer);
    head[0] = isTombstone(cell) ? 1 : cell.expiresAtMicros !== undefined ? 2 : 3;
    dv.setFloat64(1, cell.timestampMicros);
    if (!isTombstone(cell)) {
      dv.setFloat64(9, cell.expiresAtMicros ?? 0);
      h.update(head);
      h.update(cell.value);
    } else h.update(head);
  }
  return new Uint8Array(h.digest().subarray(0, 16));
}
