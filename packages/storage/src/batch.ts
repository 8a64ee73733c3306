import type { Mutation } from '@chorus/model';
import { type ENC, NO_SYNC, SYNC, type StorageDb } from './db.js';
import type { BatchHeads } from './heads.js';

/**
 * The rows a write batch touches, for the row cache, which learns of them only
 * once the batch has landed: the mutations and the version key each was
 * stored under (a hole for one that failed validation). Kept this bare
 * because it is built for every write whether or not the cache will care.
 */
export interface Touched {
  readonly mutations: readonly Mutation[];
  readonly keys: Array<Uint8Array | undefined>;
}

/** A LevelDB batch: the native chained batch when the database is open, else an array (abstract-level defers it until open). */
export class Batch {
  private readonly chained: ReturnType<StorageDb['batch']> | undefined;
  private readonly ops: Array<{ type: 'put' | 'del'; key: Uint8Array; value?: Uint8Array }> | undefined;
  length = 0;
  /** The rows it writes, when the store keeps a row cache. */
  touched: Touched | undefined;
  /** The heads it puts (heads.ts). */
  heads: BatchHeads | undefined;

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
