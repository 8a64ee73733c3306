import { type Cell, compareBytes, isDead, mergeCells } from '@chorus/model';

/** One row of a slice page: its clustering key and its cell (dead rows included until the merge drops them). */
export interface PageRow {
  clustering: Uint8Array;
  cell: Cell;
}

/** One replica's page of a slice, dead rows included so they can shadow other replicas' rows. */
export interface ReplicaPage {
  rows: readonly PageRow[];
  /** Present when the replica's page was full. */
  nextPage?: Uint8Array;
  partitionDeletedAtMicros?: number;
}

export interface MergedPage {
  /** Live rows in scan order, at most `limit`. */
  rows: PageRow[];
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
  const merged = new Map<string, PageRow>();
  for (const p of pages) {
    for (const row of p.rows) {
      if (cut !== undefined && order(row.clustering, cut) > 0) continue;
      const k = keyOf(row.clustering);
      const have = merged.get(k);
      merged.set(k, { clustering: row.clustering, cell: mergeCells(have?.cell, row.cell)! });
    }
  }
  const sorted = [...merged.values()].sort((a, b) => order(a.clustering, b.clustering));
  const rows: PageRow[] = [];
  for (const row of sorted) {
    const cell: Cell =
      deletedAt !== undefined && row.cell.timestampMicros <= deletedAt ? { tombstone: true, timestampMicros: deletedAt } : row.cell;
    if (isDead(cell, nowMicros)) continue;
    rows.push({ clustering: row.clustering, cell });
    if (rows.length === limit) return { rows, nextPage: row.clustering };
  }
  return cut === undefined ? { rows } : { rows, nextPage: cut };
}
