import { type ActorContext, type ActorRef, type ActorSystem, AskTimeout, type Behavior, DeadlineQueues, type ReplyTo, fromWireError } from '@chorus/actors';
import { IdTable, InvalidRequest, type NodeId, Overloaded, type Token, isChorusError } from '@chorus/core';
import { type Cell, EmptyPartitionKey, KeyTooLarge, LIMITS, type Mutation, expiryFromTtl, isDead, isTombstone, mutationBytes, validateMutation } from '@chorus/model';
import type { ReplicaRepair } from '@chorus/read-repair';
import {
  BATCH_KIND,
  type BatchedMsg,
  type Clocks,
  type HybridLogicalClock,
  type MutatedMsg,
  REPLICA_ACTOR,
  type ReplicaBatch,
  type ReplicaMsg,
  type RowKey,
  type SkewTracker,
  type SliceQuery,
  requestBatch,
  requestData,
  requestDigest,
  requestMutate,
} from '@chorus/replica';
import { type KeyspaceDef, type RingView, readRepairOf, tokenOf } from '@chorus/ring';
import { ClockSkewed, ReadTimeout, RequestFailed, SchemaDisagreement, SessionFloorNotMet, Unavailable, WriteTimeout } from './errors.js';
import { LatencyHistogram, PeerLatencies } from './latency.js';
import { type ConsistencyLevel, DEFAULT_CONSISTENCY, blockFor, parseConsistency, validateForRead } from './levels.js';
import { PlanCache, type ReplicaPlan, planRead, planWrite } from './plan.js';
import { ReadRequest } from './read.js';
import type { RepairPolicy } from './repair.js';
import { type BatchableRequest, type Op, type Outcome, type ReplicaRequest, type Request, type RequestIo, type Tick } from './request.js';
import { type RowFloor, SliceRequest } from './slice.js';
import type { MergedPage } from './slice-merge.js';
import { DEFAULT_BADNESS_THRESHOLD, sortByProximity } from './snitch.js';
import type { CoordinatorHandle, CoordinatorOptions, Key, OpStats, RowReadOptions, SliceResponseRow, WriteOptions } from './types.js';
import { WriteRequest } from './write.js';

export const DEFAULT_WRITE_TIMEOUT_MS = 2_000;
export const DEFAULT_READ_TIMEOUT_MS = 5_000;
/** Speculative-retry delay for a replica with no latency samples yet. */
export const DEFAULT_SPECULATIVE_DELAY_MS = 50;
export const DEFAULT_MAX_IN_FLIGHT = 10_000;
/**
 * Bytes of mutations coordinated at once. Kept under the 16 MiB a peer link
 * queues: each write sends one copy to every remote replica, so a flood is
 * refused here with Overloaded instead of dropped on a full link and timed out.
 */
export const DEFAULT_MAX_IN_FLIGHT_BYTES = 12 * 1024 * 1024;
/**
 * Writes answered before their last replicas, past which the next ones wait for all of theirs but one (as
 * ScyllaDB throttles its background writes). A QUORUM write of rf 3 waits for no more than its level anyway: the
 * bound binds where a level answered after one replica lets the others fall behind.
 */
export const DEFAULT_MAX_BACKGROUND_WRITES = 1_024;
/** What a read or slice counts against the byte budget: its answer is bounded by the count and the slice budget instead. */
const READ_REQUEST_BYTES = 256;
export const COORDINATOR_ACTOR = 'coordinator';
/** How long a read plan (its replicas' order of proximity) serves the requests of its replica set. */
const READ_PLAN_MAX_AGE_MS = 100;
/** Write plans hold no proximity: they change with the ring and the replicas' liveness, which the cache checks. */
const WRITE_PLAN_MAX_AGE_MS = 1_000;
/** Mutation bytes at which a replica's batch leaves before its turn ends: a batch stays well inside the 4 MiB frame. */
const BATCH_MAX_BYTES = 1024 * 1024;
/** Items at which a replica's batch leaves before its turn ends (the wire's MAX_BATCH_ITEMS is larger). */
const BATCH_MAX_ITEMS = 1_024;

type WriteAnswer = { timestampMicros: number };
type ReadAnswer = { cell: Cell | undefined };
/** What a write puts: a value (with a TTL), a row tombstone (nothing), or a partition deletion. */
type WriteWhat = { value?: Uint8Array | string; ttlSeconds?: number; partition?: boolean };
/** The shape of an answer taken as it is. */
const asIs = <T>(value: T): T => value;

/** The coordinator actor's messages. Only this module builds them. */
export type CoordinatorMsg =
  | { type: 'write'; keyspace: KeyspaceDef; consistency: ConsistencyLevel; mutation: Mutation; bytes: number; timestampMicros: number; clientTimestamp: boolean; replyTo: ReplyTo<WriteAnswer> }
  | { type: 'read'; keyspace: KeyspaceDef; consistency: ConsistencyLevel; row: RowKey; floorMicros?: number; replyTo: ReplyTo<ReadAnswer> }
  | { type: 'slice'; keyspace: KeyspaceDef; consistency: ConsistencyLevel; query: SliceQuery; floors: RowFloor[]; replyTo: ReplyTo<MergedPage> }
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
  | {
      type: 'batch-answer';
      from: NodeId;
      sentAtMs: number;
      receivedAtMs: number;
      sentWallMicros: number;
      ids: ItemIds;
      outcome: { ok: true; answer: BatchedMsg } | { ok: false; error: Error };
    }
  | { type: 'tick'; id: number; tag: Tick }
  /** Whether a hint a write offered was stored (see `RequestIo.hint`). */
  | { type: 'hinted'; id: number; target: NodeId; stored: boolean };

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
  hlc: HybridLogicalClock;
  skew: SkewTracker;
  latencies: PeerLatencies;
  counters: Record<Op, OpCounters>;
  speculativeRetries: number;
  digestMismatches: number;
  readRepair: { mismatches: number; rowsRepaired: number; timeouts: number };
  sessionFloor: { escalations: number; notMet: number };
  /** Requests the actor holds: those in flight, and writes answered but still waiting for their last replicas. */
  open: number;
  /** Of those, the writes answered that still wait for their last replicas. */
  background: number;
  /** Their mutations' bytes: the byte budget counts a write until it ends, not only until its answer. */
  backgroundBytes: number;
  /** Writes whose answer was held (see `Running.succeed`). */
  heldWrites: number;
}

/** The batchable requests of one turn for one replica (see `batches` below). */
interface PendingBatch {
  batch: ReplicaBatch;
  /** The request of each item, in the batch's order of items: mutations, digest reads, data reads. */
  ids: ItemIds;
  bytes: number;
}

/** A replica node's batch of the current turn, if any. */
interface BatchSlot {
  readonly node: NodeId;
  pending: PendingBatch | undefined;
}

interface ItemIds {
  mutations: number[];
  digests: number[];
  reads: number[];
}

/** The options with their defaults filled in; the hooks stay optional. */
type Settings = Required<Omit<CoordinatorOptions, 'hints' | 'readRepair' | 'names' | 'localReplica' | 'hlc' | 'skew' | 'maxInFlightBytes'>> & Pick<CoordinatorOptions, 'hints' | 'readRepair'>;

function coordinatorBehavior(system: ActorSystem, o: Settings, shared: Shared, replicaName: string) {
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
    const clocks = (): Clocks => ({ hlc: hlc.peek(), wallMicros: env.clock.nowMicros() });
    // The counters every request's io shares: built once, not per request.
    const counts: Pick<RequestIo, 'speculated' | 'mismatch' | 'repair' | 'session'> = {
      speculated() {
        shared.speculativeRetries++;
      },
      mismatch() {
        shared.digestMismatches++;
      },
      repair: {
        found() {
          shared.readRepair.mismatches++;
        },
        sent(rows) {
          shared.readRepair.rowsRepaired += rows;
        },
        timedOut() {
          shared.readRepair.timeouts++;
        },
      },
      session: {
        escalated() {
          shared.sessionFloor.escalations++;
        },
        notMet() {
          shared.sessionFloor.notMet++;
        },
      },
    };

    function deliver(ctx: ActorContext<CoordinatorMsg>, msg: CoordinatorMsg): void {
      try {
        ctx.self.tell(msg);
      } catch (error) {
        ctx.log.warn({ err: error }, 'coordinator mailbox refused a replica answer');
      }
    }

    function proximity(ring: RingView) {
      return (nodes: readonly NodeId[]) => {
        const nowMs = env.clock.monotonicMs();
        return sortByProximity(nodes, {
          self: env.node,
          localDc: topology.localDc,
          localRack: topology.localRack,
          locate: (n) => ring.member(n) ?? membership.locationOf(n),
          latencyMs: (n) => latencies.averageMs(n, nowMs),
        }, o.badnessThreshold);
      };
    }

    function speculationDelay(plan: ReplicaPlan): number {
      let delay = 0;
      for (const n of plan.contacts) delay = Math.max(delay, latencies.p99(n) ?? o.defaultSpeculativeDelayMs);
      return Math.min(Math.max(1, delay), o.readTimeoutMs / 2);
    }

    /** What a write calls for each replica that missed it; undefined without a hint sink. The outcome comes back as a message, in a turn of its own. */
    function offerHint(ctx: ActorContext<CoordinatorMsg>, id: number): RequestIo['hint'] {
      const hints = o.hints;
      if (hints === undefined) return undefined;
      return (target, mutation, report) => {
        let outcome: Promise<boolean>;
        try {
          outcome = hints.offer(target, mutation);
        } catch (error) {
          outcome = Promise.reject(error as Error);
        }
        outcome.then(
          (stored) => {
            if (report) deliver(ctx, { type: 'hinted', id, target, stored });
          },
          (error: unknown) => {
            ctx.log.warn({ err: error, target }, 'hint sink failed');
            if (report) deliver(ctx, { type: 'hinted', id, target, stored: false });
          },
        );
      };
    }

    /** What a read or slice of `keyspace` does when its replicas disagree: the keyspace's read_repair, and the observer hook. */
    function repairPolicy(ctx: ActorContext<CoordinatorMsg>, keyspace: KeyspaceDef, op: 'read' | 'slice', at: { token: Token; partition: Uint8Array }): RepairPolicy {
      const mode = readRepairOf(keyspace);
      const hook = o.readRepair;
      return {
        mode,
        observe(repairs: ReplicaRepair[]) {
          if (hook === undefined) return;
          try {
            hook({ op, keyspace: keyspace.name, token: at.token, partition: at.partition, mode, repairs });
          } catch (error) {
            ctx.log.warn({ err: error }, 'read repair observer failed');
          }
        },
      };
    }

    /**
     * One request in flight: its state machine's `RequestIo`, one object per
     * request (no closures per request or per answer beyond each ask's callback).
     */
    class Running implements RequestIo {
      request!: Request;
      hint?: RequestIo['hint'];
      private answered = false;
      private ended = false;
      /** A write's answer, held while too many writes are behind their answers (see `succeed`). */
      private held: { value: unknown } | undefined;
      private inBackground = false;
      readonly speculated = counts.speculated;
      readonly mismatch = counts.mismatch;
      readonly repair = counts.repair;
      readonly session = counts.session;

      constructor(
        private readonly ctx: ActorContext<CoordinatorMsg>,
        readonly id: number,
        readonly op: Op,
        readonly plan: ReplicaPlan,
        private readonly replyTo: ReplyTo<unknown>,
        private readonly startedAt: number,
        /** A write's mutation bytes, as the byte budget counts them; 0 for reads. */
        private readonly bytes: number,
      ) {}

      ask(node: NodeId, send: ReplicaRequest | BatchableRequest): void {
        if (typeof send !== 'function') {
          if ('dataOf' in send ? node === env.node : system.readsKind(node, BATCH_KIND)) {
            batches.add(this.ctx, this.op, node, this.id, send);
            return;
          }
          send = alone(send);
        }
        const sentAtMs = env.clock.monotonicMs();
        const c = clocks();
        const id = this.id;
        const ctx = this.ctx;
        // The arrival time is taken here, not when the actor gets to the answer, so a backlog in this mailbox is not counted as network time.
        send(replicaRef(node), c, askTimeoutMs[this.op], (error, msg) =>
          deliver(ctx, {
            type: 'answer',
            id,
            from: node,
            sentAtMs,
            sentWallMicros: c.wallMicros,
            receivedAtMs: env.clock.monotonicMs(),
            outcome: error === undefined ? { ok: true, msg: msg! } : { ok: false, error },
          }),
        );
      }

      after(ms: number, tag: Tick): void {
        (tag === 'timeout' ? timeouts : speculations).add(this.id, Math.max(1, Math.ceil(ms)));
      }

      succeed(value: unknown): void {
        if (this.answered) return;
        if (shared.background >= o.maxBackgroundWrites && this.request.behindAnswers?.() === true) {
          // Too many writes behind their answers already: this one waits for more of its replicas.
          if (this.held === undefined) shared.heldWrites++;
          this.held = { value };
          return;
        }
        this.answer(value);
      }

      fail(error: Error): void {
        // A held write reached its level: whatever ends it now (its deadline, a restart) does not undo that.
        if (this.held !== undefined) {
          this.answer(this.held.value);
          return;
        }
        if (!this.settle()) return;
        const counters = shared.counters[this.op];
        if (error instanceof WriteTimeout || error instanceof ReadTimeout) counters.timeouts++;
        // The replicas holding a session's write are down or silent: the cluster cannot serve it now, as with Unavailable.
        else if (error instanceof Unavailable || error instanceof SessionFloorNotMet) counters.unavailable++;
        else counters.failed++;
        this.ctx.fail(this.replyTo, error);
      }

      private answer(value: unknown): void {
        if (!this.settle()) return;
        shared.counters[this.op].ok++;
        this.ctx.reply(this.replyTo, value);
        if (!this.ended) {
          this.inBackground = true;
          shared.background++;
          shared.backgroundBytes += this.bytes;
        }
      }

      /** Ends the request: later answers and ticks find nothing (its deadlines are dropped when they come). */
      end(): void {
        if (this.ended) return;
        this.ended = true;
        if (this.held !== undefined) this.answer(this.held.value);
        if (this.inBackground) {
          shared.background--;
          shared.backgroundBytes -= this.bytes;
        }
        if (requests.delete(this.id)) shared.open--;
      }

      /** The caller's answer ends the request, unless it still has work after it (a write that owes hints). */
      private settle(): boolean {
        if (this.answered) return false;
        this.answered = true;
        if (this.request?.open?.() !== true) this.end();
        shared.counters[this.op].latency.record(env.clock.monotonicMs() - this.startedAt);
        return true;
      }
    }

    /** A batchable request sent on its own, to a peer of an earlier build. */
    const alone = (send: BatchableRequest): ReplicaRequest => {
      if ('mutation' in send) return (ref, clocks, t, answered) => requestMutate(ref, send.mutation, clocks, t, answered);
      if ('digestOf' in send) return (ref, clocks, t, answered) => requestDigest(ref, send.digestOf, clocks, t, answered);
      return (ref, clocks, t, answered) => requestData(ref, send.dataOf, clocks, t, answered);
    };

    /**
     * An ask the replica let time out counts as an answer that took that
     * long, as Cassandra's snitch counts an expired callback: a replica that
     * stops answering (a stalled disk, a paused process the failure detector
     * has not convicted yet) would otherwise keep the latency of its last
     * answers and stay first, and every read sent to it would wait for its
     * speculative retry. Only the average hears it: the p99 that times
     * speculative retries is of answers.
     */
    function observeFailure(from: NodeId, sentAtMs: number, receivedAtMs: number, error: Error): void {
      if (error instanceof AskTimeout) latencies.recordTimeout(from, receivedAtMs - sentAtMs, receivedAtMs);
    }

    /** Moves the clocks on and notes the replica's latency and offset from an answer. */
    function observeAnswer(from: NodeId, sentAtMs: number, receivedAtMs: number, sentWallMicros: number, answer: Clocks): void {
      const rttMs = receivedAtMs - sentAtMs;
      latencies.record(from, rttMs, receivedAtMs);
      hlc.observe(answer.hlc);
      if (from !== env.node) skew.observeRoundTrip(from, { sentWallMicros, peerWallMicros: answer.wallMicros, rttMs, atMs: receivedAtMs });
    }

    /**
     * The batchable requests of the current turn, per replica and per kind of
     * request (writes and reads wait for different timeouts): each leaves as
     * one `replica.batch` when the turn ends, or earlier once it is full.
     * Asked outside a turn, a request leaves at once.
     */
    class TurnBatches {
      /**
       * One slot per replica node and kind, emptied as its batch leaves: a slot list that only grows to the
       * number of nodes, not a Map cleared every turn (a Map's dropped tables keep the batches reachable for the
       * scavenger, which then promotes them).
       */
      private readonly slots = { write: [] as BatchSlot[], read: [] as BatchSlot[] };
      inTurn = false;

      add(ctx: ActorContext<CoordinatorMsg>, op: Op, node: NodeId, id: number, send: BatchableRequest): void {
        const slots = op === 'write' ? this.slots.write : this.slots.read;
        let slot: BatchSlot | undefined;
        for (let i = 0; i < slots.length; i++) if (slots[i]!.node === node) slot = slots[i];
        if (slot === undefined) slots.push((slot = { node, pending: undefined }));
        let p = slot.pending;
        if (p === undefined) slot.pending = p = { batch: { mutations: [], digests: [], reads: [] }, ids: { mutations: [], digests: [], reads: [] }, bytes: 0 };
        if ('mutation' in send) {
          p.batch.mutations.push(send.mutation);
          p.ids.mutations.push(id);
          p.bytes += mutationBytes(send.mutation);
        } else if ('digestOf' in send) {
          p.batch.digests.push(send.digestOf);
          p.ids.digests.push(id);
        } else {
          p.batch.reads.push(send.dataOf);
          p.ids.reads.push(id);
        }
        if (this.inTurn && p.bytes < BATCH_MAX_BYTES && p.ids.mutations.length + p.ids.digests.length + p.ids.reads.length < BATCH_MAX_ITEMS) return;
        slot.pending = undefined;
        this.send(ctx, op, node, p);
      }

      flush(ctx: ActorContext<CoordinatorMsg>): void {
        for (const op of ['write', 'read'] as const) {
          for (const slot of this.slots[op]) {
            const p = slot.pending;
            if (p === undefined) continue;
            slot.pending = undefined;
            this.send(ctx, op, slot.node, p);
          }
        }
      }

      clear(): void {
        for (const op of ['write', 'read'] as const) for (const slot of this.slots[op]) slot.pending = undefined;
      }

      private send(ctx: ActorContext<CoordinatorMsg>, op: Op, node: NodeId, p: PendingBatch): void {
        const sentAtMs = env.clock.monotonicMs();
        const c = clocks();
        requestBatch(replicaRef(node), p.batch, c, askTimeoutMs[op], (error, answer) =>
          deliver(ctx, {
            type: 'batch-answer',
            from: node,
            sentAtMs,
            sentWallMicros: c.wallMicros,
            receivedAtMs: env.clock.monotonicMs(),
            ids: p.ids,
            outcome: error === undefined ? { ok: true, answer: answer! } : { ok: false, error },
          }),
        );
      }
    }
    const batches = new TurnBatches();

    /** Hands each item of a batch's answer to its request, as the answer of a `mutate`, `readDigest` or `readData` alone would be. */
    function batchAnswered(ctx: ActorContext<CoordinatorMsg>, msg: Extract<CoordinatorMsg, { type: 'batch-answer' }>): void {
      const { from, ids } = msg;
      let failures: Map<number, Error> | undefined;
      if (msg.outcome.ok) {
        const answer = msg.outcome.answer;
        observeAnswer(from, msg.sentAtMs, msg.receivedAtMs, msg.sentWallMicros, answer);
        if (answer.failures !== undefined) failures = new Map(answer.failures.map((f) => [f.index, fromWireError(f.error)]));
      } else observeFailure(from, msg.sentAtMs, msg.receivedAtMs, msg.outcome.error);
      let mutated: Outcome | undefined;
      const answerOf = (answer: BatchedMsg, kind: keyof ItemIds, i: number): Outcome => {
        if (kind === 'mutations') return (mutated ??= { ok: true, msg: { type: 'replica.mutated', hlc: answer.hlc, wallMicros: answer.wallMicros } satisfies MutatedMsg });
        if (kind === 'reads') {
          const data = answer.data?.[i];
          return data === undefined ? missing('data') : { ok: true, msg: data };
        }
        const digest = answer.digests?.[i];
        return digest === undefined || digest.length === 0 ? missing('digest') : { ok: true, msg: { type: 'replica.digest', digest, hlc: answer.hlc, wallMicros: answer.wallMicros } };
      };
      const missing = (what: string): Outcome => ({ ok: false, error: new Error(`replica ${from} answered a batch without one of its ${what} answers`) });
      let item = 0;
      for (const kind of ['mutations', 'digests', 'reads'] as const) {
        const requestIds = ids[kind];
        for (let i = 0; i < requestIds.length; i++, item++) {
          const running = requests.get(requestIds[i]!);
          if (running === undefined) continue;
          const failure = failures?.get(item);
          const outcome: Outcome = !msg.outcome.ok ? msg.outcome : failure !== undefined ? { ok: false, error: failure } : answerOf(msg.outcome.answer, kind, i);
          try {
            running.request.onAnswer(from, outcome);
          } catch (error) {
            broken(ctx, running, error);
          }
        }
      }
    }

    // A table of slots, not a Map: see IdTable (a Map of requests in flight promotes every one of them).
    const requests = new IdTable<Running>();
    const localReplica = { node: env.node, name: replicaName };
    const remoteReplicas = new Map<NodeId, ActorRef<ReplicaMsg>>();
    // The local replica is looked up each time: a ref taken before it was spawned would go through the codec.
    const replicaRef = (node: NodeId): ActorRef<ReplicaMsg> => {
      if (node === env.node) return system.ref<ReplicaMsg>(localReplica);
      let ref = remoteReplicas.get(node);
      if (ref === undefined) remoteReplicas.set(node, (ref = system.ref<ReplicaMsg>({ node, name: replicaName })));
      return ref;
    };
    const isAlive = (n: NodeId): boolean => n === env.node || membership.isAlive(n);
    const readPlans = new PlanCache('read', READ_PLAN_MAX_AGE_MS);
    const writePlans = new PlanCache('write', WRITE_PLAN_MAX_AGE_MS);
    // Ticks without a timer per request: each delay keeps a queue with one timer for its head. A tick whose
    // request has ended is dropped when it comes; one still running is handled in a turn of this actor.
    const tickOf = (tag: Tick) => (id: number) => {
      if (requests.has(id)) deliverTo(id, tag);
    };
    let deliverTo: (id: number, tag: Tick) => void = () => {};
    const timeouts = new DeadlineQueues(env.scheduler, () => env.clock.monotonicMs(), tickOf('timeout'));
    const speculations = new DeadlineQueues(env.scheduler, () => env.clock.monotonicMs(), tickOf('speculate'));

    function startRequest(ctx: ActorContext<CoordinatorMsg>, op: Op, replyTo: ReplyTo<unknown>, makePlan: () => ReplicaPlan, make: (io: RequestIo) => Request, bytes = 0): void {
      const startedAt = env.clock.monotonicMs();
      let plan: ReplicaPlan;
      try {
        // Everything the plan reads (ring, membership, keyspace) may throw; that fails this request, never the actor.
        plan = makePlan();
      } catch (error) {
        const counters = shared.counters[op];
        if (isChorusError(error) && error.code === 'UNAVAILABLE') counters.unavailable++;
        else counters.failed++;
        ctx.fail(replyTo, error instanceof Error ? error : new Error(String(error)));
        return;
      }
      const running = new Running(ctx, nextId++, op, plan, replyTo, startedAt, bytes);
      // Only writes offer hints (a read repairs only the replicas that answered it), so reads build no hint closure.
      if (op === 'write') {
        const hint = offerHint(ctx, running.id);
        if (hint !== undefined) running.hint = hint;
      }
      try {
        running.request = make(running);
      } catch (error) {
        ctx.log.error({ err: error, request: running.id }, 'request state machine failed');
        running.fail(new RequestFailed(op, error));
        return;
      }
      requests.set(running.id, running);
      shared.open++;
      try {
        running.request.start();
      } catch (error) {
        broken(ctx, running, error);
      }
    }

    /**
     * A bug in one request's state machine fails that request, not the actor
     * and every other request with it; the caller hears at once rather than
     * at its ask timeout.
     */
    function broken(ctx: ActorContext<CoordinatorMsg>, running: Running, error: unknown): void {
      ctx.log.error({ err: error, request: running.id }, 'request state machine failed');
      running.fail(new RequestFailed(running.op, error));
      // A broken state machine has no work left that can be trusted, even after its answer.
      running.end();
    }

    return {
      /**
       * The runtime calls this before a restart and when the actor stops: the
       * requests in flight die with this incarnation, so their callers are
       * told now, not at their ask timeout. Their asks are already out, so a
       * write may have been applied; the timeout errors say so.
       */
      started(ctx) {
        deliverTo = (id, tag) => deliver(ctx, { type: 'tick', id, tag });
      },
      stopping() {
        batches.clear();
        timeouts.cancelAll();
        speculations.cancelAll();
        for (const [, running] of [...requests.entries()]) {
          running.fail(running.request.interrupted('the coordinator restarted or stopped before enough replicas answered'));
          running.request.abandoned?.();
          running.end();
        }
      },
      receiveBatch(msgs: CoordinatorMsg[], ctx: ActorContext<CoordinatorMsg>) {
        batches.inTurn = true;
        try {
          for (let i = 0; i < msgs.length; i++) handle(msgs[i]!, ctx);
        } finally {
          batches.inTurn = false;
          batches.flush(ctx);
        }
      },
    };

    function handle(msg: CoordinatorMsg, ctx: ActorContext<CoordinatorMsg>): void {
      switch (msg.type) {
        case 'write': {
          const { keyspace, consistency, mutation, bytes, timestampMicros, clientTimestamp } = msg;
          startRequest(
            ctx,
            'write',
            msg.replyTo,
            () => {
              const ring = topology.ring();
              const token = mutation.token;
              return writePlans.plan(ring, ring.naturalReplicas(token, keyspace.replication), consistency, isAlive, env.clock.monotonicMs(), () =>
                planWrite({
                  consistency,
                  token,
                  replication: keyspace.replication,
                  ring,
                  localDc: topology.localDc,
                  isAlive,
                  dcOf: (n) => ring.member(n)?.dc ?? membership.locationOf(n)?.dc,
                  hintsAvailable: o.hints !== undefined,
                }),
              );
            },
            (io) => new WriteRequest(io, mutation, timestampMicros, o.writeTimeoutMs, clientTimestamp),
            bytes,
          );
          return;
        }
        case 'read':
        case 'slice': {
          const token = msg.type === 'read' ? msg.row.token : msg.query.token;
          const makePlan = () => {
            const ring = topology.ring();
            const replication = msg.keyspace.replication;
            return readPlans.plan(ring, ring.naturalReplicas(token, replication), msg.consistency, isAlive, env.clock.monotonicMs(), () =>
              planRead({
                consistency: msg.consistency,
                token,
                replication,
                ring,
                localDc: topology.localDc,
                isAlive,
                dcOf: (n) => ring.member(n)?.dc ?? membership.locationOf(n)?.dc,
                byProximity: proximity(ring),
              }),
            );
          };
          if (msg.type === 'read') {
            const row = msg.row;
            const policy = repairPolicy(ctx, msg.keyspace, 'read', row);
            const floor = msg.floorMicros;
            startRequest(ctx, 'read', msg.replyTo, makePlan, (io) => new ReadRequest(io, row, o.readTimeoutMs, speculationDelay(io.plan), policy, floor));
          } else {
            const query = msg.query;
            const policy = repairPolicy(ctx, msg.keyspace, 'slice', query);
            const floors = msg.floors;
            startRequest(ctx, 'slice', msg.replyTo, makePlan, (io) => new SliceRequest(io, query, o.readTimeoutMs, speculationDelay(io.plan), () => env.clock.nowMicros(), policy, floors));
          }
          return;
        }
        case 'answer': {
          if (msg.outcome.ok) observeAnswer(msg.from, msg.sentAtMs, msg.receivedAtMs, msg.sentWallMicros, msg.outcome.msg);
          else observeFailure(msg.from, msg.sentAtMs, msg.receivedAtMs, msg.outcome.error);
          const running = requests.get(msg.id);
          if (running === undefined) return;
          try {
            running.request.onAnswer(msg.from, msg.outcome);
          } catch (error) {
            broken(ctx, running, error);
          }
          return;
        }
        case 'tick': {
          const running = requests.get(msg.id);
          if (running === undefined) return;
          try {
            running.request.onTick(msg.tag);
          } catch (error) {
            broken(ctx, running, error);
          }
          return;
        }
        case 'hinted': {
          const running = requests.get(msg.id);
          if (running === undefined) return;
          try {
            running.request.onHinted?.(msg.target, msg.stored);
          } catch (error) {
            broken(ctx, running, error);
          }
          return;
        }
        case 'batch-answer':
          batchAnswered(ctx, msg);
          return;
      }
    }
  };
}


/** A key's bytes. Buffer.from takes a short string's bytes from Node's buffer pool: TextEncoder's `encode` gives each its own ArrayBuffer, 1.7 µs against 0.26 for a 14-character key. */
function bytesOf(k: Key): Uint8Array {
  return typeof k === 'string' ? Buffer.from(k, 'utf8') : k;
}

/** A session timestamp from the caller: a non-negative integer of microseconds. */
function micros(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new InvalidRequest(`${field} must be a non-negative integer of microseconds, got ${String(value).slice(0, 40)}`, { field });
  return value;
}

function validateRowKey(partition: Uint8Array, clustering: Uint8Array | undefined): void {
  if (partition.length === 0) throw new EmptyPartitionKey();
  if (partition.length > LIMITS.maxPartitionKeyBytes) throw new KeyTooLarge('partition', partition.length, LIMITS.maxPartitionKeyBytes);
  if (clustering !== undefined && clustering.length > LIMITS.maxClusteringKeyBytes) throw new KeyTooLarge('clustering', clustering.length, LIMITS.maxClusteringKeyBytes);
}

/**
 * Spawns this node's coordinator actor and returns the API the node and the
 * HTTP layer call. The replica actors it addresses (this node's included) are
 * spawned by each node, sharing the clock given here. Everything a request needs (keyspace, level,
 * timestamp, mutation) is validated here, on the caller's side, before the
 * coordinator actor sees it.
 */
export function spawnCoordinator(system: ActorSystem, options: CoordinatorOptions): CoordinatorHandle {
  const env = options.env;
  const o: Settings = {
    env,
    membership: options.membership,
    topology: options.topology,
    writeTimeoutMs: options.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS,
    readTimeoutMs: options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS,
    defaultSpeculativeDelayMs: options.defaultSpeculativeDelayMs ?? DEFAULT_SPECULATIVE_DELAY_MS,
    badnessThreshold: options.badnessThreshold ?? DEFAULT_BADNESS_THRESHOLD,
    maxInFlight: options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
    maxBackgroundWrites: options.maxBackgroundWrites ?? DEFAULT_MAX_BACKGROUND_WRITES,
  };
  const maxInFlightBytes = options.maxInFlightBytes ?? DEFAULT_MAX_IN_FLIGHT_BYTES;
  if (options.hints !== undefined) o.hints = options.hints;
  if (options.readRepair !== undefined) o.readRepair = options.readRepair;
  const hlc = options.hlc;
  const maxClockSkewMs = hlc.maxSkewMicros / 1000;
  const shared: Shared = {
    hlc,
    skew: options.skew,
    latencies: new PeerLatencies(),
    counters: { write: newCounters(), read: newCounters(), slice: newCounters() },
    speculativeRetries: 0,
    digestMismatches: 0,
    readRepair: { mismatches: 0, rowsRepaired: 0, timeouts: 0 },
    sessionFloor: { escalations: 0, notMet: 0 },
    open: 0,
    background: 0,
    backgroundBytes: 0,
    heldWrites: 0,
  };
  const replicaName = options.names?.replica ?? REPLICA_ACTOR;
  const ref = system.spawn<CoordinatorMsg>(options.names?.coordinator ?? COORDINATOR_ACTOR, coordinatorBehavior(system, o, shared, replicaName), {
    mailbox: { capacity: 10 * o.maxInFlight + 1_000, overflow: 'reject' },
  });
  let inFlight = 0;
  let inFlightBytes = 0;

  function keyspaceDef(name: string): KeyspaceDef {
    const ks = options.topology.keyspace(name);
    if (ks === undefined && options.topology.schemaAgreed?.() === false) throw new SchemaDisagreement(name);
    if (ks === undefined) throw new InvalidRequest(`unknown keyspace ${JSON.stringify(name).slice(0, 80)}`, { field: 'keyspace', reason: 'UNKNOWN_KEYSPACE' });
    return ks;
  }

  /** What a timeout says when the coordinator actor's answer never came: it cannot tell how many replicas answered. */
  const LOST_ANSWER = 'the coordinator did not answer in time; how many replicas acknowledged is not known';

  /**
   * Sends a request to the actor and resolves with `shape` of its answer: one promise per request, so the
   * functions below are not async (each async function and await would be one more promise and job per request).
   */
  function run<R, T>(timeoutMs: number, bytes: number, build: (replyTo: ReplyTo<R>) => CoordinatorMsg, lost: () => Error, shape: (answer: R) => T): Promise<T> {
    if (inFlight >= o.maxInFlight) return Promise.reject(new Overloaded('coordinator in-flight requests', o.maxInFlight));
    // The writes answered that still wait for their last replicas hold their bytes too: their mutations may still
    // be queued to those replicas. One request alone always fits, so no size the model allows is refused forever.
    const heldBytes = inFlightBytes + shared.backgroundBytes;
    if (heldBytes > 0 && heldBytes + bytes > maxInFlightBytes) {
      return Promise.reject(new Overloaded('coordinator in-flight request bytes', maxInFlightBytes, { heldBytes, requestBytes: bytes }));
    }
    inFlight++;
    inFlightBytes += bytes;
    return new Promise<T>((resolve, reject) => {
      // The actor always answers by the request's own deadline; the margin only covers a lost actor, or a process
      // paused past both deadlines (both timers fire at once when it resumes). The request may have reached replicas
      // either way, so the caller hears the request's own timeout, never the actor runtime's.
      ref.request<R>(build, timeoutMs + 5_000, (error, answer) => {
        inFlight--;
        inFlightBytes -= bytes;
        if (error !== undefined) reject(isChorusError(error) && error.name === 'AskTimeout' ? lost() : error);
        else {
          try {
            resolve(shape(answer as R));
          } catch (thrown) {
            reject(thrown);
          }
        }
      });
    });
  }

  function write(keyspace: string, partitionKey: Key, clustering: Key | undefined, what: WriteWhat, options: WriteOptions = {}): Promise<WriteAnswer> {
    try {
      return startWrite(keyspace, partitionKey, clustering, what, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  function startWrite(keyspace: string, partitionKey: Key, clustering: Key | undefined, what: WriteWhat, options: WriteOptions): Promise<WriteAnswer> {
    const ks = keyspaceDef(keyspace);
    const consistency = options.consistency === undefined ? DEFAULT_CONSISTENCY : parseConsistency(options.consistency);
    const partition = bytesOf(partitionKey);
    const ck = clustering === undefined ? undefined : bytesOf(clustering);
    validateRowKey(partition, ck);
    let timestampMicros: number;
    if (options.timestampMicros !== undefined) {
      if (options.afterMicros !== undefined) throw new InvalidRequest('a write takes a timestamp or a session high-water mark (after), not both', { field: 'after' });
      const ts = options.timestampMicros;
      if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) throw new InvalidRequest(`timestamp must be a non-negative integer of microseconds, got ${String(ts)}`, { field: 'timestamp' });
      hlc.checkNotTooFarAhead(ts, 'client timestamp');
      timestampMicros = ts;
    } else {
      const after = options.afterMicros;
      if (after !== undefined) {
        micros(after, 'after');
        // The same bound as a client timestamp: a session cannot push this node's clock further than a client may.
        hlc.checkNotTooFarAhead(after, 'session high-water mark');
      }
      const ahead = shared.skew.selfAheadMs();
      if (ahead !== undefined) throw new ClockSkewed(ahead, maxClockSkewMs);
      // The session saw `after`, so its write must sort above it even if this node's clock lags whoever stamped it.
      timestampMicros = after === undefined ? hlc.now() : Math.max(hlc.now(), after + 1);
    }
    const token = tokenOf(partition);
    let mutation: Mutation;
    if (what.partition) mutation = { keyspace, token, partition, partitionDeletion: { timestampMicros } };
    else {
      let cell: Cell;
      if (what.value === undefined) cell = { tombstone: true, timestampMicros };
      else {
        const value = bytesOf(what.value);
        cell = what.ttlSeconds === undefined ? { value, timestampMicros } : { value, timestampMicros, expiresAtMicros: expiryFromTtl(env.clock.nowMicros(), what.ttlSeconds) };
      }
      // Written out, not spread from a row: see RowWrite.
      mutation = ck === undefined ? { keyspace, token, partition, cell } : { keyspace, token, partition, clustering: ck, cell };
    }
    validateMutation(mutation);
    // A timestamp not taken from the clock (the client's, or above a session's mark) is adopted once the write may exist.
    const clientStamped = options.timestampMicros !== undefined || options.afterMicros !== undefined;
    const bytes = mutationBytes(mutation);
    const answered = run(
      o.writeTimeoutMs,
      bytes,
      (replyTo: ReplyTo<WriteAnswer>) => ({ type: 'write', keyspace: ks, consistency, mutation, bytes, timestampMicros, clientTimestamp: options.timestampMicros !== undefined, replyTo }),
      () => new WriteTimeout(consistency, blockFor(consistency, ks.replication, o.topology.localDc), 0, 'SIMPLE', LOST_ANSWER, timestampMicros),
      asIs,
    );
    if (!clientStamped) return answered;
    return answered.then(
      (answer) => {
        adoptClientTimestamp(timestampMicros);
        return answer;
      },
      (error: unknown) => {
        // A timed-out write may exist on some replica and win later; one refused or never sent does not.
        if (error instanceof WriteTimeout) adoptClientTimestamp(timestampMicros);
        throw error;
      },
    );
  }

  /**
   * This node's later writes must supersede a client-stamped write it
   * coordinated (the client expects its next write through us to win), or
   * one stamped above a session's high-water mark, so the clock moves past
   * that timestamp, but only once the write may exist: adopting it before
   * sending would stamp this node's own writes up to max_clock_skew ahead for
   * a while even when the client's write was refused. Writes racing the
   * client's are concurrent, and either order is right.
   */
  function adoptClientTimestamp(ts: number): void {
    hlc.observe(ts);
  }

  /** Reads a row at a level and resolves with `shape` of its reconciled cell. */
  function readCellAt<T>(keyspace: string, key: Key, clustering: Key | undefined, options: RowReadOptions, shape: (cell: Cell | undefined) => T): Promise<T> {
    try {
      return startRead(keyspace, key, clustering, options, shape);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  function startRead<T>(keyspace: string, key: Key, clustering: Key | undefined, options: RowReadOptions, shape: (cell: Cell | undefined) => T): Promise<T> {
    const ks = keyspaceDef(keyspace);
    const consistency = options.consistency === undefined ? DEFAULT_CONSISTENCY : parseConsistency(options.consistency);
    validateForRead(consistency);
    const partition = bytesOf(key);
    const ck = clustering === undefined ? undefined : bytesOf(clustering);
    validateRowKey(partition, ck);
    const row: RowKey = { keyspace: ks.name, token: tokenOf(partition), partition };
    if (ck !== undefined) row.clustering = ck;
    const floorMicros = options.floorMicros;
    if (floorMicros !== undefined) micros(floorMicros, 'floor');
    return run(
      o.readTimeoutMs,
      READ_REQUEST_BYTES,
      (replyTo: ReplyTo<ReadAnswer>) => (floorMicros === undefined ? { type: 'read', keyspace: ks, consistency, row, replyTo } : { type: 'read', keyspace: ks, consistency, row, floorMicros, replyTo }),
      () => new ReadTimeout(consistency, blockFor(consistency, ks.replication, o.topology.localDc), 0, false, LOST_ANSWER),
      (answer) => shape(answer.cell),
    );
  }

  /** What `get` answers: the live value, or undefined for absence, a tombstone or an expired cell. */
  const liveValue = (cell: Cell | undefined): { value: Uint8Array; timestampMicros: number } | undefined =>
    cell === undefined || isDead(cell, env.clock.nowMicros()) || isTombstone(cell) ? undefined : { value: cell.value, timestampMicros: cell.timestampMicros };

  return {
    ref,
    clock: hlc,
    put: (keyspace, key, clustering, value, opts = {}) => write(keyspace, key, clustering, opts.ttlSeconds === undefined ? { value } : { value, ttlSeconds: opts.ttlSeconds }, opts),
    del: (keyspace, key, clustering, opts = {}) => write(keyspace, key, clustering, {}, opts),
    deletePartition: (keyspace, partition, opts = {}) => write(keyspace, partition, undefined, { partition: true }, opts),
    getCell: (keyspace, key, clustering, opts = {}) => readCellAt(keyspace, key, clustering, opts, asIs),
    get: (keyspace, key, clustering, opts = {}) => readCellAt(keyspace, key, clustering, opts, liveValue),
    async slice(keyspace, partitionKey, opts = {}) {
      const ks = keyspaceDef(keyspace);
      const consistency = opts.consistency === undefined ? DEFAULT_CONSISTENCY : parseConsistency(opts.consistency);
      validateForRead(consistency);
      const partition = bytesOf(partitionKey);
      validateRowKey(partition, undefined);
      const limit = opts.limit ?? 1000;
      if (!Number.isInteger(limit) || limit < 1 || limit > LIMITS.maxSliceLimit) throw new InvalidRequest(`limit must be an integer in [1, ${LIMITS.maxSliceLimit}]`, { reason: 'INVALID_SLICE' });
      const query: SliceQuery = { keyspace: ks.name, token: tokenOf(partition), partition, limit, reverse: opts.reverse === true };
      for (const [field, k] of [['from', opts.from], ['to', opts.to], ['after', opts.page]] as const) {
        if (k === undefined) continue;
        const b = bytesOf(k);
        if (b.length > LIMITS.maxClusteringKeyBytes) throw new KeyTooLarge('clustering', b.length, LIMITS.maxClusteringKeyBytes);
        query[field] = b;
      }
      const floors: RowFloor[] = [];
      if (opts.floors !== undefined) {
        if (!Array.isArray(opts.floors) || opts.floors.length > LIMITS.maxSliceFloors) throw new InvalidRequest(`floors must be a list of at most ${LIMITS.maxSliceFloors} rows`, { field: 'floors' });
        for (const f of opts.floors) {
          const clustering = bytesOf(f.clustering);
          if (clustering.length > LIMITS.maxClusteringKeyBytes) throw new KeyTooLarge('clustering', clustering.length, LIMITS.maxClusteringKeyBytes);
          floors.push({ clustering, timestampMicros: micros(f.timestampMicros, 'floors') });
        }
      }
      const page = await run(
        o.readTimeoutMs,
        READ_REQUEST_BYTES,
        (replyTo: ReplyTo<MergedPage>) => ({ type: 'slice', keyspace: ks, consistency, query, floors, replyTo }),
        () => new ReadTimeout(consistency, blockFor(consistency, ks.replication, o.topology.localDc), 0, false, LOST_ANSWER),
        asIs,
      );
      const rows = page.rows.map((r): SliceResponseRow => {
        const cell = r.cell as Exclude<Cell, { tombstone: true }>;
        const row: SliceResponseRow = { clustering: r.clustering, value: cell.value, timestampMicros: cell.timestampMicros };
        if (cell.expiresAtMicros !== undefined) row.expiresAtMicros = cell.expiresAtMicros;
        return row;
      });
      return page.nextPage === undefined ? { rows } : { rows, nextPage: page.nextPage };
    },
    async local(keyspace, key, clustering) {
      const partition = bytesOf(key);
      const ck = clustering === undefined ? undefined : bytesOf(clustering);
      validateRowKey(partition, ck);
      return options.localReplica.getCell(ck === undefined ? { keyspace, token: tokenOf(partition), partition } : { keyspace, token: tokenOf(partition), partition, clustering: ck });
    },
    stats() {
      const op = (c: OpCounters): OpStats => ({ ok: c.ok, unavailable: c.unavailable, timeouts: c.timeouts, failed: c.failed, latency: c.latency.summary() });
      return {
        write: op(shared.counters.write),
        read: op(shared.counters.read),
        slice: op(shared.counters.slice),
        inFlight,
        inFlightBytes: inFlightBytes + shared.backgroundBytes,
        open: shared.open,
        background: shared.background,
        heldWrites: shared.heldWrites,
        speculativeRetries: shared.speculativeRetries,
        digestMismatches: shared.digestMismatches,
        readRepair: { ...shared.readRepair },
        sessionFloor: { ...shared.sessionFloor },
        refusedPeerTimestamps: hlc.rejected,
        peers: shared.latencies.snapshot(),
      };
    },
    clockSkew: () => shared.skew.snapshot(),
    async stop() {
      await system.stop(ref as ActorRef<unknown>);
    },
  };
}
