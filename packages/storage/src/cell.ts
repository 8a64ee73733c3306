import { createHash } from 'node:crypto';
import { compareBytes } from './keys.js';

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

/*
 * Stored value layout:
 *   flags:u8 | timestamp:f64 | [deletionTime:f64 when tombstone] | [expiresAt:f64 when expiring] | value
 * flags: bit0 tombstone, bit1 expiring. Microsecond timestamps are safe
 * integers (< 2^53), which float64 holds exactly.
 * deletionTime is this replica's clock when the tombstone was stored: it only
 * decides when gc may purge it and takes no part in merges or digests.
 */
const F_TOMBSTONE = 1;
const F_EXPIRING = 2;

export interface StoredCell {
  readonly cell: Cell;
  /** When this replica first stored the tombstone; undefined for values. */
  readonly deletionTimeMicros?: number;
}

export function encodeStored(cell: Cell, deletionTimeMicros: number): Uint8Array {
  if (isTombstone(cell)) {
    const out = new Uint8Array(17);
    const dv = new DataView(out.buffer);
    out[0] = F_TOMBSTONE;
    dv.setFloat64(1, cell.timestampMicros);
    dv.setFloat64(9, deletionTimeMicros);
    return out;
  }
  const expiring = cell.expiresAtMicros !== undefined;
  const head = expiring ? 17 : 9;
  const out = new Uint8Array(head + cell.value.length);
  const dv = new DataView(out.buffer);
  out[0] = expiring ? F_EXPIRING : 0;
  dv.setFloat64(1, cell.timestampMicros);
  if (expiring) dv.setFloat64(9, cell.expiresAtMicros!);
  out.set(cell.value, head);
  return out;
}

export function decodeStored(b: Uint8Array): StoredCell {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const flags = b[0]!;
  const timestampMicros = dv.getFloat64(1);
  if (flags & F_TOMBSTONE) return { cell: { tombstone: true, timestampMicros }, deletionTimeMicros: dv.getFloat64(9) };
  if (flags & F_EXPIRING) return { cell: { value: b.subarray(17), timestampMicros, expiresAtMicros: dv.getFloat64(9) } };
  return { cell: { value: b.subarray(9), timestampMicros } };
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
