import type { Env } from '@chorus/core';
import type { Batch } from './batch.js';
import type { GroupCommit } from './commit.js';
import { isHeadKey } from './keys.js';

/** A read that meets a row with at least this many versions deletes the shadowed ones. */
export const COMPACT_MIN_VERSIONS = 4;
/** Most shadowed versions one point read collects for deletion. */
export const COMPACT_READ_CAP = 256;
/** Most keys waiting for an opportunistic compaction delete; beyond it the sweep catches up. */
const COMPACT_QUEUE_CAP = 10_000;

/**
 * Keys of shadowed versions that reads (and the row cache) found, deleted
 * with the next batch, or alone once nothing is in flight. Deleting a shadowed
 * version never changes what reads see, in any order with other writes: its
 * winner stays (only an exclusive gc purge removes winners, and it removes
 * everything older with them), and a late rewrite of the same version is
 * shadowed by the same winner. That holds for version keys only: a head's
 * key is the row's own, which the next newest write puts again.
 */
export class CompactionQueue {
  private keys: Uint8Array[] = [];
  private scheduled = false;

  constructor(
    private readonly commits: GroupCommit,
    private readonly env: Env,
  ) {}

  get length(): number {
    return this.keys.length;
  }

  /** Queues the keys of shadowed versions a read found. A head is left alone: a write in flight may put its key again. */
  enqueue(keys: readonly Uint8Array[]): void {
    if (this.commits.closed || keys.length === 0) return;
    for (const k of keys) {
      if (this.keys.length >= COMPACT_QUEUE_CAP) break;
      if (!isHeadKey(k)) this.keys.push(k);
    }
    if (this.commits.inFlight === 0 && !this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => {
        this.scheduled = false;
        if (this.commits.inFlight === 0) this.flush();
      });
    }
  }

  /** One shadowed version the row cache found (see RowCache); deleted like the ones reads find. */
  enqueueShadowed(key: Uint8Array): void {
    if (this.commits.closed || this.keys.length >= COMPACT_QUEUE_CAP || isHeadKey(key)) return;
    this.keys.push(key);
    // Called as a batch lands: the store flushes the queue when nothing else is in flight.
  }

  /** Moves every queued delete into `batch`. */
  drainInto(batch: Batch): void {
    for (const k of this.keys) batch.del(k);
    this.keys = [];
  }

  /** Deletes the queued keys in a batch of their own. */
  flush(): void {
    if (this.commits.closed || this.keys.length === 0) return;
    const batch = this.commits.batch();
    this.drainInto(batch);
    this.commits.commit(batch, false).catch((error: unknown) => this.env.logger.warn({ err: error }, 'compaction delete failed'));
  }

  clear(): void {
    this.keys = [];
  }
}
