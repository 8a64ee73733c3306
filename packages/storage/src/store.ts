import type { Env, Token } from '@chorus/core';
import { type Cell, type Mutation, type RowAddress, type ValueCell, isDead } from '@chorus/model';
import { GroupCommit } from './commit.js';
import { CompactionQueue } from './compaction.js';
import { ENC, RESOLVED, SYNC, type StorageDb, opOptionsOf } from './db.js';
import { type ApplyOutcome, encodeMutations } from './encode.js';
import { Heads } from './heads.js';
import { type DiskReads, InlineReads } from './inline-reads.js';
import { StorageClosed } from './errors.js';
import { type SweepCursor, type SweepResult, purge, sweep } from './gc.js';
import { SYNC_MARKER_KEY } from './keys.js';
import { KeyspacePrefixes } from './keyspaces.js';
import type { StoreParts } from './parts.js';
import { type PointRead, type PointReadCallback, readRow, readRows } from './point-read.js';
import { DEFAULT_ROW_CACHE_BYTES, RowCache, type RowCacheStats } from './row-cache.js';
import { type ScanEntry, type ScanOptions, type TokenRange, scanRange } from './scan.js';
import { type SlicePage, type StoreSliceOptions, slice } from './slice.js';

/** Cassandra's default gc_grace_seconds: 10 days. */
export const DEFAULT_GC_GRACE_SECONDS = 864_000;

export interface StoreOptions {
  env: Env;
  /** How long tombstones and expired cells are kept before a sweep may purge them (unless `purgeHorizon` says otherwise). */
  gcGraceSeconds?: number;
  /**
   * When dead data of a keyspace and token may be purged: a time in
   * microseconds of this node's clock, and a tombstone stored here (its
   * deletion time), an expired value (its expiry) or a partition deletion
   * stored here at or before it may go. -Infinity purges nothing. Asked by
   * the sweep at most once per partition that holds dead data in a sweep
   * step, so it must be cheap and must not block. Without it every keyspace
   * purges after gc grace: now − `gcGraceSeconds`.
   */
  purgeHorizon?: (keyspace: string, t: Token) => number;
  /**
   * Bound of the in-memory cache of reconciled rows that point reads use
   * (estimated heap bytes; default 64 MiB). 0 turns it off.
   */
  rowCacheBytes?: number;
  /** Cache a row on its first miss, not its second (tests of the cache's fill rules). */
  rowCacheAdmitsFirstMiss?: boolean;
  /**
   * When given, point reads of key-value rows read LevelDB on the calling
   * thread (`getSync`) rather than through the I/O pool, except for a while
   * after a batch that waited on the disk, which this counts (see
   * inline-reads.ts). Ignored by a database that cannot read synchronously.
   */
  inlinePointReads?: DiskReads;
}

/**
 * The local store of one node. Pure data logic over abstract-level; it owns no
 * timers (the storage actor schedules sweeps and syncs) and reads the time
 * from its Env only to judge expiry and gc grace.
 *
 * Writes never read: each is a new entry keyed by its version (see keys.ts),
 * so a batch is encoded (encode.ts) and handed to LevelDB (commit.ts) at once.
 * Reads reconcile the versions they meet with the merge rules (point-read.ts,
 * slice.ts, scan.ts); the sweep (gc.ts) and reads that meet a row with many
 * versions (compaction.ts) delete the shadowed ones. A write's promise
 * resolves only after its batch is in the database, so every acknowledged
 * write is visible to every later read.
 */
export class Store {
  readonly db: StorageDb;
  readonly env: Env;
  readonly gcGraceMicros: number;
  private readonly keyspaces = new KeyspacePrefixes();
  private readonly cache: RowCache;
  private readonly commits: GroupCommit;
  private readonly compactions: CompactionQueue;
  private readonly heads = new Heads();
  private readonly headsOpened: Promise<void>;
  private readonly parts: StoreParts;

  constructor(db: StorageDb, options: StoreOptions) {
    const grace = options.gcGraceSeconds ?? DEFAULT_GC_GRACE_SECONDS;
    if (!Number.isInteger(grace) || grace < 0) throw new RangeError(`gcGraceSeconds must be a non-negative integer, got ${grace}`);
    const cacheBytes = options.rowCacheBytes ?? DEFAULT_ROW_CACHE_BYTES;
    if (!Number.isSafeInteger(cacheBytes) || cacheBytes < 0) throw new RangeError(`rowCacheBytes must be a non-negative integer, got ${cacheBytes}`);
    this.cache = new RowCache(cacheBytes, (key) => this.compactions.enqueueShadowed(key), options.rowCacheAdmitsFirstMiss === true);
    this.db = db;
    this.env = options.env;
    this.gcGraceMicros = grace * 1_000_000;
    // Shadowed versions queued while batches were in flight go once the last one lands.
    this.commits = new GroupCommit(db, opOptionsOf(db), this.cache, this.heads, () => this.compactions.flush());
    this.compactions = new CompactionQueue(this.commits, this.env);
    this.parts = {
      db,
      env: this.env,
      gcGraceMicros: this.gcGraceMicros,
      ...(options.purgeHorizon !== undefined ? { purgeHorizon: options.purgeHorizon } : {}),
      keyspaces: this.keyspaces,
      commits: this.commits,
      compactions: this.compactions,
      cache: this.cache,
      heads: this.heads,
      ...(options.inlinePointReads !== undefined && InlineReads.supports(db) ? { inlineReads: new InlineReads(db, options.inlinePointReads, this.env.clock, this.env.logger) } : {}),
    };
    // Not awaited here: until the heads are open, writes delete them and reads use the versions.
    this.headsOpened = this.heads.open(db).catch((error: unknown) => {
      if (db.status === 'open') this.env.logger.error({ err: error }, 'opening the heads failed: point reads use the versions');
    });
  }

  /** Opens the database (a no-op when it is already open). */
  async open(): Promise<this> {
    await this.db.open();
    await this.headsOpened;
    return this;
  }

  /**
   * Applies a group of mutations as one LevelDB batch (group commit). Each
   * mutation is validated on its own, so a bad one fails alone. Nothing is
   * read: each write adds a version or replaces its row's head (heads.ts),
   * and reads reconcile. The promise resolves
   * after the batch is written (and fsynced when `sync`).
   */
  apply(mutations: readonly Mutation[], options: { sync?: boolean } = {}): Promise<ApplyOutcome[]> {
    return this.submit(mutations, options).landed;
  }

  /**
   * `apply` in two stages, for a caller that pipelines: `merged` settles once
   * the batch is encoded and handed to LevelDB (at once: writes do not read),
   * `landed` once it is in the database. Batches may land in any order:
   * versions commute, and a head is put only while no other batch in flight
   * puts one in its bucket, so the order does not change what reads see.
   */
  submit(mutations: readonly Mutation[], options: { sync?: boolean } = {}): { merged: Promise<void>; landed: Promise<ApplyOutcome[]> } {
    const commits = this.commits;
    if (commits.closed) {
      const err = Promise.reject(new StorageClosed());
      err.catch(() => undefined);
      return { merged: err as Promise<never>, landed: err as Promise<never> };
    }
    const batch = commits.batch();
    const outcomes = encodeMutations(batch, mutations, this.keyspaces, this.heads, this.env.clock.nowMicros(), this.cache.enabled);
    if (this.compactions.length > 0) this.compactions.drainInto(batch);
    const landed = commits.commit(batch, options.sync === true).then(() => outcomes);
    landed.catch(() => undefined);
    return { merged: RESOLVED, landed };
  }

  /**
   * Resolves once every batch handed to LevelDB so far has landed, including
   * the deletes of shadowed versions that reads queued (for tests and tools;
   * under a steady write load it waits for a quiet moment).
   */
  settled(): Promise<void> {
    if (this.compactions.length > 0 && !this.commits.closed) this.compactions.flush();
    return this.commits.drained();
  }

  /** One mutation; throws its validation error. */
  async write(m: Mutation, options: { sync?: boolean } = {}): Promise<void> {
    const [outcome] = await this.apply([m], options);
    if (!outcome!.ok) throw outcome!.error;
  }

  /**
   * The row's merged cell as this replica holds it, tombstones and expired
   * values included (a partition deletion that shadows the row reads as a
   * tombstone at the deletion's timestamp); undefined when it holds nothing.
   * For `GET /v1/local` and read repair. The cell may be the row cache's own:
   * treat it (and its value bytes) as read-only.
   */
  getCell(a: RowAddress): Promise<Cell | undefined> {
    return readRow(this.parts, a);
  }

  /** The row's live value, or undefined when it is absent, deleted or expired. */
  async get(a: RowAddress): Promise<ValueCell | undefined> {
    const cell = await readRow(this.parts, a);
    if (cell === undefined || isDead(cell, this.env.clock.nowMicros())) return undefined;
    return cell as ValueCell;
  }

  /** What the row cache has done so far (a new Store starts cold, with zeros). */
  cacheStats(): RowCacheStats {
    return this.cache.stats();
  }

  /** Digest of `getCell(a)`: what a digest read compares (a cached row keeps its digest; read-only). */
  async digest(a: RowAddress): Promise<Uint8Array> {
    let out: Uint8Array | undefined;
    let failure: Error | undefined;
    await readRows(this.parts, [{ address: a, digest: true }], (_i, error, result) => {
      failure = error;
      out = result as Uint8Array;
    });
    if (failure !== undefined) throw failure;
    return out!;
  }

  /**
   * Point reads that arrived together, each answered through `done` as it
   * completes: its cell as `getCell` gives it, or its digest when
   * `digest` is set (a cell or digest of the row cache's own: read-only).
   * Cache hits answer before this returns; misses share a few LevelDB
   * iterators (a seek each) instead of one iterator per read. An invalid
   * address fails alone. Resolves once every read is answered.
   */
  pointReads(reads: readonly PointRead[], done: PointReadCallback): Promise<void> {
    return readRows(this.parts, reads, done);
  }

  /** One page of a partition's rows in clustering order: one ordered iterator scan, reconciling each row's versions. */
  slice(keyspace: string, t: Token, partition: Uint8Array, options: StoreSliceOptions = {}): Promise<SlicePage> {
    return slice(this.parts, keyspace, t, partition, options);
  }

  /**
   * Streams the rows of a token range in token order, then partition key,
   * then clustering key, reconciling each row's versions on the way (see scan.ts).
   */
  scanRange(keyspace: string, range: TokenRange, options: ScanOptions = {}): AsyncGenerator<ScanEntry, void, undefined> {
    return scanRange(this.parts, keyspace, range, options);
  }

  /** One step of the gc sweep (and compaction) over at most `maxKeys` entries (see gc.ts). */
  sweep(cursor?: SweepCursor, maxKeys = 1000): Promise<SweepResult> {
    return sweep(this.parts, cursor, maxKeys);
  }

  /** Runs a whole sweep to the end; returns the number of entries removed. */
  purge(): Promise<number> {
    return purge(this.parts);
  }

  /**
   * Forces everything written so far to disk: a tiny write with `sync: true`
   * fsyncs LevelDB's log, which holds every earlier unsynced write too.
   */
  sync(): Promise<void> {
    if (this.commits.closed) return RESOLVED;
    const stamp = new Uint8Array(8);
    new DataView(stamp.buffer).setFloat64(0, this.env.clock.nowMicros());
    return this.db.put(SYNC_MARKER_KEY, stamp, SYNC as typeof ENC);
  }

  get isClosed(): boolean {
    return this.commits.closed;
  }

  /** Waits for in-flight writes and gc, then closes the database (LevelDB flushes its log on close). */
  async close(): Promise<void> {
    if (this.commits.closed) return;
    this.commits.close();
    this.compactions.clear();
    this.cache.clear();
    await this.commits.finished();
    await this.db.close();
  }
}
