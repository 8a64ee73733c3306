import type { Token } from '@chorus/core';
import { isTombstone } from '@chorus/model';
import { type StoredCell, decodeStored } from './cell.js';
import { ENC, type Entry } from './db.js';
import {
  DATA_END,
  DATA_START,
  DELETION_VERSION_BYTES,
  KIND_PARTITION_DELETION,
  KIND_ROW,
  VERSION_TS_BYTES,
  copyBytes,
  decodeToken,
  escapedFieldLength,
  hasPrefix,
  isHeadKey,
  isTie,
  kindPrefix,
  partitionPrefixLength,
  prefixEnd,
  readInvertedMicros,
} from './keys.js';
import { keyspaceNameOf } from './keyspaces.js';
import type { StoreParts } from './parts.js';
import { cacheId } from './row-cache.js';
import { RowVersions, versionTs } from './row-versions.js';

/** Where a sweep stopped; pass it back to continue. Opaque to callers. */
export interface SweepCursor {
  readonly after: Uint8Array;
  /** Partition prefix being swept, and its newest deletion. */
  readonly partition?: Uint8Array;
  readonly deletion?: { readonly timestampMicros: number; readonly deletionTimeMicros: number };
  /** The row being swept: its newest version so far. */
  readonly row?: { readonly key: Uint8Array; readonly raw: Uint8Array };
}

export interface SweepResult {
  /** Entries removed in this step (shadowed versions and purged tombstones). */
  purged: number;
  /** Undefined when the sweep reached the end of the data. */
  next?: SweepCursor;
}

/** A key prefix gc may purge (a row's, or a partition's deletion), with the horizon it was judged by. */
interface Candidate {
  readonly prefix: Uint8Array;
  readonly horizon: number;
}

/**
 * The purge horizon of each partition one sweep step meets, asked of the
 * store's `purgeHorizon` only for partitions that hold dead data (most hold
 * none, and the sweep walks the whole store) and at most once per partition.
 * The keyspace name is decoded once per run of partitions of one keyspace.
 */
class PartitionHorizons {
  private keyspacePrefix: Uint8Array | undefined;
  private keyspace = '';
  private partition: Uint8Array | undefined;
  private horizon = 0;

  constructor(
    private readonly horizonOf: ((keyspace: string, t: Token) => number) | undefined,
    private readonly now: number,
    private readonly graceHorizon: number,
  ) {}

  /** The horizon of the partition with key prefix `part`: dead data stored (or expired) at or before it may go. */
  of(part: Uint8Array): number {
    if (this.horizonOf === undefined) return this.graceHorizon;
    if (part === this.partition) return this.horizon;
    const ksLength = 2 + part[1]!;
    if (this.keyspacePrefix === undefined || !hasPrefix(part, this.keyspacePrefix)) {
      this.keyspacePrefix = copyBytes(part, 0, ksLength);
      this.keyspace = keyspaceNameOf(part);
    }
    // Nothing is dead in the future: a horizon past now would purge a value before its expiry.
    this.horizon = Math.min(this.horizonOf(this.keyspace, decodeToken(part, ksLength)), this.now);
    this.partition = part;
    return this.horizon;
  }
}

/**
 * One step of the gc sweep over at most `maxKeys` entries; it is also the
 * compaction. It deletes every shadowed version: versions that lose to a
 * newer one of their row, rows shadowed by a partition deletion (which stays
 * and keeps shadowing), and all but the newest deletion of a partition. Those
 * deletions go through the write path in any order with writes, since a
 * shadowed version stays shadowed. It purges what the purge horizon of the
 * row's keyspace and token allows (by default gc grace: now − grace) — a row
 * whose winner is a tombstone stored (or a value expired) at or before the
 * horizon, a partition deletion stored at or before it — only after
 * re-reading the row (the partition) alone, with no batch in flight, and
 * deletes it together with every version it shadows, so no older version can
 * reappear.
 */
export async function sweep(s: StoreParts, cursor: SweepCursor | undefined, maxKeys: number): Promise<SweepResult> {
  if (s.commits.closed) return { purged: 0 };
  const now = s.env.clock.nowMicros();
  const horizons = new PartitionHorizons(s.purgeHorizon, now, now - s.gcGraceMicros);
  const shadowed: Uint8Array[] = [];
  const rowPurges: Candidate[] = [];
  const partitionPurges: Candidate[] = [];
  let part = cursor?.partition;
  let deletion = cursor?.deletion;
  const group = new RowVersions(false);
  if (cursor?.row !== undefined) group.start(cursor.row.key, cursor.row.raw);
  const finishRow = (): void => {
    if (group.count === 0) return;
    group.count = 0;
    const best = group.best();
    if (deletion !== undefined && best.cell.timestampMicros <= deletion.timestampMicros) {
      // A head stays: a write in flight may put the same key again. The purge that removes the deletion takes it.
      if (!isHeadKey(group.bestKey)) shadowed.push(group.bestKey);
      return;
    }
    const since = deadSince(best);
    if (since === undefined || part === undefined) return;
    const horizon = horizons.of(part);
    if (since <= horizon) rowPurges.push({ prefix: copyBytes(group.first, 0, group.prefixLength), horizon });
  };
  const finishPartition = (): void => {
    if (part === undefined || deletion === undefined) return;
    const horizon = horizons.of(part);
    if (deletion.deletionTimeMicros <= horizon) partitionPurges.push({ prefix: part, horizon });
  };
  let last: Uint8Array | undefined;
  let seen = 0;
  const it = s.db.iterator({ ...(cursor ? { gt: cursor.after } : { gte: DATA_START }), lt: DATA_END, ...ENC });
  try {
    while (seen < maxKeys) {
      const entries = (await it.nextv(Math.min(256, maxKeys - seen))) as Entry[];
      if (entries.length === 0) break;
      for (const [key, raw] of entries) {
        seen++;
        last = key;
        if (group.belongs(key)) {
          const loser = group.add(key, raw);
          if (!isHeadKey(loser)) shadowed.push(loser);
          continue;
        }
        finishRow();
        const p = partitionPrefixLength(key);
        if (p < 0 || p >= key.length) continue;
        if (part === undefined || p !== part.length || !hasPrefix(key, part)) {
          finishPartition();
          part = copyBytes(key, 0, p);
          deletion = undefined;
        }
        const kind = key[p];
        if (kind === KIND_PARTITION_DELETION && key.length === p + 1 + DELETION_VERSION_BYTES) {
          if (deletion !== undefined) shadowed.push(key);
          else deletion = { timestampMicros: readInvertedMicros(key, p + 1), deletionTimeMicros: decodeStored(raw).deletionTimeMicros ?? 0 };
          continue;
        }
        const c = escapedFieldLength(key, p + 1);
        const at = p + 1 + c;
        if (kind !== KIND_ROW || c < 0 || (key.length !== at && !isTie(key, at + VERSION_TS_BYTES))) continue;
        group.start(key, raw, at);
      }
    }
  } finally {
    await it.close();
  }
  const done = seen < maxKeys;
  let next: SweepCursor | undefined;
  if (done) {
    finishRow();
    finishPartition();
  } else {
    const c: { -readonly [K in keyof SweepCursor]: SweepCursor[K] } = { after: last! };
    if (part !== undefined) c.partition = part;
    if (deletion !== undefined) c.deletion = deletion;
    if (group.count > 0) c.row = { key: group.bestKey, raw: group.bestRaw };
    next = c;
  }
  let purged = 0;
  if (shadowed.length > 0 && !s.commits.closed) {
    const batch = s.commits.batch();
    for (const k of shadowed) batch.del(k);
    await s.commits.commit(batch, false);
    purged += shadowed.length;
  }
  if ((rowPurges.length > 0 || partitionPurges.length > 0) && !s.commits.closed) {
    purged += await s.commits.exclusive(() => purgeAlone(s, rowPurges, partitionPurges));
  }
  return next === undefined ? { purged } : { purged, next };
}

/** Runs a whole sweep to the end; returns the number of entries removed. */
export async function purge(s: StoreParts): Promise<number> {
  let total = 0;
  let r = await sweep(s, undefined, 1000);
  total += r.purged;
  while (r.next !== undefined) {
    r = await sweep(s, r.next, 1000);
    total += r.purged;
  }
  return total;
}

/** Reads every entry under `prefix` (run inside an exclusive section). */
async function readAll(s: StoreParts, prefix: Uint8Array, upper: Uint8Array = prefixEnd(prefix)!): Promise<Entry[]> {
  const out: Entry[] = [];
  const it = s.db.iterator({ gte: prefix, lt: upper, ...ENC });
  try {
    for (;;) {
      const entries = (await it.nextv(1000)) as Entry[];
      if (entries.length === 0) break;
      for (const e of entries) out.push(e);
    }
  } finally {
    await it.close();
  }
  return out;
}

/** Re-reads gc candidates with nothing in flight and deletes what is still purgeable, with all it shadows, in one batch. */
async function purgeAlone(s: StoreParts, rows: readonly Candidate[], partitions: readonly Candidate[]): Promise<number> {
  if (s.commits.closed) return 0;
  const dels: Uint8Array[] = [];
  for (const { prefix: rowPrefix, horizon } of rows) {
    const versions = await readAll(s, rowPrefix);
    if (versions.length === 0) continue;
    const p = partitionPrefixLength(rowPrefix);
    const deletions = await readAll(s, kindPrefix(rowPrefix.subarray(0, p), KIND_PARTITION_DELETION));
    const deletionTs = deletions.length > 0 ? readInvertedMicros(deletions[0]![0], p + 1) : undefined;
    const group = new RowVersions(true);
    group.start(versions[0]![0], versions[0]![1]);
    for (let i = 1; i < versions.length; i++) group.add(versions[i]![0], versions[i]![1]);
    const best = group.best();
    const since = deadSince(best);
    if ((since !== undefined && since <= horizon) || (deletionTs !== undefined && best.cell.timestampMicros <= deletionTs)) {
      // Its head too: nothing is in flight that could put the same key again.
      for (const [k] of versions) dels.push(k);
    } else for (const k of group.losers) dels.push(k);
  }
  for (const { prefix: pk, horizon } of partitions) {
    const deletions = await readAll(s, kindPrefix(pk, KIND_PARTITION_DELETION));
    if (deletions.length === 0) continue;
    const newest = deletions[0]!;
    const stored = decodeStored(newest[1]);
    if ((stored.deletionTimeMicros ?? 0) > horizon) {
      for (let i = 1; i < deletions.length; i++) dels.push(deletions[i]![0]);
      continue;
    }
    // The deletion goes, and with it every row version it shadows (late writes included).
    const ts = stored.cell.timestampMicros;
    for (const [k] of deletions) dels.push(k);
    for (const [k, raw] of await readAll(s, kindPrefix(pk, KIND_ROW))) if (versionTs(k, raw) <= ts) dels.push(k);
  }
  if (dels.length === 0 || s.commits.closed) return 0;
  const batch = s.commits.batch();
  for (const k of dels) batch.del(k);
  const cache = s.cache;
  try {
    await batch.write(false);
  } finally {
    // A purged row reads as absent, not as the tombstone the cache may hold: forget the candidates (kept or not).
    const seq = cache.nextBatch();
    if (cache.tracking) {
      for (const { prefix } of rows) cache.invalidateRow(seq, cacheId(prefix, prefix.length));
      for (const { prefix } of partitions) cache.invalidatePartition(seq, cacheId(prefix, prefix.length));
    }
  }
  return dels.length;
}

/**
 * Since when a row's winner has been dead on this replica — when the
 * tombstone was stored here, or when the value expires — or undefined for a
 * value that never expires. Gc may purge it once that is at or before the horizon.
 */
function deadSince(stored: StoredCell): number | undefined {
  const c = stored.cell;
  if (isTombstone(c)) return stored.deletionTimeMicros ?? 0;
  return c.expiresAtMicros;
}
