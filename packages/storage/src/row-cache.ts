import { type Cell, bytesEqual, cellDigest, compareCells, isTombstone, mergeCells, writeBinary } from '@chorus/model';
import { KIND_ROW } from './keys.js';

/** What the row cache has done since the store opened. */
export interface RowCacheStats {
  /** Point reads answered from the cache. */
  hits: number;
  /** Point reads that went to LevelDB. */
  misses: number;
  /** Entries dropped to stay within `capacityBytes`. */
  evictions: number;
  /** Misses that did not fill the cache because a write to their row or partition landed while they read. */
  raceSkips: number;
  entries: number;
  /** Estimated heap bytes held by the entries (keys, cells, values, bookkeeping). */
  bytes: number;
  capacityBytes: number;
}

/** 64 MiB: a modest default, like Cassandra's row cache when it is turned on. */
export const DEFAULT_ROW_CACHE_BYTES = 64 * 1024 * 1024;

const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, start: number, end: number): string }).latin1Slice;

/**
 * The row cache's id of a row (its key prefix `P | 01 | esc(clustering) 00 01`)
 * or of a partition (`P`): the bytes as a latin1 string, one char per byte,
 * so distinct prefixes give distinct ids (and a string is what a Map hashes fast).
 */
export function cacheId(key: Uint8Array, end: number): string {
  return latin1Slice.call(key, 0, end);
}

/*
 * Heap cost of one entry beside its key and value bytes: the Map slot, the id
 * string, the entry object and its timestamps, the data string's header.
 * `pnpm bench:storage` measures it (row cache footprint): a key-value row of
 * 100 bytes takes 391 bytes of heap, estimated 400.
 */
const ENTRY_OVERHEAD = 200;
/** Bits of the doorkeeper (512 KiB): a row enters the cache on its second miss (see `RowCache.admits`). */
const DOORKEEPER_LOG2 = 22;
const DOORKEEPER_BITS = 1 << DOORKEEPER_LOG2;
/**
 * The doorkeeper forgets every row once this many have knocked (about as many rows as a full cache of
 * 100-byte rows holds): with at most a sixteenth of its bits set, a row read once passes by chance one
 * time in thirty-two on average, and each row it lets in costs an entry, an eviction and garbage.
 */
const DOORKEEPER_WINDOW = DOORKEEPER_BITS >>> 4;
/** Most row/partition ids remembered as written while reads are in flight; older ones fold into `evictedSeq`. */
const RECENT_WRITES_CAP = 65_536;
/** What follows a partition's id in the id of its row with the empty clustering key: KIND_ROW, then esc(empty) = 00 01. */
const EMPTY_CLUSTERING_SUFFIX = String.fromCharCode(KIND_ROW, 0x00, 0x01);

const ABSENT = 0;
const TOMBSTONE = 1;
const VALUE = 2;
const EXPIRING = 3;

/**
 * One cached row, in as few heap objects as a row can take: the old space holds
 * every entry, and each object is marked by every full collection. The row's
 * version key and value are one latin1 string (one char per byte), not a byte
 * array: a string of this size lives in the V8 heap in one object, where a
 * Uint8Array over 64 bytes is a JS object, an ArrayBuffer, a C++ backing store
 * and a malloc block, which cost more than the bytes themselves and stay in
 * the process's malloc heap. The cell is rebuilt from it when it is read.
 */
class CachedRow {
  /** The version key (its first `versionLength` chars), then the value. */
  private data = '';
  private versionLength = 0;
  private kind = ABSENT;
  private timestampMicros = 0;
  private expiresAtMicros = 0;
  bytes = 0;
  referenced = false;
  /**
   * `cellDigest(cell)` as a latin1 string, computed by the first digest read of this cell: a hot row answers
   * digest reads without hashing. A string for the reason `data` is one: a 16-byte Uint8Array kept for good is
   * three heap objects, about 180 bytes.
   */
  digest: string | undefined = undefined;

  constructor(
    /** The partition's id is the row id's first `partitionLength` chars. */
    readonly partitionLength: number,
  ) {}

  /** The row as `getCell` returns it: a partition deletion is already applied; undefined when the row is absent. Each call gives a new value buffer. */
  get cell(): Cell | undefined {
    switch (this.kind) {
      case ABSENT:
        return undefined;
      case TOMBSTONE:
        return { tombstone: true, timestampMicros: this.timestampMicros };
      case VALUE:
        return { value: this.bytesOf(this.versionLength, this.data.length), timestampMicros: this.timestampMicros };
      default:
        return { value: this.bytesOf(this.versionLength, this.data.length), timestampMicros: this.timestampMicros, expiresAtMicros: this.expiresAtMicros };
    }
  }

  /** Key of the LevelDB version that is `cell` (a new buffer); undefined when the cell is absence or a partition deletion's tombstone. */
  get version(): Uint8Array | undefined {
    return this.versionLength === 0 ? undefined : this.bytesOf(0, this.versionLength);
  }

  /** `compareCells(cell, this.cell)`, without rebuilding this cell unless the timestamps tie. */
  compare(cell: Cell): number {
    if (this.kind === ABSENT) return 1;
    if (cell.timestampMicros !== this.timestampMicros) return cell.timestampMicros > this.timestampMicros ? 1 : -1;
    return compareCells(cell, this.cell!);
  }

  /** Holds `cell` (stored under `version`, when it is a LevelDB version), copied so that the entry pins no buffer. */
  set(cell: Cell | undefined, version: Uint8Array | undefined, rowId: string): void {
    const versionLength = version === undefined ? 0 : version.length;
    const value = cell === undefined || isTombstone(cell) ? undefined : cell.value;
    const length = versionLength + (value === undefined ? 0 : value.length);
    let data = '';
    if (length > 0) {
      // A small Buffer.allocUnsafe is a slice of Node's shared pool: no allocation of its own before the string is made.
      const joined = Buffer.allocUnsafe(length);
      if (version !== undefined) joined.set(version, 0);
      if (value !== undefined) joined.set(value, versionLength);
      data = joined.toString('latin1', 0, length);
    }
    this.data = data;
    this.versionLength = versionLength;
    this.kind = cell === undefined ? ABSENT : isTombstone(cell) ? TOMBSTONE : cell.expiresAtMicros === undefined ? VALUE : EXPIRING;
    this.timestampMicros = cell?.timestampMicros ?? 0;
    this.expiresAtMicros = cell !== undefined && !isTombstone(cell) ? (cell.expiresAtMicros ?? 0) : 0;
    this.bytes = ENTRY_OVERHEAD + rowId.length + length;
    this.digest = undefined;
  }

  private bytesOf(start: number, end: number): Uint8Array {
    const out = Buffer.allocUnsafe(end - start);
    out.write(this.data.slice(start, end), 0, 'latin1');
    return out;
  }
}

/**
 * A bounded cache of reconciled rows (CLOCK eviction, close to LRU), keyed by the row's key prefix (as a
 * latin1 string) and indexed by partition so a partition deletion reaches
 * every cached row of its partition. The store keeps it exact:
 *
 * - Every landed write batch merges its cells into the cached rows it touches
 *   (a cached entry is the reconciled newest, so mergeCells with the new
 *   version gives the new reconciled row), before the batch's writes are
 *   acknowledged. A gc purge or a failed batch drops the rows instead.
 * - A miss fills the cache only if no batch touching its row or partition has
 *   landed since the read began. Each landed batch takes the next sequence
 *   number; while reads are in flight, the ids it touched are remembered with
 *   it (a bounded FIFO; the highest number forgotten stands in for every id
 *   no longer remembered). A read notes the number at its start and fills iff
 *   every write that could concern it is numbered at most that.
 *
 * The store owns the only reference; it is not exported.
 */
export class RowCache {
  private readonly rows = new Map<string, CachedRow>();
  /** Partition id → its cached row ids (one string for the common one-row partition). */
  private readonly partitions = new Map<string, string | Set<string>>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;
  private raceSkips = 0;
  /** Number of the last landed batch. */
  private seq = 0;
  /** Row/partition id → number of the last landed batch that touched it, kept only while reads are in flight. */
  private readonly recent = new Map<string, number>();
  /** At least the number of every write no longer in `recent`. */
  private evictedSeq = 0;
  private readsInFlight = 0;
  private readonly doorkeeper = new Int32Array(DOORKEEPER_BITS >>> 5);
  private knocked = 0;

  /**
   * @param shadowed receives the key of a row version that a landed write
   *   shadows (the cached row's previous winner, or the new version when it
   *   loses): deleting it never changes what reads see, so a hot row read
   *   only from the cache is still compacted as it is overwritten.
   */
  constructor(
    readonly capacityBytes: number,
    private readonly shadowed: (key: Uint8Array) => void,
    /** Cache a row on its first miss rather than its second (for tests of the fill rules). */
    private readonly admitFirstMiss = false,
  ) {}

  get enabled(): boolean {
    return this.capacityBytes > 0;
  }

  /**
   * Whether a landed batch has anything to do here: update cached rows, or
   * warn reads in flight. With neither, it only takes its number.
   */
  get tracking(): boolean {
    return this.rows.size > 0 || this.readsInFlight > 0;
  }

  /** The entry of a row (absence included), counting a hit and making it the most recent; undefined on a miss. */
  lookup(rowId: string): CachedRow | undefined {
    const e = this.rows.get(rowId);
    if (e === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    // Second chance rather than moving the entry to the end of the map: a hit writes one flag, and eviction
    // moves a flagged entry once instead of dropping it (CLOCK, close to LRU at a fraction of its cost).
    e.referenced = true;
    return e;
  }

  /** The digest of a cached row, in a new buffer. */
  digestOf(e: CachedRow): Uint8Array {
    const kept = e.digest;
    if (kept !== undefined) {
      // A Uint8Array of 16 bytes lives in the V8 heap: cheaper to make than a Buffer from Node's pool.
      const bytes = new Uint8Array(kept.length);
      writeBinary(bytes, 0, kept);
      return bytes;
    }
    const digest = cellDigest(e.cell);
    e.digest = Buffer.from(digest.buffer, digest.byteOffset, digest.length).toString('latin1');
    return digest;
  }

  /** A miss starts reading LevelDB; returns the number to hand back to `endRead`. */
  beginRead(): number {
    this.readsInFlight++;
    return this.seq;
  }

  /**
   * A miss finished; fills the cache with `cell` when `filled`, no write to
   * the row or its partition (the row id's first `partitionLength` chars)
   * landed since `startSeq`, and the row missed before (`admits`). A row
   * cached meanwhile by another read is left as it is: writes keep it exact.
   */
  endRead(startSeq: number, rowId: string, partitionLength: number, cell: Cell | undefined, version: Uint8Array | undefined, filled: boolean): void {
    if (filled) {
      if (this.writtenSince(startSeq, rowId, partitionLength)) this.raceSkips++;
      else if ((this.admitFirstMiss || this.admits(rowId)) && !this.rows.has(rowId)) this.install(rowId, partitionLength, cell, version);
    }
    if (--this.readsInFlight === 0) {
      // No read is left that started before the current number: what `recent` remembers can no longer stop a fill.
      this.recent.clear();
      this.evictedSeq = this.seq;
    }
  }

  /** Whether a batch that landed after `startSeq` touched the row or its partition, as far as `recent` remembers. */
  private writtenSince(startSeq: number, rowId: string, partitionLength: number): boolean {
    if (this.evictedSeq > startSeq) return true;
    // Nothing noted (reads alone, the usual case of a cold scan): no id to look up, no partition id to cut.
    if (this.recent.size === 0) return false;
    return (this.recent.get(rowId) ?? 0) > startSeq || (this.recent.get(rowId.slice(0, partitionLength)) ?? 0) > startSeq;
  }

  /**
   * Whether a row that missed is worth caching: only when it missed before,
   * as a doorkeeper's bit (a hash of its id) says. Rows read once — a scan
   * of cold keys, the reads of a mix over more keys than the cache holds —
   * would each take an entry, push out one that is read again, and leave
   * garbage for the collector; a row read twice in a window is cached on its
   * second miss. (TinyLFU's doorkeeper, without the frequency sketch.)
   */
  private admits(rowId: string): boolean {
    let h = 0x811c9dc5;
    for (let i = 0; i < rowId.length; i++) h = Math.imul(h ^ rowId.charCodeAt(i), 0x01000193);
    const bit = h >>> (32 - DOORKEEPER_LOG2);
    const word = bit >>> 5;
    const mask = 1 << (bit & 31);
    if ((this.doorkeeper[word]! & mask) !== 0) return true;
    this.doorkeeper[word]! |= mask;
    if (++this.knocked >= DOORKEEPER_WINDOW) {
      this.doorkeeper.fill(0);
      this.knocked = 0;
    }
    return false;
  }

  /** A batch landed (or failed): returns its number for the calls below. */
  nextBatch(): number {
    return ++this.seq;
  }

  /** A row version (`cell`, stored under `key`) landed in batch `seq`. */
  rowWritten(seq: number, rowId: string, cell: Cell, key: Uint8Array): void {
    this.note(rowId, seq);
    const e = this.rows.get(rowId);
    if (e === undefined) return;
    const order = e.compare(cell);
    // Equal cells are the same version (a retry; or one written under the previous key layout and again under
    // this one, which the sweep reduces to one): nothing to do. Equal keys are one entry in LevelDB: never delete it.
    if (order > 0) {
      const version = e.version;
      if (version !== undefined && !bytesEqual(version, key)) this.shadowed(version);
      this.replace(e, cell, key, rowId);
    } else if (order < 0) {
      const version = e.version;
      if (version === undefined || !bytesEqual(version, key)) this.shadowed(key);
    }
  }

  /** A partition deletion at `timestampMicros` landed in batch `seq`: it shadows every cached row of the partition it is at least as new as. */
  partitionDeleted(seq: number, partitionId: string, timestampMicros: number): void {
    this.note(partitionId, seq);
    // Merging a tombstone at the deletion's timestamp is `effective` applied again: rows newer than it stay.
    const tombstone: Cell = { tombstone: true, timestampMicros };
    for (const id of this.rowsOf(partitionId)) {
      const e = this.rows.get(id);
      if (e === undefined) continue;
      // The row's version stays in LevelDB, shadowed: the sweep removes it.
      if (mergeCells(e.cell, tombstone) === tombstone) this.replace(e, tombstone, undefined, id);
    }
  }

  /** The row may have changed in a way a merge cannot follow (purged, or a batch that failed): forget it. */
  invalidateRow(seq: number, rowId: string): void {
    this.note(rowId, seq);
    const e = this.rows.get(rowId);
    if (e !== undefined) this.remove(rowId, e);
  }

  /** The same for a whole partition: forgets every cached row of it. */
  invalidatePartition(seq: number, partitionId: string): void {
    this.note(partitionId, seq);
    for (const id of this.rowsOf(partitionId)) {
      const e = this.rows.get(id);
      if (e !== undefined) this.remove(id, e);
    }
  }

  clear(): void {
    this.rows.clear();
    this.partitions.clear();
    this.bytes = 0;
  }

  stats(): RowCacheStats {
    return { hits: this.hits, misses: this.misses, evictions: this.evictions, raceSkips: this.raceSkips, entries: this.rows.size, bytes: this.bytes, capacityBytes: this.capacityBytes };
  }

  private note(id: string, seq: number): void {
    // Reads that start later take a number ≥ seq, so with none in flight there is nobody to warn.
    if (this.readsInFlight === 0) return;
    this.recent.set(id, seq);
    if (this.recent.size > RECENT_WRITES_CAP) {
      const [oldest, oldestSeq] = this.recent.entries().next().value as [string, number];
      this.recent.delete(oldest);
      if (oldestSeq > this.evictedSeq) this.evictedSeq = oldestSeq;
    }
  }

  /**
   * The ids of the cached rows of a partition: its row of the empty clustering key, which the index leaves out
   * (a key-value row needs no entry of its own there), and the rows of other clustering keys the index holds.
   */
  private rowsOf(partitionId: string): string[] {
    const ids = this.partitions.get(partitionId);
    const out = [partitionId + EMPTY_CLUSTERING_SUFFIX];
    if (ids !== undefined) for (const id of typeof ids === 'string' ? [ids] : ids) out.push(id);
    return out;
  }

  private replace(e: CachedRow, cell: Cell, version: Uint8Array | undefined, rowId: string): void {
    const before = e.bytes;
    e.set(cell, version, rowId);
    this.bytes += e.bytes - before;
    if (this.bytes > this.capacityBytes) this.evict();
  }

  /** Caches a row that is not cached yet. */
  private install(rowId: string, partitionLength: number, cell: Cell | undefined, version: Uint8Array | undefined): void {
    const e = new CachedRow(partitionLength);
    e.set(cell, version, rowId);
    if (e.bytes > this.capacityBytes) return;
    this.rows.set(rowId, e);
    this.bytes += e.bytes;
    if (rowId.length !== partitionLength + EMPTY_CLUSTERING_SUFFIX.length) {
      const partitionId = rowId.slice(0, partitionLength);
      const ids = this.partitions.get(partitionId);
      if (ids === undefined) this.partitions.set(partitionId, rowId);
      else if (typeof ids === 'string') this.partitions.set(partitionId, new Set([ids, rowId]));
      else ids.add(rowId);
    }
    if (this.bytes > this.capacityBytes) this.evict();
  }

  private remove(rowId: string, e: CachedRow): void {
    this.rows.delete(rowId);
    this.bytes -= e.bytes;
    if (rowId.length === e.partitionLength + EMPTY_CLUSTERING_SUFFIX.length) return;
    const partitionId = rowId.slice(0, e.partitionLength);
    const ids = this.partitions.get(partitionId);
    if (ids === undefined) return;
    if (typeof ids === 'string') this.partitions.delete(partitionId);
    else {
      ids.delete(rowId);
      if (ids.size === 1) this.partitions.set(partitionId, ids.values().next().value as string);
    }
  }

  /** Drops entries not read since eviction last passed them, oldest first, until the cache is within its bound. */
  private evict(): void {
    // An entry moved to the end is met again by this same loop (a Map iterates what is added while it runs), unflagged.
    for (const [id, e] of this.rows) {
      if (this.bytes <= this.capacityBytes) break;
      if (e.referenced) {
        e.referenced = false;
        this.rows.delete(id);
        this.rows.set(id, e);
        continue;
      }
      this.remove(id, e);
      this.evictions++;
    }
  }
}
