import type { Clock, Logger } from '@chorus/core';
import type { StorageDb } from './db.js';

/** A batch that took longer than this per read was served from the disk, not from memory. */
const SLOW_READ_MS = 0.1;
/** How long point reads go back to the I/O pool after such a batch. */
export const POOL_AFTER_SLOW_MS = 10_000;

/**
 * The exact-key reads of a batch of point reads (the rows' heads) on the
 * node's own thread, through LevelDB's `getSync`, instead of one `getMany`
 * handed to the I/O pool. The hand-off costs a thread's wake-up each way and
 * a promise: in one process, one key took 39.5 µs of CPU through `getMany`
 * against 4.2 through `getSync`, 16 keys 7.2 µs each against 3.7, and 95
 * keys 4.9 against 3.7. A pool of one thread (the default on 2 or 3 cores)
 * reads nothing beside the main thread that the main thread could not read
 * for less; with more threads on more cores the pool's reads run beside it,
 * which is why the store reads inline only when asked to.
 *
 * A read that LevelDB serves from the disk blocks the thread for the disk's
 * latency, every request of the node waiting behind it. A batch that takes
 * more than 0.1 ms per read sends the batches of the next 10 s to the pool,
 * where they wait off the thread; the first batch after that pause tells
 * again whether the rows are back in memory.
 */
export class InlineReads {
  private poolUntilMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly db: StorageDb,
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
    const values = new Array<Uint8Array | undefined>(keys.length);
    for (let i = 0; i < keys.length; i++) values[i] = this.db.getSync(keys[i]!, options) as Uint8Array | undefined;
    const tookMs = this.clock.monotonicMs() - started;
    if (tookMs > keys.length * SLOW_READ_MS) {
      this.poolUntilMs = started + tookMs + POOL_AFTER_SLOW_MS;
      this.logger.info({ reads: keys.length, tookMs: Math.round(tookMs * 1000) / 1000, poolForMs: POOL_AFTER_SLOW_MS }, 'point reads came from the disk; reading through the I/O pool for a while');
    }
    return values;
  }
}
