import type { ActorContext, ActorRef, ActorSystem, Behavior, ReplyTo } from '@chorus/actors';
import type { Env, Timer, Token } from '@chorus/core';
import { type Cell, type Mutation, type RowAddress, mutationBytes, validateAddress } from '@chorus/model';
import type { StorageDb } from './db.js';
import type { SweepCursor } from './gc.js';
import type { DiskReads } from './inline-reads.js';
import { Store, type StoreOptions } from './store.js';

/**
 * How acknowledged writes reach the disk.
 * - `batch`: each group-commit batch is fsynced before any of its writes is
 *   acknowledged. Nothing acknowledged is lost, even on power failure; every
 *   batch pays one fsync.
 * - `periodic` (default, as Cassandra): batches go to the OS page cache and are
 *   acknowledged at once; an fsync runs every `commitSyncPeriodMs`. A process
 *   crash loses nothing (the LevelDB log is already in the kernel); a power
 *   failure or kernel crash can lose up to one period of acknowledged writes
 *   on this replica, which the other replicas, hints and repair still hold.
 * - `none`: never fsync explicitly; the OS writes back when it likes (and
 *   LevelDB syncs when it rotates files). For tests and throwaway clusters.
 */
export type CommitSyncMode = 'batch' | 'periodic' | 'none';

export const DEFAULT_COMMIT_SYNC: CommitSyncMode = 'periodic';
export const DEFAULT_COMMIT_SYNC_PERIOD_MS = 10_000;
export const DEFAULT_SWEEP_INTERVAL_MS = 3_600_000;
/** Bytes of writes the storage actor queues before refusing more (MailboxFull, an Overloaded). */
export const DEFAULT_STORAGE_MAILBOX_BYTES = 128 * 1024 * 1024;
/** Bytes of writes in one group-commit batch: LevelDB copies a batch whole, so a burst of large values is cut into several. */
export const DEFAULT_STORAGE_BATCH_BYTES = 16 * 1024 * 1024;

export interface StorageActorOptions {
  db: StorageDb;
  env: Env;
  /** Actor name (default `storage`). */
  name?: string;
  gcGraceSeconds?: number;
  /** Per keyspace and token, when dead data may be purged (`StoreOptions.purgeHorizon`); without it, gc grace for every keyspace. */
  purgeHorizon?: (keyspace: string, t: Token) => number;
  /** Bound of the store's cache of reconciled rows (estimated bytes, default 64 MiB); 0 turns it off. */
  rowCacheBytes?: number;
  /** `StoreOptions.inlinePointReads`: point reads of key-value rows on this thread rather than through the I/O pool. */
  inlinePointReads?: DiskReads;
  commitSync?: CommitSyncMode;
  commitSyncPeriodMs?: number;
  /** Pause between gc sweeps; each sweep walks the whole store in steps of `sweepChunk` entries. */
  sweepIntervalMs?: number;
  sweepChunk?: number;
  /** Mailbox bound: a full mailbox rejects with MailboxFull (an Overloaded). */
  mailboxCapacity?: number;
  /** Most writes in one group-commit batch. */
  batchLimit?: number;
  /** Bytes of writes (keys and values) queued before more are refused with MailboxFull (default 128 MiB). */
  mailboxBytes?: number;
  /** Bytes of writes in one group-commit batch, the first always taken (default 16 MiB). */
  batchBytes?: number;
}

/**
 * A write's acknowledgment carries nothing: it means the write is stored (and
 * durable per the commit mode). It used to say whether the write was newer
 * than what the row held (`applied`); writes no longer read, so nobody knows
 * at write time — reads reconcile, and an older write never wins there.
 */
type WriteAck = null;

/** The storage actor's messages. Build them only through the functions below. */
/** Each mutation's outcome in a `write-many`, in order: undefined when stored, else its error. */
export type WriteOutcomes = Array<Error | undefined>;

export type StorageMsg =
  | { type: 'write'; mutation: Mutation; replyTo: ReplyTo<WriteAck> }
  | { type: 'write-many'; mutations: readonly Mutation[]; bytes: number; replyTo: ReplyTo<WriteOutcomes> }
  | { type: 'read'; address: RowAddress; replyTo: ReplyTo<Cell | null> }
  | { type: 'flush'; replyTo: ReplyTo<null> };

/**
 * What the rest of a node may read of the local store, beside the actor. LevelDB
 * reads are safe next to the actor's writes, and a write is acknowledged only
 * after its batch is in the database, so these reads see every acknowledged
 * write. Writes go through the actor only (`write`), so nothing can get around
 * group commit.
 */
export type StoreReader = Pick<Store, 'getCell' | 'get' | 'digest' | 'pointReads' | 'slice' | 'scanRange' | 'cacheStats'>;

export interface StorageHandle {
  /** The write path: send with `write`, `readCell`, `flush`. */
  readonly ref: ActorRef<StorageMsg>;
  readonly reader: StoreReader;
  /** Stops the actor, syncs and closes the database. */
  close(): Promise<void>;
}

function storageBehavior(store: Store, o: Required<Omit<StorageActorOptions, 'db' | 'env' | 'name' | 'gcGraceSeconds' | 'purgeHorizon' | 'rowCacheBytes' | 'inlinePointReads' | 'mailboxCapacity' | 'batchLimit' | 'mailboxBytes' | 'batchBytes'>>): Behavior<StorageMsg> {
  let syncTimer: Timer | undefined;
  let sweepTimer: Timer | undefined;
  let stopped = false;
  let previous: Promise<unknown> = Promise.resolve();
  const syncEach = o.commitSync === 'batch';

  function scheduleSync(env: Env): void {
    syncTimer = env.scheduler.setTimer(o.commitSyncPeriodMs, () => {
      if (stopped) return;
      env.scheduler
        .track(store.sync())
        .catch((error: unknown) => env.logger.error({ err: error }, 'periodic commit sync failed'))
        .finally(() => {
          if (!stopped) scheduleSync(env);
        });
    });
  }

  function scheduleSweep(env: Env, delayMs: number, cursor: SweepCursor | undefined): void {
    sweepTimer = env.scheduler.setTimer(delayMs, () => {
      if (stopped) return;
      // The sweep runs beside the actor's turns; the store serializes its deletions with writes.
      env.scheduler.track(store.sweep(cursor, o.sweepChunk)).then(
        (r) => {
          if (stopped) return;
          if (r.next !== undefined) scheduleSweep(env, 0, r.next);
          else scheduleSweep(env, o.sweepIntervalMs, undefined);
        },
        (error: unknown) => {
          env.logger.error({ err: error }, 'gc sweep failed');
          if (!stopped) scheduleSweep(env, o.sweepIntervalMs, undefined);
        },
      );
    });
  }

  return {
    started(ctx) {
      stopped = false;
      if (o.commitSync === 'periodic') scheduleSync(ctx.env);
      scheduleSweep(ctx.env, o.sweepIntervalMs, undefined);
    },

    async receiveBatch(msgs, ctx: ActorContext<StorageMsg>) {
      // Writes are the hot path: one array of mutations, one of reply addresses, no closure per write.
      // A `write-many` takes its mutations' places in the batch and is answered once for all of them.
      const mutations: Mutation[] = [];
      const replies: Array<ReplyTo<WriteAck> | ReplyTo<WriteOutcomes>> = [];
      let many: Array<{ at: number; count: number }> | undefined;
      let others: Array<Exclude<StorageMsg, { type: 'write' | 'write-many' }>> | undefined;
      for (let i = 0; i < msgs.length; i++) {
        const m = msgs[i]!;
        if (m.type === 'write') {
          mutations.push(m.mutation);
          replies.push(m.replyTo);
        } else if (m.type === 'write-many') {
          (many ??= []).push({ at: replies.length, count: m.mutations.length });
          replies.push(m.replyTo);
          for (const mutation of m.mutations) mutations.push(mutation);
        } else (others ??= []).push(m);
      }
      let landed: Promise<unknown> = Promise.resolve();
      if (mutations.length > 0) {
        // Pipelined group commit: the turn ends once this batch is handed to LevelDB (writes never
        // read, so at once), after the previous batch has landed: at most two batches are outstanding.
        const submitted = store.submit(mutations, { sync: syncEach });
        landed = submitted.landed.then(
          (outcomes) => {
            let next = 0;
            let group = 0;
            for (let r = 0; r < replies.length; r++) {
              if (many !== undefined && group < many.length && many[group]!.at === r) {
                const count = many[group++]!.count;
                const answer: WriteOutcomes = new Array(count);
                for (let j = 0; j < count; j++) {
                  const o = outcomes[next++]!;
                  answer[j] = o.ok ? undefined : o.error;
                }
                ctx.reply(replies[r] as ReplyTo<WriteOutcomes>, answer);
                continue;
              }
              const o = outcomes[next++]!;
              if (o.ok) ctx.reply(replies[r] as ReplyTo<WriteAck>, null);
              else ctx.fail(replies[r]!, o.error);
            }
          },
          (error: unknown) => {
            // A failed batch fails its writes but not the actor: the next batch may well succeed.
            ctx.log.error({ err: error, writes: mutations.length }, 'storage batch failed');
            for (const r of replies) ctx.fail(r, error as Error);
          },
        );
        await submitted.merged.catch(() => undefined);
        await previous;
        previous = landed;
      }
      if (others === undefined) return;
      await landed;
      // Reads after the batch, so a sender that wrote then read in one burst reads its write.
      await Promise.all(
        others.map(async (m) => {
          try {
            if (m.type === 'read') ctx.reply(m.replyTo, (await store.getCell(m.address)) ?? null);
            else {
              await store.sync();
              ctx.reply(m.replyTo, null);
            }
          } catch (error) {
            ctx.fail(m.replyTo, error as Error);
          }
        }),
      );
    },

    async stopping() {
      stopped = true;
      await previous;
      syncTimer?.cancel();
      sweepTimer?.cancel();
      if (o.commitSync !== 'none' && !store.isClosed) await store.sync();
    },
  };
}

/**
 * Spawns the storage actor over `db` (opened if needed by the first write).
 * The actor does group commit: each turn takes every write queued in its
 * mailbox and applies them as one LevelDB batch, acknowledging each only after
 * the batch is written (and fsynced in `batch` mode).
 */
export function spawnStorage(system: ActorSystem, options: StorageActorOptions): StorageHandle {
  const storeOptions: StoreOptions = { env: options.env };
  if (options.gcGraceSeconds !== undefined) storeOptions.gcGraceSeconds = options.gcGraceSeconds;
  if (options.purgeHorizon !== undefined) storeOptions.purgeHorizon = options.purgeHorizon;
  if (options.rowCacheBytes !== undefined) storeOptions.rowCacheBytes = options.rowCacheBytes;
  if (options.inlinePointReads !== undefined) storeOptions.inlinePointReads = options.inlinePointReads;
  const store = new Store(options.db, storeOptions);
  const commitSyncPeriodMs = options.commitSyncPeriodMs ?? DEFAULT_COMMIT_SYNC_PERIOD_MS;
  if (!(commitSyncPeriodMs > 0)) throw new RangeError('commitSyncPeriodMs must be positive');
  const behaviorOptions = {
    commitSync: options.commitSync ?? DEFAULT_COMMIT_SYNC,
    commitSyncPeriodMs,
    sweepIntervalMs: positiveInteger('sweepIntervalMs', options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS),
    sweepChunk: positiveInteger('sweepChunk', options.sweepChunk ?? 1000),
  };
  const ref = system.spawn<StorageMsg>(options.name ?? 'storage', () => storageBehavior(store, behaviorOptions), {
    mailbox: { capacity: options.mailboxCapacity ?? 50_000, overflow: 'reject', maxBytes: options.mailboxBytes ?? DEFAULT_STORAGE_MAILBOX_BYTES, sizeOf: storageMsgBytes },
    batchLimit: options.batchLimit ?? 5_000,
    batchBytes: options.batchBytes ?? DEFAULT_STORAGE_BATCH_BYTES,
  });
  return {
    ref,
    reader: store,
    async close() {
      await system.stop(ref as ActorRef<unknown>);
      await store.close();
    },
  };
}

/** What a queued message holds: a write its mutation, anything else next to nothing. */
function storageMsgBytes(m: StorageMsg): number {
  return m.type === 'write' ? mutationBytes(m.mutation) : m.type === 'write-many' ? m.bytes : 64;
}

/**
 * Writes one mutation through the storage actor; resolves once it is stored
 * and durable per the commit mode. Resolving says nothing about whether the
 * write was newer than what the row held (see `WriteAck`). A malformed
 * mutation is rejected with its typed validation error by the store's
 * encoder, which validates every mutation of a batch on its own.
 */
export function write(ref: ActorRef<StorageMsg>, mutation: Mutation, timeoutMs: number): Promise<void> {
  // The ask resolves with the (empty) acknowledgment; handing its promise back saves one per write.
  return ref.ask<WriteAck>((replyTo) => ({ type: 'write', mutation, replyTo }), timeoutMs) as Promise<unknown> as Promise<void>;
}

/**
 * Writes mutations through the storage actor in one message: they join one
 * group-commit batch, and one answer gives each its outcome (undefined when
 * stored, else its error, as `write` would throw it). Cheaper than a `write`
 * per mutation for a caller that has several at once. `bytes` is their
 * `mutationBytes` total, counted against the mailbox bound; the whole
 * message is refused (MailboxFull) when it does not fit.
 */
export function writeMany(ref: ActorRef<StorageMsg>, mutations: readonly Mutation[], bytes: number, timeoutMs: number): Promise<WriteOutcomes> {
  return ref.ask<WriteOutcomes>((replyTo) => ({ type: 'write-many', mutations, bytes, replyTo }), timeoutMs);
}

/** The row's raw merged cell (tombstones and expired values included), or undefined. */
export async function readCell(ref: ActorRef<StorageMsg>, address: RowAddress, timeoutMs: number): Promise<Cell | undefined> {
  validateAddress(address);
  const cell = await ref.ask<Cell | null>((replyTo) => ({ type: 'read', address, replyTo }), timeoutMs);
  return cell ?? undefined;
}

/** Forces every write acknowledged so far onto disk (an fsync), whatever the commit mode. */
export async function flush(ref: ActorRef<StorageMsg>, timeoutMs: number): Promise<void> {
  await ref.ask<null>((replyTo) => ({ type: 'flush', replyTo }), timeoutMs);
}

/** A sweep step of 0 keys, or a 0 ms pause, would spin without progress. */
function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}
