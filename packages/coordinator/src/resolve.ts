import type { NodeId } from '@chorus/core';
import { type SliceRow } from '@chorus/storage';
import { type Cell, cellDigest, compareBytes, isDead, mergeCells } from '@chorus/model';

/** The newest version among replica answers (last-write-wins, the storage package's order); undefined when none holds the row. */
export function resolveCells(cells: Iterable<Cell | undefined>): Cell | undefined {
  let winner: Cell | undefined;
  for (const c of cells) winner = mergeCells(winner, c);
  return winner;
}

export function sameDigest(a: Uint8Array, b: Uint8Array): boolean {
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

/** One replica's page of a slice, dead rows included so they can shadow other replicas' rows. */
export interface ReplicaPage {
  rows: readonly SliceRow[];
  /** Present when the replica's page was full. */
  nextPage?: Uint8Array;
  partitionDeletedAtMicros?: number;
}

export interface MergedPage {
  /** Live rows in scan order, at most `limit`. */
  rows: SliceRow[];
  /** Resume after this clustering key; absent when the slice is exhausted. */
  nextPage?: Uint8Array;
}

function keyOf(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

/**
 * Merges full pages of the same slice from several replicas, row by row.
 *
 * A replica whose page was full may hold further rows that sort before rows
 * another replica returned, so the merge stops at the earliest last row of a
 * full page (the cut); rows past it are left for the next page. Each row is
 * resolved last-write-wins; the newest partition deletion any replica knows
 * shadows the rows at or below it. Dead rows are dropped after the merge
 * (only then is it known that they are dead everywhere that answered). So a
 * page may hold fewer than `limit` rows and still have a next page.
 */
export function mergeSlicePages(pages: readonly ReplicaPage[], limit: number, reverse: boolean, nowMicros: number): MergedPage {
  const order = (a: Uint8Array, b: Uint8Array) => (reverse ? -compareBytes(a, b) : compareBytes(a, b));
  let cut: Uint8Array | undefined;
  let deletedAt: number | undefined;
  for (const p of pages) {
    if (p.nextPage !== undefined && (cut === undefined || order(p.nextPage, cut) < 0)) cut = p.nextPage;
    if (p.partitionDeletedAtMicros !== undefined && (deletedAt === undefined || p.partitionDeletedAtMicros > deletedAt)) deletedAt = p.partitionDeletedAtMicros;
  }
  const merged = new Map<string, SliceRow>();
  for (const p of pages) {
    for (const row of p.rows) {
      if (cut !== undefined && order(row.clustering, cut) > 0) continue;
      const k = keyOf(row.clustering);
      const have = merged.get(k);
      merged.set(k, { clustering: row.clustering, cell: mergeCells(have?.cell, row.cell)! });
    }
  }
  const sorted = [...merged.values()].sort((a, b) => order(a.clustering, b.clustering));
  const rows: SliceRow[] = [];
  for (const row of sorted) {
    const cell: Cell =
      deletedAt !== undefined && row.cell.timestampMicros <= deletedAt ? { tombstone: true, timestampMicros: deletedAt } : row.cell;
    if (isDead(cell, nowMicros)) continue;
    rows.push({ clustering: row.clustering, cell });
    if (rows.length === limit) return { rows, nextPage: row.clustering };
  }
  return cut === undefined ? { rows } : { rows, nextPage: cut };
}
