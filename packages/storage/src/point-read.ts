import { type Cell, type RowAddress, compareCells, validateAddress } from '@chorus/model';
import { decodeStored } from './cell.js';
import { COMPACT_MIN_VERSIONS, COMPACT_READ_CAP, type CompactionQueue } from './compaction.js';
import { type DbIterator, EMPTY, ENC, type Entry, type StorageDb } from './db.js';
import { DELETION_VERSION_BYTES, KIND_PARTITION_DELETION, KIND_ROW, VERSION_TS_BYTES, hasPrefix, isTie, kindPrefix, prefixEnd, readInvertedMicros, rowPrefixFromPartition } from './keys.js';
import type { StoreParts } from './parts.js';
import { cacheId } from './row-cache.js';
import { effective } from './row-versions.js';

/** Versions a point read fetches in its first step: the newest is usually all it needs. */
const POINT_CHUNK = 4;

/**
 * A row through the cache: a hit is the cached reconciled cell; a miss reads
 * LevelDB and fills the cache unless a write to the row or its partition
 * landed meanwhile (the read may have missed it: see row-cache.ts).
 */
export async function readRow(s: StoreParts, a: RowAddress): Promise<Cell | undefined> {
  validateAddress(a);
  const pk = s.keyspaces.partitionKey(a.keyspace, a.token, a.partition);
  const clustering = a.clustering ?? EMPTY;
  const rowPrefix = rowPrefixFromPartition(pk, clustering);
  const cache = s.cache;
  if (!cache.enabled) return (await readRowFromDb(s.db, s.compactions, pk, clustering, rowPrefix)).cell;
  const rowId = cacheId(rowPrefix, rowPrefix.length);
  const hit = cache.lookup(rowId);
  if (hit !== undefined) return hit.cell;
  const start = cache.beginRead();
  let read: { cell: Cell | undefined; version: Uint8Array | undefined } | undefined;
  try {
    read = await readRowFromDb(s.db, s.compactions, pk, clustering, rowPrefix);
    return read.cell;
  } finally {
    cache.endRead(start, rowId, rowId.slice(0, pk.length), read?.cell, read?.version, read !== undefined && !s.commits.closed);
  }
}

/** The row as `getCell` returns it, and the key of its winning version when that is the cell (not a partition deletion). */
async function readRowFromDb(
  db: StorageDb,
  compactions: CompactionQueue,
  pk: Uint8Array,
  clustering: Uint8Array,
  rowPrefix: Uint8Array,
): Promise<{ cell: Cell | undefined; version: Uint8Array | undefined }> {
  let reconciled: { row: Cell | undefined; rowKey: Uint8Array | undefined; deletionTs: number | undefined };
  if (clustering.length === 0) {
    // The empty clustering key is the partition's first row: one scan meets the deletion versions, then it.
    const it = db.iterator({ gt: pk, lt: prefixEnd(rowPrefix)!, ...ENC });
    try {
      reconciled = await reconcilePoint(it, pk.length, rowPrefix, compactions);
    } finally {
      await it.close();
    }
  } else {
    const it = db.iterator({ gte: rowPrefix, lt: prefixEnd(rowPrefix)!, ...ENC });
    try {
      const [deletionTs, point] = await Promise.all([newestDeletion(db, compactions, pk), reconcilePoint(it, pk.length, rowPrefix, compactions)]);
      reconciled = { ...point, deletionTs };
    } finally {
      await it.close();
    }
  }
  const cell = effective(reconciled.row, reconciled.deletionTs);
  return { cell, version: cell !== undefined && cell === reconciled.row ? reconciled.rowKey : undefined };
}

/** The timestamp of a partition's newest deletion; older deletions it meets are queued for compaction. */
export async function newestDeletion(db: StorageDb, compactions: CompactionQueue, partitionKey: Uint8Array): Promise<number | undefined> {
  const it = db.iterator({ gte: kindPrefix(partitionKey, KIND_PARTITION_DELETION), lt: kindPrefix(partitionKey, KIND_ROW), ...ENC });
  try {
    let entries = (await it.nextv(2)) as Entry[];
    if (entries.length === 0) return undefined;
    const newest = readInvertedMicros(entries[0]![0], partitionKey.length + 1);
    const older: Uint8Array[] = [];
    while (entries.length > 0 && older.length < COMPACT_READ_CAP) {
      for (let i = older.length === 0 ? 1 : 0; i < entries.length; i++) older.push(entries[i]![0]);
      if (older.length === 0) break;
      entries = (await it.nextv(64)) as Entry[];
    }
    compactions.enqueue(older);
    return newest;
  } finally {
    await it.close();
  }
}

/**
 * Reconciles a row's versions from an iterator positioned at them (deletion
 * versions first when `deletions`). Reads only the newest versions, unless
 * the row has many (then it collects shadowed ones for deletion).
 */
async function reconcilePoint(
  it: DbIterator,
  partitionLength: number,
  rowPrefix: Uint8Array,
  compactions: CompactionQueue,
): Promise<{ row: Cell | undefined; rowKey: Uint8Array | undefined; deletionTs: number | undefined }> {
  let deletionTs: number | undefined;
  let bestRaw: Uint8Array | undefined;
  let bestKey: Uint8Array | undefined;
  let topTs = -1;
  let complete = false;
  const shadowed: Uint8Array[] = [];
  const staleDeletions: Uint8Array[] = [];
  let chunk = POINT_CHUNK;
  for (;;) {
    const entries = (await it.nextv(chunk)) as Entry[];
    for (const [key, raw] of entries) {
      if (key[partitionLength] === KIND_PARTITION_DELETION) {
        if (deletionTs === undefined) deletionTs = readInvertedMicros(key, key.length - DELETION_VERSION_BYTES);
        else staleDeletions.push(key);
        continue;
      }
      if (!hasPrefix(key, rowPrefix) || !isTie(key, rowPrefix.length + VERSION_TS_BYTES)) continue;
      const ts = readInvertedMicros(key, rowPrefix.length);
      if (bestRaw === undefined) {
        bestRaw = raw;
        bestKey = key;
        topTs = ts;
      } else if (ts === topTs && !complete) {
        if (compareCells(decodeStored(raw).cell, decodeStored(bestRaw).cell) > 0) {
          shadowed.push(bestKey!);
          bestRaw = raw;
          bestKey = key;
        } else shadowed.push(key);
      } else {
        complete = true;
        shadowed.push(key);
      }
    }
    // Only an empty page ends the data: classic-level cuts pages short at its byte high-water mark.
    if (entries.length === 0) break;
    // Stop once the newest timestamp is complete, unless the row is worth compacting now.
    if (complete && (shadowed.length < COMPACT_MIN_VERSIONS - 1 || shadowed.length >= COMPACT_READ_CAP)) break;
    chunk = 64;
  }
  if (shadowed.length >= COMPACT_MIN_VERSIONS - 1) compactions.enqueue(shadowed);
  compactions.enqueue(staleDeletions);
  return { row: bestRaw === undefined ? undefined : decodeStored(bestRaw).cell, rowKey: bestKey, deletionTs };
}
