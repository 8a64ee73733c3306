import { type NodeId, nodeId, token } from '@chorus/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Cell, type Mutation, cellDigest, compareBytes, isPartitionDelete, mergeCells, validateMutation } from '@chorus/model';
import { type SliceAnswer, sliceRepairs } from '../src/index.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const partition = { keyspace: 'app', token: token(7n), partition: bytes('p') };
const [n1, n2, n3] = ['n1', 'n2', 'n3'].map(nodeId) as [NodeId, NodeId, NodeId];
const v = (s: string, ts: number): Cell => ({ value: bytes(s), timestampMicros: ts });
const row = (ck: string, cell: Cell) => ({ clustering: bytes(ck), cell });
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));

/** What a replica reads after its repair: its rows and deletion merged with the mutations, shadowed as the store does. */
function apply(answer: SliceAnswer, mutations: Mutation[]): Map<string, Cell | undefined> & { deletedAt?: number } {
  let deletedAt = answer.partitionDeletedAtMicros;
  const rows = new Map<string, Cell | undefined>(answer.rows.map((r) => [text(r.clustering)!, r.cell]));
  for (const m of mutations) {
    if (isPartitionDelete(m)) deletedAt = Math.max(deletedAt ?? -1, m.partitionDeletion.timestampMicros);
    else rows.set(text(m.clustering)!, mergeCells(rows.get(text(m.clustering)!), m.cell));
  }
  const view = new Map<string, Cell | undefined>() as Map<string, Cell | undefined> & { deletedAt?: number };
  for (const [k, c] of rows) view.set(k, deletedAt !== undefined && (c === undefined || c.timestampMicros <= deletedAt) ? { tombstone: true, timestampMicros: deletedAt } : c);
  if (deletedAt !== undefined) view.deletedAt = deletedAt;
  return view;
}

describe('slice repairs', () => {
  it('send each replica exactly the rows it holds an older version of, with the versions unchanged', () => {
    const answers = new Map<NodeId, SliceAnswer>([
      [n1, { rows: [row('a', v('a1', 1)), row('b', v('b2', 2)), row('c', { tombstone: true, timestampMicros: 3 })] }],
      [n2, { rows: [row('a', v('a1', 1)), row('b', v('b1', 1)), row('c', v('c1', 1))] }],
      [n3, { rows: [row('a', v('a1', 1))] }],
    ]);
    const repairs = sliceRepairs(answers, partition, { reverse: false });
    expect(repairs.map((r) => [r.target, r.rows, r.mutations.map((m) => !isPartitionDelete(m) && [text(m.clustering), m.cell.timestampMicros])])).toEqual([
      [n2, 2, [['b', 2], ['c', 3]]],
      [n3, 2, [['b', 2], ['c', 3]]],
    ]);
    for (const r of repairs) for (const m of r.mutations) validateMutation(m);
    // The tombstone that hides c is repaired as a tombstone: the stale replicas must stop returning c1.
    expect(repairs[0]!.mutations[1]).toMatchObject({ clustering: bytes('c'), cell: { tombstone: true, timestampMicros: 3 } });
  });

  it('compare only the rows the answer covers', () => {
    // n1's page was full at b; n2 has d, which n1 may hold too, unseen: not compared.
    const answers = new Map<NodeId, SliceAnswer>([
      [n1, { rows: [row('a', v('a2', 2)), row('b', v('b1', 1))] }],
      [n2, { rows: [row('a', v('a1', 1)), row('d', v('d1', 1))] }],
    ]);
    expect(sliceRepairs(answers, partition, { through: bytes('b'), reverse: false }).map((r) => [r.target, r.mutations.map((m) => !isPartitionDelete(m) && text(m.clustering))])).toEqual([
      [n2, ['a', 'b']],
    ]);
    // Reverse order: "through" b covers b and what sorts after it.
    expect(sliceRepairs(answers, partition, { through: bytes('b'), reverse: true }).map((r) => [r.target, r.mutations.map((m) => !isPartitionDelete(m) && text(m.clustering))])).toEqual([
      [n1, ['d']],
      [n2, ['b']],
    ]);
  });

  it('spread the newest partition deletion instead of a tombstone per row it shadows', () => {
    const answers = new Map<NodeId, SliceAnswer>([
      [n1, { rows: [], partitionDeletedAtMicros: 10 }],
      [n2, { rows: [row('a', v('a1', 5)), row('b', v('b1', 12))] }],
    ]);
    const repairs = sliceRepairs(answers, partition, { reverse: false });
    expect(repairs).toHaveLength(2);
    expect(repairs[0]).toMatchObject({ target: n1, rows: 1, mutations: [{ clustering: bytes('b'), cell: { timestampMicros: 12 } }] });
    expect(repairs[1]).toEqual({ target: n2, rows: 0, mutations: [{ ...partition, partitionDeletion: { timestampMicros: 10 } }] });
  });

  it('are none when the replicas agree', () => {
    const page: SliceAnswer = { rows: [row('a', v('a1', 1)), row('b', { tombstone: true, timestampMicros: 2 })], partitionDeletedAtMicros: 0 };
    expect(sliceRepairs(new Map([[n1, page], [n2, { ...page }]]), partition, { reverse: false })).toEqual([]);
  });

  it('property: order-independent, versions unchanged, and every replica reads the same covered rows afterwards', () => {
    const cell = fc.oneof(
      fc.record(
        { value: fc.constantFrom(bytes('x'), bytes('y')), timestampMicros: fc.integer({ min: 0, max: 6 }), expiresAtMicros: fc.integer({ min: 0, max: 9 }) },
        { requiredKeys: ['value', 'timestampMicros'] },
      ),
      fc.record({ tombstone: fc.constant(true as const), timestampMicros: fc.integer({ min: 0, max: 6 }) }),
    );
    const answer = fc
      .record({
        rows: fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd', 'e'), cell),
        deletedAt: fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined }),
      })
      .map(({ rows, deletedAt }): SliceAnswer => {
        // As a replica reads its page: rows shadowed by its own deletion (those it does not hold as well, as tombstones).
        const shadow = (c: Cell): Cell => (deletedAt !== undefined && c.timestampMicros <= deletedAt ? { tombstone: true, timestampMicros: deletedAt } : c);
        const page: SliceAnswer = { rows: Object.keys(rows).sort().map((k) => row(k, shadow(rows[k]!))) };
        if (deletedAt !== undefined) page.partitionDeletedAtMicros = deletedAt;
        return page;
      });
    fc.assert(
      fc.property(fc.array(answer, { minLength: 1, maxLength: 4 }), fc.option(fc.constantFrom('a', 'b', 'c', 'd', 'e'), { nil: undefined }), fc.boolean(), (pages, through, reverse) => {
        const scope = through === undefined ? { reverse } : { through: bytes(through), reverse };
        const answers = new Map(pages.map((p, i) => [nodeId(`n${i}`), p]));
        const repairs = sliceRepairs(answers, partition, scope);
        const reversed = sliceRepairs(new Map([...answers].reverse()), partition, scope);
        const canon = (rs: typeof repairs) => rs.map((r) => [r.target, r.mutations.map((m) => (isPartitionDelete(m) ? ['P', m.partitionDeletion.timestampMicros] : [text(m.clustering), [...cellDigest(m.cell)]]))] as const).sort(([a], [b]) => a.localeCompare(b));
        expect(canon(reversed)).toEqual(canon(repairs));
        const covered = (k: string) => through === undefined || (reverse ? compareBytes(bytes(k), bytes(through)) >= 0 : compareBytes(bytes(k), bytes(through)) <= 0);
        const versions = new Set(pages.flatMap((p) => p.rows.map((r) => [...cellDigest(r.cell)].join())));
        const deletions = new Set(pages.map((p) => p.partitionDeletedAtMicros));
        for (const r of repairs) {
          for (const m of r.mutations) {
            // Nothing new: each mutation is a version or a partition deletion some replica answered with.
            if (isPartitionDelete(m)) expect(deletions.has(m.partitionDeletion.timestampMicros)).toBe(true);
            else {
              expect(versions.has([...cellDigest(m.cell)].join())).toBe(true);
              expect(covered(text(m.clustering)!)).toBe(true);
            }
          }
        }
        // Afterwards every replica reads the same version of every covered row (absent and a tombstone being alike only if no replica has it).
        const views = [...answers].map(([node, page]) => apply(page, repairs.find((r) => r.target === node)?.mutations ?? []));
        const keys = new Set(pages.flatMap((p) => p.rows.map((r) => text(r.clustering)!)).filter(covered));
        for (const k of keys) {
          const digests = new Set(views.map((view) => [...cellDigest(view.get(k) ?? (view.deletedAt !== undefined ? { tombstone: true, timestampMicros: view.deletedAt } : undefined))].join()));
          expect(digests.size, `row ${k}`).toBe(1);
        }
      }),
    );
  });
});
