import type { Token } from '@chorus/core';
import { type Cell, LIMITS, compareBytes, isDead, validateAddress, validateClusteringKey } from '@chorus/model';
import { COMPACT_MIN_VERSIONS } from './compaction.js';
import { ENC, type Entry } from './db.js';
import { InvalidSlice } from './errors.js';
import { KIND_ROW, kindPrefix, prefixEnd, rowEntryAt, rowPrefixFromPartition } from './keys.js';
import type { StoreParts } from './parts.js';
import { newestDeletion } from './point-read.js';
import { RowVersions, effective } from './row-versions.js';

export interface StoreSliceOptions {
  /** Inclusive lower clustering bound. */
  from?: Uint8Array;
  /** Inclusive upper clustering bound. */
  to?: Uint8Array;
  /** Rows per page, 1..LIMITS.maxSliceLimit (default 1000). */
  limit?: number;
  /** Descending clustering order. */
  reverse?: boolean;
  /** Resume after this clustering key (the `nextPage` of the previous page); in scan order. */
  after?: Uint8Array;
  /** Also return tombstones, expired cells and rows shadowed by a partition deletion (as tombstones). */
  includeDead?: boolean;
}

export interface SliceRow {
  clustering: Uint8Array;
  cell: Cell;
}

export interface SlicePage {
  rows: SliceRow[];
  /** Present when the page is full: pass it as `after` to read the next one. */
  nextPage?: Uint8Array;
  /** Timestamp of the partition's deletion, when it has one. */
  partitionDeletedAtMicros?: number;
}

/** One page of a partition's rows in clustering order: one ordered iterator scan, reconciling each row's versions. */
export async function slice(s: StoreParts, keyspace: string, t: Token, partition: Uint8Array, options: StoreSliceOptions): Promise<SlicePage> {
  validateAddress({ keyspace, token: t, partition });
  const limit = options.limit ?? 1000;
  if (!Number.isInteger(limit) || limit < 1 || limit > LIMITS.maxSliceLimit) throw new InvalidSlice(`limit must be an integer in [1, ${LIMITS.maxSliceLimit}]`);
  for (const k of [options.from, options.to, options.after]) if (k !== undefined) validateClusteringKey(k);
  const reverse = options.reverse === true;
  const pk = s.keyspaces.partitionKey(keyspace, t, partition);
  const range: { gte: Uint8Array; lt: Uint8Array } = { gte: kindPrefix(pk, KIND_ROW), lt: kindPrefix(pk, KIND_ROW + 1) };
  const { from, to, after } = options;
  // `after` narrows the side the scan walks from; from/to still bound the slice.
  if (!reverse && after !== undefined && (from === undefined || compareBytes(after, from) >= 0)) range.gte = prefixEnd(rowPrefixFromPartition(pk, after))!;
  else if (from !== undefined) range.gte = rowPrefixFromPartition(pk, from);
  if (reverse && after !== undefined && (to === undefined || compareBytes(after, to) <= 0)) range.lt = rowPrefixFromPartition(pk, after);
  else if (to !== undefined) range.lt = prefixEnd(rowPrefixFromPartition(pk, to))!;

  const deletion = newestDeletion(s.db, s.compactions, pk);
  deletion.catch(() => undefined);
  const now = s.env.clock.nowMicros();
  const includeDead = options.includeDead === true;
  const rows: SliceRow[] = [];
  const group = new RowVersions(true);
  let deletionTs: number | undefined;
  const finish = (): void => {
    if (group.count >= COMPACT_MIN_VERSIONS) s.compactions.enqueue(group.losers);
    const cell = effective(group.best().cell, deletionTs)!;
    if (includeDead || !isDead(cell, now)) rows.push({ clustering: group.clustering(), cell });
  };
  const it = s.db.iterator({ gte: range.gte, lt: range.lt, reverse, ...ENC });
  try {
    // The deletion lookup runs beside the first chunk's read.
    let entries: Entry[];
    [deletionTs, entries] = await Promise.all([deletion, it.nextv(Math.min(limit + 16, 1000)) as Promise<Entry[]>]);
    outer: while (entries.length > 0) {
      for (const [key, raw] of entries) {
        if (group.belongs(key)) {
          group.add(key, raw);
          continue;
        }
        const at = rowEntryAt(key);
        if (at < 0) continue;
        if (group.count > 0) {
          finish();
          if (rows.length === limit) break outer;
        }
        group.start(key, raw, at);
      }
      entries = (await it.nextv(Math.min(limit - rows.length + 16, 1000))) as Entry[];
    }
    if (rows.length < limit && group.count > 0) finish();
  } finally {
    await it.close();
  }
  const page: SlicePage = { rows };
  if (rows.length === limit) page.nextPage = rows[rows.length - 1]!.clustering;
  if (deletionTs !== undefined) page.partitionDeletedAtMicros = deletionTs;
  return page;
}
