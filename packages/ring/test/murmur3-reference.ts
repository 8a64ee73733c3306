/**
 * A deliberately plain BigInt transcription of MurmurHash3 x64_128 (first
 * half, seed 0, Cassandra's signed tail bytes), used only to cross-check the
 * fast 32-bit-lane version on arbitrary inputs.
 */
const MASK = (1n << 64n) - 1n;
const C1 = 0x87c37b91114253d5n;
const C2 = 0x4cf5ad432745937fn;

const rotl = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (64n - r))) & MASK;
const mul = (a: bigint, b: bigint): bigint => (a * b) & MASK;
function fmix(k: bigint): bigint {
  k ^= k >> 33n;
  k = mul(k, 0xff51afd7ed558ccdn);
  k ^= k >> 33n;
  k = mul(k, 0xc4ceb9fe1a85ec53n);
  return k ^ (k >> 33n);
}
const block = (key: Uint8Array, at: number): bigint => {
  let v = 0n;
  for (let i = 7; i >= 0; i--) v = (v << 8n) | BigInt(key[at + i]!);
  return v;
};
const signedByte = (b: number): bigint => BigInt.asUintN(64, BigInt(b >= 0x80 ? b - 256 : b));

export function referenceHash64(key: Uint8Array): bigint {
  let h1 = 0n;
  let h2 = 0n;
  const blocks = Math.floor(key.length / 16);
  for (let i = 0; i < blocks; i++) {
    let k1 = block(key, i * 16);
    let k2 = block(key, i * 16 + 8);
    k1 = mul(rotl(mul(k1, C1), 31n), C2);
    h1 ^= k1;
    h1 = (mul(((rotl(h1, 27n) + h2) & MASK), 5n) + 0x52dce729n) & MASK;
    k2 = mul(rotl(mul(k2, C2), 33n), C1);
    h2 ^= k2;
    h2 = (mul(((rotl(h2, 31n) + h1) & MASK), 5n) + 0x38495ab5n) & MASK;
  }
  const tail = blocks * 16;
  const rest = key.length % 16;
  let k1 = 0n;
  let k2 = 0n;
  for (let i = rest - 1; i >= 8; i--) k2 ^= (signedByte(key[tail + i]!) << BigInt((i - 8) * 8)) & MASK;
  if (rest > 8) h2 ^= mul(rotl(mul(k2, C2), 33n), C1);
  for (let i = Math.min(rest, 8) - 1; i >= 0; i--) k1 ^= (signedByte(key[tail + i]!) << BigInt(i * 8)) & MASK;
  if (rest > 0) h1 ^= mul(rotl(mul(k1, C1), 31n), C2);
  h1 ^= BigInt(key.length);
  h2 ^= BigInt(key.length);
  h1 = (h1 + h2) & MASK;
  h2 = (h2 + h1) & MASK;
  h1 = fmix(h1);
  h2 = fmix(h2);
  h1 = (h1 + h2) & MASK;
  return BigInt.asIntN(64, h1);
}
