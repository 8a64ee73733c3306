import { type Cell, bytesEqual, cellDigest, compareCells, isTombstone, mergeCells } from '@chorus/model';
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
  /** Bytes the entries take: their records (id, version key, value, fixed fields) and their share of the index. */
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

/** An entry's number when a lookup finds none. */
export const NO_ENTRY = -1;

/*
 * A record, in a segment: a header of fixed fields, then the row's id, its version key and its value.
 *   0 slot · 4 id length · 8 version length · 12 value length · 16 partition id length (u32 each)
 *   20 kind · 21 referenced · 22 digest kept (u8 each) · 24 timestamp · 32 expiry (f64 each) · 40 digest (16 bytes)
 */
const AT_ID_LENGTH = 4;
const AT_VERSION_LENGTH = 8;
const AT_VALUE_LENGTH = 12;
const AT_PARTITION_LENGTH = 16;
const AT_KIND = 20;
const AT_REFERENCED = 21;
const AT_HAS_DIGEST = 22;
const AT_TIMESTAMP = 24;
const AT_EXPIRY = 32;
const AT_DIGEST = 40;
const DIGEST_BYTES = 16;
const RECORD_HEADER = 56;
/**
 * What an entry costs beside its record, at most: its slot's segment, offset and hash (12 bytes, in arrays
 * that grow by doubling) and its cells in the index (4 bytes each, at most half full, also doubling).
 */
const ENTRY_OVERHEAD = 40;
const MIN_SEGMENT_BYTES = 1024;
const MAX_SEGMENT_BYTES = 1024 * 1024;

/** FNV-1a of a row's id: where the index looks for it, and the doorkeeper's bit. */
function idHash(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h | 0;
}

/**
 * The cached rows themselves, outside the V8 heap: each row is one record in
 * a segment (a Buffer of its own), found through an open-addressing index of
 * typed arrays, so a full cache is a few dozen large buffers rather than
 * hundreds of thousands of objects that every full collection marks, and the
 * memory it takes is what its bound says, not that times the heap's growth.
 *
 * Records are appended to the newest segment; a row written again is
 * rewritten in place when its record keeps its size, else it gets a new
 * record and leaves its old one dead. When the segments are all in use, the
 * oldest is emptied into a spare one: its live records read since it was last
 * emptied (their `referenced` flag) move along, the others are evicted
 * (CLOCK's second chance, a segment at a time), and it becomes the spare.
 */
class RowRecords {
  readonly segmentBytes: number;
  /** Segments that may hold records at once; one more is the spare that the oldest is emptied into, and all of them fit the capacity. */
  private readonly maxSegments: number;
  private readonly segments: Buffer[] = [];
  private readonly used: number[] = [];
  /** Segments holding records, oldest first; the last one takes new records. */
  private readonly order: number[] = [];
  private readonly free: number[] = [];
  /** Per entry number (slot): its record's segment (-1 while it has none) and offset, and its id's hash. */
  private slotSegment = new Int32Array(256);
  private slotOffset = new Int32Array(256);
  private slotHash = new Int32Array(256);
  private freeSlots = new Int32Array(256);
  private freeSlotCount = 0;
  private slotsUsed = 0;
  /** Open addressing, linear probing: slot + 1 per cell, 0 for none; at most half full. */
  private index = new Int32Array(1024);
  entries = 0;
  /** Bytes of the live records. */
  recordBytes = 0;

  constructor(
    capacityBytes: number,
    /** An entry is about to be evicted (its fields are still readable). */
    private readonly evicting: (slot: number) => void,
  ) {
    this.segmentBytes = Math.max(MIN_SEGMENT_BYTES, Math.min(MAX_SEGMENT_BYTES, Math.floor(capacityBytes / 16)));
    this.maxSegments = Math.max(2, Math.floor(capacityBytes / this.segmentBytes) - 1);
  }

  /** Bytes a row would take as a record. */
  static recordSize(rowId: string, cell: Cell | undefined, version: Uint8Array | undefined): number {
    return RECORD_HEADER + rowId.length + (version?.length ?? 0) + (cell === undefined || isTombstone(cell) ? 0 : cell.value.length);
  }

  find(rowId: string, hash: number): number {
    const index = this.index;
    const mask = index.length - 1;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const cell = index[i]!;
      if (cell === 0) return NO_ENTRY;
      const slot = cell - 1;
      if (this.slotHash[slot] === hash && this.idEquals(slot, rowId)) return slot;
    }
  }

  /** A new entry for a row not cached yet; the caller checked that its record fits a segment. */
  add(rowId: string, hash: number, partitionLength: number, cell: Cell | undefined, version: Uint8Array | undefined): void {
    const slot = this.newSlot();
    this.slotHash[slot] = hash;
    this.write(slot, rowId, partitionLength, cell, version);
    if ((this.entries + 1) * 2 > this.index.length) this.growIndex();
    this.insert(slot);
    this.entries++;
  }

  /**
   * The entry's row as `cell` now: rewritten where it is when the new record is the same size (an overwrite
   * of a value of the same length, the usual case), else a new record, the old one left dead. False, and
   * nothing changed, when the new record would not fit a segment.
   */
  replace(slot: number, cell: Cell, version: Uint8Array | undefined): boolean {
    const rowId = this.idOf(slot);
    const partitionLength = this.partitionLengthOf(slot);
    const size = RowRecords.recordSize(rowId, cell, version);
    if (size > this.segmentBytes) return false;
    const oldSize = this.sizeOf(slot);
    this.recordBytes -= oldSize;
    if (size === oldSize) {
      const buf = this.segments[this.slotSegment[slot]!]!;
      const at = this.slotOffset[slot]!;
      const referenced = buf[at + AT_REFERENCED]!;
      this.writeAt(buf, at, slot, rowId, partitionLength, cell, version);
      buf[at + AT_REFERENCED] = referenced;
      return true;
    }
    // Detached first, so that making room cannot evict the entry being rewritten.
    this.slotSegment[slot] = -1;
    this.write(slot, rowId, partitionLength, cell, version);
    return true;
  }

  remove(slot: number): void {
    this.recordBytes -= this.sizeOf(slot);
    this.unindex(slot);
    this.slotSegment[slot] = -1;
    this.freeSlots = pushInt(this.freeSlots, this.freeSlotCount++, slot);
    this.entries--;
  }

  /** Empties the oldest segment (see the class comment). */
  evictOldest(): void {
    const from = this.order.shift()!;
    const to = this.takeSegment();
    this.order.push(to);
    const src = this.segments[from]!;
    const dst = this.segments[to]!;
    let w = 0;
    const end = this.used[from]!;
    for (let at = 0; at < end; ) {
      const size = recordSizeAt(src, at);
      const slot = src.readUInt32LE(at);
      if (this.slotSegment[slot] === from && this.slotOffset[slot] === at) {
        if (src[at + AT_REFERENCED] === 1) {
          src.copy(dst, w, at, at + size);
          dst[w + AT_REFERENCED] = 0;
          this.slotSegment[slot] = to;
          this.slotOffset[slot] = w;
          w += size;
        } else {
          this.evicting(slot);
          this.remove(slot);
        }
      }
      at += size;
    }
    this.used[to] = w;
    this.used[from] = 0;
    this.free.push(from);
  }

  touch(slot: number): void {
    this.segments[this.slotSegment[slot]!]![this.slotOffset[slot]! + AT_REFERENCED] = 1;
  }

  kindOf(slot: number): number {
    return this.segments[this.slotSegment[slot]!]![this.slotOffset[slot]! + AT_KIND]!;
  }

  timestampOf(slot: number): number {
    return this.segments[this.slotSegment[slot]!]!.readDoubleLE(this.slotOffset[slot]! + AT_TIMESTAMP);
  }

  /** The row as `getCell` returns it (a new value buffer each time); undefined when absent. */
  cellOf(slot: number): Cell | undefined {
    const buf = this.segments[this.slotSegment[slot]!]!;
    const at = this.slotOffset[slot]!;
    const kind = buf[at + AT_KIND];
    if (kind === ABSENT) return undefined;
    const timestampMicros = buf.readDoubleLE(at + AT_TIMESTAMP);
    if (kind === TOMBSTONE) return { tombstone: true, timestampMicros };
    const start = at + RECORD_HEADER + buf.readUInt32LE(at + AT_ID_LENGTH) + buf.readUInt32LE(at + AT_VERSION_LENGTH);
    const value = copyOut(buf, start, start + buf.readUInt32LE(at + AT_VALUE_LENGTH));
    return kind === VALUE ? { value, timestampMicros } : { value, timestampMicros, expiresAtMicros: buf.readDoubleLE(at + AT_EXPIRY) };
  }

  /** Key of the LevelDB version that is the cell (a new buffer); undefined for absence or a partition deletion's tombstone. */
  versionOf(slot: number): Uint8Array | undefined {
    const buf = this.segments[this.slotSegment[slot]!]!;
    const at = this.slotOffset[slot]!;
    const length = buf.readUInt32LE(at + AT_VERSION_LENGTH);
    if (length === 0) return undefined;
    const start = at + RECORD_HEADER + buf.readUInt32LE(at + AT_ID_LENGTH);
    return copyOut(buf, start, start + length);
  }

  /** The cell's digest, in a new buffer: hashed by the first digest read of the cell, then kept in its record. */
  digestOf(slot: number): Uint8Array {
    const buf = this.segments[this.slotSegment[slot]!]!;
    const at = this.slotOffset[slot]!;
    if (buf[at + AT_HAS_DIGEST] === 1) {
      // A Uint8Array of 16 bytes lives in the V8 heap: cheaper to make than a Buffer from Node's pool.
      const out = new Uint8Array(DIGEST_BYTES);
      for (let i = 0; i < DIGEST_BYTES; i++) out[i] = buf[at + AT_DIGEST + i]!;
      return out;
    }
    const digest = cellDigest(this.cellOf(slot));
    buf.set(digest, at + AT_DIGEST);
    buf[at + AT_HAS_DIGEST] = 1;
    return digest;
  }

  idOf(slot: number): string {
    const buf = this.segments[this.slotSegment[slot]!]!;
    const at = this.slotOffset[slot]! + RECORD_HEADER;
    return latin1Slice.call(buf, at, at + buf.readUInt32LE(this.slotOffset[slot]! + AT_ID_LENGTH));
  }

  partitionLengthOf(slot: number): number {
    return this.segments[this.slotSegment[slot]!]!.readUInt32LE(this.slotOffset[slot]! + AT_PARTITION_LENGTH);
  }

  clear(): void {
    this.segments.length = 0;
    this.used.length = 0;
    this.order.length = 0;
    this.free.length = 0;
    this.slotSegment = new Int32Array(256);
    this.slotOffset = new Int32Array(256);
    this.slotHash = new Int32Array(256);
    this.freeSlots = new Int32Array(256);
    this.freeSlotCount = 0;
    this.slotsUsed = 0;
    this.index = new Int32Array(1024);
    this.entries = 0;
    this.recordBytes = 0;
  }

  private sizeOf(slot: number): number {
    return recordSizeAt(this.segments[this.slotSegment[slot]!]!, this.slotOffset[slot]!);
  }

  private idEquals(slot: number, rowId: string): boolean {
    const buf = this.segments[this.slotSegment[slot]!]!;
    const at = this.slotOffset[slot]!;
    if (buf.readUInt32LE(at + AT_ID_LENGTH) !== rowId.length) return false;
    const start = at + RECORD_HEADER;
    for (let i = 0; i < rowId.length; i++) if (buf[start + i] !== rowId.charCodeAt(i)) return false;
    return true;
  }

  /** Writes the entry's record at the end of the newest segment, making room first. */
  private write(slot: number, rowId: string, partitionLength: number, cell: Cell | undefined, version: Uint8Array | undefined): void {
    const size = RowRecords.recordSize(rowId, cell, version);
    this.makeRoom(size);
    const segment = this.order[this.order.length - 1]!;
    const at = this.used[segment]!;
    this.writeAt(this.segments[segment]!, at, slot, rowId, partitionLength, cell, version);
    this.used[segment] = at + size;
    this.slotSegment[slot] = segment;
    this.slotOffset[slot] = at;
  }

  private writeAt(buf: Buffer, at: number, slot: number, rowId: string, partitionLength: number, cell: Cell | undefined, version: Uint8Array | undefined): void {
    const versionLength = version?.length ?? 0;
    const value = cell === undefined || isTombstone(cell) ? undefined : cell.value;
    const valueLength = value?.length ?? 0;
    buf.writeUInt32LE(slot, at);
    buf.writeUInt32LE(rowId.length, at + AT_ID_LENGTH);
    buf.writeUInt32LE(versionLength, at + AT_VERSION_LENGTH);
    buf.writeUInt32LE(valueLength, at + AT_VALUE_LENGTH);
    buf.writeUInt32LE(partitionLength, at + AT_PARTITION_LENGTH);
    buf[at + AT_KIND] = cell === undefined ? ABSENT : isTombstone(cell) ? TOMBSTONE : cell.expiresAtMicros === undefined ? VALUE : EXPIRING;
    buf[at + AT_REFERENCED] = 0;
    buf[at + AT_HAS_DIGEST] = 0;
    buf.writeDoubleLE(cell?.timestampMicros ?? 0, at + AT_TIMESTAMP);
    buf.writeDoubleLE(cell !== undefined && !isTombstone(cell) ? (cell.expiresAtMicros ?? 0) : 0, at + AT_EXPIRY);
    const start = at + RECORD_HEADER + buf.write(rowId, at + RECORD_HEADER, 'latin1');
    if (version !== undefined) buf.set(version, start);
    if (value !== undefined) buf.set(value, start + versionLength);
    this.recordBytes += RECORD_HEADER + rowId.length + versionLength + valueLength;
  }

  private makeRoom(size: number): void {
    for (;;) {
      const newest = this.order[this.order.length - 1];
      if (newest !== undefined && this.used[newest]! + size <= this.segmentBytes) return;
      if (this.order.length < this.maxSegments) this.order.push(this.takeSegment());
      else this.evictOldest();
    }
  }

  private takeSegment(): number {
    const segment = this.free.pop();
    if (segment !== undefined) return segment;
    // Not zeroed: its pages take memory only once records are written to them.
    this.segments.push(Buffer.allocUnsafeSlow(this.segmentBytes));
    this.used.push(0);
    return this.segments.length - 1;
  }

  /** A free entry number, with no record yet. */
  private newSlot(): number {
    if (this.freeSlotCount > 0) return this.freeSlots[--this.freeSlotCount]!;
    const slot = this.slotsUsed++;
    if (slot === this.slotSegment.length) {
      this.slotSegment = grown(this.slotSegment);
      this.slotOffset = grown(this.slotOffset);
      this.slotHash = grown(this.slotHash);
    }
    this.slotSegment[slot] = -1;
    return slot;
  }

  private insert(slot: number): void {
    const index = this.index;
    const mask = index.length - 1;
    let i = this.slotHash[slot]! & mask;
    while (index[i] !== 0) i = (i + 1) & mask;
    index[i] = slot + 1;
  }

  /** Takes the slot out of the index, shifting back the cells of its probe run that may move (no tombstones). */
  private unindex(slot: number): void {
    const index = this.index;
    const mask = index.length - 1;
    let hole = this.slotHash[slot]! & mask;
    while (index[hole] !== slot + 1) hole = (hole + 1) & mask;
    for (let j = (hole + 1) & mask; index[j] !== 0; j = (j + 1) & mask) {
      const home = this.slotHash[index[j]! - 1]! & mask;
      // The cell at j stays where it is when its home lies cyclically in (hole, j].
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      index[hole] = index[j]!;
      hole = j;
    }
    index[hole] = 0;
  }

  private growIndex(): void {
    const old = this.index;
    this.index = new Int32Array(old.length * 2);
    for (let i = 0; i < old.length; i++) if (old[i] !== 0) this.insert(old[i]! - 1);
  }
}

function recordSizeAt(buf: Buffer, at: number): number {
  return RECORD_HEADER + buf.readUInt32LE(at + AT_ID_LENGTH) + buf.readUInt32LE(at + AT_VERSION_LENGTH) + buf.readUInt32LE(at + AT_VALUE_LENGTH);
}

function copyOut(buf: Buffer, start: number, end: number): Uint8Array {
  // A small Buffer.allocUnsafe is a slice of Node's shared pool: no allocation of its own.
  const out = Buffer.allocUnsafe(end - start);
  buf.copy(out, 0, start, end);
  return out;
}

function grown(a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}

function pushInt(stack: Int32Array<ArrayBuffer>, at: number, value: number): Int32Array<ArrayBuffer> {
  const out = at === stack.length ? grown(stack) : stack;
  out[at] = value;
  return out;
}

/**
 * A bounded cache of reconciled rows (CLOCK eviction, close to LRU), keyed by the row's key prefix (as a
 * latin1 string) and indexed by partition so a partition deletion reaches
 * every cached row of its partition. The rows live outside the V8 heap (see
 * `RowRecords`). The store keeps it exact:
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
  private readonly records: RowRecords;
  /** Partition id → its cached row ids other than the empty clustering key's (one string for one row). */
  private readonly partitions = new Map<string, string | Set<string>>();
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
  ) {
    this.records = new RowRecords(capacityBytes, (slot) => {
      this.evictions++;
      this.unlistRow(slot);
    });
  }

  get enabled(): boolean {
    return this.capacityBytes > 0;
  }

  /**
   * Whether a landed batch has anything to do here: update cached rows, or
   * warn reads in flight. With neither, it only takes its number.
   */
  get tracking(): boolean {
    return this.records.entries > 0 || this.readsInFlight > 0;
  }

  /** The entry of a row (absence included), counting a hit and marking it read; NO_ENTRY on a miss. */
  lookup(rowId: string): number {
    const slot = this.records.entries === 0 ? NO_ENTRY : this.records.find(rowId, idHash(rowId));
    if (slot === NO_ENTRY) {
      this.misses++;
      return NO_ENTRY;
    }
    this.hits++;
    // Second chance: a hit sets one flag, and eviction keeps a flagged entry once instead of dropping it.
    this.records.touch(slot);
    return slot;
  }

  /** A cached row as `getCell` returns it: a partition deletion is already applied; undefined when the row is absent. Each call gives a new value buffer. */
  cellOf(slot: number): Cell | undefined {
    return this.records.cellOf(slot);
  }

  /** The digest of a cached row, in a new buffer. */
  digestOf(slot: number): Uint8Array {
    return this.records.digestOf(slot);
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
      else {
        const hash = idHash(rowId);
        if ((this.admitFirstMiss || this.admits(hash)) && this.records.find(rowId, hash) === NO_ENTRY) this.install(rowId, hash, partitionLength, cell, version);
      }
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
   * as a doorkeeper's bit (the hash of its id) says. Rows read once — a scan
   * of cold keys, the reads of a mix over more keys than the cache holds —
   * would each take an entry, push out one that is read again, and leave
   * garbage for the collector; a row read twice in a window is cached on its
   * second miss. (TinyLFU's doorkeeper, without the frequency sketch.)
   */
  private admits(hash: number): boolean {
    const bit = hash >>> (32 - DOORKEEPER_LOG2);
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
    if (this.records.entries === 0) return;
    const slot = this.records.find(rowId, idHash(rowId));
    if (slot === NO_ENTRY) return;
    const order = this.compare(slot, cell);
    // Equal cells are the same version (a retry; or one written under the previous key layout and again under
    // this one, which the sweep reduces to one): nothing to do. Equal keys are one entry in LevelDB: never delete it.
    if (order > 0) {
      const version = this.records.versionOf(slot);
      if (version !== undefined && !bytesEqual(version, key)) this.shadowed(version);
      this.replace(slot, cell, key);
    } else if (order < 0) {
      const version = this.records.versionOf(slot);
      if (version === undefined || !bytesEqual(version, key)) this.shadowed(key);
    }
  }

  /** A partition deletion at `timestampMicros` landed in batch `seq`: it shadows every cached row of the partition it is at least as new as. */
  partitionDeleted(seq: number, partitionId: string, timestampMicros: number): void {
    this.note(partitionId, seq);
    // Merging a tombstone at the deletion's timestamp is `effective` applied again: rows newer than it stay.
    const tombstone: Cell = { tombstone: true, timestampMicros };
    for (const id of this.rowsOf(partitionId)) {
      const slot = this.records.find(id, idHash(id));
      if (slot === NO_ENTRY) continue;
      // The row's version stays in LevelDB, shadowed: the sweep removes it.
      if (mergeCells(this.records.cellOf(slot), tombstone) === tombstone) this.replace(slot, tombstone, undefined);
    }
  }

  /** The row may have changed in a way a merge cannot follow (purged, or a batch that failed): forget it. */
  invalidateRow(seq: number, rowId: string): void {
    this.note(rowId, seq);
    if (this.records.entries === 0) return;
    const slot = this.records.find(rowId, idHash(rowId));
    if (slot !== NO_ENTRY) this.remove(slot);
  }

  /** The same for a whole partition: forgets every cached row of it. */
  invalidatePartition(seq: number, partitionId: string): void {
    this.note(partitionId, seq);
    for (const id of this.rowsOf(partitionId)) {
      const slot = this.records.find(id, idHash(id));
      if (slot !== NO_ENTRY) this.remove(slot);
    }
  }

  clear(): void {
    this.records.clear();
    this.partitions.clear();
  }

  stats(): RowCacheStats {
    return { hits: this.hits, misses: this.misses, evictions: this.evictions, raceSkips: this.raceSkips, entries: this.records.entries, bytes: this.bytes, capacityBytes: this.capacityBytes };
  }

  /** What the entries take: their records, and their slots and index cells. */
  private get bytes(): number {
    return this.records.recordBytes + this.records.entries * ENTRY_OVERHEAD;
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

  /** `compareCells(cell, cached)`, without rebuilding the cached cell unless the timestamps tie. */
  private compare(slot: number, cell: Cell): number {
    if (this.records.kindOf(slot) === ABSENT) return 1;
    const cachedTimestamp = this.records.timestampOf(slot);
    if (cell.timestampMicros !== cachedTimestamp) return cell.timestampMicros > cachedTimestamp ? 1 : -1;
    return compareCells(cell, this.records.cellOf(slot)!);
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

  private replace(slot: number, cell: Cell, version: Uint8Array | undefined): void {
    if (this.records.replace(slot, cell, version)) this.shrink();
    else this.remove(slot);
  }

  /** Caches a row that is not cached yet, unless its record would not fit. */
  private install(rowId: string, hash: number, partitionLength: number, cell: Cell | undefined, version: Uint8Array | undefined): void {
    const size = RowRecords.recordSize(rowId, cell, version);
    if (size > this.records.segmentBytes || size + ENTRY_OVERHEAD > this.capacityBytes) return;
    this.records.add(rowId, hash, partitionLength, cell, version);
    if (rowId.length !== partitionLength + EMPTY_CLUSTERING_SUFFIX.length) {
      const partitionId = rowId.slice(0, partitionLength);
      const ids = this.partitions.get(partitionId);
      if (ids === undefined) this.partitions.set(partitionId, rowId);
      else if (typeof ids === 'string') this.partitions.set(partitionId, new Set([ids, rowId]));
      else ids.add(rowId);
    }
    this.shrink();
  }

  private remove(slot: number): void {
    this.unlistRow(slot);
    this.records.remove(slot);
  }

  /** Takes a row of another clustering key than the empty one out of its partition's list. */
  private unlistRow(slot: number): void {
    const partitionLength = this.records.partitionLengthOf(slot);
    const rowId = this.records.idOf(slot);
    if (rowId.length === partitionLength + EMPTY_CLUSTERING_SUFFIX.length) return;
    const partitionId = rowId.slice(0, partitionLength);
    const ids = this.partitions.get(partitionId);
    if (ids === undefined) return;
    if (typeof ids === 'string') this.partitions.delete(partitionId);
    else {
      ids.delete(rowId);
      if (ids.size === 1) this.partitions.set(partitionId, ids.values().next().value as string);
    }
  }

  /** Empties the oldest segments until the entries are within the bound. */
  private shrink(): void {
    while (this.bytes > this.capacityBytes) this.records.evictOldest();
  }
}
