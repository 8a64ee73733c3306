import { MAX_TOKEN, MIN_TOKEN, type Token } from '@chorus/core';

/*
 * Key layout (all bytes compare lexicographically, as LevelDB does):
 *
 *   'd' | len(keyspace):u8 | keyspace | token:8 | esc(partition) 00 01 | kind:u8 | clustering
 *
 * - token: the signed 64-bit value with its sign bit flipped, big-endian, so
 *   byte order equals numeric order (MIN_TOKEN → 00…, MAX_TOKEN → ff…).
 * - esc(partition): 0x00 is written as 00 ff and the key ends with 00 01. This
 *   keeps partitions in bytewise key order within a token and stops one key
 *   from being a byte prefix of another (which would interleave their rows).
 * - kind 0x00 is the partition's deletion record (no clustering bytes), kind
 *   0x01 a row. The deletion therefore sorts before every row of its
 *   partition, so a forward scan learns of it before it meets the rows.
 * - clustering is the last component, written raw: rows sort bytewise by
 *   clustering key and the empty key comes first.
 *
 * Keyspaces are a prefix; the length byte keeps "ks" from matching "ks2".
 */

const DATA = 0x64; // 'd'
const META = 0x6d; // 'm'
export const KIND_PARTITION_DELETION = 0x00;
export const KIND_ROW = 0x01;
const SIGN = 1n << 63n;
const TEXT = new TextEncoder();
const DECODE = new TextDecoder();

export const SYNC_MARKER_KEY = Uint8Array.of(META, 0x73, 0x79, 0x6e, 0x63); // 'msync'

export function encodeToken(t: Token | bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, t) ^ SIGN);
  return out;
}

export function decodeToken(b: Uint8Array, offset = 0): Token {
  const u = new DataView(b.buffer, b.byteOffset + offset, 8).getBigUint64(0) ^ SIGN;
  return BigInt.asIntN(64, u) as Token;
}

function escapedLength(b: Uint8Array): number {
  let n = b.length + 2;
  for (let i = 0; i < b.length; i++) if (b[i] === 0) n++;
  return n;
}

function writeEscaped(out: Uint8Array, at: number, b: Uint8Array): number {
  for (let i = 0; i < b.length; i++) {
    const x = b[i]!;
    out[at++] = x;
    if (x === 0) out[at++] = 0xff;
  }
  out[at++] = 0x00;
  out[at++] = 0x01;
  return at;
}

function writeToken(out: Uint8Array, at: number, t: Token | bigint): void {
  let u = BigInt.asUintN(64, t) ^ SIGN;
  for (let i = 7; i >= 0; i--) {
    out[at + i] = Number(u & 0xffn);
    u >>= 8n;
  }
}

/** `'d' | len | keyspace`: every key of the keyspace starts with it. */
export function keyspacePrefix(keyspace: string): Uint8Array {
  const name = TEXT.encode(keyspace);
  const out = new Uint8Array(2 + name.length);
  out[0] = DATA;
  out[1] = name.length;
  out.set(name, 2);
  return out;
}

/** The prefix shared by a partition's deletion record and all its rows. */
export function partitionPrefix(keyspace: string, t: Token, partition: Uint8Array): Uint8Array {
  const ks = keyspacePrefix(keyspace);
  const out = new Uint8Array(ks.length + 8 + escapedLength(partition) + 1);
  out.set(ks, 0);
  writeToken(out, ks.length, t);
  const end = writeEscaped(out, ks.length + 8, partition);
  out[end] = KIND_ROW;
  return out;
}

/** Row keys are `partitionPrefix` (which already ends in KIND_ROW) plus the clustering bytes. */
export function rowKeyFromPrefix(prefix: Uint8Array, clustering: Uint8Array): Uint8Array {
  if (clustering.length === 0) return prefix;
  const out = new Uint8Array(prefix.length + clustering.length);
  out.set(prefix, 0);
  out.set(clustering, prefix.length);
  return out;
}

export function deletionKeyFromPrefix(prefix: Uint8Array): Uint8Array {
  const out = prefix.slice();
  out[out.length - 1] = KIND_PARTITION_DELETION;
  return out;
}

export function rowKey(keyspace: string, t: Token, partition: Uint8Array, clustering: Uint8Array): Uint8Array {
  return rowKeyFromPrefix(partitionPrefix(keyspace, t, partition), clustering);
}

export function partitionDeletionKey(keyspace: string, t: Token, partition: Uint8Array): Uint8Array {
  return deletionKeyFromPrefix(partitionPrefix(keyspace, t, partition));
}

/** The first key past every key that starts with `prefix`, or undefined when there is none. */
export function prefixEnd(prefix: Uint8Array): Uint8Array | undefined {
  let i = prefix.length - 1;
  while (i >= 0 && prefix[i] === 0xff) i--;
  if (i < 0) return undefined;
  const out = prefix.slice(0, i + 1);
  out[i] = out[i]! + 1;
  return out;
}

export function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Lower bound of the keys of tokens ≥ t within a keyspace. */
export function tokenLowerBound(ksPrefix: Uint8Array, t: Token | bigint): Uint8Array {
  return concat(ksPrefix, encodeToken(t));
}

/** Exclusive upper bound of the keys of tokens ≤ t within a keyspace. */
export function tokenUpperBound(ksPrefix: Uint8Array, t: Token | bigint): Uint8Array {
  if (t >= MAX_TOKEN) return prefixEnd(ksPrefix)!;
  return concat(ksPrefix, encodeToken(t + 1n));
}

export interface DecodedKey {
  keyspace: string;
  token: Token;
  partition: Uint8Array;
  kind: number;
  clustering: Uint8Array;
  /** Length of the partition prefix (up to but excluding the kind byte). */
  prefixLength: number;
}

/** Inverse of the layout above; returns undefined for keys outside the data space (metadata). */
export function decodeKey(key: Uint8Array): DecodedKey | undefined {
  if (key.length < 2 || key[0] !== DATA) return undefined;
  const ksLen = key[1]!;
  const keyspace = DECODE.decode(key.subarray(2, 2 + ksLen));
  let at = 2 + ksLen;
  const t = decodeToken(key, at);
  at += 8;
  // Unescape: the partition ends at the first 00 that is followed by 01.
  let zeros = 0;
  let end = at;
  for (;;) {
    if (end + 1 >= key.length) return undefined;
    if (key[end] === 0) {
      if (key[end + 1] === 0x01) break;
      zeros++;
      end += 2;
    } else end++;
  }
  let partition: Uint8Array;
  if (zeros === 0) partition = key.subarray(at, end);
  else {
    partition = new Uint8Array(end - at - zeros);
    let j = 0;
    for (let i = at; i < end; i++) {
      partition[j++] = key[i]!;
      if (key[i] === 0) i++;
    }
  }
  const kindAt = end + 2;
  if (kindAt >= key.length) return undefined;
  return {
    keyspace,
    token: t,
    partition,
    kind: key[kindAt]!,
    clustering: key.subarray(kindAt + 1),
    prefixLength: kindAt,
  };
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export { MIN_TOKEN, MAX_TOKEN };
