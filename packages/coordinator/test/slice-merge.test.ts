import { describe, expect, it } from 'vitest';
import type { Cell } from '@chorus/model';
import { mergeSlicePages } from '../src/index.js';

describe('slice page merge', () => {
  const v = (s: string, ts: number): Cell => ({ value: new TextEncoder().encode(s), timestampMicros: ts });

  it('merges slice pages row by row up to the earliest cut of a full page', () => {
    const ck = (s: string) => new TextEncoder().encode(s);
    const row = (c: string, cell: Cell) => ({ clustering: ck(c), cell });
    const a = { rows: [row('a', v('a1', 1)), row('b', v('b1', 1))], nextPage: ck('b') };
    const b = { rows: [row('a', v('a2', 2)), row('c', v('c2', 2)), row('d', v('d2', 2))] };
    const merged = mergeSlicePages([a, b], 2, false, 100);
    expect(merged.rows.map((r) => new TextDecoder().decode((r.cell as { value: Uint8Array }).value))).toEqual(['a2', 'b1']);
    expect(merged.nextPage).toEqual(ck('b'));
    // A tombstone on one replica hides the live row of another; a partition deletion hides older rows.
    const t = mergeSlicePages([{ rows: [row('a', { tombstone: true, timestampMicros: 5 })] }, { rows: [row('a', v('x', 4)), row('b', v('y', 9))], partitionDeletedAtMicros: 6 }, { rows: [row('c', v('z', 6))] }], 10, false, 100);
    expect(t.rows.map((r) => new TextDecoder().decode(r.clustering))).toEqual(['b']);
    expect(t.nextPage).toBeUndefined();
  });
});
