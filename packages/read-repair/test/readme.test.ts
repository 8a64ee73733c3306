// The README's example, kept runnable.
import { nodeId, token } from '@chorus/core';
import type { Cell } from '@chorus/model';
import { expect, it } from 'vitest';
import { repairMutations, resolveCells, staleReplicas } from '../src/index.js';

it('README example', () => {
  const bytes = (s: string) => new TextEncoder().encode(s);
  // What three replicas answered for one row.
  const answers = new Map<ReturnType<typeof nodeId>, Cell | undefined>([
    [nodeId('n1'), { value: bytes('old'), timestampMicros: 10 }],
    [nodeId('n2'), { value: bytes('new'), timestampMicros: 20 }],
    [nodeId('n3'), undefined],
  ]);
  const resolved = resolveCells(answers.values());
  const stale = staleReplicas(resolved, answers);
  const repairs = repairMutations(resolved, stale, { keyspace: 'app', token: token(42n), partition: bytes('user:42') });
  console.log(stale); // [ 'n1', 'n3' ]
  console.log(repairs.map((r) => [r.target, r.mutation.cell.timestampMicros])); // [ [ 'n1', 20 ], [ 'n3', 20 ] ]

  expect(stale).toEqual(['n1', 'n3']);
  expect(repairs.map((r) => [r.target, r.mutation.cell.timestampMicros])).toEqual([['n1', 20], ['n3', 20]]);
});
