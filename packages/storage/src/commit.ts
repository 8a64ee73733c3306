import { isPartitionDelete } from '@chorus/model';
import { Batch, type Touched } from './batch.js';
import { type ENC, RESOLVED, type StorageDb } from './db.js';
import type { Heads } from './heads.js';
import { DELETION_VERSION_BYTES, rowEntryAt } from './keys.js';
import { type RowCache, cacheId } from './row-cache.js';

/**
 * Group commit's plumbing: hands batches to LevelDB and keeps count of those
 * in flight, so that an exclusive section (a gc purge) runs with nothing in
 * flight while new batches wait at its gate, and so that closing waits for
 * every batch. The row cache and the heads learn of each batch as it lands,
 * before the batch's writes are acknowledged.
 */
export class GroupCommit {
  /** Batches handed to LevelDB and not yet landed. */
  private inflight = 0;
  /** Batches waiting for an exclusive section to end. */
  private gated = 0;
  private idleWaiters: Array<() => void> = [];
  /** Set while an exclusive section runs: new batches wait for it. */
  private gate: Promise<void> | undefined;
  private exclusiveChain: Promise<unknown> = Promise.resolve();
  private isClosed = false;

  constructor(
    private readonly db: StorageDb,
    private readonly opOptions: typeof ENC | undefined,
    private readonly cache: RowCache,
    private readonly heads: Heads,
    /** Called each time the last batch in flight lands. */
    private readonly onIdle: () => void,
  ) {}

  /** Set once the store closes: nothing new is handed over after that. */
  get closed(): boolean {
    return this.isClosed;
  }

  get inFlight(): number {
    return this.inflight;
  }

  /** A new, empty batch for this database. */
  batch(): Batch {
    return new Batch(this.db, this.opOptions);
  }

  /** Hands a batch to LevelDB (after any exclusive section in progress); resolves when it has landed. */
  commit(batch: Batch, sync: boolean): Promise<void> {
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
    const { touched, heads } = batch;
    if (touched === undefined && heads === undefined) {
      return write.then(
        () => this.landed(),
        (error: unknown) => {
          this.heads.landed(undefined, false);
          this.landed();
          throw error;
        },
      );
    }
    // The cache and the heads learn of the batch here, before the promise resolves, so before any of its writes is acknowledged.
    return write.then(
      () => {
        if (touched !== undefined) cacheLanded(this.cache, touched, true);
        if (heads !== undefined) this.heads.landed(heads, true);
        this.landed();
      },
      (error: unknown) => {
        if (touched !== undefined) cacheLanded(this.cache, touched, false);
        this.heads.landed(heads, false);
        this.landed();
        throw error;
      },
    );
  }

  private landed(): void {
    if (--this.inflight > 0) return;
    const waiters = this.idleWaiters;
    if (waiters.length > 0) {
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
    this.onIdle();
  }

  /** Resolves when no batch handed to LevelDB is still in flight. */
  private idle(): Promise<void> {
    if (this.inflight === 0) return RESOLVED;
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Resolves when no batch is in flight or waiting at a gate. */
  async drained(): Promise<void> {
    while (this.inflight + this.gated > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Runs `work` alone: it starts once every batch handed to LevelDB has landed,
   * and batches submitted meanwhile wait until it is done.
   */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
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

  /** Marks the write path closed (the store is closing). */
  close(): void {
    this.isClosed = true;
  }

  /** Resolves once every exclusive section has ended and no batch is in flight or at a gate. */
  async finished(): Promise<void> {
    await this.exclusiveChain;
    await this.drained();
  }
}

/**
 * Brings the row cache up to date with a batch that landed: merges each new
 * version into its cached row (a partition deletion into every cached row
 * of its partition). A failed batch may have been applied or not, so its
 * rows are dropped instead. Either way reads in flight are told not to fill.
 */
function cacheLanded(cache: RowCache, t: Touched, ok: boolean): void {
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
      const id = cacheId(key, rowEntryAt(key));
      if (ok) cache.rowWritten(seq, id, m.cell, key);
      else cache.invalidateRow(seq, id);
    }
  }
}
