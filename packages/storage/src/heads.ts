import { type Cell, compareCells } from '@chorus/model';
import type { Batch } from './batch.js';
import { decodeStored, encodeStored } from './cell.js';
import { ENC, type Entry, type StorageDb } from './db.js';
import { rowVersionKey } from './encode.js';
import {
  DATA_END,
  DATA_START,
  DELETION_VERSION_BYTES,
  HEADS_MARKER_KEY,
  KEY_VALUE_ROW_SUFFIX,
  KIND_PARTITION_DELETION,
  KIND_ROW,
  VERSION_TS_BYTES,
  concat,
  copyBytes,
  escapedFieldLength,
  hasPrefix,
  headKey,
  isTie,
  partitionPrefixLength,
  readInvertedMicros,
} from './keys.js';
import type { RowCache } from './row-cache.js';
import { RowVersions, effective } from './row-versions.js';

/**
 * A change a batch makes to a key-value row's head: a new version of the row
 * (`key` and encoded `value`, stored only if it wins), or a partition
 * deletion, which merges a tombstone at its timestamp into the head.
 */
export interface HeadUpdate {
  /** The mutation's place in its batch. */
  readonly index: number;
  /** The row's id (`cacheId` of its prefix), as the row cache names it. */
  readonly id: string;
  /** The row's key prefix `P | 01 00 01`. */
  readonly rowPrefix: Uint8Array;
  readonly cell: Cell;
  readonly key?: Uint8Array;
  readonly value?: Uint8Array;
}

/** One batch's heads: what it sets each head it touches to, once it has computed them, and whether it has landed. */
class HeadBatch {
  readonly heads = new Map<string, Cell | undefined>();
  landed = false;
  error: Error | undefined;
  readonly computed: Promise<void>;
  readonly whenLanded: Promise<void>;
  resolveComputed!: (error?: Error) => void;
  resolveLanded!: () => void;

  constructor() {
    this.computed = new Promise<void>((resolve, reject) => (this.resolveComputed = (error) => (error === undefined ? resolve() : reject(error))));
    this.computed.catch(() => undefined);
    this.whenLanded = new Promise<void>((resolve) => (this.resolveLanded = resolve));
  }
}

/** A batch's part in the heads, from `HeadLedger.plan`: `prepare` before its batch is written, `settle` once it landed or failed. */
export interface PlannedHeads {
  prepare(): Promise<void>;
  settle(error: Error | undefined): void;
}

/**
 * Each key-value row (the empty clustering key: every row a key-value client
 * writes) has a head: one LevelDB entry under `h | …` holding its reconciled
 * cell exactly as a point read returns it, partition deletions included. A
 * point read is then one `getMany` of exact keys, which LevelDB answers
 * through its bloom filters, instead of an iterator seek that merges every
 * level: the row's versions are keyed by timestamps no reader knows.
 *
 * Keeping a head exact means reading it before writing: a batch takes each
 * head it touches from the batch in flight that touches it last (before it
 * has landed), else the row cache, else one `getMany`; merges its writes in
 * by the merge rules; stores a row version only if it wins (one that loses
 * would never be read) and deletes the version it beats; and puts the new
 * head in the same atomic batch. A batch that touches a head another batch
 * in flight touches is written only once that one has landed, so heads land
 * in the order they were computed. Batches touching other rows still land in
 * any order. The reading and ordering happen inside group commit's
 * accounting (commit.ts), so an exclusive gc purge never runs between a head
 * read and its write; the purge itself rewrites the heads of the rows it
 * purges (gc.ts).
 */
export class HeadLedger {
  /** Head id → the last batch not yet landed that touches it. */
  private readonly pending = new Map<string, HeadBatch>();

  constructor(
    private readonly db: StorageDb,
    private readonly cache: RowCache,
  ) {}

  /** Registers a batch's head updates, in submission order; call before any later batch is planned. */
  plan(updates: readonly HeadUpdate[], batch: Batch, dropped: (index: number) => void, now: number): PlannedHeads {
    const mine = new HeadBatch();
    const before = new Map<string, HeadBatch | undefined>();
    for (const u of updates) {
      if (before.has(u.id)) continue;
      before.set(u.id, this.pending.get(u.id));
      this.pending.set(u.id, mine);
    }
    return {
      prepare: async () => {
        try {
          const waitFor = await this.merge(updates, before, mine, batch, dropped, now);
          mine.resolveComputed();
          for (const dep of waitFor) {
            await dep.whenLanded;
            if (dep.error !== undefined) throw dep.error;
          }
        } catch (error) {
          mine.resolveComputed(error as Error);
          throw error;
        }
      },
      settle: (error) => {
        mine.landed = true;
        mine.error = error;
        for (const id of before.keys()) if (this.pending.get(id) === mine) this.pending.delete(id);
        mine.resolveLanded();
      },
    };
  }

  /** Computes the batch's heads into `mine` and the batch; returns the batches in flight it must land after. */
  private async merge(
    updates: readonly HeadUpdate[],
    before: Map<string, HeadBatch | undefined>,
    mine: HeadBatch,
    batch: Batch,
    dropped: (index: number) => void,
    now: number,
  ): Promise<Set<HeadBatch>> {
    const waitFor = new Set<HeadBatch>();
    for (const dep of before.values()) if (dep !== undefined && !dep.landed) waitFor.add(dep);
    for (const dep of waitFor) await dep.computed;
    // A batch that landed meanwhile wrote what it computed, so LevelDB and the cache are as good a source.
    const heads = mine.heads;
    const unknown: Array<{ id: string; rowPrefix: Uint8Array }> = [];
    for (const u of updates) {
      if (heads.has(u.id)) continue;
      const dep = before.get(u.id);
      if (dep !== undefined && waitFor.has(dep)) {
        heads.set(u.id, dep.heads.get(u.id));
        continue;
      }
      const cached = this.cache.peek(u.id);
      if (cached !== undefined) heads.set(u.id, cached.cell);
      else {
        heads.set(u.id, undefined);
        unknown.push(u);
      }
    }
    if (unknown.length > 0) {
      const values = (await this.db.getMany(
        unknown.map((u) => headKey(u.rowPrefix)),
        ENC,
      )) as Array<Uint8Array | undefined>;
      for (let i = 0; i < unknown.length; i++) {
        const raw = values[i];
        if (raw !== undefined) heads.set(unknown[i]!.id, decodeStored(raw).cell);
      }
    }
    const changed = new Map<string, Uint8Array>();
    for (const u of updates) {
      const head = heads.get(u.id);
      if (head !== undefined && compareCells(u.cell, head) <= 0) {
        // A version that loses to the head would never be read: it is not stored (a deletion's own entry is).
        if (u.key !== undefined) dropped(u.index);
        continue;
      }
      if (u.key !== undefined) batch.put(u.key, u.value!);
      // The version the head held is shadowed for good; when it was a partition deletion's tombstone, there is no such key.
      if (head !== undefined) batch.del(rowVersionKey(u.rowPrefix, head));
      heads.set(u.id, u.cell);
      changed.set(u.id, u.rowPrefix);
    }
    for (const [id, rowPrefix] of changed) batch.put(headKey(rowPrefix), encodeStored(heads.get(id)!, now));
    return waitFor;
  }
}

/**
 * Gives every key-value row of a store written before heads existed its
 * head, once, before the store serves: a scan of all data (a few hundred
 * thousand rows a second). A new store only gets the marker.
 */
export async function buildHeads(db: StorageDb, now: number): Promise<number> {
  if ((await db.get(HEADS_MARKER_KEY, ENC)) !== undefined) return 0;
  let built = 0;
  let batch = db.batch();
  let pending = 0;
  const put = async (rowPrefix: Uint8Array, cell: Cell): Promise<void> => {
    batch.put(headKey(rowPrefix), encodeStored(cell, now), ENC);
    built++;
    if (++pending >= 1000) {
      await batch.write();
      batch = db.batch();
      pending = 0;
    }
  };
  let part: Uint8Array | undefined;
  let deletionTs: number | undefined;
  const row = new RowVersions(false);
  const finishPartition = async (): Promise<void> => {
    if (part === undefined) return;
    const cell = effective(row.count > 0 ? row.best().cell : undefined, deletionTs);
    if (cell !== undefined) await put(concat(part, KEY_VALUE_ROW_SUFFIX), cell);
    row.count = 0;
  };
  const it = db.iterator({ gte: DATA_START, lt: DATA_END, ...ENC });
  try {
    for (;;) {
      const entries = (await it.nextv(1000)) as Entry[];
      if (entries.length === 0) break;
      for (const [key, raw] of entries) {
        const p = partitionPrefixLength(key);
        if (p < 0 || p >= key.length) continue;
        if (part === undefined || p !== part.length || !hasPrefix(key, part)) {
          await finishPartition();
          part = copyBytes(key, 0, p);
          deletionTs = undefined;
        }
        if (key[p] === KIND_PARTITION_DELETION && key.length === p + 1 + DELETION_VERSION_BYTES) {
          const ts = readInvertedMicros(key, p + 1);
          if (deletionTs === undefined || ts > deletionTs) deletionTs = ts;
          continue;
        }
        // The key-value row: kind 01 and the empty clustering key (its escaped field is just `00 01`).
        if (key[p] !== KIND_ROW || escapedFieldLength(key, p + 1) !== 2 || !isTie(key, p + 3 + VERSION_TS_BYTES)) continue;
        if (row.count === 0) row.start(key, raw, p + 3);
        else row.add(key, raw);
      }
    }
    await finishPartition();
  } finally {
    await it.close();
  }
  batch.put(HEADS_MARKER_KEY, Uint8Array.of(1), ENC);
  await batch.write({ sync: true });
  return built;
}
