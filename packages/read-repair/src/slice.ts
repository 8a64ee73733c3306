import type { NodeId } from '@chorus/core';
import { type Cell, type Mutation, type RowAddress, cellDigest, compareBytes, mergeCells } from '@chorus/model';

/**
 * One replica's page of a slice, as the replica read it: every row it holds
 * in the page's range, dead ones included, each already shadowed by that
 * replica's own partition deletion, and that deletion.
 */
export interface SliceAnswer {
  rows: readonly { clustering: Uint8Array; cell: Cell }[];
  partitionDeletedAtMicros?: number;
}

/** Which rows of the pages the slice's answer covers. */
export interface SliceScope {
  /** The last row covered, inclusive, in scan order (the answer's next page); absent: every row any replica returned. */
  through?: Uint8Array;
  reverse: boolean;
}

/** What one stale replica is sent so that it holds the resolved version of everything compared. */
export interface ReplicaRepair {
  target: NodeId;
  mutations: Mutation[];
  /** How many of `mutations` are row writes (the rest is at most one partition deletion). */
  rows: number;
}

/** A partition deletion at `deletedAt` shadows rows written at or before it, as the store reads them. */
function shadowed(cell: Cell | undefined, deletedAt: number | undefined): Cell | undefined {
  if (deletedAt !== undefined && (cell === undefined || cell.timestampMicros <= deletedAt)) return { tombstone: true, timestampMicros: deletedAt };
  return cell;
}

function sameCell(a: Cell | undefined, b: Cell | undefined): boolean {
  const x = cellDigest(a);
  const y = cellDigest(b);
  return x.every((byte, i) => byte === y[i]);
}

function keyOf(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

/**
 * Read repair of one slice page: the newest partition deletion any replica
 * knows and the newest version of every row the answer covers (last write
 * wins, then shadowed by that deletion), and for each replica that answered
 * with something older the mutations that bring it up to date: the partition
 * deletion if its own is older, and each covered row whose version there
 * (after that deletion) differs from the resolved one.
 *
 * Rows past `scope.through` are not compared: a replica whose page was full
 * may hold rows there that it did not return. Every mutation carries a
 * version some replica holds, unchanged (its own timestamp and expiry; a
 * tombstone stays a tombstone), so a write racing the repair wins by
 * last-write-wins. Replicas with nothing to repair are left out; the result
 * is in the answers' order, each replica's rows in scan order.
 */
export function sliceRepairs(answers: ReadonlyMap<NodeId, SliceAnswer>, partition: Omit<RowAddress, 'clustering'>, scope: SliceScope): ReplicaRepair[] {
  const order = (a: Uint8Array, b: Uint8Array): number => (scope.reverse ? -compareBytes(a, b) : compareBytes(a, b));
  const covered = (clustering: Uint8Array): boolean => scope.through === undefined || order(clustering, scope.through) <= 0;
  let deletedAt: number | undefined;
  for (const answer of answers.values()) {
    const d = answer.partitionDeletedAtMicros;
    if (d !== undefined && (deletedAt === undefined || d > deletedAt)) deletedAt = d;
  }
  // Each covered row: its clustering key, each replica's version, and the merge of them all.
  const rows = new Map<string, { clustering: Uint8Array; merged: Cell | undefined; held: Map<NodeId, Cell> }>();
  for (const [node, answer] of answers) {
    for (const row of answer.rows) {
      if (!covered(row.clustering)) continue;
      const k = keyOf(row.clustering);
      let entry = rows.get(k);
      if (entry === undefined) rows.set(k, (entry = { clustering: row.clustering, merged: undefined, held: new Map() }));
      entry.held.set(node, row.cell);
      entry.merged = mergeCells(entry.merged, row.cell);
    }
  }
  const sorted = [...rows.values()].sort((a, b) => order(a.clustering, b.clustering));
  const { keyspace, token, partition: key } = partition;
  const repairs: ReplicaRepair[] = [];
  for (const [node, answer] of answers) {
    const mutations: Mutation[] = [];
    const own = answer.partitionDeletedAtMicros;
    if (deletedAt !== undefined && (own === undefined || own < deletedAt)) mutations.push({ keyspace, token, partition: key, partitionDeletion: { timestampMicros: deletedAt } });
    let rowWrites = 0;
    for (const row of sorted) {
      const resolved = shadowed(row.merged, deletedAt);
      // What this replica will read once it has the newest partition deletion.
      if (resolved === undefined || sameCell(shadowed(row.held.get(node), deletedAt), resolved)) continue;
      mutations.push({ keyspace, token, partition: key, clustering: row.clustering, cell: resolved });
      rowWrites++;
    }
    if (mutations.length > 0) repairs.push({ target: node, mutations, rows: rowWrites });
  }
  return repairs;
}
