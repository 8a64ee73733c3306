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
  partitionPrefixLength,
  readInvertedMicros,
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
  | { type: 'row'; token: Token; partition: Uint8Array; clustering: Uint8Array; cell: Cell }
  | { type: 'partition-deletion'; token: Token; partition: Uint8Array; timestampMicros: number };

export interface ScanOptions {
  /** Include tombstones, expired cells and partition deletions (default true: repair and streaming need them). */
  includeDead?: boolean;
  /** Entries fetched from LevelDB per step; bounds the memory a scan holds. */
  chunkSize?: number;
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
  for (const [lo, hi] of segments) {
    const it = s.db.iterator({ gte: tokenLowerBound(ks, lo), lt: tokenUpperBound(ks, hi), ...ENC });
    // The partition being scanned: its prefix, token, raw key and newest deletion.
    let part: Uint8Array | undefined;
    let partToken: Token = MIN_TOKEN as Token;
    let partKey: Uint8Array = EMPTY;
    let deletionTs: number | undefined;
    const staleDeletions: Uint8Array[] = [];
    const group = new RowVersions(true);
    const finish = (): ScanEntry | undefined => {
      if (group.count === 0) return undefined;
      if (group.count >= COMPACT_MIN_VERSIONS) s.compactions.enqueue(group.losers);
      const cell = effective(group.best().cell, deletionTs)!;
      const clustering = group.clustering();
      group.count = 0;
      if (!includeDead && isDead(cell, s.env.clock.nowMicros())) return undefined;
      return { type: 'row', token: partToken, partition: partKey, clustering, cell };
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
          if (kind !== KIND_ROW || c < 0 || !isTie(key, part.length + 1 + c + VERSION_TS_BYTES)) continue;
          group.start(key, raw, part.length + 1 + c);
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
