import { hash } from 'node:crypto';
import { type Cell, isTombstone, unfilledBytes, writeBinary } from '@chorus/model';
import { TIE_DIGEST, TIE_LITERAL, TIE_LITERAL_MAX, TIE_TAG } from './keys.js';

/*
 * Stored value layout:
 *   flags:u8 | timestamp:f64 | [deletionTime:f64 when tombstone] | [expiresAt:f64 when expiring] | value
 * flags: bit0 tombstone, bit1 expiring. Microsecond timestamps are safe
 * integers (< 2^53), which float64 holds exactly. (The timestamp is in the key
 * too; the value repeats it so a value decodes on its own.)
 * deletionTime is this replica's clock when the tombstone was stored: it only
 * decides when gc may purge it and takes no part in merges or digests.
 */
const F_TOMBSTONE = 1;
const F_EXPIRING = 2;
const F64 = new DataView(new ArrayBuffer(8));

function writeF64(out: Uint8Array, at: number, x: number): void {
  F64.setFloat64(0, x);
  for (let i = 0; i < 8; i++) out[at + i] = F64.getUint8(i);
}

function readF64(b: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) F64.setUint8(i, b[at + i]!);
  return F64.getFloat64(0);
}

export interface StoredCell {
  readonly cell: Cell;
  /** When this replica first stored the tombstone; undefined for values. */
  readonly deletionTimeMicros?: number;
}

export function encodeStored(cell: Cell, deletionTimeMicros: number): Uint8Array {
  if (isTombstone(cell)) {
    const out = new Uint8Array(17);
    out[0] = F_TOMBSTONE;
    writeF64(out, 1, cell.timestampMicros);
    writeF64(out, 9, deletionTimeMicros);
    return out;
  }
  const expiring = cell.expiresAtMicros !== undefined;
  const head = expiring ? 17 : 9;
  const out = unfilledBytes(head + cell.value.length);
  out[0] = expiring ? F_EXPIRING : 0;
  writeF64(out, 1, cell.timestampMicros);
  if (expiring) writeF64(out, 9, cell.expiresAtMicros!);
  out.set(cell.value, head);
  return out;
}

/** The timestamp of a stored value without decoding the rest. */
export function storedTimestamp(b: Uint8Array): number {
  return readF64(b, 1);
}

export function decodeStored(b: Uint8Array): StoredCell {
  const flags = b[0]!;
  const timestampMicros = readF64(b, 1);
  if (flags & F_TOMBSTONE) return { cell: { tombstone: true, timestampMicros }, deletionTimeMicros: readF64(b, 9) };
  if (flags & F_EXPIRING) return { cell: { value: b.subarray(17), timestampMicros, expiresAtMicros: readF64(b, 9) } };
  return { cell: { value: b.subarray(9), timestampMicros } };
}

/** A partition deletion's stored value: its timestamp and this replica's deletion time. */
export function encodeDeletion(timestampMicros: number, deletionTimeMicros: number): Uint8Array {
  return encodeStored({ tombstone: true, timestampMicros }, deletionTimeMicros);
}

/** Bytes of the tie of `cell` in a row version's key (see `writeTie`). */
export function tieLength(cell: Cell): number {
  if (isTombstone(cell)) return 1;
  const head = cell.expiresAtMicros === undefined ? 1 : 9;
  return head + 1 + (cell.value.length <= TIE_LITERAL_MAX ? cell.value.length : 32);
}

/**
 * Writes the tie-break of a row version at `at` (`tieLength(cell)` bytes):
 * a tag (`TIE_TAG` plus the rank of compareCells' tie order: 0 tombstone,
 * 1 expiring value, 2 value), then for an expiring value its expiry (8 bytes),
 * then for a value either `TIE_LITERAL | value` (values up to
 * `TIE_LITERAL_MAX` bytes) or `TIE_DIGEST | SHA-256(value)`. Each part is
 * either of fixed length or the last one, so different content always gets
 * different bytes: no one can make two versions of one timestamp share a
 * key (the previous layout's 56-bit hash could be collided in seconds), and
 * the same content always gets the same key, so a rewrite is idempotent.
 * Short values skip the hash, which is most of a write's cost to compute.
 */
export function writeTie(out: Uint8Array, at: number, cell: Cell): void {
  if (isTombstone(cell)) {
    out[at] = TIE_TAG;
    return;
  }
  const e = cell.expiresAtMicros;
  out[at++] = TIE_TAG + (e === undefined ? 2 : 1);
  if (e !== undefined) {
    writeF64(out, at, e);
    at += 8;
  }
  const v = cell.value;
  if (v.length <= TIE_LITERAL_MAX) {
    out[at] = TIE_LITERAL;
    out.set(v, at + 1);
  } else {
    out[at] = TIE_DIGEST;
    // As a 'binary' (latin1) string: a Buffer made by the hash is an ArrayBuffer of its own, which costs more than the hash.
    writeBinary(out, at + 1, hash('sha256', v, 'binary'));
  }
}
