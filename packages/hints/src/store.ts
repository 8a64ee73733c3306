import type { Env, HostId, NodeId } from '@chorus/core';
import type { Mutation } from '@chorus/model';
import type { StorageDb } from '@chorus/storage';
import {
  HINT_KEY_BYTES,
  type HintPosition,
  LEGACY_HINT_RANGE,
  NEXT_SEQ_KEY,
  SYNC_MARKER_KEY,
  TARGET_RANGE,
  type TargetRecord,
  decodeHint,
  decodeSeq,
  decodeTarget,
  encodeHint,
  encodeSeq,
  encodeTarget,
  hintKey,
  hintRange,
  hostIdOfHintKey,
  hostIdOfTargetKey,
  positionOfHintKey,
  seqOfLegacyHintKey,
  targetKey,
} from './codec.js';
import { CorruptHint, HintStoreClosed } from './errors.js';

const ENC = { keyEncoding: 'view', valueEncoding: 'view' } as const;

type Op = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array };

/** One hint read back: the mutation exactly as offered, or `corrupt` when its record could not be decoded. */
export interface StoredHint extends HintPosition {
  /** Key and record bytes: what the hint costs on disk and in replay pacing. */
  bytes: number;
  mutation?: Mutation;
  /** The target's address when the hint was written. */
  node?: NodeId;
  corrupt?: CorruptHint;
}

/** One target of the store, as `targets()` reports it. */
export interface TargetSummary {
  hostId: HostId;
  /** Its address when its latest hint was written. */
  node: NodeId;
  hints: number;
  bytes: number;
  /** When the oldest undelivered hint was written; undefined without hints. */
  oldestMicros?: number;
  needsRepair: boolean;
  needsRepairReason?: 'window' | 'size';
}

/** What the store may refuse: the target's oldest hint is older than the window, or its hints would pass the byte cap. */
export type RefusalReason = 'window' | 'size';

export interface AppendItem {
  hostId: HostId;
  node: NodeId;
  mutation: Mutation;
}

/** A hint taken over from another node's store: kept with the time it was first written there. */
export interface AdoptItem extends AppendItem {
  createdAtMicros: number;
}

export type AppendOutcome = { stored: true } | { stored: false; reason: RefusalReason; /** The target was not marked before this refusal. */ newlyMarked: boolean };

export interface AppendLimits {
  /** max_hint_window: no hint is stored for a target whose oldest undelivered hint is older. */
  windowMicros: number;
  /** max_hints_size_per_host; 0 for no cap. */
  maxBytesPerHost: number;
}

interface TargetState extends TargetRecord {
  oldestMicros: number | undefined;
}

/**
 * The durable hint store on an abstract-level database of its own (LevelDB
 * under `<data_dir>/hints` in production, memory-level in tests and the
 * simulator). Every change goes through one chain, so a batch of appends, a
 * removal of delivered hints and a drop never interleave; each is one atomic
 * LevelDB batch that moves the target's counters with its hints.
 *
 * The hint window is measured from the oldest undelivered hint of a target,
 * which the store reads back from the hints themselves on open: a restart of
 * this node, or a target that flaps, does not reset it.
 */
export class HintStore {
  private readonly targets = new Map<HostId, TargetState>();
  private nextSeq = 1;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly db: StorageDb,
    private readonly env: Env,
    /** Whether each batch is fsynced before it counts as stored (commit_sync `batch`). */
    private readonly syncEach: boolean,
  ) {}

  /** Opens the database if needed and loads every target's counters and oldest hint. */
  static async open(db: StorageDb, env: Env, options: { syncEach: boolean }): Promise<HintStore> {
    if (db.status !== 'open') await db.open();
    const store = new HintStore(db, env, options.syncEach);
    await store.load();
    return store;
  }

  private async load(): Promise<void> {
    const seq = await this.db.get(NEXT_SEQ_KEY, ENC);
    if (seq !== undefined) this.nextSeq = decodeSeq(seq);
    const it = this.db.iterator({ ...TARGET_RANGE, ...ENC });
    try {
      for (;;) {
        const entries = await it.nextv(256);
        if (entries.length === 0) break;
        for (const [key, value] of entries) {
          const hostId = hostIdOfTargetKey(key);
          this.targets.set(hostId, { ...decodeTarget(value), oldestMicros: undefined });
        }
      }
    } finally {
      await it.close();
    }
    await this.moveLegacyHints();
    for (const [hostId, t] of this.targets) t.oldestMicros = await this.readOldest(hostId);
  }

  /**
   * Moves hints stored under the first key layout (ordered by sequence number
   * alone) to the current one, ordered by creation time, in bounded batches.
   * Each batch moves its hints and their targets' byte counts (keys grew)
   * together, so a crash in the middle leaves every hint under exactly one key.
   */
  private async moveLegacyHints(): Promise<void> {
    for (;;) {
      const entries: Array<[Uint8Array, Uint8Array]> = await this.db.iterator({ ...LEGACY_HINT_RANGE, limit: 1000, ...ENC }).all();
      if (entries.length === 0) return;
      const ops: Op[] = [];
      const changed = new Set<HostId>();
      for (const [key, value] of entries) {
        ops.push({ type: 'del', key });
        let hostId: HostId;
        let seq: number;
        try {
          hostId = hostIdOfHintKey(key);
          seq = seqOfLegacyHintKey(key);
        } catch {
          // A key that is not even a hint's cannot be addressed to anyone.
          continue;
        }
        let createdAtMicros: number;
        try {
          createdAtMicros = decodeHint(value).createdAtMicros;
        } catch {
          // A record that cannot be read still counts from the moment this store met it; replay drops it as corrupt.
          createdAtMicros = this.env.clock.nowMicros();
        }
        const newKey = hintKey(hostId, { createdAtMicros, seq });
        ops.push({ type: 'put', key: newKey, value });
        const t = this.targets.get(hostId);
        if (t === undefined) continue;
        t.bytes += newKey.length - key.length;
        changed.add(hostId);
      }
      for (const hostId of changed) ops.push(this.targetOp(hostId, this.targets.get(hostId)!));
      await this.write(ops, true);
    }
  }

  /** When the first (oldest) remaining hint of the target was written. */
  private async readOldest(hostId: HostId): Promise<number | undefined> {
    const it = this.db.iterator({ ...hintRange(hostId), limit: 1, ...ENC, values: false });
    try {
      const first = await it.next();
      return first === undefined ? undefined : positionOfHintKey(first[0]).createdAtMicros;
    } finally {
      await it.close();
    }
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.chain.then(() => {
      if (this.closed) throw new HintStoreClosed();
      return work();
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  private write(ops: Op[], sync = this.syncEach): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    return this.db.batch(ops as never, { ...ENC, sync } as never);
  }

  private recordOf(t: TargetState): TargetRecord {
    const r: TargetRecord = { node: t.node, hints: t.hints, bytes: t.bytes, needsRepair: t.needsRepair };
    if (t.needsRepairReason !== undefined) r.needsRepairReason = t.needsRepairReason;
    return r;
  }

  /** The target's record after a change: kept while it has hints or must be repaired, deleted otherwise. */
  private targetOp(hostId: HostId, t: TargetState): Op {
    if (t.hints === 0 && !t.needsRepair) return { type: 'del', key: targetKey(hostId) };
    return { type: 'put', key: targetKey(hostId), value: encodeTarget(this.recordOf(t)) };
  }

  /**
   * Stores hints, in order, as one batch; resolves once the batch is as
   * durable as the node's own writes (fsynced first in `batch` commit mode).
   * A target past its window or byte cap gets nothing more and is marked as
   * needing repair (in the same batch).
   */
  append(items: readonly AppendItem[], limits: AppendLimits): Promise<AppendOutcome[]> {
    return this.serial(async () => {
      const now = this.env.clock.nowMicros();
      const ops: Op[] = [];
      const outcomes: AppendOutcome[] = [];
      const changed = new Map<HostId, TargetState>();
      // The counters move only once the batch has landed; a failed batch leaves them as they were.
      const staged = new Map<HostId, TargetState>();
      const stateOf = (hostId: HostId, node: NodeId): TargetState => {
        let t = staged.get(hostId);
        if (t === undefined) {
          const current = this.targets.get(hostId);
          t = current ? { ...current } : { node, hints: 0, bytes: 0, needsRepair: false, oldestMicros: undefined };
          staged.set(hostId, t);
        }
        return t;
      };
      for (const item of items) {
        const t = stateOf(item.hostId, item.node);
        if (t.oldestMicros !== undefined && now - t.oldestMicros > limits.windowMicros) {
          outcomes.push({ stored: false, reason: 'window', newlyMarked: this.mark(t, 'window') });
          changed.set(item.hostId, t);
          continue;
        }
        const value = encodeHint({ createdAtMicros: now, target: item.node, mutation: item.mutation });
        const bytes = HINT_KEY_BYTES + value.length;
        if (limits.maxBytesPerHost > 0 && t.bytes + bytes > limits.maxBytesPerHost) {
          outcomes.push({ stored: false, reason: 'size', newlyMarked: this.mark(t, 'size') });
          changed.set(item.hostId, t);
          continue;
        }
        ops.push({ type: 'put', key: hintKey(item.hostId, { createdAtMicros: now, seq: this.nextSeq++ }), value });
        t.hints++;
        t.bytes += bytes;
        t.node = item.node;
        t.oldestMicros = Math.min(t.oldestMicros ?? now, now);
        changed.set(item.hostId, t);
        outcomes.push({ stored: true });
      }
      for (const [hostId, t] of changed) ops.push(this.targetOp(hostId, t));
      ops.push({ type: 'put', key: NEXT_SEQ_KEY, value: encodeSeq(this.nextSeq) });
      await this.write(ops);
      for (const [hostId, t] of staged) this.targets.set(hostId, t);
      return outcomes;
    });
  }

  /**
   * Stores hints taken over from another node's store, as one batch as
   * durable as `append`'s, each with the time it was first written there: it
   * sorts among this store's hints by that time, and the target's window and
   * every hint's gc grace keep counting from it. Neither the window nor the
   * byte cap refuses them: they were accepted when written, and refusing them
   * now would lose them. Resolves with how many were stored (all of them).
   */
  adopt(items: readonly AdoptItem[]): Promise<number> {
    return this.serial(async () => {
      const ops: Op[] = [];
      const staged = new Map<HostId, TargetState>();
      for (const item of items) {
        let t = staged.get(item.hostId);
        if (t === undefined) {
          const current = this.targets.get(item.hostId);
          t = current ? { ...current } : { node: item.node, hints: 0, bytes: 0, needsRepair: false, oldestMicros: undefined };
          staged.set(item.hostId, t);
        }
        const value = encodeHint({ createdAtMicros: item.createdAtMicros, target: item.node, mutation: item.mutation });
        const key = hintKey(item.hostId, { createdAtMicros: item.createdAtMicros, seq: this.nextSeq++ });
        ops.push({ type: 'put', key, value });
        t.hints++;
        t.bytes += key.length + value.length;
        t.oldestMicros = Math.min(t.oldestMicros ?? item.createdAtMicros, item.createdAtMicros);
      }
      for (const [hostId, t] of staged) ops.push(this.targetOp(hostId, t));
      ops.push({ type: 'put', key: NEXT_SEQ_KEY, value: encodeSeq(this.nextSeq) });
      await this.write(ops);
      for (const [hostId, t] of staged) this.targets.set(hostId, t);
      return items.length;
    });
  }

  /** Marks a target as needing repair; true when it was not marked before. */
  private mark(t: TargetState, reason: RefusalReason): boolean {
    if (t.needsRepair) return false;
    t.needsRepair = true;
    t.needsRepairReason = reason;
    return true;
  }

  /**
   * Up to `limit` hints of the target and at most `maxBytes` of them (the
   * first one always, whatever its size), oldest first, after `after` if
   * given. Reads only: what it returns may be removed meanwhile, which
   * `remove` notices.
   */
  async page(hostId: HostId, limit: number, maxBytes: number, after?: HintPosition): Promise<StoredHint[]> {
    if (this.closed) throw new HintStoreClosed();
    const it = this.db.iterator({ ...hintRange(hostId, after), ...ENC });
    const out: StoredHint[] = [];
    let bytes = 0;
    try {
      for (let full = false; !full && out.length < limit; ) {
        const entries = await it.nextv(Math.min(64, limit - out.length));
        if (entries.length === 0) break;
        for (const [key, value] of entries) {
          const at = positionOfHintKey(key);
          const size = key.length + value.length;
          if (out.length > 0 && bytes + size > maxBytes) {
            full = true;
            break;
          }
          bytes += size;
          try {
            const record = decodeHint(value);
            // The key's creation time orders the hint; a hand-off keeps it equal to the record's.
            out.push({ createdAtMicros: at.createdAtMicros, seq: at.seq, bytes: size, mutation: record.mutation, node: record.target });
          } catch (error) {
            out.push({ createdAtMicros: at.createdAtMicros, seq: at.seq, bytes: size, corrupt: error instanceof CorruptHint ? error : new CorruptHint(String(error)) });
          }
        }
      }
    } finally {
      await it.close();
    }
    return out;
  }

  /** Deletes hints (delivered, handed off, expired or undeliverable); those already gone are skipped. Resolves with what was removed. */
  remove(hostId: HostId, positions: readonly HintPosition[]): Promise<{ hints: number; bytes: number }> {
    return this.serial(async () => {
      const t = this.targets.get(hostId);
      if (t === undefined || positions.length === 0) return { hints: 0, bytes: 0 };
      const keys = positions.map((h) => hintKey(hostId, h));
      const values = await this.db.getMany(keys, ENC);
      const ops: Op[] = [];
      let hints = 0;
      let bytes = 0;
      keys.forEach((key, i) => {
        const value = values[i];
        if (value === undefined) return;
        ops.push({ type: 'del', key });
        hints++;
        bytes += key.length + value.length;
      });
      if (hints === 0) return { hints, bytes };
      const next: TargetState = { ...t, hints: t.hints - hints, bytes: t.bytes - bytes };
      ops.push(this.targetOp(hostId, next));
      // Removing is never what makes a write durable, so it need not wait for an fsync.
      await this.write(ops, false);
      next.oldestMicros = next.hints === 0 ? undefined : await this.readOldest(hostId);
      if (next.hints === 0 && !next.needsRepair) this.targets.delete(hostId);
      else this.targets.set(hostId, next);
      return { hints, bytes };
    });
  }

  /** Deletes every hint of a target and forgets it (its host id left the cluster or was replaced). */
  drop(hostId: HostId): Promise<{ hints: number; bytes: number }> {
    return this.serial(async () => {
      let hints = 0;
      let bytes = 0;
      // In bounded batches: a target may hold many hints.
      for (;;) {
        const entries: Array<[Uint8Array, Uint8Array]> = await this.db.iterator({ ...hintRange(hostId), limit: 1000, ...ENC }).all();
        if (entries.length === 0) break;
        await this.write(entries.map(([key]) => ({ type: 'del', key })), false);
        hints += entries.length;
        for (const [k, v] of entries) bytes += k.length + v.length;
      }
      await this.write([{ type: 'del', key: targetKey(hostId) }], false);
      this.targets.delete(hostId);
      return { hints, bytes };
    });
  }

  /** Clears a target's needs-repair mark (a repair of it finished). */
  clearNeedsRepair(hostId: HostId): Promise<void> {
    return this.serial(async () => {
      const t = this.targets.get(hostId);
      if (t === undefined || !t.needsRepair) return;
      const next: TargetState = { ...t, needsRepair: false };
      delete next.needsRepairReason;
      await this.write([this.targetOp(hostId, next)]);
      if (next.hints === 0) this.targets.delete(hostId);
      else this.targets.set(hostId, next);
    });
  }

  /** Every target with hints or a needs-repair mark. */
  summaries(): TargetSummary[] {
    return [...this.targets].map(([hostId, t]) => this.summaryOf(hostId, t)).sort((a, b) => (a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0));
  }

  summary(hostId: HostId): TargetSummary | undefined {
    const t = this.targets.get(hostId);
    return t && this.summaryOf(hostId, t);
  }

  private summaryOf(hostId: HostId, t: TargetState): TargetSummary {
    const s: TargetSummary = { hostId, node: t.node, hints: t.hints, bytes: t.bytes, needsRepair: t.needsRepair };
    if (t.oldestMicros !== undefined) s.oldestMicros = t.oldestMicros;
    if (t.needsRepairReason !== undefined) s.needsRepairReason = t.needsRepairReason;
    return s;
  }

  /** Forces what was stored so far onto disk (the periodic commit mode's fsync). */
  sync(): Promise<void> {
    return this.serial(() => this.db.put(SYNC_MARKER_KEY, encodeSeq(this.env.clock.nowMicros()), { ...ENC, sync: true } as never));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Waits for the changes under way, then closes the database (LevelDB flushes its log on close). */
  async close(): Promise<void> {
    if (this.closed) return;
    const last = this.chain;
    this.closed = true;
    await last;
    await this.db.close();
  }
}
