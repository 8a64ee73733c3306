/** Unsigned bytewise order, shorter first on a common prefix: the order of keys everywhere in Chorus. */
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

/**
 * `length` bytes for the caller to fill, all of them: a plain Uint8Array over Node's pooled memory. A Uint8Array
 * made with `new` and over 64 bytes gets an ArrayBuffer and a backing store of its own, about ten times the cost,
 * and every full collection sweeps them.
 */
export function unfilledBytes(length: number): Uint8Array {
  const pooled = Buffer.allocUnsafe(length);
  return new Uint8Array(pooled.buffer, pooled.byteOffset, length);
}

/** Writes a binary (latin1) string's chars into `out` from `at`, one byte each: how hashes come back without a Buffer of their own. */
export function writeBinary(out: Uint8Array, at: number, binary: string, length = binary.length): void {
  for (let i = 0; i < length; i++) out[at + i] = binary.charCodeAt(i);
}
