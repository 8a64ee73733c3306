import { MAX_TOKEN, MIN_TOKEN, type Token } from '@chorus/core';

/*
 * Key layout (all bytes compare lexicographically, as LevelDB does). Every
 * write is a new entry whose key names its version, so writes never read:
 *
 *   partition  P = 'd' | len(keyspace):u8 | keyspace | token:8 | esc(partition) 00 01
 *   deletion       P | 00 | ~timestamp:8
 *   row version    P | 01 | esc(clustering) 00 01 | ~timestamp:8 | tie
 *   head           P | 01 | esc(clustering) 00 01        (heads.ts: a row's
 *                  newest version, its timestamp in its value; sorts right
 *                  before the row's versions, and reads take it as one)
 *
 * - token: the signed 64-bit value with its sign bit flipped, big-endian, so
 *   byte order equals numeric order (MIN_TOKEN → 00…, MAX_TOKEN → ff…).
 * - esc(x): 0x00 is written as 00 ff and the field ends with 00 01. This keeps
 *   partitions (and clustering keys) in bytewise order and makes each field
 *   prefix-free: no partition's (or row's) key prefix is a prefix of another's,
 *   so a version suffix after it can never interleave two rows.
 * - kind 00 (partition deletions) sorts before 01 (rows), so a forward scan
 *   learns of a partition's deletion before it meets the rows.
 * - ~timestamp: 2^64 − 1 − timestamp, big-endian: the versions of a row (and
 *   of a partition's deletion) sort newest first.
 * - tie: tells apart versions with equal timestamps but different content, so
 *   neither overwrites the other and reads pick the winner by the merge rules
 *   (cell.ts writes it). Different content always gets a different tie, even
 *   content a client chose to collide: the value itself when short, else its
 *   SHA-256. Rewriting the very same version writes the very same key. Its
 *   length varies, so a version's ~timestamp is found by parsing the key
 *   forward (`rowEntryAt`), never counted from its end. The previous layout's
 *   8-byte tie (rank 00..02 and a 56-bit hash) still reads: its first byte
 *   tells it apart from the current one's (10..12).
 *
 * Keyspaces are a prefix; the length byte keeps "ks" from matching "ks2".
 */

const DATA = 0x64; // 'd'
const META = 0x6d; // 'm'
export const KIND_PARTITION_DELETION = 0x00;
export const KIND_ROW = 0x01;
/** Bytes of a row version's ~timestamp, which the tie follows. */
export const VERSION_TS_BYTES = 8;
/** Length of the previous layout's tie: a rank byte 00..02 and 7 bytes of a 56-bit hash. */
const LEGACY_TIE_BYTES = 8;
/** First byte of a current-layout tie: this plus compareCells' tie rank (0 tombstone, 1 expiring value, 2 value). */
export const TIE_TAG = 0x10;
/** A tie's body: the value itself (`TIE_LITERAL | value`, values up to `TIE_LITERAL_MAX` bytes) or its digest (`TIE_DIGEST | sha256`). */
export const TIE_LITERAL = 0x00;
export const TIE_DIGEST = 0x01;
export const TIE_LITERAL_MAX = 32;
const TIE_DIGEST_BYTES = 32;
/** Bytes of a deletion version's suffix (~timestamp). */
export const DELETION_VERSION_BYTES = 8;
export const DATA_START = Uint8Array.of(DATA);
export const DATA_END = Uint8Array.of(DATA + 1);

const TEXT = new TextEncoder();
const DECODE = new TextDecoder();
const SCRATCH = new DataView(new ArrayBuffer(8));
const TWO32 = 0x1_0000_0000;

/** Entries `mhb | ~bound`: a bound on every timestamp stored (heads.ts). */
export const HEAD_BOUND_PREFIX = Uint8Array.of(META, 0x68, 0x62);
/** Entries `mhd | row prefix without its d`: rows that have versions beside their head, or no head (heads.ts). */
export const HEAD_MARKER_PREFIX = Uint8Array.of(META, 0x68, 0x64);

export const SYNC_MARKER_KEY = Uint8Array.of(META, 0x73, 0x79, 0x6e, 0x63); // 'msync'

/** Writes the token's 8 order-preserving bytes at `at` (no BigInt arithmetic, no allocation). */
export function writeToken(out: Uint8Array, at: number, t: Token | bigint): void {
  // setBigInt64 takes the value modulo 2^64 itself: no BigInt.asIntN, which allocates a bigint per key.
  SCRATCH.setBigInt64(0, t);
  out[at] = SCRATCH.getUint8(0) ^ 0x80;
  for (let i = 1; i < 8; i++) out[at + i] = SCRATCH.getUint8(i);
}

export function encodeToken(t: Token | bigint): Uint8Array {
  const out = new Uint8Array(8);
  writeToken(out, 0, t);
  return out;
}

export function decodeToken(b: Uint8Array, offset = 0): Token {
  for (let i = 0; i < 8; i++) SCRATCH.setUint8(i, b[offset + i]!);
  SCRATCH.setUint8(0, SCRATCH.getUint8(0) ^ 0x80);
  return SCRATCH.getBigInt64(0) as Token;
}

export function escapedLength(b: Uint8Array): number {
  let n = b.length + 2;
  for (let i = 0; i < b.length; i++) if (b[i] === 0) n++;
  return n;
}

/** Writes esc(b) 00 01 at `at`; returns the offset after it. */
export function writeEscaped(out: Uint8Array, at: number, b: Uint8Array): number {
  for (let i = 0; i < b.length; i++) {
    const x = b[i]!;
    out[at++] = x;
    if (x === 0) out[at++] = 0xff;
  }
  out[at++] = 0x00;
  out[at++] = 0x01;
  return at;
}

/** Writes 2^64 − 1 − micros big-endian (micros is a safe non-negative integer). */
export function writeInvertedMicros(out: Uint8Array, at: number, micros: number): void {
  const hi = Math.floor(micros / TWO32);
  const lo = micros - hi * TWO32;
  const ih = 0xffffffff - hi;
  const il = 0xffffffff - lo;
  out[at] = ih >>> 24;
  out[at + 1] = (ih >>> 16) & 0xff;
  out[at + 2] = (ih >>> 8) & 0xff;
  out[at + 3] = ih & 0xff;
  out[at + 4] = il >>> 24;
  out[at + 5] = (il >>> 16) & 0xff;
  out[at + 6] = (il >>> 8) & 0xff;
  out[at + 7] = il & 0xff;
}

export function readInvertedMicros(b: Uint8Array, at: number): number {
  const ih = ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
  const il = ((b[at + 4]! << 24) | (b[at + 5]! << 16) | (b[at + 6]! << 8) | b[at + 7]!) >>> 0;
  return (0xffffffff - ih) * TWO32 + (0xffffffff - il);
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

/** Length of `ksPrefix | token | esc(partition) 00 01`. */
export function partitionKeyLength(ksPrefix: Uint8Array, partition: Uint8Array): number {
  return ksPrefix.length + 8 + escapedLength(partition);
}

/** Writes the partition's key prefix at 0; returns its length. */
export function writePartitionKey(out: Uint8Array, ksPrefix: Uint8Array, t: Token | bigint, partition: Uint8Array): number {
  out.set(ksPrefix, 0);
  writeToken(out, ksPrefix.length, t);
  return writeEscaped(out, ksPrefix.length + 8, partition);
}

/** The prefix shared by a partition's deletion versions and all its rows' versions. */
export function partitionKey(keyspace: string, t: Token | bigint, partition: Uint8Array): Uint8Array {
  const ks = keyspacePrefix(keyspace);
  const out = new Uint8Array(partitionKeyLength(ks, partition));
  writePartitionKey(out, ks, t, partition);
  return out;
}

/** `P | kind` (plus nothing): the prefix of every deletion version (kind 00) or every row (kind 01). */
export function kindPrefix(partitionKey: Uint8Array, kind: number): Uint8Array {
  const out = new Uint8Array(partitionKey.length + 1);
  out.set(partitionKey, 0);
  out[partitionKey.length] = kind;
  return out;
}

/** `P | 01 | esc(clustering) 00 01`: the prefix of every version of one row. */
export function rowPrefixFromPartition(partitionKey: Uint8Array, clustering: Uint8Array): Uint8Array {
  const out = new Uint8Array(partitionKey.length + 1 + escapedLength(clustering));
  out.set(partitionKey, 0);
  out[partitionKey.length] = KIND_ROW;
  writeEscaped(out, partitionKey.length + 1, clustering);
  return out;
}

/** The prefix of every version of a row. */
export function rowKeyPrefix(keyspace: string, t: Token | bigint, partition: Uint8Array, clustering: Uint8Array): Uint8Array {
  return rowPrefixFromPartition(partitionKey(keyspace, t, partition), clustering);
}

/** The prefix of every version of a partition's deletion. */
export function partitionDeletionKeyPrefix(keyspace: string, t: Token | bigint, partition: Uint8Array): Uint8Array {
  return kindPrefix(partitionKey(keyspace, t, partition), KIND_PARTITION_DELETION);
}

/** The key of a partition deletion at `timestampMicros`. */
export function deletionVersionKey(partitionKey: Uint8Array, timestampMicros: number): Uint8Array {
  const out = new Uint8Array(partitionKey.length + 1 + DELETION_VERSION_BYTES);
  out.set(partitionKey, 0);
  out[partitionKey.length] = KIND_PARTITION_DELETION;
  writeInvertedMicros(out, partitionKey.length + 1, timestampMicros);
  return out;
}

/** A copy of `b[start, end)` (Buffer's `slice` would be a view). */
export function copyBytes(b: Uint8Array, start = 0, end = b.length): Uint8Array {
  const out = new Uint8Array(end - start);
  out.set(b.subarray(start, end), 0);
  return out;
}

/** The first key past every key that starts with `prefix`, or undefined when there is none. */
export function prefixEnd(prefix: Uint8Array): Uint8Array | undefined {
  let i = prefix.length - 1;
  while (i >= 0 && prefix[i] === 0xff) i--;
  if (i < 0) return undefined;
  const out = copyBytes(prefix, 0, i + 1);
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

/** Length of an escaped field that starts at `at` (terminator included), or -1 when it does not end. */
export function escapedFieldLength(key: Uint8Array, at: number): number {
  for (let i = at; i + 1 < key.length; ) {
    if (key[i] === 0) {
      if (key[i + 1] === 0x01) return i + 2 - at;
      i += 2;
    } else i++;
  }
  return -1;
}

/** Inverse of esc(): the raw bytes of an escaped field of `len` bytes (terminator included). */
export function unescape(key: Uint8Array, at: number, len: number): Uint8Array {
  const end = at + len - 2;
  let zeros = 0;
  for (let i = at; i < end; i++) if (key[i] === 0) zeros++, i++;
  const out = new Uint8Array(end - at - zeros);
  let j = 0;
  for (let i = at; i < end; i++) {
    out[j++] = key[i]!;
    if (key[i] === 0) i++;
  }
  return out;
}

/** Length of a data key's partition prefix P, or -1 for a key outside the layout. */
export function partitionPrefixLength(key: Uint8Array): number {
  if (key.length < 2 || key[0] !== DATA) return -1;
  const at = 2 + key[1]! + 8;
  if (at > key.length) return -1;
  const n = escapedFieldLength(key, at);
  return n < 0 ? -1 : at + n;
}

export interface DecodedKey {
  keyspace: string;
  token: Token;
  partition: Uint8Array;
  kind: number;
  /** Raw clustering key (rows only; empty for deletions). */
  clustering: Uint8Array;
  timestampMicros: number;
  /** Length of P, the partition prefix (the kind byte is at this offset). */
  partitionLength: number;
  /** Length of the version's prefix: `P | 00` for a deletion, `P | 01 | esc(clustering) 00 01` for a row. */
  prefixLength: number;
}

/** Inverse of the layout above; returns undefined for keys outside the data space (metadata, malformed). */
export function decodeKey(key: Uint8Array): DecodedKey | undefined {
  const p = partitionPrefixLength(key);
  if (p < 0 || p >= key.length) return undefined;
  const ksLen = key[1]!;
  const keyspace = DECODE.decode(key.subarray(2, 2 + ksLen));
  const t = decodeToken(key, 2 + ksLen);
  const partStart = 2 + ksLen + 8;
  const partition = unescape(key, partStart, p - partStart);
  const kind = key[p]!;
  if (kind === KIND_PARTITION_DELETION) {
    if (key.length !== p + 1 + DELETION_VERSION_BYTES) return undefined;
    return { keyspace, token: t, partition, kind, clustering: new Uint8Array(0), timestampMicros: readInvertedMicros(key, p + 1), partitionLength: p, prefixLength: p + 1 };
  }
  if (kind !== KIND_ROW) return undefined;
  const c = escapedFieldLength(key, p + 1);
  if (c < 0 || !isTie(key, p + 1 + c + VERSION_TS_BYTES)) return undefined;
  return {
    keyspace,
    token: t,
    partition,
    kind,
    clustering: unescape(key, p + 1, c),
    timestampMicros: readInvertedMicros(key, p + 1 + c),
    partitionLength: p,
    prefixLength: p + 1 + c,
  };
}

/**
 * Whether `key[at..]` is a whole tie of either layout: current (tag, then for
 * an expiring value its expiry, then the value or its digest) or previous
 * (8 bytes, rank first). Keys outside both are skipped by every reader.
 */
export function isTie(key: Uint8Array, at: number): boolean {
  const n = key.length - at;
  if (n < 1) return false;
  const tag = key[at]!;
  if (tag <= 2) return n === LEGACY_TIE_BYTES;
  if (tag === TIE_TAG) return n === 1;
  const body = tag === TIE_TAG + 1 ? 1 + VERSION_TS_BYTES : tag === TIE_TAG + 2 ? 1 : -1;
  if (body < 0 || n <= body) return false;
  const form = key[at + body]!;
  const rest = n - body - 1;
  return form === TIE_LITERAL ? rest <= TIE_LITERAL_MAX : form === TIE_DIGEST && rest === TIE_DIGEST_BYTES;
}

/**
 * Where a row entry's version suffix starts (the length of its row prefix):
 * for a version, its ~timestamp; for a head, the end of the key. -1 for a
 * key that is no row entry.
 */
export function rowEntryAt(key: Uint8Array): number {
  const p = partitionPrefixLength(key);
  if (p < 0 || p >= key.length || key[p] !== KIND_ROW) return -1;
  const c = escapedFieldLength(key, p + 1);
  if (c < 0) return -1;
  const at = p + 1 + c;
  return at === key.length || isTie(key, at + VERSION_TS_BYTES) ? at : -1;
}

/** True when `key` is a row's head (see heads.ts): the sweep and the deletes of shadowed versions leave it alone. */
export function isHeadKey(key: Uint8Array): boolean {
  const at = rowEntryAt(key);
  return at >= 0 && at === key.length;
}

/** True when `key` starts with the first `len` bytes of `prefix`. */
export function hasPrefix(key: Uint8Array, prefix: Uint8Array, len = prefix.length): boolean {
  if (key.length < len) return false;
  for (let i = len - 1; i >= 0; i--) if (key[i] !== prefix[i]) return false;
  return true;
}

export { MIN_TOKEN, MAX_TOKEN };
