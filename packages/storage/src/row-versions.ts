import { type Cell, compareCells } from '@chorus/model';
import { type StoredCell, decodeStored, storedTimestamp } from './cell.js';
import { EMPTY } from './db.js';
import { VERSION_TS_BYTES, hasPrefix, isTie, partitionPrefixLength, readInvertedMicros, rowEntryAt, unescape } from './keys.js';

/** The row's cell as reads see it: a partition deletion at least as new shadows it (shown as a tombstone). */
export function effective(row: Cell | undefined, deletionTs: number | undefined): Cell | undefined {
  if (deletionTs !== undefined && (row === undefined || row.timestampMicros <= deletionTs)) return { tombstone: true, timestampMicros: deletionTs };
  return row;
}

/** Timestamp of a row entry whose row prefix is `at` bytes long: a version's is in its key, a head's in its value. */
export function entryTs(key: Uint8Array, raw: Uint8Array, at: number): number {
  return key.length === at ? storedTimestamp(raw) : readInvertedMicros(key, at);
}

/** Timestamp of a row entry (NaN for a key that is no row entry: it compares with nothing). */
export function versionTs(key: Uint8Array, raw: Uint8Array): number {
  const at = rowEntryAt(key);
  return at < 0 ? Number.NaN : entryTs(key, raw, at);
}

/**
 * The versions of one row as a scan meets them (its head first, then newest
 * first going forward; oldest first and its head last in reverse): keeps the
 * winner by the merge rules, decoding a value only to break a timestamp tie,
 * and the keys of the others.
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

  /** Starts a row at its first entry; `prefixLength` is the length of its row prefix, when the caller parsed the key already. */
  start(key: Uint8Array, raw: Uint8Array, prefixLength = rowEntryAt(key)): void {
    this.first = key;
    this.prefixLength = prefixLength;
    this.bestKey = key;
    this.bestRaw = raw;
    this.bestTs = entryTs(key, raw, prefixLength);
    this.count = 1;
    this.losers.length = 0;
  }

  belongs(key: Uint8Array): boolean {
    // Row prefixes are prefix-free (escaped fields), so a key that starts with this row's prefix is a version of this row.
    return this.count > 0 && hasPrefix(key, this.first, this.prefixLength) && (key.length === this.prefixLength || isTie(key, this.prefixLength + VERSION_TS_BYTES));
  }

  /** Adds a version of the same row; returns the key that lost. */
  add(key: Uint8Array, raw: Uint8Array): Uint8Array {
    this.count++;
    const ts = entryTs(key, raw, this.prefixLength);
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
