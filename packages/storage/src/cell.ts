import { type Cell, isTombstone } from '@chorus/model';

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
  const out = new Uint8Array(head + cell.value.length);
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

function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Writes the 8-byte tie-break of a row version at `at`: the rank (00 tombstone,
 * 01 expiring value, 02 value — compareCells' tie order) and 7 bytes of a hash
 * (two murmur3 lanes) of expiry and value, zero for tombstones. Versions with
 * equal timestamps and different content get different keys; the same content
 * always gets the same key. The hash is local to this replica's layout (it
 * never travels), so it may change with a format version.
 */
export function writeTie(out: Uint8Array, at: number, cell: Cell): void {
  if (isTombstone(cell)) {
    for (let i = 0; i < 8; i++) out[at + i] = 0;
    return;
  }
  const v = cell.value;
  const n = v.length;
  let h1 = 0x9747b28c ^ n;
  let h2 = 0x5bd1e995 ^ n;
  const e = cell.expiresAtMicros;
  if (e !== undefined) {
    const hi = Math.floor(e / 0x1_0000_0000) | 0;
    const lo = e | 0;
    h1 = mix(mix(h1, hi), lo);
    h2 = mix(mix(h2, lo), hi);
  }
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const k = v[i]! | (v[i + 1]! << 8) | (v[i + 2]! << 16) | (v[i + 3]! << 24);
    h1 = mix(h1, k);
    h2 = mix(h2, k ^ 0x27d4eb2f);
  }
  let k = 0;
  for (let s = 0; i < n; i++, s += 8) k |= v[i]! << s;
  h1 = fmix(mix(h1, k) ^ h2);
  h2 = fmix(mix(h2, k ^ 0x165667b1) ^ h1);
  out[at] = e === undefined ? 2 : 1;
  out[at + 1] = h1 >>> 24;
  out[at + 2] = (h1 >>> 16) & 0xff;
  out[at + 3] = (h1 >>> 8) & 0xff;
  out[at + 4] = h1 & 0xff;
  out[at + 5] = h2 >>> 24;
  out[at + 6] = (h2 >>> 16) & 0xff;
  out[at + 7] = (h2 >>> 8) & 0xff;
}
