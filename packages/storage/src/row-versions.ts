import { type Cell, compareCells } from '@chorus/model';
import { type StoredCell, decodeStored } from './cell.js';
import { EMPTY } from './db.js';
import { ROW_VERSION_BYTES, hasPrefix, partitionPrefixLength, readInvertedMicros, unescape } from './keys.js';

/** The row's cell as reads see it: a partition deletion at least as new shadows it (shown as a tombstone). */
export function effective(row: Cell | undefined, deletionTs: number | undefined): Cell | undefined {
  if (deletionTs !== undefined && (row === undefined || row.timestampMicros <= deletionTs)) return { tombstone: true, timestampMicros: deletionTs };
  return row;
}

/** Timestamp of a row version, from its key. */
export function versionTs(key: Uint8Array): number {
  return readInvertedMicros(key, key.length - ROW_VERSION_BYTES);
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

  start(key: Uint8Array, raw: Uint8Array): void {
    this.first = key;
    this.prefixLength = key.length - ROW_VERSION_BYTES;
    this.bestKey = key;
    this.bestRaw = raw;
    this.bestTs = versionTs(key);
    this.count = 1;
    this.losers.length = 0;
  }

  belongs(key: Uint8Array): boolean {
    return this.count > 0 && key.length === this.first.length && hasPrefix(key, this.first, this.prefixLength);
  }

  /** Adds a version of the same row; returns the key that lost. */
  add(key: Uint8Array, raw: Uint8Array): Uint8Array {
    this.count++;
    const ts = versionTs(key);
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
