import { type NodeId, token, nodeId } from '@chorus/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Cell, type RowAddress, cellDigest, mergeCells, validateMutation } from '@chorus/model';
import { repairMutations, resolveCells, staleReplicas } from '../src/index.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const row: RowAddress = { keyspace: 'app', token: token(42n), partition: bytes('p'), clustering: bytes('c') };
const [n1, n2, n3] = ['n1', 'n2', 'n3'].map(nodeId) as [NodeId, NodeId, NodeId];

describe('repair mutations', () => {
  it('send each stale replica the resolved value with its own timestamp and expiry', () => {
    const resolved: Cell = { value: bytes('new'), timestampMicros: 20, expiresAtMicros: 900 };
    const repairs = repairMutations(resolved, [n2, n3], row);
    expect(repairs.map((r) => r.target)).toEqual([n2, n3]);
    for (const r of repairs) {
      expect(r.mutation).toEqual({ ...row, cell: { value: bytes('new'), timestampMicros: 20, expiresAtMicros: 900 } });
      validateMutation(r.mutation);
    }
  });

  it('keep a tombstone a tombstone', () => {
    const repairs = repairMutations({ tombstone: true, timestampMicros: 7 }, [n1], row);
    expect(repairs).toEqual([{ target: n1, mutation: { ...row, cell: { tombstone: true, timestampMicros: 7 } } }]);
  });

  it('are none when no replica held the row or none is stale', () => {
    expect(repairMutations(undefined, [n1, n2], row)).toEqual([]);
    expect(repairMutations({ value: bytes('x'), timestampMicros: 1 }, [], row)).toEqual([]);
  });

  it('leave out a clustering key the row does not have, rather than set it to undefined', () => {
    const { clustering: _, ...partitionRow } = row;
    const [repair] = repairMutations({ value: bytes('x'), timestampMicros: 1 }, [n1], partitionRow);
    expect(Object.keys(repair!.mutation)).not.toContain('clustering');
  });

  it('property: order-independent, carry only the resolved version, and make every stale replica agree', () => {
    const cell = fc.oneof(
      fc.constant(undefined),
      fc.record(
        { value: fc.uint8Array({ maxLength: 3 }), timestampMicros: fc.integer({ min: 0, max: 5 }), expiresAtMicros: fc.integer({ min: 0, max: 10 }) },
        { requiredKeys: ['value', 'timestampMicros'] },
      ),
      fc.record({ tombstone: fc.constant(true as const), timestampMicros: fc.integer({ min: 0, max: 5 }) }),
    );
    fc.assert(
      fc.property(
        fc.array(cell, { maxLength: 6 }).chain((cells) => fc.tuple(fc.constant(cells), fc.shuffledSubarray([...cells.keys()], { minLength: cells.length, maxLength: cells.length }))),
        ([cells, order]) => {
          const answers = new Map(cells.map((c, i) => [nodeId(`n${i}`), c]));
          const shuffled = new Map(order.map((i) => [nodeId(`n${i}`), cells[i]]));
          const resolved = resolveCells(answers.values());
          const resolvedShuffled = resolveCells(shuffled.values());
          const repairs = repairMutations(resolved, staleReplicas(resolved, answers), row);
          const repairsShuffled = repairMutations(resolvedShuffled, staleReplicas(resolvedShuffled, shuffled), row);
          // The same replicas get the same version, whatever order the answers came in.
          const byTarget = (rs: typeof repairs) => rs.map((r) => [r.target, [...cellDigest(r.mutation.cell)]] as const).sort(([a], [b]) => a.localeCompare(b));
          expect(byTarget(repairsShuffled)).toEqual(byTarget(repairs));
          for (const r of repairs) {
            // Nothing but the resolved version, unchanged, at the read's row.
            expect(r.mutation.cell).toBe(resolved);
            expect(r.mutation).toEqual({ ...row, cell: resolved });
            // Applied on the stale replica, it leaves exactly the resolved version there.
            expect(cellDigest(mergeCells(answers.get(r.target), r.mutation.cell))).toEqual(cellDigest(resolved));
          }
        },
      ),
    );
  });
});
