import { type ActorContext, type ActorRef, type ActorSystem, type Answered, type ReplyTo, toWireError } from '@chorus/actors';
import type { Env, NodeId, Token } from '@chorus/core';
import { type PointRead, type ScanEntry, type ScanPosition, type StoreReader, type SlicePage, type SliceRow, type StorageHandle, type TokenRange, positionOf, writeMany } from '@chorus/storage';
import { MAX_STREAM_ENTRIES, type MessageKind, type WireMessage } from '@chorus/wire';
import { type Cell, type Mutation, type RowAddress, isPartitionDelete, isTombstone, mutationBytes } from '@chorus/model';
import { ReplicaLeft } from './errors.js';
import type { HybridLogicalClock, SkewTracker } from './hlc.js';

/** The name of the replica actor on every node. */
export const REPLICA_ACTOR = 'replica';

/**
 * How far ahead of its own clock, in multiples of max_clock_skew, a replica
 * accepts a mutation's timestamp. Looser than the coordinator's own check of
 * a client timestamp (1×): a coordinator a few ms ahead of its peers that
 * accepts a client timestamp just inside its bound must not see the other
 * replicas refuse what its own replica applied. Still bounded, so a node
 * with a clock far ahead cannot plant writes on its peers.
 */
export const REPLICA_SKEW_FACTOR = 2;

/**
 * Key and value bytes one slice answer may carry. A page of up to 10,000
 * rows with values up to 1 MiB would not fit the 4 MiB wire frame (the
 * transport drops such a frame and the slice times out), so the replica ends
 * its page early and says where to resume; the coordinator's merge already
 * handles short pages with a next page.
 */
export const SLICE_ANSWER_BUDGET_BYTES = 2 * 1024 * 1024;
/**
 * Bytes of keys and values one `replica.range-page` may carry: half the slice
 * budget, so a page of a range is well inside the 4 MiB frame and a stream
 * asks often enough for its pace (`stream_throughput`) to be smooth.
 */
export const STREAM_PAGE_BUDGET_BYTES = 1024 * 1024;
/** What a row costs in an answer besides its key and value (field names, state, timestamps, framing); generous. */
const SLICE_ROW_OVERHEAD_BYTES = 64;
/** Rows of the first storage scan of a page, before the rows' size is known: keeps a page of large values from being read whole into memory. */
const SLICE_FIRST_CHUNK_ROWS = 32;

type WithReply<K extends MessageKind, R> = WireMessage<K> & { replyTo: ReplyTo<R> };

export type MutatedMsg = WireMessage<'replica.mutated'>;
export type DataMsg = WireMessage<'replica.data'> & {
  /**
   * The cell's digest, when the replica had it at hand (a cached row), so the coordinator need not hash the
   * value again. Only in answers to this node's own coordinator: the kind's schema has no such field, so that
   * a node of the previous build, which would refuse the frame, never gets one.
   */
  digest?: Uint8Array;
};
export type DigestMsg = WireMessage<'replica.digest'>;
export type RowsMsg = WireMessage<'replica.rows'>;
export type BatchedMsg = WireMessage<'replica.batched'> & {
  /** The answers to a batch's data reads, in order: only in answers to this node's own coordinator (see `ReplicaBatch.reads`). */
  data?: DataMsg[];
};
export type RangePageMsg = WireMessage<'replica.range-page'>;
export type StreamEntryWire = RangePageMsg['entries'][number];

/**
 * `replica.mutate` carries the model's `Mutation` itself: a local replica
 * applies the coordinator's object as is, a remote one what the wire schema
 * checked (which admits exactly the mutations the model can express). The
 * intersection keeps the two in step: `mutate` stops compiling if a
 * `Mutation` ever holds something the schema does not admit.
 */
type MutateMsg = WithReply<'replica.mutate', MutatedMsg> & { mutation: Mutation };
/**
 * `replica.batch` holds the model's mutations as `replica.mutate` does, and,
 * from this node's own coordinator only, data reads (`reads`), which the
 * kind's schema does not carry.
 */
type BatchMsg = WithReply<'replica.batch', BatchedMsg> & { mutations?: Mutation[]; reads?: RowAddressWire[] };
/** A row's address as the replica kinds carry it. */
type RowAddressWire = Pick<WireMessage<'replica.read'>, 'keyspace' | 'token' | 'partition' | 'clustering'>;

/**
 * What the replica actor handles: the coordinator-to-replica verbs (as
 * Cassandra's MutationVerbHandler and ReadCommandVerbHandler). Build them only
 * through the functions below.
 */
export type ReplicaMsg =
  | MutateMsg
  | WithReply<'replica.read', DataMsg>
  | WithReply<'replica.read-digest', DigestMsg>
  | WithReply<'replica.slice', RowsMsg>
  | WithReply<'replica.stream-range', RangePageMsg>
  | BatchMsg;

/** A node's readings that travel on every coordinator/replica message. */
export interface Clocks {
  hlc: number;
  wallMicros: number;
}

type WireCell = Pick<DataMsg, 'state' | 'value' | 'timestampMicros' | 'expiresAtMicros'>;

/** A cell in wire form; optional fields are left out rather than set to undefined, so the schema check holds. */
export function toWireCell(cell: Cell | undefined): WireCell {
  if (cell === undefined) return { state: 'absent' };
  if (isTombstone(cell)) return { state: 'tombstone', timestampMicros: cell.timestampMicros };
  const out: WireCell = { state: 'value', value: cell.value, timestampMicros: cell.timestampMicros };
  if (cell.expiresAtMicros !== undefined) out.expiresAtMicros = cell.expiresAtMicros;
  return out;
}

export function fromWireCell(w: WireCell): Cell | undefined {
  switch (w.state) {
    case 'absent':
      return undefined;
    case 'tombstone':
      return { tombstone: true, timestampMicros: w.timestampMicros ?? 0 };
    case 'value': {
      const value = w.value ?? new Uint8Array(0);
      return w.expiresAtMicros === undefined
        ? { value, timestampMicros: w.timestampMicros ?? 0 }
        : { value, timestampMicros: w.timestampMicros ?? 0, expiresAtMicros: w.expiresAtMicros };
    }
  }
}

const EMPTY = new Uint8Array(0);

export interface RowKey {
  keyspace: string;
  token: Token;
  partition: Uint8Array;
  clustering?: Uint8Array;
}

export interface SliceQuery {
  keyspace: string;
  token: Token;
  partition: Uint8Array;
  from?: Uint8Array;
  to?: Uint8Array;
  after?: Uint8Array;
  limit: number;
  reverse: boolean;
}

/** The message of `mutate`, built around its reply address. */
const mutateMsg =
  (m: Mutation, clocks: Clocks) =>
  (replyTo: ReplyTo<MutatedMsg>): ReplicaMsg => ({ type: 'replica.mutate', mutation: m, hlc: clocks.hlc, wallMicros: clocks.wallMicros, replyTo });

/** The message of `readData` or `readDigest`: the two kinds carry the same fields. */
const pointReadMsg =
  <R>(type: 'replica.read' | 'replica.read-digest', row: RowKey, clocks: Clocks) =>
  (replyTo: ReplyTo<R>): ReplicaMsg =>
    ({
      type,
      keyspace: row.keyspace,
      token: row.token,
      partition: row.partition,
      clustering: row.clustering ?? EMPTY,
      hlc: clocks.hlc,
      wallMicros: clocks.wallMicros,
      replyTo,
    }) as ReplicaMsg;

/**
 * Sends a mutation to a replica; resolves with the replica's clocks once it is
 * applied there. The message holds `m` itself (no copy), so `m` must not be
 * changed afterwards.
 */
export function mutate(ref: ActorRef<ReplicaMsg>, m: Mutation, clocks: Clocks, timeoutMs: number): Promise<MutatedMsg> {
  return ref.ask<MutatedMsg>(mutateMsg(m, clocks), timeoutMs);
}

/** `mutate` with its outcome handed to `answered` (see `ActorRef.request`): a coordinator's form, without a promise per replica. */
export function requestMutate(ref: ActorRef<ReplicaMsg>, m: Mutation, clocks: Clocks, timeoutMs: number, answered: Answered<MutatedMsg>): void {
  ref.request<MutatedMsg>(mutateMsg(m, clocks), timeoutMs, answered);
}

/** The write timestamp a mutation carries: its cell's, or its partition deletion's. */
function timestampOf(m: Mutation): number {
  return isPartitionDelete(m) ? m.partitionDeletion.timestampMicros : m.cell.timestampMicros;
}

export function readData(ref: ActorRef<ReplicaMsg>, row: RowKey, clocks: Clocks, timeoutMs: number): Promise<DataMsg> {
  return ref.ask<DataMsg>(pointReadMsg('replica.read', row, clocks), timeoutMs);
}

/** `readData` with its outcome handed to `answered`. */
export function requestData(ref: ActorRef<ReplicaMsg>, row: RowKey, clocks: Clocks, timeoutMs: number, answered: Answered<DataMsg>): void {
  ref.request<DataMsg>(pointReadMsg('replica.read', row, clocks), timeoutMs, answered);
}

export function readDigest(ref: ActorRef<ReplicaMsg>, row: RowKey, clocks: Clocks, timeoutMs: number): Promise<DigestMsg> {
  return ref.ask<DigestMsg>(pointReadMsg('replica.read-digest', row, clocks), timeoutMs);
}

/** `readDigest` with its outcome handed to `answered`. */
export function requestDigest(ref: ActorRef<ReplicaMsg>, row: RowKey, clocks: Clocks, timeoutMs: number, answered: Answered<DigestMsg>): void {
  ref.request<DigestMsg>(pointReadMsg('replica.read-digest', row, clocks), timeoutMs, answered);
}

/** The mutations and reads a coordinator sends one replica together (see `requestBatch`). */
export interface ReplicaBatch {
  mutations: Mutation[];
  digests: RowKey[];
  /**
   * Data reads, for this node's own replica only: a local message is not
   * encoded, while a remote batch's answer of many values could outgrow a
   * frame, so the wire kind has no such field.
   */
  reads: RowKey[];
}

/** The name of the batch kind: send a batch only to a node that reads it (`ActorSystem.readsKind`). */
export const BATCH_KIND = 'replica.batch';

/**
 * Sends a batch to a replica in one message: it applies the mutations and
 * serves the reads as it would the same `mutate`, `readDigest` and
 * `readData` messages, and answers once for all of them, with a digest per
 * digest read, the data of each data read and the items that failed
 * (numbered mutations first, then digests, then data reads). The message
 * holds the mutations themselves, so they must not be changed afterwards.
 */
export function requestBatch(ref: ActorRef<ReplicaMsg>, batch: ReplicaBatch, clocks: Clocks, timeoutMs: number, answered: Answered<BatchedMsg>): void {
  const digests = batch.digests.length > 0 ? batch.digests.map(addressWire) : undefined;
  const reads = batch.reads.length > 0 ? batch.reads.map(addressWire) : undefined;
  ref.request<BatchedMsg>(
    (replyTo) => {
      // Built field by field, not as `{ ...msg, replyTo }`, which V8 gives a hidden class of its own each time.
      const msg: BatchMsg = { type: 'replica.batch', hlc: clocks.hlc, wallMicros: clocks.wallMicros, replyTo };
      if (batch.mutations.length > 0) msg.mutations = batch.mutations;
      if (digests !== undefined) msg.digests = digests;
      if (reads !== undefined) msg.reads = reads;
      return msg;
    },
    timeoutMs,
    answered,
  );
}

/** A row's address as the replica kinds carry it: the empty clustering key written out. */
function addressWire(row: RowKey): RowAddressWire {
  return { keyspace: row.keyspace, token: row.token, partition: row.partition, clustering: row.clustering ?? EMPTY };
}

function sliceMsg(q: SliceQuery, clocks: Clocks): (replyTo: ReplyTo<RowsMsg>) => ReplicaMsg {
  const msg: Omit<WireMessage<'replica.slice'>, 'type'> = {
    keyspace: q.keyspace,
    token: q.token,
    partition: q.partition,
    limit: q.limit,
    reverse: q.reverse,
    ...clocks,
  };
  if (q.from !== undefined) msg.from = q.from;
  if (q.to !== undefined) msg.to = q.to;
  if (q.after !== undefined) msg.after = q.after;
  return (replyTo) => ({ type: 'replica.slice', ...msg, replyTo });
}

export function readSlice(ref: ActorRef<ReplicaMsg>, q: SliceQuery, clocks: Clocks, timeoutMs: number): Promise<RowsMsg> {
  return ref.ask<RowsMsg>(sliceMsg(q, clocks), timeoutMs);
}

/** `readSlice` with its outcome handed to `answered`. */
export function requestSlice(ref: ActorRef<ReplicaMsg>, q: SliceQuery, clocks: Clocks, timeoutMs: number, answered: Answered<RowsMsg>): void {
  ref.request<RowsMsg>(sliceMsg(q, clocks), timeoutMs, answered);
}

/** A replica's slice answer as the page it read (dead rows included). */
export function pageOf(rows: RowsMsg): SlicePage {
  const page: SlicePage = {
    rows: rows.rows.map((r): SliceRow => ({ clustering: r.clustering, cell: fromWireCell(r) ?? { tombstone: true, timestampMicros: 0 } })),
  };
  if (rows.nextPage !== undefined) page.nextPage = rows.nextPage;
  if (rows.partitionDeletedAtMicros !== undefined) page.partitionDeletedAtMicros = rows.partitionDeletedAtMicros;
  return page;
}

/** A page of a range as a replica streams it. */
export interface RangePage {
  entries: StreamEntryWire[];
  /** Where the page stopped: pass it as `after` for the next page. Absent on an empty range. */
  last?: ScanPosition;
  done: boolean;
}

/**
 * Asks a replica for the next page of a token range's entries of one
 * keyspace (dead ones included), after `after` (the `last` of the previous
 * page; none for the first). Apply a page's entries with `mutationsOf`.
 */
export function streamRange(ref: ActorRef<ReplicaMsg>, keyspace: string, range: TokenRange, after: ScanPosition | undefined, clocks: Clocks, timeoutMs: number): Promise<RangePageMsg> {
  return ref.ask<RangePageMsg>((replyTo) => ({ type: 'replica.stream-range', keyspace, start: range.start, end: range.end, ...(after ? { after: positionWire(after) } : {}), ...clocks, replyTo }), timeoutMs);
}

/** A position with only the fields it has, so the schema check holds. */
function positionWire(p: ScanPosition): ScanPosition {
  return p.clustering === undefined ? { token: p.token, partition: p.partition } : { token: p.token, partition: p.partition, clustering: p.clustering };
}

/** The mutations that write a page's entries on another replica as they are: same timestamps, same expiry, tombstones and partition deletions included. */
export function mutationsOf(keyspace: string, entries: readonly StreamEntryWire[]): Mutation[] {
  return entries.map((e): Mutation => {
    const token = e.token as Token;
    if (e.clustering === undefined) return { keyspace, token, partition: e.partition, partitionDeletion: { timestampMicros: e.timestampMicros } };
    const cell = fromWireCell(e)!;
    return { keyspace, token, partition: e.partition, clustering: e.clustering, cell };
  });
}

/** Bytes an entry costs in a page (and in `stream_throughput`): keys, value and a fixed overhead. */
export function entryBytes(e: Pick<StreamEntryWire, 'partition' | 'clustering' | 'value'>): number {
  return e.partition.length + (e.clustering?.length ?? 0) + (e.value?.length ?? 0) + SLICE_ROW_OVERHEAD_BYTES;
}

function streamEntryOf(e: ScanEntry): StreamEntryWire | undefined {
  if (e.type === 'partition-deletion') return { token: e.token, partition: e.partition, state: 'tombstone', timestampMicros: e.timestampMicros };
  // A row older than its partition's deletion: the deletion, streamed before it, says all there is.
  if (e.shadowed) return undefined;
  const out: StreamEntryWire = { token: e.token, partition: e.partition, clustering: e.clustering, ...(toWireCell(e.cell) as Pick<StreamEntryWire, 'state' | 'value' | 'timestampMicros' | 'expiresAtMicros'>) };
  return out;
}

/**
 * One replica's page of a token range, in scan order: rows with their
 * reconciled cells (tombstones and expired values included) and partition
 * deletions, at most MAX_STREAM_ENTRIES entries and `budgetBytes` of them
 * (always one, so a page makes progress). `last` is the position of the last
 * entry scanned, even one left out (a row shadowed by its partition's
 * deletion), so the next page never scans it again.
 */
export async function rangePageWithinBudget(
  store: Pick<StoreReader, 'scanRange'>,
  keyspace: string,
  range: TokenRange,
  after: ScanPosition | undefined,
  budgetBytes: number = STREAM_PAGE_BUDGET_BYTES,
): Promise<RangePage> {
  const entries: StreamEntryWire[] = [];
  let bytes = 0;
  let last: ScanPosition | undefined;
  for await (const e of store.scanRange(keyspace, range, { includeDead: true, chunkSize: 256, ...(after ? { after } : {}) })) {
    const entry = streamEntryOf(e);
    if (entry !== undefined) {
      const size = entryBytes(entry);
      // Leaving the loop closes the scan; the entry is read again as the next page's first.
      if (entries.length > 0 && (bytes + size > budgetBytes || entries.length === MAX_STREAM_ENTRIES)) return page(entries, last, false);
      entries.push(entry);
      bytes += size;
    }
    last = positionOf(e);
  }
  return page(entries, last ?? after, true);
}

function page(entries: StreamEntryWire[], last: ScanPosition | undefined, done: boolean): RangePage {
  return last === undefined ? { entries, done } : { entries, last: positionWire(last), done };
}

/** A data answer built in one object (no wire cell to spread): replicas send one per read. */
function dataMsg(cell: Cell | undefined, hlcNow: number, wallMicros: number): DataMsg {
  if (cell === undefined) return { type: 'replica.data', state: 'absent', hlc: hlcNow, wallMicros };
  if (isTombstone(cell)) return { type: 'replica.data', state: 'tombstone', timestampMicros: cell.timestampMicros, hlc: hlcNow, wallMicros };
  if (cell.expiresAtMicros === undefined) return { type: 'replica.data', state: 'value', value: cell.value, timestampMicros: cell.timestampMicros, hlc: hlcNow, wallMicros };
  return { type: 'replica.data', state: 'value', value: cell.value, timestampMicros: cell.timestampMicros, expiresAtMicros: cell.expiresAtMicros, hlc: hlcNow, wallMicros };
}

function addressOf(m: RowAddressWire): RowAddress {
  return { keyspace: m.keyspace, token: m.token as Token, partition: m.partition, clustering: m.clustering };
}

function rowBytes(row: SliceRow): number {
  const value = isTombstone(row.cell) ? 0 : row.cell.value.length;
  return row.clustering.length + value + SLICE_ROW_OVERHEAD_BYTES;
}

/**
 * One replica's page of a slice, dead rows included: up to `limit` rows and
 * at most `budgetBytes` of them (the first row always, so every page makes
 * progress). Reads the store in chunks sized by the rows seen so far, and
 * stops as soon as the page is full either way. A page cut short by the
 * budget carries `nextPage` (its last row), as a full page does.
 */
export async function sliceWithinBudget(store: Pick<StoreReader, 'slice'>, q: SliceQuery, budgetBytes: number = SLICE_ANSWER_BUDGET_BYTES): Promise<SlicePage> {
  const rows: SliceRow[] = [];
  let bytes = 0;
  let after = q.after;
  let deletedAt: number | undefined;
  let chunk = Math.min(q.limit, SLICE_FIRST_CHUNK_ROWS);
  const finish = (full: boolean): SlicePage => {
    const page: SlicePage = { rows };
    if (full && rows.length > 0) page.nextPage = rows[rows.length - 1]!.clustering;
    if (deletedAt !== undefined) page.partitionDeletedAtMicros = deletedAt;
    return page;
  };
  for (;;) {
    const part = await store.slice(q.keyspace, q.token, q.partition, { from: q.from, to: q.to, after, limit: chunk, reverse: q.reverse, includeDead: true });
    if (part.partitionDeletedAtMicros !== undefined && (deletedAt === undefined || part.partitionDeletedAtMicros > deletedAt)) deletedAt = part.partitionDeletedAtMicros;
    for (const row of part.rows) {
      const size = rowBytes(row);
      if (rows.length > 0 && bytes + size > budgetBytes) return finish(true);
      rows.push(row);
      bytes += size;
      if (rows.length === q.limit) return finish(true);
    }
    if (part.nextPage === undefined) return finish(false);
    after = part.nextPage;
    // Ask for about as many rows as the rest of the budget holds at the average size so far.
    const fit = Math.ceil((budgetBytes - bytes) / (bytes / rows.length)) + 1;
    chunk = Math.max(1, Math.min(q.limit - rows.length, fit));
  }
}

export interface ReplicaOptions {
  env: Env;
  storage: StorageHandle;
  hlc: HybridLogicalClock;
  skew: SkewTracker;
  name?: string;
  /** How long a mutation may wait for the storage actor. */
  storageTimeoutMs?: number;
  /** Bytes of keys and values per slice answer (default SLICE_ANSWER_BUDGET_BYTES). */
  sliceBudgetBytes?: number;
  /** Bytes of keys and values per range-stream page (default STREAM_PAGE_BUDGET_BYTES). */
  streamBudgetBytes?: number;
  /** Bytes of mutations queued before more are refused with MailboxFull (default DEFAULT_REPLICA_MAILBOX_BYTES). */
  mailboxBytes?: number;
  /** True once this node announced LEFT: reads are refused with ReplicaLeft from then on, writes still acknowledged. */
  left?: () => boolean;
}

/** Bytes of mutations the replica actor queues: past it a coordinator's write to this replica fails at once (Overloaded) instead of queueing. */
export const DEFAULT_REPLICA_MAILBOX_BYTES = 128 * 1024 * 1024;

/** Bytes of mutations in one message to the storage actor: a turn's writes beyond it go in several, so none is refused for its size alone. */
const STORE_MESSAGE_BYTES = 4 * 1024 * 1024;

/** What a point read counts for in the mailbox's byte bound. */
const READ_MSG_BYTES = 128;

function replicaMsgBytes(m: ReplicaMsg): number {
  if (m.type === 'replica.mutate') return mutationBytes(m.mutation);
  if (m.type !== 'replica.batch') return READ_MSG_BYTES;
  let bytes = READ_MSG_BYTES * ((m.digests?.length ?? 0) + (m.reads?.length ?? 0));
  for (const mutation of m.mutations ?? []) bytes += mutationBytes(mutation);
  return bytes;
}

/**
 * The answer to one `replica.batch`, filled item by item as the turn's
 * writes land and its reads complete, and sent once the last is in.
 */
class BatchAnswer {
  private pending: number;
  /** Where the batch's digest reads and data reads start among its items. */
  private readonly firstDigest: number;
  private readonly firstRead: number;
  private readonly digests: Uint8Array[];
  private readonly data: DataMsg[];
  private failures: BatchedMsg['failures'];

  constructor(
    private readonly msg: BatchMsg,
    private readonly ctx: ActorContext<ReplicaMsg>,
    private readonly clocks: () => Clocks,
  ) {
    this.firstDigest = msg.mutations?.length ?? 0;
    this.firstRead = this.firstDigest + (msg.digests?.length ?? 0);
    this.pending = this.firstRead + (msg.reads?.length ?? 0);
    this.digests = new Array<Uint8Array>(this.firstRead - this.firstDigest).fill(EMPTY);
    this.data = new Array<DataMsg>(this.pending - this.firstRead);
    if (this.pending === 0) this.send();
  }

  /**
   * Item `index` (mutations first, then digest reads, then data reads)
   * succeeded, with the read's result (a digest, or a cell and the digest
   * the row cache had for it), or failed.
   */
  done(index: number, error: Error | undefined, result?: Cell | Uint8Array, digest?: Uint8Array): void {
    if (error !== undefined) (this.failures ??= []).push({ index, error: toWireError(error) });
    else if (index >= this.firstRead) {
      const { hlc, wallMicros } = this.clocks();
      const data = dataMsg(result as Cell | undefined, hlc, wallMicros);
      if (digest !== undefined) data.digest = digest;
      this.data[index - this.firstRead] = data;
    } else if (index >= this.firstDigest) this.digests[index - this.firstDigest] = result as Uint8Array;
    if (--this.pending === 0) this.send();
  }

  private send(): void {
    const answer: BatchedMsg = { type: 'replica.batched', ...this.clocks() };
    if (this.digests.length > 0) answer.digests = this.digests;
    if (this.data.length > 0) answer.data = this.data;
    if (this.failures !== undefined) answer.failures = this.failures;
    this.ctx.reply(this.msg.replyTo, answer);
  }
}

/** Who hears how a mutation or a point read of the turn went: the message that asked for it, or the batch holding it (with the item's number). */
type Asker<M> = M | BatchAnswer;

/**
 * Spawns the replica actor: it applies mutations through the local storage
 * actor (group commit) and serves reads straight from the store (which sees
 * every acknowledged write). Handlers never await, so one slow disk read does
 * not hold up the mutations queued behind it.
 */
export function spawnReplica(system: ActorSystem, options: ReplicaOptions): ActorRef<ReplicaMsg> {
  const { env, storage, hlc, skew } = options;
  const storageTimeoutMs = options.storageTimeoutMs ?? 10_000;
  const sliceBudgetBytes = options.sliceBudgetBytes ?? SLICE_ANSWER_BUDGET_BYTES;
  const streamBudgetBytes = options.streamBudgetBytes ?? STREAM_PAGE_BUDGET_BYTES;
  const mutationBoundMicros = REPLICA_SKEW_FACTOR * hlc.maxSkewMicros;
  const clocks = (): Clocks => ({ hlc: hlc.peek(), wallMicros: env.clock.nowMicros() });
  type PointReadMsg = Extract<ReplicaMsg, { type: 'replica.read' | 'replica.read-digest' }>;
  /** Moves this node's clock past the sender's and notes the sender's offset: every message does it on arrival. */
  const observe = (msg: ReplicaMsg): void => {
    const from = msg.replyTo.node as NodeId;
    // The sender's wall clock at send time: only a lower bound on its offset (a backlog here makes it look behind), see SkewTracker.
    if (from !== env.node) skew.observeOneWay(from, msg.wallMicros, env.clock.nowMicros());
    hlc.observe(msg.hlc);
  };
  /** The mutations of one turn, with who asked for each (its item number within a batch, -1 otherwise). */
  interface TurnWrites {
    mutations: Mutation[];
    askers: Array<Asker<MutateMsg>>;
    items: number[];
    bytes: number;
  }
  /**
   * The mutations of one turn go to the storage actor as one message (cut at STORE_MESSAGE_BYTES):
   * one ask and one answer for all of them, not one per write. Each is acknowledged, or failed, on its own.
   */
  const storeWrites = ({ mutations, askers, items, bytes }: TurnWrites, ctx: ActorContext<ReplicaMsg>): void => {
    const settle = (i: number, error: Error | undefined, mutated: () => MutatedMsg): void => {
      const asker = askers[i]!;
      if (asker instanceof BatchAnswer) asker.done(items[i]!, error);
      else if (error !== undefined) ctx.fail(asker.replyTo, error);
      else ctx.reply(asker.replyTo, mutated());
    };
    env.scheduler.track(writeMany(storage.ref, mutations, bytes, storageTimeoutMs)).then(
      (outcomes) => {
        // One answer object for the turn: it is read-only on its way, and the clocks are the same for all.
        let answer: MutatedMsg | undefined;
        const mutated = () => (answer ??= { type: 'replica.mutated', ...clocks() });
        for (let i = 0; i < mutations.length; i++) settle(i, outcomes[i], mutated);
      },
      (error: unknown) => {
        const failure = error instanceof Error ? error : new Error(String(error));
        for (let i = 0; i < mutations.length; i++) settle(i, failure, () => undefined as never);
      },
    );
  };
  const handle = (msg: Exclude<ReplicaMsg, PointReadMsg | MutateMsg>, ctx: ActorContext<ReplicaMsg>): void => {
    const answer = <R>(work: Promise<R>, reply: (r: R) => unknown): void => {
      env.scheduler.track(work).then(
        (r) => ctx.reply(msg.replyTo as ReplyTo<unknown>, reply(r)),
        (error: unknown) => ctx.fail(msg.replyTo, error instanceof Error ? error : new Error(String(error))),
      );
    };
    switch (msg.type) {
      case 'replica.slice': {
        const q: SliceQuery = { keyspace: msg.keyspace, token: msg.token as Token, partition: msg.partition, limit: msg.limit, reverse: msg.reverse };
        if (msg.from !== undefined) q.from = msg.from;
        if (msg.to !== undefined) q.to = msg.to;
        if (msg.after !== undefined) q.after = msg.after;
        answer(sliceWithinBudget(storage.reader, q, sliceBudgetBytes), (page): RowsMsg => {
          const out: RowsMsg = { type: 'replica.rows', rows: page.rows.map((r) => ({ clustering: r.clustering, ...toWireCell(r.cell) })), ...clocks() };
          if (page.nextPage !== undefined) out.nextPage = page.nextPage;
          if (page.partitionDeletedAtMicros !== undefined) out.partitionDeletedAtMicros = page.partitionDeletedAtMicros;
          return out;
        });
        return;
      }
      case 'replica.stream-range': {
        const range = { start: msg.start as Token, end: msg.end as Token };
        const after = msg.after === undefined ? undefined : { ...msg.after, token: msg.after.token as Token };
        answer(rangePageWithinBudget(storage.reader, msg.keyspace, range, after, streamBudgetBytes), (p): RangePageMsg => ({ type: 'replica.range-page', ...p, ...clocks() }));
        return;
      }
    }
  };
  return system.spawn<ReplicaMsg>(options.name ?? REPLICA_ACTOR, () => ({
    receiveBatch(msgs, ctx) {
      // The point reads of one turn go to the store together, so their LevelDB misses share iterators.
      let reads: PointRead[] | undefined;
      let readers: Array<Asker<PointReadMsg>> | undefined;
      let readItems: number[] | undefined;
      let writes: TurnWrites | undefined;
      const write = (mutation: Mutation, asker: Asker<MutateMsg>, item: number): void => {
        const timestampMicros = timestampOf(mutation);
        // A coordinator whose clock runs ahead must not plant writes that beat every honest later one.
        hlc.checkNotTooFarAhead(timestampMicros, 'write timestamp', mutationBoundMicros);
        hlc.observe(timestampMicros);
        const bytes = mutationBytes(mutation);
        if (writes !== undefined && writes.bytes + bytes > STORE_MESSAGE_BYTES) {
          storeWrites(writes, ctx);
          writes = undefined;
        }
        writes ??= { mutations: [], askers: [], items: [], bytes: 0 };
        writes.mutations.push(mutation);
        writes.askers.push(asker);
        writes.items.push(item);
        writes.bytes += bytes;
      };
      const read = (address: RowAddress, digest: boolean, asker: Asker<PointReadMsg>, item: number): void => {
        (reads ??= []).push({ address, digest });
        (readers ??= []).push(asker);
        (readItems ??= []).push(item);
      };
      for (let i = 0; i < msgs.length; i++) {
        const msg = msgs[i]!;
        try {
          observe(msg);
          if (msg.type === 'replica.mutate') write(msg.mutation, msg, -1);
          else if (msg.type === 'replica.batch') {
            const batch = new BatchAnswer(msg, ctx, clocks);
            const mutations = msg.mutations ?? [];
            for (let m = 0; m < mutations.length; m++) {
              try {
                write(mutations[m]!, batch, m);
              } catch (error) {
                batch.done(m, error instanceof Error ? error : new Error(String(error)));
              }
            }
            const digests = msg.digests ?? [];
            const data = msg.reads ?? [];
            const left = options.left?.() === true ? new ReplicaLeft(env.node) : undefined;
            for (let r = 0; r < digests.length + data.length; r++) {
              const item = mutations.length + r;
              if (left !== undefined) batch.done(item, left);
              else if (r < digests.length) read(addressOf(digests[r]!), true, batch, item);
              else read(addressOf(data[r - digests.length]!), false, batch, item);
            }
          } else if (options.left?.() === true) ctx.fail(msg.replyTo, new ReplicaLeft(env.node));
          else if (msg.type === 'replica.read' || msg.type === 'replica.read-digest') read(addressOf(msg), msg.type === 'replica.read-digest', msg, -1);
          else handle(msg, ctx);
        } catch (error) {
          // A message that breaks its handler fails alone, never the turn's other messages.
          ctx.fail(msg.replyTo, error instanceof Error ? error : new Error(String(error)));
        }
      }
      if (writes !== undefined) storeWrites(writes, ctx);
      if (reads === undefined) return;
      const askers = readers!;
      const items = readItems!;
      const done = (i: number, error: Error | undefined, result: Cell | Uint8Array | undefined, digest?: Uint8Array): void => {
        const asker = askers[i]!;
        if (asker instanceof BatchAnswer) asker.done(items[i]!, error, result, digest);
        else if (error !== undefined) ctx.fail(asker.replyTo, error);
        else if (asker.type === 'replica.read') {
          const data = dataMsg(result as Cell | undefined, hlc.peek(), env.clock.nowMicros());
          if (digest !== undefined && asker.replyTo.node === env.node) data.digest = digest;
          ctx.reply(asker.replyTo, data);
        } else ctx.reply(asker.replyTo, { type: 'replica.digest', digest: result as Uint8Array, hlc: hlc.peek(), wallMicros: env.clock.nowMicros() } satisfies DigestMsg);
      };
      env.scheduler.track(storage.reader.pointReads(reads, done)).catch((error: unknown) => ctx.log.error({ err: error }, 'point reads failed'));
    },
  }), { mailbox: { capacity: 50_000, overflow: 'reject', maxBytes: options.mailboxBytes ?? DEFAULT_REPLICA_MAILBOX_BYTES, sizeOf: replicaMsgBytes } });
}
