import { describe, expect, it } from 'vitest';
import type { Cell } from '@chorus/model';
import { decodeStored, encodeStored } from '../src/cell.js';
import { enc } from './helpers.js';

const v = (s: string, ts: number, exp?: number): Cell => (exp === undefined ? { value: enc(s), timestampMicros: ts } : { value: enc(s), timestampMicros: ts, expiresAtMicros: exp });
const t = (ts: number): Cell => ({ tombstone: true, timestampMicros: ts });

describe('stored cells', () => {
  it('round-trip through the stored encoding', () => {
    for (const c of [v('hello', 123), v('', 0), v('x', 2 ** 52, 2 ** 53 - 1), t(77)]) {
      expect(decodeStored(encodeStored(c, 999)).cell).toEqual(c);
    }
    expect(decodeStored(encodeStored(t(77), 999)).deletionTimeMicros).toBe(999);
  });
});
