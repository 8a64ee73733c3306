import type { AbstractLevel } from 'abstract-level';
import { MAX_TOKEN, MIN_TOKEN, type Env, type Token } from '@chorus/core';
import { type Cell, type StoredCell, type ValueCell, cellDigest, compareCells, decodeStored, encodeStored, isDead, isTombstone } from './cell.js';
import { InvalidMutation, InvalidSlice, StorageClosed } from './errors.js';
import {
  KIND_PARTITION_DELETION,
  SYNC_MARKER_KEY,
  bytesEqual,
  compareBytes,
  concat,
  decodeKey,
  deletionKeyFromPrefix,
  keyspacePrefix,
  partitionPrefix,
  prefixEnd,
  rowKeyFromPrefix,
  tokenLowerBound,
  tokenUpperBound,
} from './keys.js';
import {
  LIMITS,
  validateClusteringKey,
  validateKeyspace,
  validateMicros,
  validatePartitionKey,
  validateToken,
  validateValue,
} from './limits.js';

/**
 * Any abstract-level database: ClassicLevel (`level`) in production,
 * MemoryLevel in tests and the simulator. The store passes binary encodings
 * on every call, so the database's own default encodings do not matter.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type StorageDb = AbstractLevel<any, any, any>;

const ENC = { keyEncoding: 'view', valueEncoding: 'view' } as const;
const EMPTY = new Uint8Array(0);
/** Cassandra's default gc_grace_seconds: 10 days. */
export const DEFAULT_GC_GRACE_SECONDS = 864_000;

export interface StoreOptions {
  env: Env;
  /** How long tombstones and expired cells are kept before a sweep may purge them. */
  gcGraceSeconds?: number;
}

/** Where a row lives. `clustering` defaults to the empty key. */
export interface RowAddress {
  keyspace: string;
  token: Token;
  partition: Uint8Array;
  clustering?: Uint8Array;
}

/** Write one cell (a value or a row tombstone) into a row. */
export interface RowWrite extends RowAddress {
  cell: Cell;
}

/** Delete a whole partition: shadows every row whose timestamp is ≤ `timestampMicros`. */
export interface PartitionDelete {
  keyspace: string;
  token: Token;
  partition: Uint8Array;
  partitionDeletion: { timestampMicros: number };
}

export type Mutation = RowWrite | PartitionDelete;

export function isPartitionDelete(m: Mutation): m is PartitionDelete {
  return (m as PartitionDelete).partitionDeletion !== undefined;
}

/** `applied: false` means the store already held something at least as new. */
export type ApplyOutcome = { ok: true; applied: boolean } | { ok: false; error: Error };

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
  readonly partition?: Uint8Array;
  readonly deletion?: StoredCell;
  readonly pendingDeletion?: { key: Uint8Array; raw: Uint8Array };
}

export interface SweepResult {
  /** Entries removed in this step. */
  purged: number;
  /** Undefined when the sweep reached the end of the data. */
  next?: SweepCursor;
}

type Slot = { key: Uint8Array; id: string; stored: StoredCell | undefined; dirty: boolean };

function keyId(k: Uint8Array): string {
  return Buffer.from(k.buffer, k.byteOffset, k.byteLength).toString('latin1');
}

function validateCell(cell: unknown): asserts cell is Cell {
  if (typeof cell !== 'object' || cell === null) throw new InvalidMutation('cell must be an object');
  const c = cell as Record<string, unknown>;
  validateMicros('timestampMicros', c['timestampMicros']);
  if (c['tombstone'] === true) {
    if (c['value'] !== undefined) throw new InvalidMutation('a tombstone has no value');
    if (c['expiresAtMicros'] !== undefined) throw new InvalidMutation('a tombstone has no expiry');
    return;
  }
  if (c['tombstone'] !== undefined) throw new InvalidMutation('tombstone must be true or absent');
  validateValue(c['value']);
  if (c['expiresAtMicros'] !== undefined) validateMicros('expiresAtMicros', c['expiresAtMicros']);
}

/** Throws the typed InvalidRequest/ValueTooLarge error for a malformed mutation. */
export function validateMutation(m: Mutation): void {
  if (typeof m !== 'object' || m === null) throw new InvalidMutation('mutation must be an object');
  validateKeyspace(m.keyspace);
  validateToken(m.token);
  validatePartitionKey(m.partition);
  if (isPartitionDelete(m)) {
    if ((m as Partial<RowWrite>).cell !== undefined) throw new InvalidMutation('a mutation is either a cell write or a partition deletion');
    validateMicros('timestampMicros', m.partitionDeletion.timestampMicros);
    return;
  }
  if (m.clustering !== undefined) validateClusteringKey(m.clustering);
  validateCell(m.cell);
}

export function validateAddress(a: RowAddress): void {
  validateKeyspace(a.keyspace);
  validateToken(a.token);
  validatePartitionKey(a.partition);
  if (a.clustering !== undefined) validateClusteringKey(a.clustering);
}

/** The row's cell as reads see it: a partition deletion at least as new shadows it (shown as a tombstone). */
function effective(row: StoredCell | undefined, deletion: StoredCell | undefined): Cell | undefined {
  if (deletion !== undefined && (row === undefined || row.cell.timestampMicros <= deletion.cell.timestampMicros)) {
    return { tombstone: true, timestampMicros: deletion.cell.timestampMicros };
  }
  return row?.cell;
}

/**
 * The local store of one node. Pure data logic over abstract-level; it owns no
 * timers (the storage actor schedules sweeps and syncs) and reads the time
 * from its Env only to judge expiry and gc grace.
 *
 * Writes and sweep deletions are serialized inside the store, so a sweep can
 * never delete a cell that a concurrent write just replaced. Reads go straight
 * to LevelDB: a write's promise resolves only after its batch is in the
 * database, so every acknowledged write is visible to every later read.
 */
export class Store {
  readonly db: StorageDb;
  readonly env: Env;
  readonly gcGraceMicros: number;
  /** Serializes the merge stage of batches and the sweep's deletions. */
  private mergeChain: Promise<unknown> = Promise.resolve();
  /** The last batch handed to LevelDB; batches are written strictly one after another. */
  private lastWrite: Promise<unknown> = Promise.resolve();
  private lastWriteDone = true;
  /**
   * Rows merged into batches that are not yet in the database, with the
   * sequence number of the batch that wrote them last. A merge consults it
   * before LevelDB, so batch N+1 can be merged while batch N is being written.
   */
  private readonly inFlight = new Map<string, { stored: StoredCell | undefined; seq: number }>();
  private seq = 0;
  private closed = false;

  constructor(db: StorageDb, options: StoreOptions) {
    const grace = options.gcGraceSeconds ?? DEFAULT_GC_GRACE_SECONDS;
    if (!Number.isInteger(grace) || grace < 0) throw new RangeError(`gcGraceSeconds must be a non-negative integer, got ${grace}`);
    this.db = db;
    this.env = options.env;
    this.gcGraceMicros = grace * 1_000_000;
  }

  /** Opens the database (a no-op when it is already open). */
  async open(): Promise<this> {
    await this.db.open();
    return this;
  }

  /** Runs `work` alone: no batch is merged or being written meanwhile. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.mergeChain.then(async () => {
      await this.lastWrite.catch(() => undefined);
      return work();
    });
    this.mergeChain = run.catch(() => undefined);
    return run;
  }

  /**
   * Applies a group of mutations as one LevelDB batch (group commit). Each
   * mutation is validated on its own, so a bad one fails alone. Mutations to
   * the same row are merged in order within the batch, and a mutation older
   * than what is stored is a no-op. The promise resolves after the batch is
   * written (and fsynced when `sync`).
   */
  apply(mutations: readonly Mutation[], options: { sync?: boolean } = {}): Promise<ApplyOutcome[]> {
    return this.submit(mutations, options).landed;
  }

  /**
   * `apply` in two stages, for a caller that pipelines: `merged` settles once
   * the batch is merged and queued for writing (the next batch may then be
   * submitted and merged while this one is written), `landed` once it is in
   * the database. Batches land in submission order.
   */
  submit(mutations: readonly Mutation[], options: { sync?: boolean } = {}): { merged: Promise<void>; landed: Promise<ApplyOutcome[]> } {
    if (this.closed) {
      const err = Promise.reject(new StorageClosed());
      err.catch(() => undefined);
      return { merged: err as Promise<never>, landed: err as Promise<never> };
    }
    const sync = options.sync === true;
    const merge = this.mergeChain.then(() => this.mergeBatch(mutations, sync));
    this.mergeChain = merge.catch(() => undefined);
    const landed = merge.then(async ({ outcomes, write }) => {
      await write;
      return outcomes;
    });
    landed.catch(() => undefined);
    return { merged: merge.then(() => undefined), landed };
  }

  /** Hands a merged batch to LevelDB, after the batch before it if that is still being written. */
  private startWrite(ops: Array<{ type: 'put'; key: Uint8Array; value: Uint8Array }>, sync: boolean, seq: number, keys: string[]): Promise<void> {
    // A batch merged while its predecessor was in flight was merged against that batch's rows: it is
    // written after it, and fails with it. Otherwise the database is already up to date.
    const after = this.lastWriteDone ? Promise.resolve() : this.lastWrite;
    const write = after.then(() => (ops.length > 0 || sync ? this.db.batch(ops, { ...ENC, sync } as typeof ENC) : undefined));
    this.lastWrite = write;
    this.lastWriteDone = false;
    const settle = (): void => {
      for (const id of keys) if (this.inFlight.get(id)?.seq === seq) this.inFlight.delete(id);
      if (this.lastWrite === write) this.lastWriteDone = true;
    };
    return write.then(settle, (error: unknown) => {
      settle();
      throw error;
    });
  }

  /** One mutation; throws its validation error. */
  async write(m: Mutation, options: { sync?: boolean } = {}): Promise<boolean> {
    const [outcome] = await this.apply([m], options);
    if (!outcome!.ok) throw outcome!.error;
    return outcome!.applied;
  }

  private async mergeBatch(mutations: readonly Mutation[], sync: boolean): Promise<{ outcomes: ApplyOutcome[]; write: Promise<void> }> {
    const outcomes: ApplyOutcome[] = new Array(mutations.length);
    const slots = new Map<string, Slot>();
    const order: Slot[] = [];
    // Per mutation: [rowSlot, deletionSlot] (rowSlot undefined for a partition deletion).
    const plan: Array<[Slot | undefined, Slot] | undefined> = new Array(mutations.length);
    const slotFor = (key: Uint8Array): Slot => {
      const id = keyId(key);
      let s = slots.get(id);
      if (s === undefined) {
        s = { key, id, stored: undefined, dirty: false };
        slots.set(id, s);
        order.push(s);
      }
      return s;
    };
    for (let i = 0; i < mutations.length; i++) {
      const m = mutations[i]!;
      try {
        validateMutation(m);
      } catch (error) {
        outcomes[i] = { ok: false, error: error as Error };
        continue;
      }
      const prefix = partitionPrefix(m.keyspace, m.token, m.partition);
      const del = slotFor(deletionKeyFromPrefix(prefix));
      plan[i] = isPartitionDelete(m) ? [undefined, del] : [slotFor(rowKeyFromPrefix(prefix, m.clustering ?? EMPTY)), del];
    }
    const seq = ++this.seq;
    if (order.length === 0) return { outcomes, write: this.startWrite([], sync, seq, []) };

    // Rows of batches still being written come from memory, taken now, before the read starts: a row not
    // in flight at this moment has nothing pending, so the read below sees its final state.
    const toRead: Slot[] = [];
    for (const s of order) {
      const pending = this.inFlight.get(s.id);
      if (pending !== undefined) s.stored = pending.stored;
      else toRead.push(s);
    }
    // One read for the whole batch: the read-before-write costs one round trip, not one per mutation.
    if (toRead.length > 0) {
      const current = (await this.db.getMany(
        toRead.map((s) => s.key),
        ENC,
      )) as Array<Uint8Array | undefined>;
      for (let i = 0; i < toRead.length; i++) {
        const raw = current[i];
        if (raw !== undefined) toRead[i]!.stored = decodeStored(raw);
      }
    }

    const now = this.env.clock.nowMicros();
    for (let i = 0; i < mutations.length; i++) {
      const p = plan[i];
      if (p === undefined) continue;
      const m = mutations[i]!;
      const [row, del] = p;
      if (row === undefined) {
        const ts = (m as PartitionDelete).partitionDeletion.timestampMicros;
        if (del.stored !== undefined && del.stored.cell.timestampMicros >= ts) {
          outcomes[i] = { ok: true, applied: false };
          continue;
        }
        del.stored = { cell: { tombstone: true, timestampMicros: ts }, deletionTimeMicros: now };
        del.dirty = true;
        outcomes[i] = { ok: true, applied: true };
        continue;
      }
      const cell = normalize((m as RowWrite).cell);
      if (del.stored !== undefined && cell.timestampMicros <= del.stored.cell.timestampMicros) {
        outcomes[i] = { ok: true, applied: false };
        continue;
      }
      const existing = row.stored;
      const shadowed = existing !== undefined && del.stored !== undefined && existing.cell.timestampMicros <= del.stored.cell.timestampMicros;
      if (existing !== undefined && !shadowed && compareCells(existing.cell, cell) >= 0) {
        outcomes[i] = { ok: true, applied: false };
        continue;
      }
      row.stored = isTombstone(cell) ? { cell, deletionTimeMicros: now } : { cell };
      row.dirty = true;
      outcomes[i] = { ok: true, applied: true };
    }

    const ops: Array<{ type: 'put'; key: Uint8Array; value: Uint8Array }> = [];
    const keys: string[] = [];
    for (const s of order) {
      if (!s.dirty) continue;
      ops.push({ type: 'put', key: s.key, value: encodeStored(s.stored!.cell, s.stored!.deletionTimeMicros ?? 0) });
      this.inFlight.set(s.id, { stored: s.stored, seq });
      keys.push(s.id);
    }
    return { outcomes, write: this.startWrite(ops, sync, seq, keys) };
  }

  private async readRow(a: RowAddress): Promise<Cell | undefined> {
    validateAddress(a);
    const prefix = partitionPrefix(a.keyspace, a.token, a.partition);
    const [row, del] = (await this.db.getMany([rowKeyFromPrefix(prefix, a.clustering ?? EMPTY), deletionKeyFromPrefix(prefix)], ENC)) as Array<
      Uint8Array | undefined
    >;
    return effective(row === undefined ? undefined : decodeStored(row), del === undefined ? undefined : decodeStored(del));
  }

  /**
   * The row's merged cell as this replica holds it, tombstones and expired
   * values included (a partition deletion that shadows the row reads as a
   * tombstone at the deletion's timestamp); undefined when it holds nothing.
   * For `GET /v1/local` and read repair.
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

  /** Digest of `getCell(a)`: what a digest read compares. */
  async digest(a: RowAddress): Promise<Uint8Array> {
    return cellDigest(await this.readRow(a));
  }

  /** One page of a partition's rows in clustering order: one ordered iterator scan. */
  async slice(keyspace: string, t: Token, partition: Uint8Array, options: SliceOptions = {}): Promise<SlicePage> {
    validateAddress({ keyspace, token: t, partition });
    const limit = options.limit ?? 1000;
    if (!Number.isInteger(limit) || limit < 1 || limit > LIMITS.maxSliceLimit) throw new InvalidSlice(`limit must be an integer in [1, ${LIMITS.maxSliceLimit}]`);
    for (const k of [options.from, options.to, options.after]) if (k !== undefined) validateClusteringKey(k);
    const reverse = options.reverse === true;
    const prefix = partitionPrefix(keyspace, t, partition);
    const range: { gt?: Uint8Array; gte?: Uint8Array; lt?: Uint8Array; lte?: Uint8Array } = {};
    const { from, to, after } = options;
    // `after` narrows the side the scan walks from; from/to still bound the slice.
    if (!reverse && after !== undefined && (from === undefined || compareBytes(after, from) >= 0)) range.gt = concat(prefix, after);
    else range.gte = from === undefined ? prefix : concat(prefix, from);
    if (reverse && after !== undefined && (to === undefined || compareBytes(after, to) <= 0)) range.lt = concat(prefix, after);
    else if (to !== undefined) range.lte = concat(prefix, to);
    else range.lt = prefixEnd(prefix)!;

    const delRaw = (await this.db.get(deletionKeyFromPrefix(prefix), ENC)) as Uint8Array | undefined;
    const deletion = delRaw === undefined ? undefined : decodeStored(delRaw);
    const now = this.env.clock.nowMicros();
    const includeDead = options.includeDead === true;
    const rows: SliceRow[] = [];
    const it = this.db.iterator({ ...range, reverse, ...ENC });
    try {
      outer: for (;;) {
        const entries = (await it.nextv(Math.min(limit - rows.length + 16, 1000))) as Array<[Uint8Array, Uint8Array]>;
        if (entries.length === 0) break;
        for (const [key, raw] of entries) {
          const cell = effective(decodeStored(raw), deletion)!;
          if (!includeDead && isDead(cell, now)) continue;
          rows.push({ clustering: key.slice(prefix.length), cell });
          if (rows.length === limit) break outer;
        }
      }
    } finally {
      await it.close();
    }
    const page: SlicePage = { rows };
    if (rows.length === limit) page.nextPage = rows[rows.length - 1]!.clustering;
    if (deletion !== undefined) page.partitionDeletedAtMicros = deletion.cell.timestampMicros;
    return page;
  }

  /**
   * Streams the rows of a token range in token order, then partition key,
   * then clustering key, reading `chunkSize` entries at a time: the range is
   * never held in memory. Wraparound ranges are read as two ordered scans,
   * (start, MAX] then [MIN, end].
   */
  async *scanRange(keyspace: string, range: TokenRange, options: ScanOptions = {}): AsyncGenerator<ScanEntry, void, undefined> {
    validateKeyspace(keyspace);
    validateToken(range.start);
    validateToken(range.end);
    const chunk = options.chunkSize ?? 256;
    const includeDead = options.includeDead !== false;
    const ks = keyspacePrefix(keyspace);
    const segments: Array<[bigint, bigint]> = []; // inclusive token bounds
    if (range.start < range.end) segments.push([range.start + 1n, range.end]);
    else {
      if (range.start < MAX_TOKEN) segments.push([range.start + 1n, MAX_TOKEN]);
      segments.push([MIN_TOKEN, range.end]);
    }
    for (const [lo, hi] of segments) {
      const it = this.db.iterator({ gte: tokenLowerBound(ks, lo), lt: tokenUpperBound(ks, hi), ...ENC });
      let partition: Uint8Array | undefined;
      let deletion: StoredCell | undefined;
      try {
        for (;;) {
          const entries = (await it.nextv(chunk)) as Array<[Uint8Array, Uint8Array]>;
          if (entries.length === 0) break;
          const now = this.env.clock.nowMicros();
          for (const [key, raw] of entries) {
            const k = decodeKey(key);
            if (k === undefined) continue;
            const stored = decodeStored(raw);
            const p = key.subarray(0, k.prefixLength);
            if (partition === undefined || !bytesEqual(partition, p)) {
              partition = p;
              deletion = undefined;
            }
            if (k.kind === KIND_PARTITION_DELETION) {
              deletion = stored;
              if (includeDead) yield { type: 'partition-deletion', token: k.token, partition: k.partition, timestampMicros: stored.cell.timestampMicros };
              continue;
            }
            const cell = effective(stored, deletion)!;
            if (!includeDead && isDead(cell, now)) continue;
            yield { type: 'row', token: k.token, partition: k.partition, clustering: k.clustering.slice(), cell };
          }
        }
      } finally {
        await it.close();
      }
    }
  }

  /**
   * One step of the gc sweep over at most `maxKeys` entries: purges
   * tombstones and expired values whose deletion (or expiry) is older than gc
   * grace, and rows shadowed by a partition deletion (the deletion stays and
   * keeps shadowing). A purgeable partition deletion is removed only once the
   * sweep has left its partition, so no shadowed row can reappear in between.
   * Deletions are re-checked under the write lock: an entry rewritten since it
   * was scanned is left alone.
   */
  async sweep(cursor?: SweepCursor, maxKeys = 1000): Promise<SweepResult> {
    if (this.closed) return { purged: 0 };
    const now = this.env.clock.nowMicros();
    const horizon = now - this.gcGraceMicros;
    const candidates: Array<{ key: Uint8Array; raw: Uint8Array }> = [];
    let partition = cursor?.partition;
    let deletion = cursor?.deletion;
    let pending = cursor?.pendingDeletion;
    let last: Uint8Array | undefined;
    let seen = 0;
    const it = this.db.iterator({ ...(cursor ? { gt: cursor.after } : { gte: Uint8Array.of(0x64) }), lt: Uint8Array.of(0x65), ...ENC });
    try {
      while (seen < maxKeys) {
        const entries = (await it.nextv(Math.min(256, maxKeys - seen))) as Array<[Uint8Array, Uint8Array]>;
        if (entries.length === 0) break;
        for (const [key, raw] of entries) {
          seen++;
          last = key;
          const k = decodeKey(key);
          if (k === undefined) continue;
          const p = key.subarray(0, k.prefixLength);
          if (partition === undefined || !bytesEqual(partition, p)) {
            if (pending !== undefined) candidates.push(pending);
            pending = undefined;
            partition = p.slice();
            deletion = undefined;
          }
          const stored = decodeStored(raw);
          if (k.kind === KIND_PARTITION_DELETION) {
            deletion = stored;
            if (stored.deletionTimeMicros! <= horizon) pending = { key, raw };
            continue;
          }
          const c = stored.cell;
          if (
            (deletion !== undefined && c.timestampMicros <= deletion.cell.timestampMicros) ||
            (isTombstone(c) && stored.deletionTimeMicros! <= horizon) ||
            (!isTombstone(c) && c.expiresAtMicros !== undefined && c.expiresAtMicros <= horizon)
          ) {
            candidates.push({ key, raw });
          }
        }
      }
    } finally {
      await it.close();
    }
    const done = seen < maxKeys;
    if (done && pending !== undefined) {
      candidates.push(pending);
      pending = undefined;
    }
    const purged = candidates.length === 0 ? 0 : await this.exclusive(() => this.deleteUnchanged(candidates));
    if (done) return { purged };
    const next: { -readonly [K in keyof SweepCursor]: SweepCursor[K] } = { after: last! };
    if (partition !== undefined) next.partition = partition;
    if (deletion !== undefined) next.deletion = deletion;
    if (pending !== undefined) next.pendingDeletion = pending;
    return { purged, next };
  }

  private async deleteUnchanged(candidates: Array<{ key: Uint8Array; raw: Uint8Array }>): Promise<number> {
    if (this.closed) return 0;
    const now = (await this.db.getMany(
      candidates.map((c) => c.key),
      ENC,
    )) as Array<Uint8Array | undefined>;
    const ops: Array<{ type: 'del'; key: Uint8Array }> = [];
    candidates.forEach((c, i) => {
      const cur = now[i];
      if (cur !== undefined && bytesEqual(cur, c.raw)) ops.push({ type: 'del', key: c.key });
    });
    if (ops.length > 0) await this.db.batch(ops, ENC);
    return ops.length;
  }

  /** Runs a whole sweep to the end; returns the number of entries purged. */
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
    if (this.closed) return Promise.resolve();
    const stamp = new Uint8Array(8);
    new DataView(stamp.buffer).setFloat64(0, this.env.clock.nowMicros());
    return this.db.put(SYNC_MARKER_KEY, stamp, { ...ENC, sync: true } as typeof ENC);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Waits for in-flight writes, then closes the database (LevelDB flushes its log on close). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.mergeChain;
    await this.lastWrite.catch(() => undefined);
    await this.db.close();
  }
}

function normalize(cell: Cell): Cell {
  // Copy only the fields the store knows, so stray properties never reach the encoder.
  if (isTombstone(cell)) return { tombstone: true, timestampMicros: cell.timestampMicros };
  return cell.expiresAtMicros === undefined
    ? { value: cell.value, timestampMicros: cell.timestampMicros }
    : { value: cell.value, timestampMicros: cell.timestampMicros, expiresAtMicros: cell.expiresAtMicros };
}
