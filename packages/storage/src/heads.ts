import type { Batch } from './batch.js';
import { ENC, type Entry, SYNC, type StorageDb } from './db.js';
import {
  DATA_END,
  DATA_START,
  DELETION_VERSION_BYTES,
  HEAD_BOUND_PREFIX,
  HEAD_MARKER_PREFIX,
  KIND_PARTITION_DELETION,
  partitionPrefixLength,
  prefixEnd,
  readInvertedMicros,
  rowEntryAt,
  writeInvertedMicros,
} from './keys.js';

/** Buckets of rows, by the low bits of their token, that the newest timestamps are kept for: 2 MiB of them. */
const BUCKET_BITS = 18;
const BUCKET_MASK = (1 << BUCKET_BITS) - 1;
/**
 * The bound on every stored timestamp that survives a restart moves 10 ms
 * past the newest one at a time: at most about a hundred batches a second
 * carry it, and after a restart only writes stamped within 10 ms of the last
 * one stored before it take the version path.
 */
const BOUND_STEP_MICROS = 10_000;

/** Buckets of the heads a batch puts, so that its landing can be accounted for. */
export interface BatchHeads {
  puts: number[];
}

/**
 * A key-value row (the empty clustering key: every row a key-value client
 * writes) keeps its newest version, when a write knows it is the newest,
 * under its row prefix itself — a *head*, `P | 01 | 00 01` with no timestamp
 * — instead of under a version key. A point read of the row is then one
 * `getMany` of exact keys, which LevelDB answers through its bloom filters,
 * where a version needs an iterator seek that merges every level. The head
 * sorts right before the row's versions, and every scan, slice, gc sweep and
 * fallback read takes it as one more version (its timestamp is in its
 * value), so it is not a copy: each write still stores one entry.
 *
 * A write must not read (a read before each write halved the write path
 * when it was tried), so a write takes the head only when it knows without
 * reading that it is the row's newest version: each bucket of rows (by
 * token, so a partition deletion falls in its key-value row's bucket)
 * remembers the newest timestamp written to any row in it. A write newer
 * than that is newer than everything its row holds: it puts the head (over
 * the older one: last-write-wins). Any other
 * write (an older one arriving late — a hint, repair, a coordinator whose
 * clock lags —, a partition deletion, or a write to a bucket with a head put
 * still in flight in another batch, which may land after it) is stored as a
 * version and puts the row's marker, `mhd | P without its d`. A read takes
 * the head only while the row has no marker; otherwise it reads the row's
 * entries (head and versions) and reconciles them, as before heads. A
 * marker stays (see `takesHead`). Markers are in the write's own batch, so
 * they survive a crash with it.
 *
 * Batches land in any order: a head put by a batch that lands after a later
 * write would overwrite a newer head, or leave a stale one without a marker,
 * so while a batch with a head put of a bucket is in flight, every other
 * batch's write to that bucket takes the version path. Within one batch,
 * LevelDB applies operations in order. The gc sweep and the deletes of
 * shadowed versions never delete a head (a later write may have put the same
 * key again); only a purge, which runs with no batch in flight, does.
 *
 * The buckets' newest timestamps live in memory: a store that opens starts
 * every bucket at a bound on all timestamps it holds, kept in each batch
 * that raises it (an entry per bound, so batches landing out of order cannot
 * lower it). A store written before heads has no bound: its first open reads
 * every key once to find it.
 */
export class Heads {
  private readonly newest = new Float64Array(BUCKET_MASK + 1);
  private readonly putsInFlight = new Int32Array(BUCKET_MASK + 1);
  /** 1 for a bucket where some row may have a marker: only there do reads look for them. */
  private readonly marked = new Uint8Array(BUCKET_MASK + 1);
  /** Bound on every timestamp stored, as its newest bound entry says. */
  private bound = 0;
  private boundKey: Uint8Array | undefined;
  /** Set when a batch that may have carried the bound failed: the next batch carries it again. */
  private boundLost = false;
  /** Set once `open` has read the bound and the markers. */
  private ready = false;

  /** Reads the bound and the markers. Until it is done, every write takes the version path and reads do not use heads. */
  async open(db: StorageDb): Promise<void> {
    await db.open();
    const stale: Array<{ type: 'del'; key: Uint8Array }> = [];
    let bound = 0;
    let found = false;
    await eachKey(db, HEAD_BOUND_PREFIX, (key) => {
      // The first is the largest; the others only remain from batches that landed out of order.
      if (!found) bound = readInvertedMicros(key, HEAD_BOUND_PREFIX.length);
      else stale.push({ type: 'del', key });
      found = true;
    });
    if (!found) bound = await newestStored(db);
    await eachKey(db, HEAD_MARKER_PREFIX, (key) => {
      this.marked[bucketOfMarker(key)] = 1;
    });
    if (stale.length > 0) await db.batch(stale, SYNC as typeof ENC);
    this.bound = Math.max(bound, this.bound);
    for (let b = 0; b <= BUCKET_MASK; b++) if (this.newest[b]! < this.bound) this.newest[b] = this.bound;
    // The next batch writes a bound of its own, over what was read and what batches wrote meanwhile.
    this.boundLost = true;
    this.ready = true;
  }

  /**
   * How a read may use the row's head: `undefined` when it must read the
   * row's entries, else the marker key to read beside the head (`null` when
   * the row's bucket has none).
   */
  headRead(rowPrefix: Uint8Array, tokenEnd: number): Uint8Array | null | undefined {
    if (!this.ready) return undefined;
    return this.marked[bucketAt(rowPrefix, tokenEnd)] === 1 ? markerOf(rowPrefix) : null;
  }

  /**
   * Whether a write of a key-value row at `ts` takes the head. `rowPrefix`
   * is the row's prefix (`P | 01 | 00 01`); the token's last bytes sit right
   * before the partition key, at `tokenEnd`. The write is recorded either
   * way: for the head, the caller puts `rowPrefix`; otherwise the caller
   * puts a version and this puts the marker.
   *
   * A head never deletes its row's marker: a batch built later may put the
   * marker again (a partition deletion newer than the head, a version
   * written while the head is in flight) and land first, and the delete,
   * landing after it, would leave a newer write unseen behind a head that
   * reads take alone. So a row once marked is read through its entries.
   */
  takesHead(batch: Batch, rowPrefix: Uint8Array, tokenEnd: number, ts: number): boolean {
    const bucket = bucketAt(rowPrefix, tokenEnd);
    const newest = this.newest[bucket]!;
    if (ts > newest) this.newest[bucket] = ts;
    if (this.ready && ts > newest && this.putsInFlight[bucket] === 0) {
      (batch.heads ??= { puts: [] }).puts.push(bucket);
      return true;
    }
    this.marked[bucket] = 1;
    batch.put(markerOf(rowPrefix), EMPTY_VALUE);
    return false;
  }

  /** A partition deletion: its key-value row (`rowPrefix`) gets a marker, so reads see the deletion. */
  partitionDeleted(batch: Batch, rowPrefix: Uint8Array, tokenEnd: number, ts: number): void {
    const bucket = bucketAt(rowPrefix, tokenEnd);
    if (ts > this.newest[bucket]!) this.newest[bucket] = ts;
    this.marked[bucket] = 1;
    batch.put(markerOf(rowPrefix), EMPTY_VALUE);
  }

  /**
   * Adds the bound to a batch whose writes raised it (`batchNewest`: their
   * newest timestamp), and counts its head puts in flight; the batch is
   * handed over right after.
   */
  finish(batch: Batch, batchNewest: number): void {
    if (batch.heads !== undefined) for (const bucket of batch.heads.puts) this.putsInFlight[bucket]!++;
    if (!this.ready) {
      // `open` has not read the bound yet: this batch's own bound goes beside it, and `open` takes the largest.
      if (batchNewest > 0) {
        this.bound = Math.max(this.bound, stepAbove(batchNewest));
        batch.put(boundKeyOf(stepAbove(batchNewest)), EMPTY_VALUE);
      }
      return;
    }
    if (batchNewest >= this.bound || this.boundLost) {
      const previous = this.boundKey;
      this.bound = Math.max(this.bound, stepAbove(batchNewest));
      this.boundLost = false;
      this.boundKey = boundKeyOf(this.bound);
      batch.put(this.boundKey, EMPTY_VALUE);
      // Deleting the bound it replaces is safe in any order: the store takes the largest bound it finds.
      if (previous !== undefined) batch.del(previous);
    }
  }

  /** Accounts for a batch that landed (`ok`) or failed: either way it is no longer in flight. */
  landed(heads: BatchHeads | undefined, ok: boolean): void {
    if (!ok) this.boundLost = true;
    if (heads !== undefined) for (const bucket of heads.puts) this.putsInFlight[bucket]!--;
  }
}

const EMPTY_VALUE = new Uint8Array(0);

function bucketAt(key: Uint8Array, tokenEnd: number): number {
  return ((key[tokenEnd - 3]! << 16) | (key[tokenEnd - 2]! << 8) | key[tokenEnd - 1]!) & BUCKET_MASK;
}

/** A marker's bucket: its key holds the row prefix without its first byte, the keyspace's length next. */
function bucketOfMarker(marker: Uint8Array): number {
  const at = HEAD_MARKER_PREFIX.length - 1;
  return bucketAt(marker, at + 2 + marker[at + 1]! + 8);
}

function markerOf(rowPrefix: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEAD_MARKER_PREFIX.length + rowPrefix.length - 1);
  out.set(HEAD_MARKER_PREFIX, 0);
  out.set(rowPrefix.subarray(1), HEAD_MARKER_PREFIX.length);
  return out;
}

/** The first whole step of the bound past `micros`. */
function stepAbove(micros: number): number {
  return (Math.floor(micros / BOUND_STEP_MICROS) + 1) * BOUND_STEP_MICROS;
}

function boundKeyOf(bound: number): Uint8Array {
  const out = new Uint8Array(HEAD_BOUND_PREFIX.length + 8);
  out.set(HEAD_BOUND_PREFIX, 0);
  writeInvertedMicros(out, HEAD_BOUND_PREFIX.length, bound);
  return out;
}

async function eachKey(db: StorageDb, prefix: Uint8Array, fn: (key: Uint8Array) => void): Promise<void> {
  const it = db.iterator({ gte: prefix, lt: prefixEnd(prefix)!, values: false, ...ENC });
  try {
    for (;;) {
      const entries = (await it.nextv(1000)) as Entry[];
      if (entries.length === 0) break;
      for (const [key] of entries) fn(key);
    }
  } finally {
    await it.close();
  }
}

/** The newest timestamp a store written before heads holds, from its keys (versions and partition deletions carry theirs). */
async function newestStored(db: StorageDb): Promise<number> {
  let newest = 0;
  const it = db.iterator({ gte: DATA_START, lt: DATA_END, values: false, ...ENC });
  try {
    for (;;) {
      const entries = (await it.nextv(1000)) as Entry[];
      if (entries.length === 0) break;
      for (const [key] of entries) {
        const at = rowEntryAt(key);
        let ts = -1;
        if (at >= 0 && key.length > at) ts = readInvertedMicros(key, at);
        else if (at < 0) {
          const p = partitionPrefixLength(key);
          if (p > 0 && key[p] === KIND_PARTITION_DELETION && key.length === p + 1 + DELETION_VERSION_BYTES) ts = readInvertedMicros(key, p + 1);
        }
        if (ts > newest) newest = ts;
      }
    }
  } finally {
    await it.close();
  }
  return newest;
}
