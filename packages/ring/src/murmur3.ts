import { MAX_TOKEN, MIN_TOKEN, type Token } from '@chorus/core';

/*
 * MurmurHash3 x64_128 as Cassandra's Murmur3Partitioner computes it, seed 0,
 * keeping only the first 64-bit half. BigInt arithmetic costs an allocation
 * per operation, so the 64-bit lanes are carried as pairs of unsigned 32-bit
 * numbers and only the result becomes a bigint.
 */

const C1_HI = 0x87c37b91;
const C1_LO = 0x114253d5;
const C2_HI = 0x4cf5ad43;
const C2_LO = 0x2745937f;
const FMIX1_HI = 0xff51afd7;
const FMIX1_LO = 0xed558ccd;
const FMIX2_HI = 0xc4ceb9fe;
const FMIX2_LO = 0x1a85ec53;

const utf8 = new TextEncoder();
const HALVES = new DataView(new ArrayBuffer(8));
/** Where `tokenOf` puts a string key's UTF-8 bytes: every request's key is hashed, and `encode` makes a new array each time. */
const KEY_BYTES = new Uint8Array(1024);

/** A 64-bit lane: [high 32 bits, low 32 bits], both unsigned. */
type Lane = [number, number];

/** (a * b) mod 2^64, written into `out`. */
function mul64(aHi: number, aLo: number, bHi: number, bLo: number, out: Lane): void {
  // The low halves' full 64-bit product needs 16-bit limbs to stay exact in doubles.
  const a0 = aLo & 0xffff;
  const a1 = aLo >>> 16;
  const b0 = bLo & 0xffff;
  const b1 = bLo >>> 16;
  const p00 = a0 * b0;
  const p01 = a0 * b1;
  const p10 = a1 * b0;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  const carry = a1 * b1 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16);
  out[1] = ((mid << 16) | (p00 & 0xffff)) >>> 0;
  out[0] = (carry + Math.imul(aHi, bLo) + Math.imul(aLo, bHi)) >>> 0;
}

/** Rotate left by 0 < n < 32. */
function rotl(hi: number, lo: number, n: number, out: Lane): void {
  out[0] = ((hi << n) | (lo >>> (32 - n))) >>> 0;
  out[1] = ((lo << n) | (hi >>> (32 - n))) >>> 0;
}

function add64(aHi: number, aLo: number, bHi: number, bLo: number, out: Lane): void {
  const lo = aLo + bLo;
  out[1] = lo >>> 0;
  out[0] = (aHi + bHi + (lo > 0xffffffff ? 1 : 0)) >>> 0;
}

function fmix(hi: number, lo: number, out: Lane): void {
  lo = (lo ^ (hi >>> 1)) >>> 0;
  mul64(hi, lo, FMIX1_HI, FMIX1_LO, out);
  hi = out[0];
  lo = (out[1] ^ (hi >>> 1)) >>> 0;
  mul64(hi, lo, FMIX2_HI, FMIX2_LO, out);
  hi = out[0];
  out[1] = (out[1] ^ (hi >>> 1)) >>> 0;
}

function readLe32(key: Uint8Array, at: number): number {
  return (key[at]! | (key[at + 1]! << 8) | (key[at + 2]! << 16) | (key[at + 3]! << 24)) >>> 0;
}

/**
 * Cassandra reads tail bytes as Java's signed `byte` widened to `long`, so a
 * byte >= 0x80 also sets every bit above its own position. Blocks are read
 * unsigned. XORs the byte at `at`, placed at byte position `shift`, into `k`.
 */
function xorTailByte(k: Lane, key: Uint8Array, at: number, shift: number): void {
  const b = key[at]!;
  const signFill = b >= 0x80 ? 0xffffffff : 0;
  if (shift < 4) {
    const bits = shift * 8;
    k[1] = (k[1] ^ (((b | (signFill << 8)) << bits) >>> 0)) >>> 0;
    k[0] = (k[0] ^ signFill) >>> 0;
  } else {
    const bits = (shift - 4) * 8;
    k[0] = (k[0] ^ (((b | (signFill << 8)) << bits) >>> 0)) >>> 0;
  }
}

/**
 * The first 64 bits of MurmurHash3 x64_128 (seed 0) of `key`, as a signed
 * bigint, with Cassandra's sign extension of tail bytes.
 */
export function murmur3Hash64(key: Uint8Array, length = key.length): bigint {
  const t: Lane = [0, 0];
  let h1Hi = 0;
  let h1Lo = 0;
  let h2Hi = 0;
  let h2Lo = 0;
  const blocks = length >>> 4;
  for (let i = 0; i < blocks; i++) {
    const at = i * 16;
    // k1 = getblock(2i) * c1, rotl 31, * c2; h1 ^= k1
    mul64(readLe32(key, at + 4), readLe32(key, at), C1_HI, C1_LO, t);
    rotl(t[0], t[1], 31, t);
    mul64(t[0], t[1], C2_HI, C2_LO, t);
    h1Hi = (h1Hi ^ t[0]) >>> 0;
    h1Lo = (h1Lo ^ t[1]) >>> 0;
    // h1 = rotl(h1, 27) + h2; h1 = h1 * 5 + 0x52dce729
    rotl(h1Hi, h1Lo, 27, t);
    add64(t[0], t[1], h2Hi, h2Lo, t);
    mul64(t[0], t[1], 0, 5, t);
    add64(t[0], t[1], 0, 0x52dce729, t);
    h1Hi = t[0];
    h1Lo = t[1];
    // k2 = getblock(2i+1) * c2, rotl 33, * c1; h2 ^= k2
    mul64(readLe32(key, at + 12), readLe32(key, at + 8), C2_HI, C2_LO, t);
    rotl(t[1], t[0], 1, t); // rotl 33 = swap halves, then rotl 1
    mul64(t[0], t[1], C1_HI, C1_LO, t);
    h2Hi = (h2Hi ^ t[0]) >>> 0;
    h2Lo = (h2Lo ^ t[1]) >>> 0;
    // h2 = rotl(h2, 31) + h1; h2 = h2 * 5 + 0x38495ab5
    rotl(h2Hi, h2Lo, 31, t);
    add64(t[0], t[1], h1Hi, h1Lo, t);
    mul64(t[0], t[1], 0, 5, t);
    add64(t[0], t[1], 0, 0x38495ab5, t);
    h2Hi = t[0];
    h2Lo = t[1];
  }

  const tail = blocks * 16;
  const rest = length & 15;
  if (rest > 8) {
    const k2: Lane = [0, 0];
    for (let i = rest - 1; i >= 8; i--) xorTailByte(k2, key, tail + i, i - 8);
    mul64(k2[0], k2[1], C2_HI, C2_LO, t);
    rotl(t[1], t[0], 1, t);
    mul64(t[0], t[1], C1_HI, C1_LO, t);
    h2Hi = (h2Hi ^ t[0]) >>> 0;
    h2Lo = (h2Lo ^ t[1]) >>> 0;
  }
  if (rest > 0) {
    const k1: Lane = [0, 0];
    for (let i = Math.min(rest, 8) - 1; i >= 0; i--) xorTailByte(k1, key, tail + i, i);
    mul64(k1[0], k1[1], C1_HI, C1_LO, t);
    rotl(t[0], t[1], 31, t);
    mul64(t[0], t[1], C2_HI, C2_LO, t);
    h1Hi = (h1Hi ^ t[0]) >>> 0;
    h1Lo = (h1Lo ^ t[1]) >>> 0;
  }

  // The length is XORed in as a 64-bit value; keys are far below 2^32 bytes.
  h1Lo = (h1Lo ^ length) >>> 0;
  h2Lo = (h2Lo ^ length) >>> 0;
  add64(h1Hi, h1Lo, h2Hi, h2Lo, t);
  h1Hi = t[0];
  h1Lo = t[1];
  add64(h2Hi, h2Lo, h1Hi, h1Lo, t);
  h2Hi = t[0];
  h2Lo = t[1];
  fmix(h1Hi, h1Lo, t);
  h1Hi = t[0];
  h1Lo = t[1];
  fmix(h2Hi, h2Lo, t);
  h2Hi = t[0];
  h2Lo = t[1];
  add64(h1Hi, h1Lo, h2Hi, h2Lo, t);
  // Only h1 is returned, so the final h2 += h1 is skipped.
  // One bigint for the two halves, read as a signed 64-bit integer (shifting and or-ing bigints makes four).
  HALVES.setUint32(0, t[0]! >>> 0);
  HALVES.setUint32(4, t[1]! >>> 0);
  return HALVES.getBigInt64(0);
}

/**
 * The token of a partition key, as Cassandra's Murmur3Partitioner assigns it:
 * strings are hashed as their UTF-8 bytes; the empty key maps to MIN_TOKEN
 * and a hash of Long.MIN_VALUE is moved to MAX_TOKEN, so MIN_TOKEN is never
 * the token of a real key and can serve as the ring's exclusive start.
 */
export function tokenOf(key: Uint8Array | string): Token {
  let bytes = key as Uint8Array;
  let length: number;
  if (typeof key !== 'string') length = key.length;
  else if (key.length * 3 <= KEY_BYTES.length) {
    // At most 3 bytes per UTF-16 unit, so the whole key fits.
    bytes = KEY_BYTES;
    length = utf8.encodeInto(key, KEY_BYTES).written;
  } else {
    bytes = utf8.encode(key);
    length = bytes.length;
  }
  if (length === 0) return MIN_TOKEN;
  const hash = murmur3Hash64(bytes, length);
  return (hash === MIN_TOKEN ? MAX_TOKEN : hash) as Token;
}
