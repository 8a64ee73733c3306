import { type Random, uuidFromBytes } from './env.js';

/** Mixes a string into a 32-bit seed (FNV-1a), so streams can be forked by name. */
export function hashString(text: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * A small, fast, seeded generator (sfc32). Every simulated node forks its own
 * stream by name, so adding randomness to one node does not shift another's.
 */
export class SeededRandom implements Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number, label = '') {
    this.a = hashString(label, 0x9e3779b9 ^ seed);
    this.b = hashString(label, 0x243f6a88 ^ seed);
    this.c = hashString(label, 0xb7e15162 ^ seed);
    this.d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.nextUint32();
  }

  fork(label: string): SeededRandom {
    return new SeededRandom(this.seed, label);
  }

  nextUint32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) >>> 0;
    return t;
  }

  next(): number {
    return this.nextUint32() / 4294967296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.nextUint32() & 0xff;
    return out;
  }

  uuid(): string {
    return uuidFromBytes(this.bytes(16));
  }
}
