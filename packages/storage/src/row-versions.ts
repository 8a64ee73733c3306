import { type Cell, compareCells } from '@chorus/model';
import { type StoredCell, decodeStored } from './cell.js';
import { EMPTY } from './db.js';
import { VERSION_TS_BYTES, hasPrefix, isTie, partitionPrefixLength, readInvertedMicros, rowVersionAt, unescape } from './keys.js';

/** The row's cell as reads see it: a partition deletion at least as new shadows it (shown as a tombstone). */
export function effective(row: Cell | undefined, deletionTs: number | undefined): Cell | undefined {
  if (deletionTs !== undefined && (row === undefined || row.timestampMicros <= deletionTs)) return { tombstone: true, timestampMicros: deletionTs };
  return row;
}

/** Timestamp of a row version, from its key (NaN for a key that is no row version: it compares with nothing). */
export function versionTs(key: Uint8Array): number {
  const at = rowVersionAt(key);
  return at < 0 ? Number.NaN : readInvertedMicros(key, at);
}

/**
 * The versions of one row as a scan meets them (newest first going forward,
 * oldest first in reverse): keeps the winner by the merge rules, decoding a
 * value only to break a timestamp tie, and the keys of the others.
 */
export class RowVersions {
  /** Key of the first version seen; its first `prefixLength` bytes name the row. */
  first: Uint8Array = EMPTY;
  prefixLength = 0;
  bestKey: Uint8Array = EMPTY;
  bestRaw: Uint8Array = EMPTY;
  bestTs = 0;
  count = 0;
  /** Keys of the versions that lost (only kept when `keepLosers`). */
  readonly losers: Uint8Array[] = [];

  constructor(private readonly keepLosers: boolean) {}

  /** Starts a row at its first version; `prefixLength` is where its ~timestamp starts, when the caller parsed the key already. */
  start(key: Uint8Array, raw: Uint8Array, prefixLength = rowVersionAt(key)): void {
    this.first = key;
    this.prefixLength = prefixLength;
    this.bestKey = key;
    this.bestRaw = raw;
    this.bestTs = readInvertedMicros(key, prefixLength);
    this.count = 1;
    this.losers.length = 0;
  }

  belongs(key: Uint8Array): boolean {
    // Row prefixes are prefix-free (escaped fields), so a key that starts with this row's prefix is a version of this row.
    return this.count > 0 && hasPrefix(key, this.first, this.prefixLength) && isTie(key, this.prefixLength + VERSION_TS_BYTES);
  }

  /** Adds a version of the same row; returns the key that lost. */
  add(key: Uint8Array, raw: Uint8Array): Uint8Array {
    this.count++;
    const ts = readInvertedMicros(key, this.prefixLength);
    let loser = key;
    if (ts > this.bestTs || (ts === this.bestTs && compareCells(decodeStored(raw).cell, decodeStored(this.bestRaw).cell) > 0)) {
      loser = this.bestKey;
      this.bestKey = key;
      this.bestRaw = raw;
      this.bestTs = ts;
    }
    if (this.keepLosers) this.losers.push(loser);
    return loser;
  }

  best(): StoredCell {
    return decodeStored(this.bestRaw);
  }

  clustering(): Uint8Array {
    const p = partitionPrefixLength(this.first);
    return unescape(this.first, p + 1, this.prefixLength - p - 1);
  }
}
