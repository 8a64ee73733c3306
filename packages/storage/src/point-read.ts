import { type Cell, type RowAddress, bytesEqual, cellDigest, compareCells, validateAddress } from '@chorus/model';
import { decodeStored } from './cell.js';
import { COMPACT_MIN_VERSIONS, COMPACT_READ_CAP, type CompactionQueue } from './compaction.js';
import { type DbIterator, EMPTY, ENC, type Entry, type StorageDb } from './db.js';
import {
  DELETION_VERSION_BYTES,
  KIND_PARTITION_DELETION,
  KIND_ROW,
  VERSION_TS_BYTES,
  escapedLength,
  headKey,
  isTie,
  kindPrefix,
  partitionKeyLength,
  prefixEnd,
  readInvertedMicros,
  rowPrefixFromPartition,
  writeEscaped,
  writePartitionKey,
} from './keys.js';
import type { StoreParts } from './parts.js';
import { cacheId } from './row-cache.js';
import { effective } from './row-versions.js';

/** Versions a point read fetches in its first step: the newest is usually all it needs. */
const POINT_CHUNK = 4;

/** One point read of a batch: the row's cell, or only its digest. */
export interface PointRead {
  address: RowAddress;
  digest: boolean;
}

/**
 * Hears each read of a batch as it completes: an error, or the cell (the
 * digest when the read asked for it). A read of the cell also gets the
 * cell's digest when the row cache holds it (`digest`), so that nobody
 * hashes the value again. Either may be the row cache's own object:
 * read-only.
 */
export type PointReadCallback = (index: number, error: Error | undefined, result: Cell | Uint8Array | undefined, digest?: Uint8Array) => void;

interface Miss {
  index: number;
  digest: boolean;
  pk: Uint8Array;
  rowPrefix: Uint8Array;
  rowId: string;
}

/**
 * The point reads that arrived together (one turn of the replica actor):
 * hits are answered at once from the row cache, a cached digest included;
 * misses of the empty clustering key read their heads in one `getMany`;
 * others go alone. Resolves once every read has been answered through `done`.
 */
export async function readRows(s: StoreParts, reads: readonly PointRead[], callback: PointReadCallback): Promise<void> {
  const cache = s.cache;
  // A callback that throws must not cost the batch's other reads their answer.
  const done: PointReadCallback = (i, error, result, digest) => {
    try {
      callback(i, error, result, digest);
    } catch (thrown) {
      s.env.logger.error({ err: thrown }, 'point read callback failed');
    }
  };
  let misses: Miss[] | undefined;
  let alone: Array<Promise<void>> | undefined;
  for (let i = 0; i < reads.length; i++) {
    const { address: a, digest } = reads[i]!;
    let pkLength: number;
    let rowPrefix: Uint8Array;
    let clustering: Uint8Array;
    try {
      validateAddress(a);
      clustering = a.clustering ?? EMPTY;
      // The row's prefix in one allocation; the partition's key is a view of its start, made only on a miss.
      const ks = s.keyspaces.prefix(a.keyspace);
      pkLength = partitionKeyLength(ks, a.partition);
      rowPrefix = new Uint8Array(pkLength + 1 + escapedLength(clustering));
      writePartitionKey(rowPrefix, ks, a.token, a.partition);
      rowPrefix[pkLength] = KIND_ROW;
      writeEscaped(rowPrefix, pkLength + 1, clustering);
    } catch (error) {
      done(i, error as Error, undefined);
      continue;
    }
    const rowId = cache.enabled ? cacheId(rowPrefix, rowPrefix.length) : '';
    if (cache.enabled) {
      const hit = cache.lookup(rowId);
      if (hit !== undefined) {
        if (digest) done(i, undefined, cache.digestOf(hit));
        else done(i, undefined, hit.cell, cache.digestOf(hit));
        continue;
      }
    }
    const pk = rowPrefix.subarray(0, pkLength);
    if (clustering.length > 0) {
      // Another clustering key reads its partition's deletions apart from the row: no shared iterator.
      (alone ??= []).push(
        readMissed(s, pk, rowPrefix, rowId).then(
          (cell) => done(i, undefined, digest ? cellDigest(cell) : cell),
          (error: unknown) => done(i, error as Error, undefined),
        ),
      );
      continue;
    }
    (misses ??= []).push({ index: i, digest, pk, rowPrefix, rowId });
  }
  if (misses === undefined && alone === undefined) return;
  const work: Array<Promise<void>> = alone ?? [];
  if (misses !== undefined) work.push(readHeads(s, misses, done));
  await Promise.all(work);
}

/** A miss of a non-empty clustering key, read alone through the cache's fill rule. */
async function readMissed(s: StoreParts, pk: Uint8Array, rowPrefix: Uint8Array, rowId: string): Promise<Cell | undefined> {
  const cache = s.cache;
  if (!cache.enabled) return (await readRowFromDb(s.db, s.compactions, pk, rowPrefix)).cell;
  const start = cache.beginRead();
  let read: { cell: Cell | undefined; version: Uint8Array | undefined } | undefined;
  try {
    read = await readRowFromDb(s.db, s.compactions, pk, rowPrefix);
    return read.cell;
  } finally {
    cache.endRead(start, rowId, rowId.slice(0, pk.length), read?.cell, read?.version, read !== undefined && !s.commits.closed);
  }
}

/**
 * Misses of the empty clustering key: one `getMany` of their heads (see
 * heads.ts), in key order, which LevelDB answers on one of its threads.
 * Each read begins (for the cache's fill rule) before it, and after every
 * write acknowledged before the batch arrived.
 */
async function readHeads(s: StoreParts, misses: Miss[], done: PointReadCallback): Promise<void> {
  const cache = s.cache;
  await s.headsReady();
  if (misses.length > 1) misses.sort((x, y) => Buffer.compare(x.rowPrefix, y.rowPrefix));
  const start = cache.enabled ? misses.map(() => cache.beginRead()) : undefined;
  let values: Array<Uint8Array | undefined>;
  try {
    values = (await s.db.getMany(
      misses.map((m) => headKey(m.rowPrefix)),
      ENC,
    )) as Array<Uint8Array | undefined>;
  } catch (error) {
    misses.forEach((m, k) => {
      if (start !== undefined) cache.endRead(start[k]!, m.rowId, m.rowId.slice(0, m.pk.length), undefined, undefined, false);
      done(m.index, error as Error, undefined);
    });
    return;
  }
  for (let k = 0; k < misses.length; k++) {
    const m = misses[k]!;
    const raw = values[k];
    const cell = raw === undefined ? undefined : decodeStored(raw).cell;
    if (start !== undefined) cache.endRead(start[k]!, m.rowId, m.rowId.slice(0, m.pk.length), cell, undefined, !s.commits.closed);
    done(m.index, undefined, m.digest ? cellDigest(cell) : cell);
  }
}

/**
 * A row through the cache: a hit is the cached reconciled cell; a miss reads
 * LevelDB and fills the cache unless a write to the row or its partition
 * landed meanwhile (the read may have missed it: see row-cache.ts).
 */
export async function readRow(s: StoreParts, a: RowAddress): Promise<Cell | undefined> {
  let out: Cell | undefined;
  let failure: Error | undefined;
  await readRows(s, [{ address: a, digest: false }], (_i, error, result) => {
    failure = error;
    out = result as Cell | undefined;
  });
  if (failure !== undefined) throw failure;
  return out;
}

/** A row of a non-empty clustering key as `getCell` returns it, and the key of its winning version when that is the cell (not a partition deletion). */
async function readRowFromDb(
  db: StorageDb,
  compactions: CompactionQueue,
  pk: Uint8Array,
  rowPrefix: Uint8Array,
): Promise<{ cell: Cell | undefined; version: Uint8Array | undefined }> {
  const it = db.iterator({ gte: rowPrefix, lt: prefixEnd(rowPrefix)!, ...ENC });
  try {
    const [deletionTs, point] = await Promise.all([newestDeletion(db, compactions, pk), reconcilePoint(it, rowPrefix, compactions)]);
    const cell = effective(point.row, deletionTs);
    return { cell, version: cell !== undefined && cell === point.row ? point.rowKey : undefined };
  } finally {
    await it.close();
  }
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
 * Reconciles a row's versions from an iterator bounded to them. Reads only
 * the newest versions, unless the row has many (then it collects shadowed
 * ones for deletion).
 */
async function reconcilePoint(it: DbIterator, rowPrefix: Uint8Array, compactions: CompactionQueue): Promise<{ row: Cell | undefined; rowKey: Uint8Array | undefined }> {
  let bestRaw: Uint8Array | undefined;
  let bestKey: Uint8Array | undefined;
  let topTs = -1;
  let complete = false;
  const shadowed: Uint8Array[] = [];
  let chunk = POINT_CHUNK;
  for (;;) {
    const entries = (await it.nextv(chunk)) as Entry[];
    for (const [key, raw] of entries) {
      if (!isTie(key, rowPrefix.length + VERSION_TS_BYTES)) continue;
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
  return { row: bestRaw === undefined ? undefined : decodeStored(bestRaw).cell, rowKey: bestKey };
}
