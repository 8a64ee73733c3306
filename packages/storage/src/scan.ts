import { MAX_TOKEN, MIN_TOKEN, type Token } from '@chorus/core';
import { type Cell, isDead, validateToken } from '@chorus/model';
import { COMPACT_MIN_VERSIONS } from './compaction.js';
import { EMPTY, ENC, type Entry } from './db.js';
import {
  DELETION_VERSION_BYTES,
  KIND_PARTITION_DELETION,
  KIND_ROW,
  VERSION_TS_BYTES,
  copyBytes,
  decodeToken,
  escapedFieldLength,
  hasPrefix,
  isTie,
  kindPrefix,
  partitionPrefixLength,
  prefixEnd,
  readInvertedMicros,
  rowPrefixFromPartition,
  tokenLowerBound,
  tokenUpperBound,
  unescape,
} from './keys.js';
import type { StoreParts } from './parts.js';
import { RowVersions, effective } from './row-versions.js';

/** A token range as Cassandra's: start exclusive, end inclusive; start ≥ end wraps around the ring (start = end is the whole ring). */
export interface TokenRange {
  start: Token;
  end: Token;
}

export type ScanEntry =
  /** `shadowed`: the row's own versions are all older than its partition's deletion, so `cell` is that deletion. */
  | { type: 'row'; token: Token; partition: Uint8Array; clustering: Uint8Array; cell: Cell; shadowed?: true }
  | { type: 'partition-deletion'; token: Token; partition: Uint8Array; timestampMicros: number };

export interface ScanOptions {
  /** Include tombstones, expired cells and partition deletions (default true: repair and streaming need them). */
  includeDead?: boolean;
  /** Entries fetched from LevelDB per step; bounds the memory a scan holds. */
  chunkSize?: number;
  /**
   * Resume strictly after this entry of an earlier scan of the same range:
   * a row (with `clustering`) or a partition's deletion (without). Paged
   * readers (repair, streaming) use it instead of holding an iterator open
   * across messages.
   */
  after?: ScanPosition;
}

/** Where an entry sits in a scan: its partition, and its row's clustering key (none for the partition's deletion). */
export interface ScanPosition {
  token: Token;
  partition: Uint8Array;
  clustering?: Uint8Array;
}

/** The entry's position, to resume a scan after it. */
export function positionOf(e: ScanEntry): ScanPosition {
  return e.type === 'row' ? { token: e.token, partition: e.partition, clustering: e.clustering } : { token: e.token, partition: e.partition };
}

/** The newest deletion of a partition (its timestamp), read alone: a scan resumed inside the partition needs it to shadow the rest of its rows. */
async function partitionDeletionOf(s: StoreParts, partitionPrefix: Uint8Array): Promise<number | undefined> {
  const it = s.db.iterator({ gte: kindPrefix(partitionPrefix, KIND_PARTITION_DELETION), lt: kindPrefix(partitionPrefix, KIND_ROW), limit: 1, ...ENC });
  try {
    const [first] = (await it.nextv(1)) as Entry[];
    return first === undefined || first[0].length !== partitionPrefix.length + 1 + DELETION_VERSION_BYTES ? undefined : readInvertedMicros(first[0], partitionPrefix.length + 1);
  } finally {
    await it.close();
  }
}

/**
 * Streams the rows of a token range in token order, then partition key,
 * then clustering key, reading `chunkSize` entries at a time and reconciling
 * each row's versions on the way: the range is never held in memory.
 * Wraparound ranges are read as two ordered scans, (start, MAX] then [MIN, end].
 */
export async function* scanRange(s: StoreParts, keyspace: string, range: TokenRange, options: ScanOptions): AsyncGenerator<ScanEntry, void, undefined> {
  const ks = s.keyspaces.prefix(keyspace);
  validateToken(range.start);
  validateToken(range.end);
  const chunk = options.chunkSize ?? 256;
  const includeDead = options.includeDead !== false;
  const segments: Array<[bigint, bigint]> = []; // inclusive token bounds
  if (range.start < range.end) segments.push([range.start + 1n, range.end]);
  else {
    if (range.start < MAX_TOKEN) segments.push([range.start + 1n, MAX_TOKEN]);
    segments.push([MIN_TOKEN, range.end]);
  }
  const after = options.after;
  if (after !== undefined) {
    validateToken(after.token);
    // Segments wholly before the resume point were done by the earlier scan.
    const at = segments.findIndex(([lo, hi]) => lo <= after.token && after.token <= hi);
    if (at < 0) throw new RangeError(`scan resume token ${after.token} lies outside the range (${range.start}, ${range.end}]`);
    segments.splice(0, at);
  }
  for (const [index, [lo, hi]] of segments.entries()) {
    // The partition being scanned: its prefix, token, raw key and newest deletion.
    let part: Uint8Array | undefined;
    let partToken: Token = MIN_TOKEN as Token;
    let partKey: Uint8Array = EMPTY;
    let deletionTs: number | undefined;
    let lower = tokenLowerBound(ks, lo);
    if (after !== undefined && index === 0) {
      part = s.keyspaces.partitionKey(keyspace, after.token, after.partition);
      partToken = after.token;
      partKey = after.partition;
      deletionTs = await partitionDeletionOf(s, part);
      lower = after.clustering === undefined ? kindPrefix(part, KIND_ROW) : (prefixEnd(rowPrefixFromPartition(part, after.clustering)) ?? lower);
    }
    const it = s.db.iterator({ gte: lower, lt: tokenUpperBound(ks, hi), ...ENC });
    const staleDeletions: Uint8Array[] = [];
    const group = new RowVersions(true);
    const finish = (): ScanEntry | undefined => {
      if (group.count === 0) return undefined;
      if (group.count >= COMPACT_MIN_VERSIONS) s.compactions.enqueue(group.losers);
      const own = group.best().cell;
      const cell = effective(own, deletionTs)!;
      const clustering = group.clustering();
      group.count = 0;
      if (!includeDead && isDead(cell, s.env.clock.nowMicros())) return undefined;
      return cell === own ? { type: 'row', token: partToken, partition: partKey, clustering, cell } : { type: 'row', token: partToken, partition: partKey, clustering, cell, shadowed: true };
    };
    try {
      for (;;) {
        const entries = (await it.nextv(chunk)) as Entry[];
        if (entries.length === 0) break;
        for (const [key, raw] of entries) {
          if (group.belongs(key)) {
            group.add(key, raw);
            continue;
          }
          const done = finish();
          if (done !== undefined) yield done;
          if (part === undefined || !hasPrefix(key, part) || key.length <= part.length) {
            const p = partitionPrefixLength(key);
            if (p < 0 || p >= key.length) continue;
            part = copyBytes(key, 0, p);
            const ksLen = key[1]!;
            partToken = decodeToken(key, 2 + ksLen);
            partKey = unescape(key, 2 + ksLen + 8, p - 2 - ksLen - 8);
            deletionTs = undefined;
            if (staleDeletions.length > 0) s.compactions.enqueue(staleDeletions.splice(0));
          }
          const kind = key[part.length];
          if (kind === KIND_PARTITION_DELETION) {
            if (key.length !== part.length + 1 + DELETION_VERSION_BYTES) continue;
            if (deletionTs !== undefined) {
              staleDeletions.push(key);
              continue;
            }
            deletionTs = readInvertedMicros(key, part.length + 1);
            if (includeDead) yield { type: 'partition-deletion', token: partToken, partition: partKey, timestampMicros: deletionTs };
            continue;
          }
          const c = escapedFieldLength(key, part.length + 1);
          const at = part.length + 1 + c;
          if (kind !== KIND_ROW || c < 0 || (key.length !== at && !isTie(key, at + VERSION_TS_BYTES))) continue;
          group.start(key, raw, at);
        }
      }
      const done = finish();
      if (done !== undefined) yield done;
      if (staleDeletions.length > 0) s.compactions.enqueue(staleDeletions.splice(0));
    } finally {
      await it.close();
    }
  }
}
