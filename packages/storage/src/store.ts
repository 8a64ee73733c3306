import type { AbstractLevel } from 'abstract-level';
import { MAX_TOKEN, MIN_TOKEN, type Env, type Token } from '@chorus/core';
import {
  type Cell,
  type Mutation,
  type RowAddress,
  type RowWrite,
  type ValueCell,
  InvalidMutation,
  LIMITS,
  cellDigest,
  compareBytes,
  compareCells,
  isDead,
  isPartitionDelete,
  isTombstone,
  validateAddress,
  validateClusteringKey,
  validateKeyspace,
  validateMutationBody,
  validateToken,
} from '@chorus/model';
import { type StoredCell, decodeStored, encodeDeletion, encodeStored, writeTie } from './cell.js';
import { InvalidSlice, StorageClosed } from './errors.js';
import {
  DATA_END,
  DATA_START,
  DELETION_VERSION_BYTES,
  KIND_PARTITION_DELETION,
  KIND_ROW,
  ROW_VERSION_BYTES,
  SYNC_MARKER_KEY,
  copyBytes,
  decodeToken,
  escapedFieldLength,
  escapedLength,
  hasPrefix,
  keyspacePrefix,
  kindPrefix,
  partitionPrefixLength,
  prefixEnd,
  readInvertedMicros,
  rowPrefixFromPartition,
  tokenLowerBound,
  tokenUpperBound,
  unescape,
  writeEscaped,
  writeInvertedMicros,
  writeToken,
} from './keys.js';
import { DEFAULT_ROW_CACHE_BYTES, RowCache, type RowCacheStats } from './row-cache.js';

/**
 * Any abstract-level database: ClassicLevel (`level`) in production,
 * MemoryLevel in tests and the simulator. The store passes binary encodings
 * on every call, so the database's own default encodings do not matter.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type StorageDb = AbstractLevel<any, any, any>;

const ENC = { keyEncoding: 'view', valueEncoding: 'view' } as const;
const SYNC = { ...ENC, sync: true } as const;
const NO_SYNC = { ...ENC, sync: false } as const;
const EMPTY = new Uint8Array(0);
/** Cassandra's default gc_grace_seconds: 10 days. */
export const DEFAULT_GC_GRACE_SECONDS = 864_000;
/** A read that meets a row with at least this many versions deletes the shadowed ones. */
const COMPACT_MIN_VERSIONS = 4;
/** Most shadowed versions one point read collects for deletion. */
const COMPACT_READ_CAP = 256;
/** Most keys waiting for an opportunistic compaction delete; beyond it the sweep catches up. */
const COMPACT_QUEUE_CAP = 10_000;
/** Versions a point read fetches in its first step: the newest is usually all it needs. */
const POINT_CHUNK = 4;

export interface StoreOptions {
  env: Env;
  /** How long tombstones and expired cells are kept before a sweep may purge them. */
  gcGraceSeconds?: number;
  /**
   * Bound of the in-memory cache of reconciled rows that point reads use
   * (estimated heap bytes; default 64 MiB). 0 turns it off.
   */
  rowCacheBytes?: number;
}

/**
 * The outcome of one mutation of a batch: stored (`ok: true`), or rejected
 * with its validation error. Writes never read, so a stored write may well be
 * older than what the row holds: reads reconcile and it never wins there.
 */
export type ApplyOutcome = { ok: true } | { ok: false; error: Error };

const STORED: ApplyOutcome = Object.freeze({ ok: true }) as ApplyOutcome;

export interface SliceOptions {
  /** Inclusive lower clustering bound. */
  from?: Uint8Array;
  /** Inclusive upper clustering bound. */
  to?: Uint8Array;
  /** Rows per page, 1..LIMITS.maxSliceLimit (default 1000). */
  limit?: number;
  /** Descending clustering order. */
  reverse?: boolean;
  /** Resume after this clustering key (the `nextPage` of the previous page); in scan order. */
  after?: Uint8Array;
  /** Also return tombstones, expired cells and rows shadowed by a partition deletion (as tombstones). */
  includeDead?: boolean;
}

export interface SliceRow {
  clustering: Uint8Array;
  cell: Cell;
}

export interface SlicePage {
  rows: SliceRow[];
  /** Present when the page is full: pass it as `after` to read the next one. */
  nextPage?: Uint8Array;
  /** Timestamp of the partition's deletion, when it has one. */
  partitionDeletedAtMicros?: number;
}

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

type Entry = [Uint8Array, Uint8Array];

/**
 * The rows a write batch touches, for the row cache, which learns of them only
 * once the batch has landed: the mutations and the version key each was
 * stored under (a hole for one that failed validation). Kept this bare
 * because it is built for every write whether or not the cache will care.
 */
interface Touched {
  readonly mutations: readonly Mutation[];
  readonly keys: Array<Uint8Array | undefined>;
}

const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, start: number, end: number): string }).latin1Slice;

/**
 * The row cache's id of a row (its key prefix `P | 01 | esc(clustering) 00 01`)
 * or of a partition (`P`): the bytes as a latin1 string, one char per byte,
 * so distinct prefixes give distinct ids (and a string is what a Map hashes fast).
 */
function cacheId(key: Uint8Array, end: number): string {
  return latin1Slice.call(key, 0, end);
}

/** The row's cell as reads see it: a partition deletion at least as new shadows it (shown as a tombstone). */
function effective(row: Cell | undefined, deletionTs: number | undefined): Cell | undefined {
  if (deletionTs !== undefined && (row === undefined || row.timestampMicros <= deletionTs)) return { tombstone: true, timestampMicros: deletionTs };
  return row;
}

/** Timestamp of a row version, from its key. */
function versionTs(key: Uint8Array): number {
  return readInvertedMicros(key, key.length - ROW_VERSION_BYTES);
}

/**
 * The versions of one row as a scan meets them (newest first going forward,
 * oldest first in reverse): keeps the winner by the merge rules, decoding a
 * value only to break a timestamp tie, and the keys of the others.
 */
class RowVersions {
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

/** A LevelDB batch: the native chained batch when the database is open, else an array (abstract-level defers it until open). */
class Batch {
  private readonly chained: ReturnType<StorageDb['batch']> | undefined;
  private readonly ops: Array<{ type: 'put' | 'del'; key: Uint8Array; value?: Uint8Array }> | undefined;
  length = 0;
  /** The rows it writes, when the store keeps a row cache. */
  touched: Touched | undefined;

  constructor(
    private readonly db: StorageDb,
    private readonly opOptions: typeof ENC | undefined,
  ) {
    if (db.status === 'open') this.chained = db.batch();
    else this.ops = [];
  }

  put(key: Uint8Array, value: Uint8Array): void {
    this.length++;
    if (this.chained !== undefined) this.chained.put(key, value, this.opOptions as typeof ENC);
    else this.ops!.push({ type: 'put', key, value });
  }

  del(key: Uint8Array): void {
    this.length++;
    if (this.chained !== undefined) this.chained.del(key, this.opOptions as typeof ENC);
    else this.ops!.push({ type: 'del', key });
  }

  write(sync: boolean): Promise<void> {
    if (this.chained !== undefined) return this.chained.write(sync ? SYNC : NO_SYNC);
    return this.db.batch(this.ops as never, (sync ? SYNC : NO_SYNC) as typeof ENC);
  }

  close(): void {
    if (this.chained !== undefined) this.chained.close().catch(() => undefined);
  }
}

/**
 * The local store of one node. Pure data logic over abstract-level; it owns no
 * timers (the storage actor schedules sweeps and syncs) and reads the time
 * from its Env only to judge expiry and gc grace.
 *
 * Writes never read: each is a new entry keyed by its version (see keys.ts),
 * so a batch is encoded and handed to LevelDB at once. Reads reconcile the
 * versions they meet with the merge rules; the sweep (and reads that meet a
 * row with many versions) delete the shadowed ones. A write's promise
 * resolves only after its batch is in the database, so every acknowledged
 * write is visible to every later read.
 */
export class Store {
  readonly db: StorageDb;
  readonly env: Env;
  readonly gcGraceMicros: number;
  /** Validated keyspace names and their key prefixes. */
  private readonly keyspaces = new Map<string, Uint8Array>();
  /** Per-operation encodings for chained batches; undefined when the database's defaults already are binary views. */
  private readonly opOptions: typeof ENC | undefined;
  /** Batches handed to LevelDB (or waiting for an exclusive section) that have not landed. */
  /** Batches handed to LevelDB and not yet landed. */
  private inflight = 0;
  /** Batches waiting for an exclusive section to end. */
  private gated = 0;
  private idleWaiters: Array<() => void> = [];
  /** Set while an exclusive section runs: new batches wait for it. */
  private gate: Promise<void> | undefined;
  private exclusiveChain: Promise<unknown> = Promise.resolve();
  /** Keys of shadowed versions that reads found; deleted with the next batch. */
  private compactQueue: Uint8Array[] = [];
  private compactScheduled = false;
  private closed = false;
  /** Reconciled rows for point reads; kept exact by every landed batch and purge (see row-cache.ts). */
  private readonly cache: RowCache;

  constructor(db: StorageDb, options: StoreOptions) {
    const grace = options.gcGraceSeconds ?? DEFAULT_GC_GRACE_SECONDS;
    if (!Number.isInteger(grace) || grace < 0) throw new RangeError(`gcGraceSeconds must be a non-negative integer, got ${grace}`);
    const cacheBytes = options.rowCacheBytes ?? DEFAULT_ROW_CACHE_BYTES;
    if (!Number.isSafeInteger(cacheBytes) || cacheBytes < 0) throw new RangeError(`rowCacheBytes must be a non-negative integer, got ${cacheBytes}`);
    this.cache = new RowCache(cacheBytes, (key) => this.enqueueShadowed(key));
    this.db = db;
    this.env = options.env;
    this.gcGraceMicros = grace * 1_000_000;
    const kenc = (db.keyEncoding as () => { name?: string })();
    const venc = (db.valueEncoding as () => { name?: string })();
    this.opOptions = kenc?.name === 'view' && venc?.name === 'view' ? undefined : ENC;
  }

  /** Opens the database (a no-op when it is already open). */
  async open(): Promise<this> {
    await this.db.open();
    return this;
  }

  /** The key prefix of a keyspace, validating the name the first time it is seen. */
  private keyspace(name: string): Uint8Array {
    let prefix = this.keyspaces.get(name);
    if (prefix === undefined) {
      validateKeyspace(name);
      prefix = keyspacePrefix(name);
      if (this.keyspaces.size >= 1024) this.keyspaces.clear();
      this.keyspaces.set(name, prefix);
    }
    return prefix;
  }

  private partitionKey(keyspace: string, t: Token, partition: Uint8Array): Uint8Array {
    const ks = this.keyspace(keyspace);
    const out = new Uint8Array(ks.length + 8 + escapedLength(partition));
    out.set(ks, 0);
    writeToken(out, ks.length, t);
    writeEscaped(out, ks.length + 8, partition);
    return out;
  }

  /**
   * Applies a group of mutations as one LevelDB batch (group commit). Each
   * mutation is validated on its own, so a bad one fails alone. Nothing is
   * read: each write adds a version, and reads reconcile. The promise resolves
   * after the batch is written (and fsynced when `sync`).
   */
  apply(mutations: readonly Mutation[], options: { sync?: boolean } = {}): Promise<ApplyOutcome[]> {
    return this.submit(mutations, options).landed;
  }

  /**
   * `apply` in two stages, for a caller that pipelines: `merged` settles once
   * the batch is encoded and handed to LevelDB (at once: writes do not read),
   * `landed` once it is in the database. Batches may land in any order: every
   * write is its own version, so the order does not change what reads see.
   */
  submit(mutations: readonly Mutation[], options: { sync?: boolean } = {}): { merged: Promise<void>; landed: Promise<ApplyOutcome[]> } {
    if (this.closed) {
      const err = Promise.reject(new StorageClosed());
      err.catch(() => undefined);
      return { merged: err as Promise<never>, landed: err as Promise<never> };
    }
    const n = mutations.length;
    const outcomes: ApplyOutcome[] = new Array(n);
    const batch = new Batch(this.db, this.opOptions);
    const keys = this.cache.enabled ? new Array<Uint8Array | undefined>(n) : undefined;
    if (keys !== undefined) batch.touched = { mutations, keys };
    const now = this.env.clock.nowMicros();
    for (let i = 0; i < n; i++) {
      try {
        const key = this.encode(mutations[i]!, batch, now);
        if (keys !== undefined) keys[i] = key;
        outcomes[i] = STORED;
      } catch (error) {
        outcomes[i] = { ok: false, error: error as Error };
      }
    }
    if (this.compactQueue.length > 0) this.drainCompactions(batch);
    const landed = this.commit(batch, options.sync === true).then(() => outcomes);
    landed.catch(() => undefined);
    return { merged: RESOLVED, landed };
  }

  /** Validates one mutation and adds its version to the batch; returns the version's key. */
  private encode(m: Mutation, batch: Batch, now: number): Uint8Array {
    if (typeof m !== 'object' || m === null) throw new InvalidMutation('mutation must be an object');
    const ks = this.keyspace(m.keyspace);
    validateMutationBody(m);
    const partition = m.partition;
    const partEnd = ks.length + 8 + escapedLength(partition);
    if (isPartitionDelete(m)) {
      const ts = m.partitionDeletion.timestampMicros;
      const key = new Uint8Array(partEnd + 1 + DELETION_VERSION_BYTES);
      key.set(ks, 0);
      writeToken(key, ks.length, m.token);
      writeEscaped(key, ks.length + 8, partition);
      key[partEnd] = KIND_PARTITION_DELETION;
      writeInvertedMicros(key, partEnd + 1, ts);
      batch.put(key, encodeDeletion(ts, now));
      return key;
    }
    const clustering = m.clustering ?? EMPTY;
    const cell = m.cell;
    const versionAt = partEnd + 1 + escapedLength(clustering);
    const key = new Uint8Array(versionAt + ROW_VERSION_BYTES);
    key.set(ks, 0);
    writeToken(key, ks.length, m.token);
    writeEscaped(key, ks.length + 8, partition);
    key[partEnd] = KIND_ROW;
    writeEscaped(key, partEnd + 1, clustering);
    writeInvertedMicros(key, versionAt, cell.timestampMicros);
    writeTie(key, versionAt + 8, cell);
    batch.put(key, encodeStored(cell, now));
    return key;
  }

  /** Hands a batch to LevelDB (after any exclusive section in progress); resolves when it has landed. */
  private commit(batch: Batch, sync: boolean): Promise<void> {
    if (batch.length === 0) {
      batch.close();
      return RESOLVED;
    }
    // A batch waiting at the gate of an exclusive section is not yet in LevelDB: counting it as in flight
    // would make the section wait for a batch that waits for the section.
    const handOver = () => {
      this.inflight++;
      return batch.write(sync);
    };
    let write: Promise<void>;
    if (this.gate === undefined) write = handOver();
    else {
      this.gated++;
      write = this.gate.then(() => {
        this.gated--;
        return handOver();
      });
    }
    const touched = batch.touched;
    if (touched === undefined) {
      return write.then(
        () => this.landed(),
        (error: unknown) => {
          this.landed();
          throw error;
        },
      );
    }
    // The cache learns of the batch here, before the promise resolves, so before any of its writes is acknowledged.
    return write.then(
      () => {
        this.cacheLanded(touched, true);
        this.landed();
      },
      (error: unknown) => {
        this.cacheLanded(touched, false);
        this.landed();
        throw error;
      },
    );
  }

  /**
   * Brings the row cache up to date with a batch that landed: merges each new
   * version into its cached row (a partition deletion into every cached row
   * of its partition). A failed batch may have been applied or not, so its
   * rows are dropped instead. Either way reads in flight are told not to fill.
   */
  private cacheLanded(t: Touched, ok: boolean): void {
    const cache = this.cache;
    const seq = cache.nextBatch();
    if (!cache.tracking) return;
    const { mutations, keys } = t;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      if (key === undefined) continue;
      const m = mutations[i]!;
      if (isPartitionDelete(m)) {
        // A deletion's key is P | 00 | ~timestamp.
        const id = cacheId(key, key.length - 1 - DELETION_VERSION_BYTES);
        if (ok) cache.partitionDeleted(seq, id, m.partitionDeletion.timestampMicros);
        else cache.invalidatePartition(seq, id);
      } else {
        const id = cacheId(key, key.length - ROW_VERSION_BYTES);
        if (ok) cache.rowWritten(seq, id, m.cell, key);
        else cache.invalidateRow(seq, id);
      }
    }
  }

  private landed(): void {
    if (--this.inflight > 0) return;
    const waiters = this.idleWaiters;
    if (waiters.length > 0) {
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
    if (this.compactQueue.length > 0) this.flushCompactions();
  }

  /** Resolves when no batch handed to LevelDB is still in flight. */
  private idle(): Promise<void> {
    if (this.inflight === 0) return RESOLVED;
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Resolves when no batch is in flight or waiting at a gate. */
  private async drained(): Promise<void> {
    while (this.inflight + this.gated > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Runs `work` alone: it starts once every batch handed to LevelDB has landed,
   * and batches submitted meanwhile wait until it is done.
   */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.exclusiveChain.then(async () => {
      let open!: () => void;
      this.gate = new Promise<void>((resolve) => (open = resolve));
      try {
        await this.idle();
        return await work();
      } finally {
        this.gate = undefined;
        open();
      }
    });
    this.exclusiveChain = run.catch(() => undefined);
    return run;
  }

  /**
   * Queues the keys of shadowed versions a read found, for deletion with the
   * next batch. Deleting a shadowed version never changes what reads see, in
   * any order with other writes: its winner stays (only an exclusive gc purge
   * removes winners, and it removes everything older with them), and a late
   * rewrite of the same version is shadowed by the same winner.
   */
  private enqueueCompaction(keys: readonly Uint8Array[]): void {
    if (this.closed || keys.length === 0) return;
    for (const k of keys) {
      if (this.compactQueue.length >= COMPACT_QUEUE_CAP) break;
      this.compactQueue.push(k);
    }
    if (this.inflight === 0 && !this.compactScheduled) {
      this.compactScheduled = true;
      queueMicrotask(() => {
        this.compactScheduled = false;
        if (this.inflight === 0) this.flushCompactions();
      });
    }
  }

  /** One shadowed version the row cache found (see RowCache); deleted like the ones reads find. */
  private enqueueShadowed(key: Uint8Array): void {
    if (this.closed || this.compactQueue.length >= COMPACT_QUEUE_CAP) return;
    this.compactQueue.push(key);
    // Called as a batch lands: `landed()` flushes the queue when nothing else is in flight.
  }

  private drainCompactions(batch: Batch): void {
    for (const k of this.compactQueue) batch.del(k);
    this.compactQueue = [];
  }

  private flushCompactions(): void {
    if (this.closed || this.compactQueue.length === 0) return;
    const batch = new Batch(this.db, this.opOptions);
    this.drainCompactions(batch);
    this.commit(batch, false).catch((error: unknown) => this.env.logger.warn({ err: error }, 'compaction delete failed'));
  }

  /**
   * Resolves once every batch handed to LevelDB so far has landed, including
   * the deletes of shadowed versions that reads queued (for tests and tools;
   * under a steady write load it waits for a quiet moment).
   */
  settled(): Promise<void> {
    if (this.compactQueue.length > 0 && !this.closed) this.flushCompactions();
    return this.drained();
  }

  /** One mutation; throws its validation error. */
  async write(m: Mutation, options: { sync?: boolean } = {}): Promise<void> {
    const [outcome] = await this.apply([m], options);
    if (!outcome!.ok) throw outcome!.error;
  }

  /** The timestamp of a partition's newest deletion; older deletions it meets are queued for compaction. */
  private async newestDeletion(partitionKey: Uint8Array): Promise<number | undefined> {
    const it = this.db.iterator({ gte: kindPrefix(partitionKey, KIND_PARTITION_DELETION), lt: kindPrefix(partitionKey, KIND_ROW), ...ENC });
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
      this.enqueueCompaction(older);
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
  private async reconcilePoint(
    it: ReturnType<StorageDb['iterator']>,
    partitionLength: number,
    rowPrefix: Uint8Array,
  ): Promise<{ row: Cell | undefined; rowKey: Uint8Array | undefined; deletionTs: number | undefined }> {
    let deletionTs: number | undefined;
    let bestRaw: Uint8Array | undefined;
    let bestKey: Uint8Array | undefined;
    let topTs = -1;
    let complete = false;
    const shadowed: Uint8Array[] = [];
    const staleDeletions: Uint8Array[] = [];
    let chunk = POINT_CHUNK;
    for (;;) {
      const entries = (await it.nextv(chunk)) as Entry[];
      for (const [key, raw] of entries) {
        if (key[partitionLength] === KIND_PARTITION_DELETION) {
          if (deletionTs === undefined) deletionTs = readInvertedMicros(key, key.length - DELETION_VERSION_BYTES);
          else staleDeletions.push(key);
          continue;
        }
        if (key.length !== rowPrefix.length + ROW_VERSION_BYTES || !hasPrefix(key, rowPrefix)) continue;
        const ts = versionTs(key);
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
      if (entries.length === 0) break;
      // Stop once the newest timestamp is complete, unless the row is worth compacting now.
      if (complete && (shadowed.length < COMPACT_MIN_VERSIONS - 1 || shadowed.length >= COMPACT_READ_CAP)) break;
      chunk = 64;
    }
    if (shadowed.length >= COMPACT_MIN_VERSIONS - 1) this.enqueueCompaction(shadowed);
    this.enqueueCompaction(staleDeletions);
    return { row: bestRaw === undefined ? undefined : decodeStored(bestRaw).cell, rowKey: bestKey, deletionTs };
  }

  /**
   * A row through the cache: a hit is the cached reconciled cell; a miss reads
   * LevelDB and fills the cache unless a write to the row or its partition
   * landed meanwhile (the read may have missed it: see row-cache.ts).
   */
  private async readRow(a: RowAddress): Promise<Cell | undefined> {
    validateAddress(a);
    const pk = this.partitionKey(a.keyspace, a.token, a.partition);
    const clustering = a.clustering ?? EMPTY;
    const rowPrefix = rowPrefixFromPartition(pk, clustering);
    const cache = this.cache;
    if (!cache.enabled) return (await this.readRowFromDb(pk, clustering, rowPrefix)).cell;
    const rowId = cacheId(rowPrefix, rowPrefix.length);
    const hit = cache.lookup(rowId);
    if (hit !== undefined) return hit.cell;
    const start = cache.beginRead();
    let read: { cell: Cell | undefined; version: Uint8Array | undefined } | undefined;
    try {
      read = await this.readRowFromDb(pk, clustering, rowPrefix);
      return read.cell;
    } finally {
      cache.endRead(start, rowId, rowId.slice(0, pk.length), read?.cell, read?.version, read !== undefined && !this.closed);
    }
  }

  /** The row as `getCell` returns it, and the key of its winning version when that is the cell (not a partition deletion). */
  private async readRowFromDb(pk: Uint8Array, clustering: Uint8Array, rowPrefix: Uint8Array): Promise<{ cell: Cell | undefined; version: Uint8Array | undefined }> {
    let reconciled: { row: Cell | undefined; rowKey: Uint8Array | undefined; deletionTs: number | undefined };
    if (clustering.length === 0) {
      // The empty clustering key is the partition's first row: one scan meets the deletion versions, then it.
      const it = this.db.iterator({ gt: pk, lt: prefixEnd(rowPrefix)!, ...ENC });
      try {
        reconciled = await this.reconcilePoint(it, pk.length, rowPrefix);
      } finally {
        await it.close();
      }
    } else {
      const it = this.db.iterator({ gte: rowPrefix, lt: prefixEnd(rowPrefix)!, ...ENC });
      try {
        const [deletionTs, point] = await Promise.all([this.newestDeletion(pk), this.reconcilePoint(it, pk.length, rowPrefix)]);
        reconciled = { ...point, deletionTs };
      } finally {
        await it.close();
      }
    }
    const cell = effective(reconciled.row, reconciled.deletionTs);
    return { cell, version: cell !== undefined && cell === reconciled.row ? reconciled.rowKey : undefined };
  }

  /**
   * The row's merged cell as this replica holds it, tombstones and expired
   * values included (a partition deletion that shadows the row reads as a
   * tombstone at the deletion's timestamp); undefined when it holds nothing.
   * For `GET /v1/local` and read repair. The cell may be the row cache's own:
   * treat it (and its value bytes) as read-only.
   */
  getCell(a: RowAddress): Promise<Cell | undefined> {
    return this.readRow(a);
  }

  /** The row's live value, or undefined when it is absent, deleted or expired. */
  async get(a: RowAddress): Promise<ValueCell | undefined> {
    const cell = await this.readRow(a);
    if (cell === undefined || isDead(cell, this.env.clock.nowMicros())) return undefined;
    return cell as ValueCell;
  }

  /** What the row cache has done so far (a new Store starts cold, with zeros). */
  cacheStats(): RowCacheStats {
    return this.cache.stats();
  }

  /** Digest of `getCell(a)`: what a digest read compares. */
  async digest(a: RowAddress): Promise<Uint8Array> {
    return cellDigest(await this.readRow(a));
  }

  /** One page of a partition's rows in clustering order: one ordered iterator scan, reconciling each row's versions. */
  async slice(keyspace: string, t: Token, partition: Uint8Array, options: SliceOptions = {}): Promise<SlicePage> {
    validateAddress({ keyspace, token: t, partition });
    const limit = options.limit ?? 1000;
    if (!Number.isInteger(limit) || limit < 1 || limit > LIMITS.maxSliceLimit) throw new InvalidSlice(`limit must be an integer in [1, ${LIMITS.maxSliceLimit}]`);
    for (const k of [options.from, options.to, options.after]) if (k !== undefined) validateClusteringKey(k);
    const reverse = options.reverse === true;
    const pk = this.partitionKey(keyspace, t, partition);
    const range: { gte: Uint8Array; lt: Uint8Array } = { gte: kindPrefix(pk, KIND_ROW), lt: kindPrefix(pk, KIND_ROW + 1) };
    const { from, to, after } = options;
    // `after` narrows the side the scan walks from; from/to still bound the slice.
    if (!reverse && after !== undefined && (from === undefined || compareBytes(after, from) >= 0)) range.gte = prefixEnd(rowPrefixFromPartition(pk, after))!;
    else if (from !== undefined) range.gte = rowPrefixFromPartition(pk, from);
    if (reverse && after !== undefined && (to === undefined || compareBytes(after, to) <= 0)) range.lt = rowPrefixFromPartition(pk, after);
    else if (to !== undefined) range.lt = prefixEnd(rowPrefixFromPartition(pk, to))!;

    const deletion = this.newestDeletion(pk);
    deletion.catch(() => undefined);
    const now = this.env.clock.nowMicros();
    const includeDead = options.includeDead === true;
    const rows: SliceRow[] = [];
    const group = new RowVersions(true);
    let deletionTs: number | undefined;
    const finish = (): void => {
      if (group.count >= COMPACT_MIN_VERSIONS) this.enqueueCompaction(group.losers);
      const cell = effective(group.best().cell, deletionTs)!;
      if (includeDead || !isDead(cell, now)) rows.push({ clustering: group.clustering(), cell });
    };
    const it = this.db.iterator({ ...range, reverse, ...ENC });
    try {
      // The deletion lookup runs beside the first chunk's read.
      let entries: Entry[];
      [deletionTs, entries] = await Promise.all([deletion, it.nextv(Math.min(limit + 16, 1000)) as Promise<Entry[]>]);
      outer: while (entries.length > 0) {
        for (const [key, raw] of entries) {
          if (group.belongs(key)) {
            group.add(key, raw);
            continue;
          }
          if (group.count > 0) {
            finish();
            if (rows.length === limit) break outer;
          }
          group.start(key, raw);
        }
        entries = (await it.nextv(Math.min(limit - rows.length + 16, 1000))) as Entry[];
      }
      if (rows.length < limit && group.count > 0) finish();
    } finally {
      await it.close();
    }
    const page: SlicePage = { rows };
    if (rows.length === limit) page.nextPage = rows[rows.length - 1]!.clustering;
    if (deletionTs !== undefined) page.partitionDeletedAtMicros = deletionTs;
    return page;
  }

  /**
   * Streams the rows of a token range in token order, then partition key,
   * then clustering key, reading `chunkSize` entries at a time and reconciling
   * each row's versions on the way: the range is never held in memory.
   * Wraparound ranges are read as two ordered scans, (start, MAX] then [MIN, end].
   */
  async *scanRange(keyspace: string, range: TokenRange, options: ScanOptions = {}): AsyncGenerator<ScanEntry, void, undefined> {
    const ks = this.keyspace(keyspace);
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
      const it = this.db.iterator({ gte: tokenLowerBound(ks, lo), lt: tokenUpperBound(ks, hi), ...ENC });
      // The partition being scanned: its prefix, token, raw key and newest deletion.
      let part: Uint8Array | undefined;
      let partToken: Token = MIN_TOKEN as Token;
      let partKey: Uint8Array = EMPTY;
      let deletionTs: number | undefined;
      const staleDeletions: Uint8Array[] = [];
      const group = new RowVersions(true);
      const finish = (): ScanEntry | undefined => {
        if (group.count === 0) return undefined;
        if (group.count >= COMPACT_MIN_VERSIONS) this.enqueueCompaction(group.losers);
        const cell = effective(group.best().cell, deletionTs)!;
        const clustering = group.clustering();
        group.count = 0;
        if (!includeDead && isDead(cell, this.env.clock.nowMicros())) return undefined;
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
              if (staleDeletions.length > 0) this.enqueueCompaction(staleDeletions.splice(0));
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
            if (kind !== KIND_ROW || c < 0 || key.length !== part.length + 1 + c + ROW_VERSION_BYTES) continue;
            group.start(key, raw);
          }
        }
        const done = finish();
        if (done !== undefined) yield done;
        if (staleDeletions.length > 0) this.enqueueCompaction(staleDeletions.splice(0));
      } finally {
        await it.close();
      }
    }
  }

  /**
   * One step of the gc sweep over at most `maxKeys` entries; it is also the
   * compaction. It deletes every shadowed version: versions that lose to a
   * newer one of their row, rows shadowed by a partition deletion (which stays
   * and keeps shadowing), and all but the newest deletion of a partition. Those
   * deletions go through the write path in any order with writes, since a
   * shadowed version stays shadowed. It purges what gc grace allows — a row
   * whose winner is a tombstone stored (or a value expired) more than grace
   * ago, a partition deletion stored more than grace ago — only after
   * re-reading the row (the partition) alone, with no batch in flight, and
   * deletes it together with every version it shadows, so no older version can
   * reappear.
   */
  async sweep(cursor?: SweepCursor, maxKeys = 1000): Promise<SweepResult> {
    if (this.closed) return { purged: 0 };
    const horizon = this.env.clock.nowMicros() - this.gcGraceMicros;
    const shadowed: Uint8Array[] = [];
    const rowPurges: Uint8Array[] = [];
    const partitionPurges: Uint8Array[] = [];
    let part = cursor?.partition;
    let deletion = cursor?.deletion;
    const group = new RowVersions(false);
    if (cursor?.row !== undefined) group.start(cursor.row.key, cursor.row.raw);
    const finishRow = (): void => {
      if (group.count === 0) return;
      group.count = 0;
      const best = group.best();
      if (deletion !== undefined && best.cell.timestampMicros <= deletion.timestampMicros) shadowed.push(group.bestKey);
      else if (purgeable(best, horizon)) rowPurges.push(copyBytes(group.first, 0, group.prefixLength));
    };
    const finishPartition = (): void => {
      if (part !== undefined && deletion !== undefined && deletion.deletionTimeMicros <= horizon) partitionPurges.push(part);
    };
    let last: Uint8Array | undefined;
    let seen = 0;
    const it = this.db.iterator({ ...(cursor ? { gt: cursor.after } : { gte: DATA_START }), lt: DATA_END, ...ENC });
    try {
      while (seen < maxKeys) {
        const entries = (await it.nextv(Math.min(256, maxKeys - seen))) as Entry[];
        if (entries.length === 0) break;
        for (const [key, raw] of entries) {
          seen++;
          last = key;
          if (group.belongs(key)) {
            const loser = group.add(key, raw);
            shadowed.push(loser);
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
          if (kind !== KIND_ROW || c < 0 || key.length !== p + 1 + c + ROW_VERSION_BYTES) continue;
          group.start(key, raw);
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
    if (shadowed.length > 0 && !this.closed) {
      const batch = new Batch(this.db, this.opOptions);
      for (const k of shadowed) batch.del(k);
      await this.commit(batch, false);
      purged += shadowed.length;
    }
    if ((rowPurges.length > 0 || partitionPurges.length > 0) && !this.closed) {
      purged += await this.exclusive(() => this.purgeAlone(rowPurges, partitionPurges, horizon));
    }
    return next === undefined ? { purged } : { purged, next };
  }

  /** Reads every entry under `prefix` (run inside an exclusive section). */
  private async readAll(prefix: Uint8Array, upper: Uint8Array = prefixEnd(prefix)!): Promise<Entry[]> {
    const out: Entry[] = [];
    const it = this.db.iterator({ gte: prefix, lt: upper, ...ENC });
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
  private async purgeAlone(rows: readonly Uint8Array[], partitions: readonly Uint8Array[], horizon: number): Promise<number> {
    if (this.closed) return 0;
    const dels: Uint8Array[] = [];
    for (const rowPrefix of rows) {
      const versions = await this.readAll(rowPrefix);
      if (versions.length === 0) continue;
      const p = partitionPrefixLength(rowPrefix);
      const deletions = await this.readAll(kindPrefix(rowPrefix.subarray(0, p), KIND_PARTITION_DELETION));
      const deletionTs = deletions.length > 0 ? readInvertedMicros(deletions[0]![0], p + 1) : undefined;
      const group = new RowVersions(true);
      group.start(versions[0]![0], versions[0]![1]);
      for (let i = 1; i < versions.length; i++) group.add(versions[i]![0], versions[i]![1]);
      const best = group.best();
      if (purgeable(best, horizon) || (deletionTs !== undefined && best.cell.timestampMicros <= deletionTs)) for (const [k] of versions) dels.push(k);
      else for (const k of group.losers) dels.push(k);
    }
    for (const pk of partitions) {
      const deletions = await this.readAll(kindPrefix(pk, KIND_PARTITION_DELETION));
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
      for (const [k] of await this.readAll(kindPrefix(pk, KIND_ROW))) if (versionTs(k) <= ts) dels.push(k);
    }
    if (dels.length === 0 || this.closed) return 0;
    const batch = new Batch(this.db, this.opOptions);
    for (const k of dels) batch.del(k);
    try {
      await batch.write(false);
    } finally {
      // A purged row reads as absent, not as the tombstone the cache may hold: forget the candidates (kept or not).
      const seq = this.cache.nextBatch();
      if (this.cache.tracking) {
        for (const rowPrefix of rows) this.cache.invalidateRow(seq, cacheId(rowPrefix, rowPrefix.length));
        for (const pk of partitions) this.cache.invalidatePartition(seq, cacheId(pk, pk.length));
      }
    }
    return dels.length;
  }

  /** Runs a whole sweep to the end; returns the number of entries removed. */
  async purge(): Promise<number> {
    let total = 0;
    let r = await this.sweep();
    total += r.purged;
    while (r.next !== undefined) {
      r = await this.sweep(r.next);
      total += r.purged;
    }
    return total;
  }

  /**
   * Forces everything written so far to disk: a tiny write with `sync: true`
   * fsyncs LevelDB's log, which holds every earlier unsynced write too.
   */
  sync(): Promise<void> {
    if (this.closed) return RESOLVED;
    const stamp = new Uint8Array(8);
    new DataView(stamp.buffer).setFloat64(0, this.env.clock.nowMicros());
    return this.db.put(SYNC_MARKER_KEY, stamp, SYNC as typeof ENC);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Waits for in-flight writes and gc, then closes the database (LevelDB flushes its log on close). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.compactQueue = [];
    this.cache.clear();
    await this.exclusiveChain;
    await this.drained();
    await this.db.close();
  }
}

const RESOLVED: Promise<void> = Promise.resolve();

/** A winner gc may purge: a tombstone stored, or a value expired, more than grace ago (`horizon`). */
function purgeable(s: StoredCell, horizon: number): boolean {
  const c = s.cell;
  if (isTombstone(c)) return (s.deletionTimeMicros ?? 0) <= horizon;
  return c.expiresAtMicros !== undefined && c.expiresAtMicros <= horizon;
}
