import type { Mutation } from '@chorus/model';
import { type ENC, NO_SYNC, RESOLVED, SYNC, type StorageDb } from './db.js';
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

/**
 * A LevelDB batch. Its first operation is held back: a batch that stays at
 * one (a write at a time) goes to LevelDB as a plain put or del, which cost
 * the binding about 15 µs less CPU than a chained batch of one (user and
 * system, measured on the cluster bench's machine). From the second on, it
 * is the native chained batch when the database is open, else an array
 * (abstract-level defers it until open).
 */
export class Batch {
  private chained: ReturnType<StorageDb['batch']> | undefined;
  private ops: Array<{ type: 'put' | 'del'; key: Uint8Array; value?: Uint8Array }> | undefined;
  private firstKey: Uint8Array | undefined;
  /** The first operation's value; undefined for a del. */
  private firstValue: Uint8Array | undefined;
  length = 0;
  /** The rows it writes, when the store keeps a row cache. */
  touched: Touched | undefined;
  /** The heads it puts (heads.ts). */
  heads: BatchHeads | undefined;

  constructor(
    private readonly db: StorageDb,
    private readonly opOptions: typeof ENC | undefined,
  ) {}

  put(key: Uint8Array, value: Uint8Array): void {
    this.add(key, value);
  }

  del(key: Uint8Array): void {
    this.add(key, undefined);
  }

  /** An operation: a put, or a del when `value` is undefined. The second one starts the batch of many. */
  private add(key: Uint8Array, value: Uint8Array | undefined): void {
    if (this.length++ === 0) {
      this.firstKey = key;
      this.firstValue = value;
      return;
    }
    if (this.chained === undefined && this.ops === undefined) {
      if (this.db.status === 'open') this.chained = this.db.batch();
      else this.ops = [];
      this.append(this.firstKey!, this.firstValue);
    }
    this.append(key, value);
  }

  private append(key: Uint8Array, value: Uint8Array | undefined): void {
    const chained = this.chained;
    if (chained === undefined) this.ops!.push(value === undefined ? { type: 'del', key } : { type: 'put', key, value });
    else if (value === undefined) chained.del(key, this.opOptions as typeof ENC);
    else chained.put(key, value, this.opOptions as typeof ENC);
  }

  write(sync: boolean): Promise<void> {
    const options = sync ? SYNC : NO_SYNC;
    if (this.chained !== undefined) return this.chained.write(options);
    if (this.ops !== undefined) return this.db.batch(this.ops as never, options as typeof ENC);
    if (this.firstKey === undefined) return RESOLVED;
    if (this.firstValue !== undefined) return this.db.put(this.firstKey, this.firstValue, options);
    return this.db.del(this.firstKey, options);
  }

  close(): void {
    if (this.chained !== undefined) this.chained.close().catch(() => undefined);
  }
}
