import type { Clock, Logger } from '@chorus/core';
import type { StorageDb } from './db.js';

/** How long point reads go back to the I/O pool after a batch that waited on the disk: doubled while the batches after each pause wait on it too. */
const FIRST_POOL_PAUSE_MS = 1_000;
const MAX_POOL_PAUSE_MS = 16_000;
/** A batch read from memory takes a few µs per read; one that waited on the disk, well over this. */
const SLOW_READ_MS = 0.05;

/**
 * What inline point reads need from the process: how many blocks it has read
 * from the disk so far (file reads that missed the page cache, and major page
 * faults), as `getrusage` counts them. Only its changes matter.
 */
export interface DiskReads {
  blocksRead(): number;
}

/**
 * The exact-key reads of a batch of point reads (the rows' heads) on the
 * node's own thread, through LevelDB's `getSync`, instead of one `getMany`
 * handed to the I/O pool. The hand-off costs a thread's wake-up each way and
 * a promise: in one process, one key took 39.5 µs of CPU through `getMany`
 * against 4.2 through `getSync`, 16 keys 7.2 µs each against 3.7, and 95
 * keys 4.9 against 3.7. A pool of one thread (the default on up to 3 cores)
 * reads nothing beside the main thread that the main thread could not read
 * for less; with more threads on more cores the pool's reads run beside it,
 * which is why the store reads inline only when asked to.
 *
 * A read that LevelDB serves from the disk blocks the thread for the disk's
 * latency, every request of the node waiting behind it. A batch that took
 * over 0.05 ms a read while the process read blocks from the disk sends the
 * batches of the next second to the pool, where they wait off the thread;
 * the first batch after that pause tells again whether the rows are in
 * memory, and each pause that ends on the disk again doubles the next, up
 * to 16 s, so a node whose reads go to the disk reads nearly all of them
 * through the pool. Neither sign alone will do: on a busy machine a batch
 * read from memory can take a millisecond when the thread loses its core
 * halfway, and a stray page fault (code paged back in, a compaction's read)
 * is no reason to leave.
 */
export class InlineReads {
  private poolUntilMs = Number.NEGATIVE_INFINITY;
  private pauseMs = FIRST_POOL_PAUSE_MS;

  constructor(
    private readonly db: StorageDb,
    private readonly disk: DiskReads,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /** Whether `db` reads synchronously (LevelDB and memory-level do). */
  static supports(db: StorageDb): boolean {
    return (db.supports as { getSync?: boolean }).getSync === true;
  }

  /** The values of `keys` (undefined for a key not found), or undefined while reads belong to the pool. */
  getMany(keys: readonly Uint8Array[], options: object): Array<Uint8Array | undefined> | undefined {
    const started = this.clock.monotonicMs();
    if (started < this.poolUntilMs) return undefined;
    const blocksBefore = this.disk.blocksRead();
    const values = new Array<Uint8Array | undefined>(keys.length);
    for (let i = 0; i < keys.length; i++) values[i] = this.db.getSync(keys[i]!, options) as Uint8Array | undefined;
    const tookMs = this.clock.monotonicMs() - started;
    const blocks = tookMs > keys.length * SLOW_READ_MS ? this.disk.blocksRead() - blocksBefore : 0;
    if (blocks > 0) {
      this.poolUntilMs = started + tookMs + this.pauseMs;
      this.logger.info({ reads: keys.length, tookMs: Math.round(tookMs * 1000) / 1000, blocks, poolForMs: this.pauseMs }, 'point reads waited on the disk; reading through the I/O pool for a while');
      this.pauseMs = Math.min(MAX_POOL_PAUSE_MS, this.pauseMs * 2);
    } else {
      this.pauseMs = FIRST_POOL_PAUSE_MS;
    }
    return values;
  }
}
