import type { NodeId } from '@chorus/core';
import { type Cell, cellDigest, mergeCells } from '@chorus/model';

/** The newest version among replica answers (last-write-wins, the model's order); undefined when none holds the row. */
export function resolveCells(cells: Iterable<Cell | undefined>): Cell | undefined {
  let winner: Cell | undefined;
  for (const c of cells) winner = mergeCells(winner, c);
  return winner;
}

function sameDigest(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether every digest is the same; an empty or single list agrees. */
export function digestsAgree(digests: readonly Uint8Array[]): boolean {
  return digests.every((d) => sameDigest(d, digests[0]!));
}

function sameCell(a: Cell | undefined, b: Cell | undefined): boolean {
  return sameDigest(cellDigest(a), cellDigest(b));
}

/**
 * The replicas whose answer is older than the resolved version, with what
 * each should be sent: the input of read repair. Pure, so the repair policy
 * (blocking, async, none) stays the coordinator's choice.
 */
export function staleReplicas(resolved: Cell | undefined, answers: ReadonlyMap<NodeId, Cell | undefined>): NodeId[] {
  if (resolved === undefined) return [];
  return [...answers].filter(([, cell]) => !sameCell(cell, resolved)).map(([node]) => node);
}
