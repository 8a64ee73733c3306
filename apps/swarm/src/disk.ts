import { MemoryLevel } from 'memory-level';

type Key = Uint8Array;
type Op = { type: 'put' | 'del'; key: Key; value?: Uint8Array };
type Opts = { sync?: boolean } | undefined;

/**
 * What memory-level implements under abstract-level's public methods. Every
 * write of a database lands in one of these (a chained batch too), with the
 * caller's options, `sync` included. They are not in memory-level's types.
 */
interface Implementation {
  _put(key: Key, value: Uint8Array, options: Opts): Promise<void>;
  _del(key: Key, options: Opts): Promise<void>;
  _batch(ops: Op[], options: Opts): Promise<void>;
  _getSync(key: Key, options: object): Uint8Array | undefined;
}

const hex = (key: Key): string => Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');

/**
 * A memory-level database that knows which of its writes reached the disk,
 * as LevelDB's log does: a write with `sync: true` makes itself and every
 * write before it durable; a write without it sits in the page cache. A
 * process crash loses nothing (the kernel still has the page cache); a
 * power failure (`powerLoss`) loses every write since the last sync. For
 * that it keeps, per key written since the last sync, the value the key had
 * at that sync, and puts those values back.
 *
 * Between a power failure and the next start the disk refuses nothing but
 * keeps nothing either: a write that a dead process still issues (a promise
 * chain of its previous run) is dropped, as a machine that is off drops it.
 */
export class VolatileLevel extends MemoryLevel<Uint8Array, Uint8Array> {
  /** Per key written since the last sync: the key and its value at that sync (undefined: absent). */
  private unsynced = new Map<string, [Key, Uint8Array | undefined]>();
  private poweredOff = false;
  /** Virtual time of the last sync, from the clock given to `clock`. */
  lastSyncMs = 0;
  private now: () => number = () => 0;

  constructor() {
    super({ keyEncoding: 'view', valueEncoding: 'view' });
  }

  /** Where `lastSyncMs` reads the time. */
  clock(now: () => number): this {
    this.now = now;
    return this;
  }

  /** Writes since the last sync (distinct keys). */
  get unsyncedKeys(): number {
    return this.unsynced.size;
  }

  private get impl(): Implementation {
    return Object.getPrototypeOf(VolatileLevel.prototype) as Implementation;
  }

  private remember(key: Key): void {
    const k = hex(key);
    if (!this.unsynced.has(k)) this.unsynced.set(k, [key, this.impl._getSync.call(this, key, {})]);
  }

  private synced(options: Opts): void {
    if (options?.sync !== true) return;
    this.unsynced.clear();
    this.lastSyncMs = this.now();
  }

  async _put(key: Key, value: Uint8Array, options: Opts): Promise<void> {
    if (this.poweredOff) return;
    this.remember(key);
    await this.impl._put.call(this, key, value, options);
    this.synced(options);
  }

  async _del(key: Key, options: Opts): Promise<void> {
    if (this.poweredOff) return;
    this.remember(key);
    await this.impl._del.call(this, key, options);
    this.synced(options);
  }

  async _batch(ops: Op[], options: Opts): Promise<void> {
    if (this.poweredOff) return;
    for (const op of ops) this.remember(op.key);
    await this.impl._batch.call(this, ops, options);
    this.synced(options);
  }

  /**
   * The power fails: every write since the last sync is undone, and writes
   * are dropped until `powerOn`. Returns how many keys went back.
   */
  powerLoss(): number {
    const back: Op[] = [];
    for (const [key, value] of this.unsynced.values()) back.push(value === undefined ? { type: 'del', key } : { type: 'put', key, value });
    this.unsynced.clear();
    // The undo is itself on disk now: nothing of it may be undone again.
    void this.impl._batch.call(this, back, undefined);
    this.poweredOff = true;
    return back.length;
  }

  powerOn(): void {
    this.poweredOff = false;
  }
}
