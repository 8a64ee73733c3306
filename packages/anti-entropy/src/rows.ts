import type { Token } from '@chorus/core';
import { type Cell, cellDigest, isTombstone } from '@chorus/model';
import type { TokenRange } from '@chorus/ring';
import { type ScanEntry, type ScanPosition, type StoreReader, positionOf } from '@chorus/storage';

/**
 * What repair compares of one row (or one partition deletion, which has no
 * clustering key): its key, its version's timestamp and a digest of the
 * version. Replicas agree on a row when their summaries are equal.
 */
export interface RowSummary {
  token: Token;
  partition: Uint8Array;
  /** Absent for a partition deletion. */
  clustering?: Uint8Array;
  timestampMicros: number;
  digest: Uint8Array;
}

const DELETION_MARK = 0x44; // 'D'

function deletionDigest(timestampMicros: number): Uint8Array {
  const out = new Uint8Array(9);
  out[0] = DELETION_MARK;
  new DataView(out.buffer).setFloat64(1, timestampMicros);
  return out;
}

/** When a dead cell died: a tombstone at its timestamp, an expired value at its expiry; undefined while it lives. */
function deathMicros(cell: Cell, nowMicros: number): number | undefined {
  if (isTombstone(cell)) return cell.timestampMicros;
  if (cell.expiresAtMicros !== undefined && cell.expiresAtMicros <= nowMicros) return cell.expiresAtMicros;
  return undefined;
}

/**
 * The summary of a scanned entry, or undefined when repair leaves it out.
 * Every replica applies the same two rules, so they cannot disagree over
 * what they have merely cleaned up differently:
 * - a row shadowed by its partition's deletion is compared as the deletion
 *   alone (one replica may have compacted the row away, another not yet);
 * - dead data that died before `purgeBeforeMicros` is left out: the purge
 *   rule may already have removed it on one replica and not on another, and
 *   comparing it would stream it back after every purge. The coordinator
 *   chooses the bound so that such data was already on every replica (gc
 *   grace passed, or a completed repair of the range saw it).
 */
export function summarize(e: ScanEntry, purgeBeforeMicros: number, nowMicros: number): RowSummary | undefined {
  if (e.type === 'partition-deletion') {
    if (e.timestampMicros < purgeBeforeMicros) return undefined;
    return { token: e.token, partition: e.partition, timestampMicros: e.timestampMicros, digest: deletionDigest(e.timestampMicros) };
  }
  if (e.shadowed) return undefined;
  const died = deathMicros(e.cell, nowMicros);
  if (died !== undefined && died < purgeBeforeMicros) return undefined;
  return { token: e.token, partition: e.partition, clustering: e.clustering, timestampMicros: e.cell.timestampMicros, digest: cellDigest(e.cell) };
}

/** The summaries of a range in scan order, each with the position to resume after it. */
export async function* summaries(
  reader: Pick<StoreReader, 'scanRange'>,
  keyspace: string,
  range: TokenRange,
  purgeBeforeMicros: number,
  nowMicros: () => number,
  after?: ScanPosition,
): AsyncGenerator<{ summary: RowSummary; position: ScanPosition }> {
  for await (const e of reader.scanRange(keyspace, range, { includeDead: true, chunkSize: 512, ...(after ? { after } : {}) })) {
    const summary = summarize(e, purgeBeforeMicros, nowMicros());
    if (summary !== undefined) yield { summary, position: positionOf(e) };
  }
}

/** A map key naming a row (or a partition deletion) across replicas. */
export function rowId(s: Pick<RowSummary, 'token' | 'partition' | 'clustering'>): string {
  const partition = Buffer.from(s.partition.buffer, s.partition.byteOffset, s.partition.byteLength).toString('base64');
  if (s.clustering === undefined) return `${s.token}/${partition}/D`;
  return `${s.token}/${partition}/R${Buffer.from(s.clustering.buffer, s.clustering.byteOffset, s.clustering.byteLength).toString('base64')}`;
}
