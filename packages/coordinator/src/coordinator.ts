import type { ActorContext, ActorRef, ActorSystem, Behavior, ReplyTo } from '@chorus/actors';
import { type Env, InvalidRequest, type MembershipView, type NodeId, Overloaded, type Timer, type Token, isChorusError } from '@chorus/core';
import { type KeyspaceDef, type RingView, tokenOf } from '@chorus/ring';
import { InvalidSlice, type StorageHandle } from '@chorus/storage';
import { type Cell, EmptyPartitionKey, KeyTooLarge, LIMITS, type Mutation, cellDigest, expiryFromTtl, isDead, isTombstone, validateMutation } from '@chorus/model';
import { ClockSkewed, ReadTimeout, RequestFailed, WriteTimeout } from './errors.js';
import { DEFAULT_MAX_CLOCK_SKEW_MS, HybridLogicalClock, type PeerSkew, SkewTracker } from './hlc.js';
import { LatencyHistogram, PeerLatencies } from './latency.js';
import { type ConsistencyLevel, DEFAULT_CONSISTENCY, parseConsistency, validateForRead } from './levels.js';
import { type ReplicaPlan, countAnswers, isSatisfied, planRead, planWrite, takeExtra } from './plan.js';
import {
  type Clocks,
  type DataMsg,
  type DigestMsg,
  type MutatedMsg,
  REPLICA_ACTOR,
  type ReplicaMsg,
  type RowKey,
  type RowsMsg,
  type SliceQuery,
  fromWireCell,
  mutate,
  pageOf,
  readData,
  readDigest,
  readSlice,
  spawnReplica,
} from './replica.js';
import { type MergedPage, type ReplicaPage, digestsAgree, mergeSlicePages, resolveCells, staleReplicas } from './resolve.js';
import { sortByProximity } from './snitch.js';

export const DEFAULT_WRITE_TIMEOUT_MS = 2_000;
export const DEFAULT_READ_TIMEOUT_MS = 5_000;
/** Speculative-retry delay for a replica with no latency samples yet. */
export const DEFAULT_SPECULATIVE_DELAY_MS = 50;
export const DEFAULT_MAX_IN_FLIGHT = 10_000;
export const COORDINATOR_ACTOR = 'coordinator';

/** Keys are bytes, or strings taken as UTF-8. */
export type Key = Uint8Array | string;

/** What the coordinator reads of the cluster's layout; every request takes one snapshot of it. */
export interface CoordinatorTopology {
  ring(): RingView;
  keyspace(name: string): KeyspaceDef | undefined;
  readonly localDc: string;
  readonly localRack: string;
}

export interface CoordinatorOptions {
  env: Env;
  membership: MembershipView;
  topology: CoordinatorTopology;
  storage: StorageHandle;
  /** `write_request_timeout` (default 2000 ms). */
  writeTimeoutMs?: number;
  /** `read_request_timeout` (default 5000 ms, as Cassandra). */
  readTimeoutMs?: number;
  /** `max_clock_skew` (default 1000 ms): client timestamps and peer clocks further ahead are refused or flagged. */
  maxClockSkewMs?: number;
  /** Speculative-retry delay before a replica has latency samples (default 50 ms). */
  defaultSpeculativeDelayMs?: number;
  /** Requests coordinated at once before new ones fail with Overloaded (default 10000). */
  maxInFlight?: number;
  /**
   * Called when a read's replicas disagreed, with the resolved version and the
   * stale replicas: where read repair plugs in. Not awaited (the answer does
   * not wait for repair); a blocking repair would be awaited at the same place.
   */
  onReadMismatch?: (mismatch: ReadMismatch) => void;
  /** Actor names, for several coordinators in one system (tests). */
  names?: { coordinator?: string; replica?: string };
}

export interface ReadMismatch {
  keyspace: string;
  token: Token;
  partition: Uint8Array;
  clustering: Uint8Array;
  resolved: Cell | undefined;
  /** What each replica that sent data held. */
  answers: ReadonlyMap<NodeId, Cell | undefined>;
  /** The replicas whose version is older than `resolved`. */
  stale: NodeId[];
}

export interface WriteOptions {
  consistency?: ConsistencyLevel | string;
  ttlSeconds?: number;
  /** The client's own write timestamp (µs); refused when further ahead than max_clock_skew. */
  timestampMicros?: number;
}

export interface ReadOptions {
  consistency?: ConsistencyLevel | string;
}

export interface SliceOptions extends ReadOptions {
  /** Inclusive clustering bounds. */
  from?: Key;
  to?: Key;
  /** Live rows per page (default 1000, at most 10000). */
  limit?: number;
  /** The `nextPage` of the previous page. */
  page?: Uint8Array;
  reverse?: boolean;
}

export interface Row {
  clustering: Uint8Array;
  value: Uint8Array;
  timestampMicros: number;
  expiresAtMicros?: number;
}

export interface SliceResult {
  rows: Row[];
  /** Pass as `page` for the next page; absent at the end of the slice. */
  nextPage?: Uint8Array;
}

export interface OpStats {
  ok: number;
  unavailable: number;
  timeouts: number;
  failed: number;
  latency: { count: number; p50Ms: number; p99Ms: number; maxMs: number };
}

export interface CoordinatorStats {
  write: OpStats;
  read: OpStats;
  slice: OpStats;
  inFlight: number;
  speculativeRetries: number;
  digestMismatches: number;
  /** Peer timestamps not adopted by the clock because they lay beyond max_clock_skew. */
  refusedPeerTimestamps: number;
  peers: Record<string, { ewmaMs: number; p99Ms: number; samples: number }>;
}

export interface CoordinatorHandle {
  readonly ref: ActorRef<CoordinatorMsg>;
  readonly replica: ActorRef<ReplicaMsg>;
  put(keyspace: string, key: Key, clustering: Key | undefined, value: Uint8Array | string, options?: WriteOptions): Promise<{ timestampMicros: number }>;
  /** The live value; undefined when absent, deleted or expired. */
  get(keyspace: string, key: Key, clustering?: Key, options?: ReadOptions): Promise<{ value: Uint8Array; timestampMicros: number } | undefined>;
  /** The resolved cell, tombstones and expired values included: for tools and tests that need the version a read saw. */
  getCell(keyspace: string, key: Key, clustering?: Key, options?: ReadOptions): Promise<Cell | undefined>;
  /** Writes a row tombstone. */
  del(keyspace: string, key: Key, clustering?: Key, options?: Omit<WriteOptions, 'ttlSeconds'>): Promise<{ timestampMicros: number }>;
  /** Deletes every row of the partition written at or before the deletion's timestamp. */
  deletePartition(keyspace: string, partition: Key, options?: Omit<WriteOptions, 'ttlSeconds'>): Promise<{ timestampMicros: number }>;
  slice(keyspace: string, partition: Key, options?: SliceOptions): Promise<SliceResult>;
  /** This node's own replica's raw cell (tombstones included), without coordination. */
  local(keyspace: string, key: Key, clustering?: Key): Promise<Cell | undefined>;
  stats(): CoordinatorStats;
  /** Per-peer clock offset estimates; `flagged` beyond max_clock_skew. */
  clockSkew(): Record<string, PeerSkew>;
  readonly clock: HybridLogicalClock;
  stop(): Promise<void>;
}

type WriteAnswer = { timestampMicros: number };
type ReadAnswer = { cell: Cell | undefined };

/** The coordinator actor's messages. Only this module builds them. */
export type CoordinatorMsg =
  | { type: 'write'; keyspace: KeyspaceDef; consistency: ConsistencyLevel; mutation: Mutation; timestampMicros: number; replyTo: ReplyTo<WriteAnswer> }
  | { type: 'read'; keyspace: KeyspaceDef; consistency: ConsistencyLevel; row: RowKey; replyTo: ReplyTo<ReadAnswer> }
  | { type: 'slice'; keyspace: KeyspaceDef; consistency: ConsistencyLevel; query: SliceQuery; replyTo: ReplyTo<MergedPage> }
  | {
      type: 'answer';
      id: number;
      from: NodeId;
      /** Our monotonic clock when the ask went out and when its answer arrived (before any wait in this mailbox). */
      sentAtMs: number;
      receivedAtMs: number;
      /** Our wall clock when the ask went out: with the peer's reading in the answer, an NTP-style offset sample. */
      sentWallMicros: number;
      outcome: Outcome;
    }
  | { type: 'tick'; id: number; tag: Tick };

type ReplicaAnswer = MutatedMsg | DataMsg | DigestMsg | RowsMsg;
type Outcome = { ok: true; msg: ReplicaAnswer } | { ok: false; error: Error };
type Tick = 'timeout' | 'speculate';
type Op = 'write' | 'read' | 'slice';

/** What a request's state machine may do; provided by the actor. */
interface RequestIo {
  readonly plan: ReplicaPlan;
  ask(node: NodeId, send: (ref: ActorRef<ReplicaMsg>, clocks: Clocks, timeoutMs: number) => Promise<ReplicaAnswer>): void;
  after(ms: number, tag: Tick): void;
  succeed(value: unknown): void;
  fail(error: Error): void;
  speculated(): void;
  mismatch(): void;
}

interface Request {
  start(): void;
  onAnswer(from: NodeId, outcome: Outcome): void;
  onTick(tag: Tick): void;
  /** The error for a request cut short before its deadline (the coordinator is restarting or stopping), with the counts so far. */
  interrupted(detail: string): Error;
}

/** A client error from a replica (say, a timestamp too far ahead) explains a failure better than a timeout. */
function clientError(errors: readonly Error[]): Error | undefined {
  return errors.find((e) => isChorusError(e) && e.httpStatus >= 400 && e.httpStatus < 500);
}

class WriteRequest implements Request {
  private readonly acks = new Set<NodeId>();
  private readonly outstanding = new Set<NodeId>();
  private readonly errors: Error[] = [];

  constructor(private readonly io: RequestIo, private readonly mutation: Mutation, private readonly timestampMicros: number, private readonly timeoutMs: number) {}

  start(): void {
    this.io.after(this.timeoutMs, 'timeout');
    for (const node of this.io.plan.contacts) {
      this.outstanding.add(node);
      this.io.ask(node, (ref, clocks, t) => mutate(ref, this.mutation, clocks, t));
    }
  }

  onAnswer(from: NodeId, outcome: Outcome): void {
    if (!this.outstanding.delete(from)) return;
    const plan = this.io.plan;
    if (outcome.ok) {
      this.acks.add(from);
      if (isSatisfied(plan, this.acks)) this.io.succeed({ timestampMicros: this.timestampMicros });
      else this.settleIfHopeless();
      return;
    }
    this.errors.push(outcome.error);
    this.settleIfHopeless();
  }

  /**
   * Once the level is out of reach, fails the write. A replica's client error
   * (say, a timestamp too far ahead of its clock) is the answer only when no
   * replica applied the write and none still might: otherwise the write
   * exists somewhere and may win later, and a 4xx would tell the client it
   * did not happen. Then it is a WriteTimeout with the acknowledgements
   * received, which says the write may have been applied.
   */
  private settleIfHopeless(): void {
    const plan = this.io.plan;
    if (isSatisfied(plan, [...this.acks, ...this.outstanding])) return;
    const refusal = clientError(this.errors);
    if (this.acks.size > 0) {
      this.io.fail(this.timeout(refusal && `refused by a replica: ${refusal.message}`));
      return;
    }
    // Wait for the replicas still asked: whether any applies the write decides which error is true.
    if (this.outstanding.size > 0) return;
    this.io.fail(refusal ?? this.timeout());
  }

  onTick(): void {
    this.io.fail(this.timeout());
  }

  interrupted(detail: string): Error {
    return this.timeout(detail);
  }

  private timeout(detail?: string): WriteTimeout {
    const plan = this.io.plan;
    return new WriteTimeout(plan.consistency, plan.blockFor, countAnswers(plan, this.acks), 'SIMPLE', detail);
  }
}

interface ReadAnswerState {
  digest: Uint8Array;
  /** Set once the replica sent data (not just a digest). */
  data?: { cell: Cell | undefined };
}

/**
 * One read: data from the closest replica, digests from the others the level
 * needs. Matching digests answer at once; a mismatch asks every answering
 * replica for data and resolves last-write-wins. Replicas that fail are
 * replaced from the plan's extras; one speculative request goes out when the
 * contacts are slower than their recent p99.
 */
class ReadRequest implements Request {
  private readonly answers = new Map<NodeId, ReadAnswerState>();
  private readonly outstanding = new Map<NodeId, 'data' | 'digest'>();
  private readonly extras: NodeId[];
  private readonly errors: Error[] = [];
  private phase: 'digests' | 'resolve' = 'digests';
  private speculated = false;

  constructor(
    private readonly io: RequestIo,
    private readonly row: RowKey,
    private readonly timeoutMs: number,
    private readonly speculateAfterMs: number | undefined,
    private readonly onMismatch: ((resolved: Cell | undefined, answers: Map<NodeId, Cell | undefined>) => void) | undefined,
  ) {
    this.extras = [...io.plan.extras];
  }

  start(): void {
    this.io.after(this.timeoutMs, 'timeout');
    this.io.plan.contacts.forEach((node, i) => this.request(node, i === 0 ? 'data' : 'digest'));
    if (this.speculateAfterMs !== undefined && this.extras.length > 0) this.io.after(this.speculateAfterMs, 'speculate');
  }

  private request(node: NodeId, kind: 'data' | 'digest'): void {
    this.outstanding.set(node, kind);
    if (kind === 'data') this.io.ask(node, (ref, clocks, t) => readData(ref, this.row, clocks, t));
    else this.io.ask(node, (ref, clocks, t) => readDigest(ref, this.row, clocks, t));
  }

  private get dataPresent(): boolean {
    for (const a of this.answers.values()) if (a.data) return true;
    return false;
  }

  private get dataOutstanding(): boolean {
    for (const kind of this.outstanding.values()) if (kind === 'data') return true;
    return false;
  }

  onAnswer(from: NodeId, outcome: Outcome): void {
    if (!this.outstanding.has(from)) return;
    this.outstanding.delete(from);
    if (!outcome.ok) {
      this.errors.push(outcome.error);
      this.answers.delete(from);
      const replacement = takeExtra(this.io.plan, this.extras, [...this.answers.keys(), ...this.outstanding.keys()], this.io.plan.dcOf.get(from));
      if (replacement !== undefined) this.request(replacement, this.phase === 'resolve' || (!this.dataPresent && !this.dataOutstanding) ? 'data' : 'digest');
      this.progress();
      return;
    }
    const msg = outcome.msg;
    if (msg.type === 'replica.data') {
      const cell = fromWireCell(msg);
      this.answers.set(from, { digest: cellDigest(cell), data: { cell } });
    } else if (msg.type === 'replica.digest') {
      this.answers.set(from, { digest: msg.digest });
      // Already resolving: this late (speculative) replica must send data to count.
      if (this.phase === 'resolve') this.request(from, 'data');
    }
    this.progress();
  }

  onTick(tag: Tick): void {
    if (tag === 'timeout') {
      this.io.fail(this.interrupted());
      return;
    }
    if (this.speculated || this.phase !== 'digests' || isSatisfied(this.io.plan, this.answers.keys())) return;
    // For the datacenter still short of answers (EACH_QUORUM): a slow remote contact is not helped by a local extra.
    const extra = takeExtra(this.io.plan, this.extras, this.answers.keys());
    if (extra === undefined) return;
    this.speculated = true;
    this.io.speculated();
    this.request(extra, this.dataPresent ? 'digest' : 'data');
  }

  private progress(): void {
    const plan = this.io.plan;
    if (this.phase === 'digests') {
      if (!isSatisfied(plan, this.answers.keys())) return this.failIfHopeless([...this.answers.keys()]);
      if (!this.dataPresent) {
        // Enough digests but the data replica failed: ask one of the digest replicas for data.
        if (!this.dataOutstanding) this.request(this.answers.keys().next().value!, 'data');
        return;
      }
      const digests = [...this.answers.values()].map((a) => a.digest);
      if (digestsAgree(digests)) {
        const withData = [...this.answers.values()].find((a) => a.data)!;
        this.io.succeed({ cell: withData.data!.cell });
        return;
      }
      this.io.mismatch();
      this.phase = 'resolve';
      for (const [node, a] of this.answers) if (!a.data && !this.outstanding.has(node)) this.request(node, 'data');
    }
    const withData = [...this.answers].filter(([, a]) => a.data).map(([n]) => n);
    if (!isSatisfied(plan, withData)) return this.failIfHopeless(withData);
    const cells = new Map<NodeId, Cell | undefined>();
    for (const [node, a] of this.answers) if (a.data) cells.set(node, a.data.cell);
    const resolved = resolveCells(cells.values());
    this.onMismatch?.(resolved, cells);
    this.io.succeed({ cell: resolved });
  }

  interrupted(detail?: string): Error {
    const responders = this.phase === 'digests' ? [...this.answers.keys()] : [...this.answers].filter(([, a]) => a.data).map(([n]) => n);
    return new ReadTimeout(this.io.plan.consistency, this.io.plan.blockFor, countAnswers(this.io.plan, responders), this.dataPresent, detail);
  }

  /**
   * Fails at once when the answers still possible cannot meet the level any
   * more (the replicas left are known dead). Every extra left counts as
   * possible: a failure is replaced from the failed replica's own scope
   * (`takeExtra`), so an extra is asked whenever its datacenter runs short.
   */
  private failIfHopeless(answered: NodeId[]): void {
    const possible = [...answered, ...this.outstanding.keys(), ...this.extras];
    if (isSatisfied(this.io.plan, possible)) return;
    this.io.fail(clientError(this.errors) ?? new ReadTimeout(this.io.plan.consistency, this.io.plan.blockFor, countAnswers(this.io.plan, answered), this.dataPresent));
  }
}

/**
 * One page of a slice: full pages (dead rows included) from as many replicas
 * as the level needs, merged row by row. Digests of pages would save bytes
 * only when replicas agree, and pages of different replicas end at different
 * rows, so they would rarely agree; full pages keep one round trip.
 */
class SliceRequest implements Request {
  private readonly pages = new Map<NodeId, ReplicaPage>();
  private readonly outstanding = new Set<NodeId>();
  private readonly extras: NodeId[];
  private readonly errors: Error[] = [];
  private speculated = false;

  constructor(
    private readonly io: RequestIo,
    private readonly query: SliceQuery,
    private readonly timeoutMs: number,
    private readonly speculateAfterMs: number | undefined,
    private readonly nowMicros: () => number,
  ) {
    this.extras = [...io.plan.extras];
  }

  start(): void {
    this.io.after(this.timeoutMs, 'timeout');
    for (const node of this.io.plan.contacts) this.request(node);
    if (this.speculateAfterMs !== undefined && this.extras.length > 0) this.io.after(this.speculateAfterMs, 'speculate');
  }

  private request(node: NodeId): void {
    this.outstanding.add(node);
    this.io.ask(node, (ref, clocks, t) => readSlice(ref, this.query, clocks, t));
  }

  onAnswer(from: NodeId, outcome: Outcome): void {
    if (!this.outstanding.delete(from)) return;
    const plan = this.io.plan;
    if (outcome.ok && outcome.msg.type === 'replica.rows') this.pages.set(from, pageOf(outcome.msg));
    else {
      if (!outcome.ok) this.errors.push(outcome.error);
      const replacement = takeExtra(plan, this.extras, [...this.pages.keys(), ...this.outstanding], plan.dcOf.get(from));
      if (replacement !== undefined) this.request(replacement);
    }
    if (isSatisfied(plan, this.pages.keys())) {
      this.io.succeed(mergeSlicePages([...this.pages.values()], this.query.limit, this.query.reverse, this.nowMicros()));
      return;
    }
    const possible = [...this.pages.keys(), ...this.outstanding, ...this.extras];
    if (!isSatisfied(plan, possible)) {
      this.io.fail(clientError(this.errors) ?? new ReadTimeout(plan.consistency, plan.blockFor, countAnswers(plan, this.pages.keys()), this.pages.size > 0));
    }
  }

  onTick(tag: Tick): void {
    const plan = this.io.plan;
    if (tag === 'timeout') {
      this.io.fail(this.interrupted());
      return;
    }
    if (this.speculated || isSatisfied(plan, this.pages.keys())) return;
    const extra = takeExtra(plan, this.extras, this.pages.keys());
    if (extra === undefined) return;
    this.speculated = true;
    this.io.speculated();
    this.request(extra);
  }

  interrupted(detail?: string): Error {
    const plan = this.io.plan;
    return new ReadTimeout(plan.consistency, plan.blockFor, countAnswers(plan, this.pages.keys()), this.pages.size > 0, detail);
  }
}

interface OpCounters {
  ok: number;
  unavailable: number;
  timeouts: number;
  failed: number;
  latency: LatencyHistogram;
}

function newCounters(): OpCounters {
  return { ok: 0, unavailable: 0, timeouts: 0, failed: 0, latency: new LatencyHistogram() };
}

interface Shared {
  env: Env;
  hlc: HybridLogicalClock;
  skew: SkewTracker;
  latencies: PeerLatencies;
  counters: Record<Op, OpCounters>;
  speculativeRetries: number;
  digestMismatches: number;
}

function coordinatorBehavior(system: ActorSystem, o: Required<Omit<CoordinatorOptions, 'onReadMismatch' | 'names' | 'storage'>> & Pick<CoordinatorOptions, 'onReadMismatch'>, shared: Shared, replicaName: string) {
  const { env, membership, topology } = o;
  const { hlc, skew, latencies } = shared;
  // Asks to replicas carry their operation's whole budget, so none outlives
  // the request that made it by more than that (a write's asks are not kept
  // for the longer read timeout); the request's own timer decides its outcome.
  const askTimeoutMs: Record<Op, number> = { write: o.writeTimeoutMs, read: o.readTimeoutMs, slice: o.readTimeoutMs };
  // Request ids outlive the behavior: a restarted actor must never reuse one,
  // or an answer to an ask sent before the restart would be counted for the
  // new request that got the same id (a wrong value, a false acknowledgement).
  let nextId = 1;

  return (): Behavior<CoordinatorMsg> => {
    const requests = new Map<number, { op: Op; request: Request; io: RequestIo; timers: Timer[] }>();

    const clocks = (): Clocks => ({ hlc: hlc.peek(), wallMicros: env.clock.nowMicros() });

    function deliver(ctx: ActorContext<CoordinatorMsg>, msg: CoordinatorMsg): void {
      try {
        ctx.self.tell(msg);
      } catch (error) {
        ctx.log.warn({ err: error }, 'coordinator mailbox refused a replica answer');
      }
    }

    function proximity(ring: RingView) {
      return (nodes: readonly NodeId[]) =>
        sortByProximity(nodes, {
          self: env.node,
          localDc: topology.localDc,
          localRack: topology.localRack,
          locate: (n) => ring.member(n) ?? membership.locationOf(n),
          latencyMs: (n) => latencies.ewma(n),
        });
    }

    function speculationDelay(plan: ReplicaPlan): number {
      let delay = 0;
      for (const n of plan.contacts) delay = Math.max(delay, latencies.p99(n) ?? o.defaultSpeculativeDelayMs);
      return Math.min(Math.max(1, delay), o.readTimeoutMs / 2);
    }

    function startRequest<R>(ctx: ActorContext<CoordinatorMsg>, op: Op, replyTo: ReplyTo<R>, makePlan: () => ReplicaPlan, make: (io: RequestIo) => Request): void {
      const counters = shared.counters[op];
      const startedAt = env.clock.monotonicMs();
      let plan: ReplicaPlan;
      try {
        // Everything the plan reads (ring, membership, keyspace) may throw; that fails this request, never the actor.
        plan = makePlan();
      } catch (error) {
        if (isChorusError(error) && error.code === 'UNAVAILABLE') counters.unavailable++;
        else counters.failed++;
        ctx.fail(replyTo, error instanceof Error ? error : new Error(String(error)));
        return;
      }
      const id = nextId++;
      const timers: Timer[] = [];
      let settled = false;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        for (const t of timers) t.cancel();
        requests.delete(id);
        counters.latency.record(env.clock.monotonicMs() - startedAt);
        return true;
      };
      const io: RequestIo = {
        plan,
        ask(node, send) {
          const sentAtMs = env.clock.monotonicMs();
          const c = clocks();
          let answer: Promise<ReplicaAnswer>;
          try {
            answer = send(system.ref<ReplicaMsg>({ node, name: replicaName }), c, askTimeoutMs[op]);
          } catch (error) {
            answer = Promise.reject(error as Error);
          }
          // The arrival time is taken here, not when the actor gets to the answer, so a backlog in this mailbox is not counted as network time.
          const base = { type: 'answer', id, from: node, sentAtMs, sentWallMicros: c.wallMicros } as const;
          answer.then(
            (msg) => deliver(ctx, { ...base, receivedAtMs: env.clock.monotonicMs(), outcome: { ok: true, msg } }),
            (error: unknown) =>
              deliver(ctx, { ...base, receivedAtMs: env.clock.monotonicMs(), outcome: { ok: false, error: error instanceof Error ? error : new Error(String(error)) } }),
          );
        },
        after(ms, tag) {
          timers.push(ctx.after(ms, { type: 'tick', id, tag }));
        },
        succeed(value) {
          if (!settle()) return;
          counters.ok++;
          ctx.reply(replyTo, value as R);
        },
        fail(error) {
          if (!settle()) return;
          if (error instanceof WriteTimeout || error instanceof ReadTimeout) counters.timeouts++;
          else counters.failed++;
          ctx.fail(replyTo, error);
        },
        speculated() {
          shared.speculativeRetries++;
        },
        mismatch() {
          shared.digestMismatches++;
        },
      };
      let request: Request;
      try {
        request = make(io);
      } catch (error) {
        ctx.log.error({ err: error, request: id }, 'request state machine failed');
        io.fail(new RequestFailed(op, error));
        return;
      }
      requests.set(id, { op, request, io, timers });
      guarded(ctx, id, () => request.start());
    }

    /**
     * A bug in one request's state machine fails that request, not the actor
     * and every other request with it; the caller hears at once rather than
     * at its ask timeout.
     */
    function guarded(ctx: ActorContext<CoordinatorMsg>, id: number, work: () => void): void {
      try {
        work();
      } catch (error) {
        ctx.log.error({ err: error, request: id }, 'request state machine failed');
        const entry = requests.get(id);
        entry?.io.fail(new RequestFailed(entry.op, error));
      }
    }

    return {
      /**
       * The runtime calls this before a restart and when the actor stops: the
       * requests in flight die with this incarnation, so their callers are
       * told now, not at their ask timeout. Their asks are already out, so a
       * write may have been applied; the timeout errors say so.
       */
      stopping() {
        for (const entry of [...requests.values()]) entry.io.fail(entry.request.interrupted('the coordinator restarted or stopped before enough replicas answered'));
      },
      receive(msg: CoordinatorMsg, ctx: ActorContext<CoordinatorMsg>) {
        switch (msg.type) {
          case 'write': {
            const { keyspace, consistency, mutation, timestampMicros } = msg;
            startRequest(
              ctx,
              'write',
              msg.replyTo,
              () => {
                const ring = topology.ring();
                return planWrite({
                  consistency,
                  token: mutation.token,
                  replication: keyspace.replication,
                  ring,
                  localDc: topology.localDc,
                  isAlive: (n) => n === env.node || membership.isAlive(n),
                  dcOf: (n) => ring.member(n)?.dc ?? membership.locationOf(n)?.dc,
                });
              },
              (io) => new WriteRequest(io, mutation, timestampMicros, o.writeTimeoutMs),
            );
            return;
          }
          case 'read':
          case 'slice': {
            const token = msg.type === 'read' ? msg.row.token : msg.query.token;
            const makePlan = () => {
              const ring = topology.ring();
              return planRead({
                consistency: msg.consistency,
                token,
                replication: msg.keyspace.replication,
                ring,
                localDc: topology.localDc,
                isAlive: (n) => n === env.node || membership.isAlive(n),
                dcOf: (n) => ring.member(n)?.dc ?? membership.locationOf(n)?.dc,
                byProximity: proximity(ring),
              });
            };
            if (msg.type === 'read') {
              const row = msg.row;
              const hook = o.onReadMismatch;
              const onMismatch = hook
                ? (resolved: Cell | undefined, answers: Map<NodeId, Cell | undefined>) => {
                    try {
                      hook({ keyspace: row.keyspace, token: row.token, partition: row.partition, clustering: row.clustering ?? new Uint8Array(0), resolved, answers, stale: staleReplicas(resolved, answers) });
                    } catch (error) {
                      ctx.log.warn({ err: error }, 'read mismatch hook failed');
                    }
                  }
                : undefined;
              startRequest(ctx, 'read', msg.replyTo, makePlan, (io) => new ReadRequest(io, row, o.readTimeoutMs, speculationDelay(io.plan), onMismatch));
            } else {
              const query = msg.query;
              startRequest(ctx, 'slice', msg.replyTo, makePlan, (io) => new SliceRequest(io, query, o.readTimeoutMs, speculationDelay(io.plan), () => env.clock.nowMicros()));
            }
            return;
          }
          case 'answer': {
            if (msg.outcome.ok) {
              const answer = msg.outcome.msg;
              const rttMs = msg.receivedAtMs - msg.sentAtMs;
              latencies.record(msg.from, rttMs);
              hlc.observe(answer.hlc);
              if (msg.from !== env.node) skew.observeRoundTrip(msg.from, { sentWallMicros: msg.sentWallMicros, peerWallMicros: answer.wallMicros, rttMs, atMs: msg.receivedAtMs });
            }
            const entry = requests.get(msg.id);
            if (entry) guarded(ctx, msg.id, () => entry.request.onAnswer(msg.from, msg.outcome));
            return;
          }
          case 'tick': {
            const entry = requests.get(msg.id);
            if (entry) guarded(ctx, msg.id, () => entry.request.onTick(msg.tag));
            return;
          }
        }
      },
    };
  };
}

const utf8 = new TextEncoder();

function bytesOf(k: Key): Uint8Array {
  return typeof k === 'string' ? utf8.encode(k) : k;
}

function validateRowKey(partition: Uint8Array, clustering: Uint8Array | undefined): void {
  if (partition.length === 0) throw new EmptyPartitionKey();
  if (partition.length > LIMITS.maxPartitionKeyBytes) throw new KeyTooLarge('partition', partition.length, LIMITS.maxPartitionKeyBytes);
  if (clustering !== undefined && clustering.length > LIMITS.maxClusteringKeyBytes) throw new KeyTooLarge('clustering', clustering.length, LIMITS.maxClusteringKeyBytes);
}

/**
 * Spawns this node's coordinator and replica actors and returns the API the
 * node and the HTTP layer call. Everything a request needs (keyspace, level,
 * timestamp, mutation) is validated here, on the caller's side, before the
 * coordinator actor sees it.
 */
export function spawnCoordinator(system: ActorSystem, options: CoordinatorOptions): CoordinatorHandle {
  const env = options.env;
  const o = {
    env,
    membership: options.membership,
    topology: options.topology,
    writeTimeoutMs: options.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS,
    readTimeoutMs: options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS,
    maxClockSkewMs: options.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS,
    defaultSpeculativeDelayMs: options.defaultSpeculativeDelayMs ?? DEFAULT_SPECULATIVE_DELAY_MS,
    maxInFlight: options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
    onReadMismatch: options.onReadMismatch,
  };
  const hlc = new HybridLogicalClock(() => env.clock.nowMicros(), o.maxClockSkewMs * 1000);
  const shared: Shared = {
    env,
    hlc,
    skew: new SkewTracker(o.maxClockSkewMs, env.logger),
    latencies: new PeerLatencies(),
    counters: { write: newCounters(), read: newCounters(), slice: newCounters() },
    speculativeRetries: 0,
    digestMismatches: 0,
  };
  const replicaName = options.names?.replica ?? REPLICA_ACTOR;
  const replica = spawnReplica(system, { env, storage: options.storage, hlc, skew: shared.skew, name: replicaName });
  const ref = system.spawn<CoordinatorMsg>(options.names?.coordinator ?? COORDINATOR_ACTOR, coordinatorBehavior(system, o, shared, replicaName), {
    mailbox: { capacity: 10 * o.maxInFlight + 1_000, overflow: 'reject' },
  });
  let inFlight = 0;

  function keyspaceDef(name: string): KeyspaceDef {
    const ks = options.topology.keyspace(name);
    if (ks === undefined) throw new InvalidRequest(`unknown keyspace ${JSON.stringify(name).slice(0, 80)}`, { field: 'keyspace', reason: 'UNKNOWN_KEYSPACE' });
    return ks;
  }

  async function run<R>(timeoutMs: number, build: (replyTo: ReplyTo<R>) => CoordinatorMsg): Promise<R> {
    if (inFlight >= o.maxInFlight) throw new Overloaded('coordinator in-flight requests', o.maxInFlight);
    inFlight++;
    try {
      // The actor always answers by the request's own deadline; the margin only covers a lost actor.
      return await ref.ask<R>(build, timeoutMs + 5_000);
    } finally {
      inFlight--;
    }
  }

  async function write(keyspace: string, partitionKey: Key, clustering: Key | undefined, what: { value?: Uint8Array | string; ttlSeconds?: number; partition?: boolean }, options: WriteOptions = {}): Promise<WriteAnswer> {
    const ks = keyspaceDef(keyspace);
    const consistency = options.consistency === undefined ? DEFAULT_CONSISTENCY : parseConsistency(options.consistency);
    const partition = bytesOf(partitionKey);
    const ck = clustering === undefined ? undefined : bytesOf(clustering);
    validateRowKey(partition, ck);
    let timestampMicros: number;
    if (options.timestampMicros !== undefined) {
      const ts = options.timestampMicros;
      if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) throw new InvalidRequest(`timestamp must be a non-negative integer of microseconds, got ${String(ts)}`, { field: 'timestamp' });
      hlc.checkNotTooFarAhead(ts, 'client timestamp');
      timestampMicros = ts;
    } else {
      const ahead = shared.skew.selfAheadMs();
      if (ahead !== undefined) throw new ClockSkewed(ahead, o.maxClockSkewMs);
      timestampMicros = hlc.now();
    }
    const token = tokenOf(partition);
    let mutation: Mutation;
    if (what.partition) mutation = { keyspace, token, partition, partitionDeletion: { timestampMicros } };
    else {
      const row = ck === undefined ? { keyspace, token, partition } : { keyspace, token, partition, clustering: ck };
      if (what.value === undefined) mutation = { ...row, cell: { tombstone: true, timestampMicros } };
      else {
        const value = bytesOf(what.value);
        const cell =
          what.ttlSeconds === undefined ? { value, timestampMicros } : { value, timestampMicros, expiresAtMicros: expiryFromTtl(env.clock.nowMicros(), what.ttlSeconds) };
        mutation = { ...row, cell };
      }
    }
    validateMutation(mutation);
    const clientStamped = options.timestampMicros !== undefined;
    try {
      const answer = await run<WriteAnswer>(o.writeTimeoutMs, (replyTo) => ({ type: 'write', keyspace: ks, consistency, mutation, timestampMicros, replyTo }));
      if (clientStamped) adoptClientTimestamp(timestampMicros);
      return answer;
    } catch (error) {
      // A timed-out write may exist on some replica and win later; one refused or never sent does not.
      if (clientStamped && error instanceof WriteTimeout) adoptClientTimestamp(timestampMicros);
      throw error;
    }
  }

  /**
   * This node's later writes must supersede a client-stamped write it
   * coordinated (the client expects its next write through us to win), so the
   * clock moves past the client's timestamp, but only once the write may
   * exist: adopting it before sending would stamp this node's own writes up to
   * max_clock_skew ahead for a while even when the client's write was refused.
   * Writes racing the client's are concurrent, and either order is right.
   */
  function adoptClientTimestamp(ts: number): void {
    hlc.observe(ts);
  }

  async function readCellAt(keyspace: string, key: Key, clustering: Key | undefined, options: ReadOptions = {}): Promise<Cell | undefined> {
    const ks = keyspaceDef(keyspace);
    const consistency = options.consistency === undefined ? DEFAULT_CONSISTENCY : parseConsistency(options.consistency);
    validateForRead(consistency);
    const partition = bytesOf(key);
    const ck = clustering === undefined ? undefined : bytesOf(clustering);
    validateRowKey(partition, ck);
    const row: RowKey = { keyspace: ks.name, token: tokenOf(partition), partition };
    if (ck !== undefined) row.clustering = ck;
    const answer = await run<ReadAnswer>(o.readTimeoutMs, (replyTo) => ({ type: 'read', keyspace: ks, consistency, row, replyTo }));
    return answer.cell;
  }

  return {
    ref,
    replica,
    clock: hlc,
    put: (keyspace, key, clustering, value, opts = {}) => write(keyspace, key, clustering, opts.ttlSeconds === undefined ? { value } : { value, ttlSeconds: opts.ttlSeconds }, opts),
    del: (keyspace, key, clustering, opts = {}) => write(keyspace, key, clustering, {}, opts),
    deletePartition: (keyspace, partition, opts = {}) => write(keyspace, partition, undefined, { partition: true }, opts),
    getCell: readCellAt,
    async get(keyspace, key, clustering, opts) {
      const cell = await readCellAt(keyspace, key, clustering, opts);
      if (cell === undefined || isDead(cell, env.clock.nowMicros()) || isTombstone(cell)) return undefined;
      return { value: cell.value, timestampMicros: cell.timestampMicros };
    },
    async slice(keyspace, partitionKey, opts = {}) {
      const ks = keyspaceDef(keyspace);
      const consistency = opts.consistency === undefined ? DEFAULT_CONSISTENCY : parseConsistency(opts.consistency);
      validateForRead(consistency);
      const partition = bytesOf(partitionKey);
      validateRowKey(partition, undefined);
      const limit = opts.limit ?? 1000;
      if (!Number.isInteger(limit) || limit < 1 || limit > LIMITS.maxSliceLimit) throw new InvalidSlice(`limit must be an integer in [1, ${LIMITS.maxSliceLimit}]`);
      const query: SliceQuery = { keyspace: ks.name, token: tokenOf(partition), partition, limit, reverse: opts.reverse === true };
      for (const [field, k] of [['from', opts.from], ['to', opts.to], ['after', opts.page]] as const) {
        if (k === undefined) continue;
        const b = bytesOf(k);
        if (b.length > LIMITS.maxClusteringKeyBytes) throw new KeyTooLarge('clustering', b.length, LIMITS.maxClusteringKeyBytes);
        query[field] = b;
      }
      const page = await run<MergedPage>(o.readTimeoutMs, (replyTo) => ({ type: 'slice', keyspace: ks, consistency, query, replyTo }));
      const rows = page.rows.map((r): Row => {
        const cell = r.cell as Exclude<Cell, { tombstone: true }>;
        const row: Row = { clustering: r.clustering, value: cell.value, timestampMicros: cell.timestampMicros };
        if (cell.expiresAtMicros !== undefined) row.expiresAtMicros = cell.expiresAtMicros;
        return row;
      });
      return page.nextPage === undefined ? { rows } : { rows, nextPage: page.nextPage };
    },
    async local(keyspace, key, clustering) {
      const partition = bytesOf(key);
      const ck = clustering === undefined ? undefined : bytesOf(clustering);
      validateRowKey(partition, ck);
      return options.storage.reader.getCell(ck === undefined ? { keyspace, token: tokenOf(partition), partition } : { keyspace, token: tokenOf(partition), partition, clustering: ck });
    },
    stats() {
      const op = (c: OpCounters): OpStats => ({ ok: c.ok, unavailable: c.unavailable, timeouts: c.timeouts, failed: c.failed, latency: c.latency.summary() });
      return {
        write: op(shared.counters.write),
        read: op(shared.counters.read),
        slice: op(shared.counters.slice),
        inFlight,
        speculativeRetries: shared.speculativeRetries,
        digestMismatches: shared.digestMismatches,
        refusedPeerTimestamps: hlc.rejected,
        peers: shared.latencies.snapshot(),
      };
    },
    clockSkew: () => shared.skew.snapshot(),
    async stop() {
      await system.stop(ref as ActorRef<unknown>);
      await system.stop(replica as ActorRef<unknown>);
    },
  };
}
