import { type Cell, type RowAddress, bytesEqual, cellDigest, compareCells, validateAddress } from '@chorus/model';
import { decodeStored, storedTimestamp } from './cell.js';
import { COMPACT_MIN_VERSIONS, COMPACT_READ_CAP, type CompactionQueue } from './compaction.js';
import { type DbIterator, EMPTY, ENC, type Entry, type StorageDb } from './db.js';
import {
  DELETION_VERSION_BYTES,
  KIND_PARTITION_DELETION,
  KIND_ROW,
  VERSION_TS_BYTES,
  escapedLength,
  hasPrefix,
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
import { NO_ENTRY, cacheId } from './row-cache.js';
import { effective } from './row-versions.js';

/** Versions a point read fetches in its first step: the newest is usually all it needs. */
const POINT_CHUNK = 4;
/**
 * Entries a read of a batch fetches in its first step: the row's one version
 * and the key after it (which tells the row is complete) in the usual case;
 * a shared iterator has no bound at the row's end, so more would read rows
 * nobody asked for.
 */
const SHARED_POINT_CHUNK = 2;
/**
 * At most this many iterators per batch of misses, each with at least this
 * many reads. The reads on one iterator run one after another, each a
 * hand-off to LevelDB's thread pool (1 to 4 threads): a few iterators in
 * flight keep the pool busy, so a finished read finds the next one queued
 * instead of the pool thread sleeping and being woken for it; more only add
 * iterators to create and close. On 2 cores, `read-quorum-cold` of
 * `pnpm bench:cluster` took about a tenth less CPU per read this way than
 * with one iterator per 16 reads.
 */
const MAX_ITERATORS_PER_BATCH = 4;
const MIN_READS_PER_ITERATOR = 8;
/**
 * A miss's `getMany` with a row cache: LevelDB does not keep the blocks it
 * read. Rows sit in token order, so a block holds rows unrelated to the one
 * asked for; a row read again is the row cache's to keep. Filling LevelDB's
 * block cache cost every miss an insert and an eviction for blocks hardly
 * ever read again: `read-quorum-cold` of `pnpm bench:cluster` served about
 * 8 % more reads without it. Without a row cache, the block cache is the
 * only one left, and is filled.
 */
const MISS_READ = { ...ENC, fillCache: false } as const;

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
  /** The row cache's number from when a read that found no head began (see `beginRead`). */
  start?: number;
}

/**
 * The point reads that arrived together (one turn of the replica actor):
 * hits are answered at once from the row cache, a cached digest included;
 * misses of the empty clustering key take their rows' heads in one
 * `getMany` (heads.ts), and those without one are read in key order
 * through a few shared iterators (one seek each) instead of an iterator per
 * read; others go alone. Resolves once every read has been answered through
 * `done`.
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
  let headed: Array<Miss & { marker: Uint8Array | null }> | undefined;
  let alone: Array<Promise<void>> | undefined;
  for (let i = 0; i < reads.length; i++) {
    const { address: a, digest } = reads[i]!;
    let pkLength: number;
    let tokenEnd: number;
    let rowPrefix: Uint8Array;
    let clustering: Uint8Array;
    try {
      validateAddress(a);
      clustering = a.clustering ?? EMPTY;
      // The row's prefix in one allocation; the partition's key is a view of its start, made only on a miss.
      const ks = s.keyspaces.prefix(a.keyspace);
      pkLength = partitionKeyLength(ks, a.partition);
      tokenEnd = ks.length + 8;
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
      if (hit !== NO_ENTRY) {
        if (digest) done(i, undefined, cache.digestOf(hit));
        else done(i, undefined, cache.cellOf(hit), cache.digestOf(hit));
        continue;
      }
    }
    const pk = rowPrefix.subarray(0, pkLength);
    if (clustering.length > 0) {
      // Another clustering key reads its partition's deletions apart from the row: no shared iterator.
      (alone ??= []).push(
        readMissed(s, pk, clustering, rowPrefix, rowId).then(
          (cell) => done(i, undefined, digest ? cellDigest(cell) : cell),
          (error: unknown) => done(i, error as Error, undefined),
        ),
      );
      continue;
    }
    const marker = s.heads.headRead(rowPrefix, tokenEnd);
    if (marker !== undefined) (headed ??= []).push({ index: i, digest, pk, rowPrefix, rowId, marker });
    else (misses ??= []).push({ index: i, digest, pk, rowPrefix, rowId });
  }
  if (misses === undefined && alone === undefined && headed === undefined) return;
  const work: Array<Promise<void>> = alone ?? [];
  if (headed !== undefined) work.push(readHeads(s, headed, done));
  if (misses !== undefined) work.push(readGroups(s, misses, done));
  await Promise.all(work);
}

/** Misses read through a few shared iterators, in key order. */
async function readGroups(s: StoreParts, misses: Miss[], done: PointReadCallback): Promise<void> {
  misses.sort((x, y) => Buffer.compare(x.rowPrefix, y.rowPrefix));
  const groups = Math.min(MAX_ITERATORS_PER_BATCH, Math.ceil(misses.length / MIN_READS_PER_ITERATOR));
  const size = Math.ceil(misses.length / groups);
  const work: Array<Promise<void>> = [];
  for (let g = 0; g < misses.length; g += size) work.push(readGroup(s, misses.slice(g, g + size), done));
  await Promise.all(work);
}

/**
 * Misses of key-value rows: one `getMany` of their heads (and, in buckets
 * where rows have markers, of their markers) answers each row that has a
 * head and no marker — the head is then its newest version, and no partition
 * deletion shadows it; the others read their entries.
 */
async function readHeads(s: StoreParts, reads: Array<Miss & { marker: Uint8Array | null }>, done: PointReadCallback): Promise<void> {
  const cache = s.cache;
  if (cache.enabled) for (const m of reads) m.start = cache.beginRead();
  const keys: Uint8Array[] = [];
  for (const m of reads) {
    keys.push(m.rowPrefix);
    if (m.marker !== null) keys.push(m.marker);
  }
  const options = cache.enabled ? MISS_READ : ENC;
  let values: Array<Uint8Array | undefined>;
  try {
    values = s.inlineReads?.getMany(keys, options) ?? ((await s.db.getMany(keys, options)) as Array<Uint8Array | undefined>);
  } catch {
    // The entries answer instead; their read reports the error if the database has one.
    values = [];
  }
  let headless: Miss[] | undefined;
  let k = 0;
  for (const m of reads) {
    const raw = values[k++];
    const marked = m.marker !== null && values[k++] !== undefined;
    if (raw === undefined || marked) {
      (headless ??= []).push(m);
      continue;
    }
    const cell = decodeStored(raw).cell;
    if (m.start !== undefined) cache.endRead(m.start, m.rowId, m.pk.length, cell, m.rowPrefix, !s.commits.closed);
    done(m.index, undefined, m.digest ? cellDigest(cell) : cell);
  }
  if (headless !== undefined) await readGroups(s, headless, done);
}

/** A miss read alone, through the cache's fill rule. */
async function readMissed(s: StoreParts, pk: Uint8Array, clustering: Uint8Array, rowPrefix: Uint8Array, rowId: string): Promise<Cell | undefined> {
  const cache = s.cache;
  if (!cache.enabled) return (await readRowFromDb(s.db, s.compactions, pk, clustering, rowPrefix)).cell;
  const start = cache.beginRead();
  let read: { cell: Cell | undefined; version: Uint8Array | undefined } | undefined;
  try {
    read = await readRowFromDb(s.db, s.compactions, pk, clustering, rowPrefix);
    return read.cell;
  } finally {
    cache.endRead(start, rowId, pk.length, read?.cell, read?.version, read !== undefined && !s.commits.closed);
  }
}

/**
 * Misses of the empty clustering key, sorted by key, read through one
 * iterator: a seek to each partition, then its deletions and the row's
 * newest versions, stopping at the first key past the row. The iterator's
 * snapshot is taken when it is created, after every read of the group began
 * (so the cache's fill rule holds for each) and after every write
 * acknowledged before the batch arrived.
 */
async function readGroup(s: StoreParts, group: Miss[], done: PointReadCallback): Promise<void> {
  const cache = s.cache;
  const start = cache.enabled ? group.map((m) => m.start ?? cache.beginRead()) : undefined;
  let k = 0;
  let it: DbIterator | undefined;
  try {
    // `gte`: a seek below an iterator's lower bound lands at its end, and a row asked twice seeks to the bound itself.
    it = s.db.iterator({ gte: group[0]!.pk, lt: prefixEnd(group[group.length - 1]!.rowPrefix)!, ...ENC });
    let cell: Cell | undefined;
    let version: Uint8Array | undefined;
    for (; k < group.length; k++) {
      const m = group[k]!;
      // The group is sorted, so a row asked twice comes twice in a row: the iterator's snapshot answers it once.
      if (k === 0 || !bytesEqual(m.rowPrefix, group[k - 1]!.rowPrefix)) {
        if (k > 0) it.seek(m.pk);
        const reconciled = await reconcilePoint(it, m.pk.length, m.rowPrefix, s.compactions, true);
        cell = effective(reconciled.row, reconciled.deletionTs);
        version = cell !== undefined && cell === reconciled.row ? reconciled.rowKey : undefined;
      }
      if (start !== undefined) cache.endRead(start[k]!, m.rowId, m.pk.length, cell, version, !s.commits.closed);
      done(m.index, undefined, m.digest ? cellDigest(cell) : cell);
    }
  } catch (error) {
    // The iterator may be unusable now: this read and the group's later ones fail with the error.
    for (; k < group.length; k++) {
      const m = group[k]!;
      if (start !== undefined) cache.endRead(start[k]!, m.rowId, m.pk.length, undefined, undefined, false);
      done(m.index, error as Error, undefined);
    }
  } finally {
    await it?.close();
  }
}

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
  const rowId = cache.enabled ? cacheId(rowPrefix, rowPrefix.length) : '';
  if (cache.enabled) {
    const hit = cache.lookup(rowId);
    if (hit !== NO_ENTRY) return cache.cellOf(hit);
  }
  return readMissed(s, pk, clustering, rowPrefix, rowId);
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
      reconciled = { row: point.row, rowKey: point.rowKey, deletionTs };
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
  /** The iterator is shared by a batch: it is not bounded at the row's end, so the first key past the row ends the read. */
  shared = false,
): Promise<{ row: Cell | undefined; rowKey: Uint8Array | undefined; deletionTs: number | undefined }> {
  let deletionTs: number | undefined;
  let bestRaw: Uint8Array | undefined;
  let bestKey: Uint8Array | undefined;
  let headRaw: Uint8Array | undefined;
  let headKey: Uint8Array | undefined;
  let topTs = -1;
  let complete = false;
  const shadowed: Uint8Array[] = [];
  const staleDeletions: Uint8Array[] = [];
  let chunk = shared ? SHARED_POINT_CHUNK : POINT_CHUNK;
  let past = false;
  for (;;) {
    const entries = (await it.nextv(chunk)) as Entry[];
    for (const [key, raw] of entries) {
      if (shared && !hasPrefix(key, rowPrefix, partitionLength)) {
        past = true;
        break;
      }
      if (key[partitionLength] === KIND_PARTITION_DELETION) {
        if (deletionTs === undefined) deletionTs = readInvertedMicros(key, key.length - DELETION_VERSION_BYTES);
        else staleDeletions.push(key);
        continue;
      }
      if (!hasPrefix(key, rowPrefix)) {
        if (!shared) continue;
        past = true;
        break;
      }
      if (key.length === rowPrefix.length) {
        // The row's head sorts before its versions; it is weighed against them once they are read.
        headKey = key;
        headRaw = raw;
        continue;
      }
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
    if (entries.length === 0 || past) break;
    // Stop once the newest timestamp is complete, unless the row is worth compacting now.
    if (complete && (shadowed.length < COMPACT_MIN_VERSIONS - 1 || shadowed.length >= COMPACT_READ_CAP)) break;
    chunk = shared ? 16 : 64;
  }
  if (headRaw !== undefined) {
    const headTs = storedTimestamp(headRaw);
    if (bestRaw === undefined || headTs > topTs || (headTs === topTs && compareCells(decodeStored(headRaw).cell, decodeStored(bestRaw).cell) > 0)) {
      if (bestKey !== undefined) shadowed.push(bestKey);
      bestRaw = headRaw;
      bestKey = headKey;
    }
  }
  if (shadowed.length >= COMPACT_MIN_VERSIONS - 1) compactions.enqueue(shadowed);
  compactions.enqueue(staleDeletions);
  return { row: bestRaw === undefined ? undefined : decodeStored(bestRaw).cell, rowKey: bestKey, deletionTs };
}
