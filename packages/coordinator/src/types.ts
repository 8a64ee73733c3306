import type { ActorRef } from '@chorus/actors';
import type { Env, HintSink, MembershipView, NodeId, Token } from '@chorus/core';
import type { Cell, Mutation, RowAddress } from '@chorus/model';
import type { ReplicaRepair } from '@chorus/read-repair';
import type { HybridLogicalClock, PeerSkew, SkewTracker } from '@chorus/replica';
import type { KeyspaceDef, ReadRepairMode, RingView } from '@chorus/ring';
import type { CoordinatorMsg } from './actor.js';
import type { ConsistencyLevel } from './levels.js';

/** Keys are bytes, or strings taken as UTF-8. */
export type Key = Uint8Array | string;

/** What the coordinator reads of the cluster's layout; every request takes one snapshot of it. */
export interface CoordinatorTopology {
  ring(): RingView;
  keyspace(name: string): KeyspaceDef | undefined;
  /**
   * Whether this node holds the schema every live peer publishes. When it
   * does not, a keyspace it does not know may exist on the others, so the
   * request is refused with the retryable SchemaDisagreement instead of
   * InvalidRequest. Absent: always agreed.
   */
  schemaAgreed?(): boolean;
  readonly localDc: string;
  readonly localRack: string;
}

/** What the coordinator reads of membership: who is up, and where a node lives when the ring does not say. */
export type CoordinatorMembership = Pick<MembershipView, 'isAlive' | 'locationOf'>;

/** This node's own replica, read without coordination (`local()`); the store's reader in a node. */
export interface LocalReplicaReader {
  getCell(address: RowAddress): Promise<Cell | undefined>;
}

export interface CoordinatorOptions {
  env: Env;
  membership: CoordinatorMembership;
  topology: CoordinatorTopology;
  /**
   * This node's hybrid logical clock and peer clock estimates, shared with its
   * replica actor (the node builds them once). The clock's `maxSkewMicros`
   * is max_clock_skew: client timestamps further ahead are refused.
   */
  hlc: HybridLogicalClock;
  skew: SkewTracker;
  /** Serves `local()`. */
  localReplica: LocalReplicaReader;
  /** `write_request_timeout` (default 2000 ms). */
  writeTimeoutMs?: number;
  /** `read_request_timeout` (default 5000 ms, as Cassandra). */
  readTimeoutMs?: number;
  /**
   * How much slower (by its latency average) than the tier's latency of its rank a replica of a proximity tier may be before reads
   * order the tier by latency instead of ring order, as a fraction (`dynamic_snitch_badness_threshold`; default 1.0, see
   * `sortByProximity`).
   */
  badnessThreshold?: number;
  /** Speculative-retry delay before a replica has latency samples (default 50 ms). */
  defaultSpeculativeDelayMs?: number;
  /** Requests coordinated at once before new ones fail with Overloaded (default 10000). */
  maxInFlight?: number;
  /** Bytes of mutations (keys and values) coordinated at once, each until its last replica answers, before new writes fail with Overloaded (default 12 MiB); one request alone always fits. */
  maxInFlightBytes?: number;
  /**
   * Writes answered at their level that still wait for their last replicas (with hints: see `hints`), past which
   * a write reaching its level is answered only once all but one of its replicas answered, or when it ends (default
   * 1024). At ONE the client's next write starts as soon as one replica has the last, and without this bound the
   * other replicas' share of the work queues up behind the answers with nothing to stop it.
   */
  maxBackgroundWrites?: number;
  /**
   * Where writes that a replica missed are offered (hinted handoff). Absent:
   * nothing is offered, a write ends with its answer, and ANY needs a live
   * replica as ONE does. Present: a replica down when the write started is
   * offered once the write exists on another replica (at ANY at once); a
   * contact that failed or stayed silent once every contact answered or the
   * deadline passed (the write stays open after its answer until then).
   * Called from the coordinator actor's turn (see the contract of
   * `HintSink`). Only ANY awaits the outcome: a stored hint is its
   * acknowledgement, so it needs no live replica.
   */
  hints?: HintSink<Mutation>;
  /**
   * Observes read repair (the coordinator runs it itself, as the keyspace's
   * `readRepair` says): called once for each read or slice whose replicas
   * answered different versions, with what each stale replica is sent,
   * before anything is sent. Called from the coordinator actor's turn; must
   * not block. A throw is logged.
   */
  readRepair?: (repair: ReadRepairEvent) => void;
  /** Actor names, for several coordinators in one system (tests): this node's coordinator, and the replica actor it addresses on every node. */
  names?: { coordinator?: string; replica?: string };
}

/** A read or slice whose replicas disagreed: what read repair sends (or, with read_repair none, would send). */
export interface ReadRepairEvent {
  op: 'read' | 'slice';
  keyspace: string;
  token: Token;
  partition: Uint8Array;
  /** The keyspace's read repair: `none` sends nothing. */
  mode: ReadRepairMode;
  /**
   * One per stale replica that answered (others are never repaired): the
   * resolved versions at their rows, unchanged (their own timestamps and
   * expiries), and for a slice the newest partition deletion if it lacks it.
   */
  repairs: ReplicaRepair[];
}

export interface WriteOptions {
  consistency?: ConsistencyLevel | string;
  ttlSeconds?: number;
  /** The client's own write timestamp (µs); refused when further ahead than max_clock_skew. */
  timestampMicros?: number;
  /**
   * A session's high-water mark (µs): the largest timestamp the session
   * wrote or read. The write is stamped above it (at least `afterMicros + 1`)
   * whatever this node's clock says, so a session's writes keep their order
   * across coordinators whose clocks disagree. Refused, as a client
   * timestamp is, when further ahead than max_clock_skew; not allowed with
   * `timestampMicros`.
   */
  afterMicros?: number;
}

export interface ReadOptions {
  consistency?: ConsistencyLevel | string;
}

/** A point read's options: its level and, in a session, the row's floor. */
export interface RowReadOptions extends ReadOptions {
  /**
   * A session's floor for this row (µs): the timestamp of its own last
   * acknowledged write of it. A resolved version older than that is never
   * returned: the coordinator asks every live replica, answers (after read
   * repair) once one holds a version at least this new, and otherwise fails
   * with SessionFloorNotMet.
   */
  floorMicros?: number;
}

/** A session's floor for one row of a slice: its clustering key and the timestamp of the session's last write of it. */
export interface SliceFloor {
  clustering: Key;
  timestampMicros: number;
}

/** One page of a slice: what to read, and at which level. */
export interface SliceRequest extends ReadOptions {
  /** Inclusive clustering bounds. */
  from?: Key;
  to?: Key;
  /** Live rows per page (default 1000, at most 10000). */
  limit?: number;
  /** The `nextPage` of the previous page. */
  page?: Uint8Array;
  reverse?: boolean;
  /**
   * A session's floors for rows of this partition (at most
   * MAX_SLICE_FLOORS): each row the page covers (in its bounds and up to its
   * next page) must resolve to a version at least as new as its floor, as for
   * `RowReadOptions.floorMicros`; floors of rows the page does not reach are
   * left for a later page.
   */
  floors?: readonly SliceFloor[];
}

/** A live row of a slice's answer. */
export interface SliceResponseRow {
  clustering: Uint8Array;
  value: Uint8Array;
  timestampMicros: number;
  expiresAtMicros?: number;
}

export interface SliceResponse {
  rows: SliceResponseRow[];
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
  /** Bytes of the mutations those requests carry, and of the writes answered that still wait for their last replicas: what the byte budget counts. */
  inFlightBytes: number;
  /** Requests the coordinator holds: those in flight, and writes answered but still waiting for their last replicas (to hint those that miss them). */
  open: number;
  /** Of those, the writes answered that still wait for their last replicas. */
  background: number;
  /** Writes whose answer waited for more of their replicas because `background` was at `maxBackgroundWrites`. */
  heldWrites: number;
  speculativeRetries: number;
  digestMismatches: number;
  /**
   * Read repair: reads and slices that found stale replicas among those that
   * answered, row writes sent to repair them (one per row and replica), and
   * reads failed with ReadTimeout because the repair did not reach the level.
   */
  readRepair: { mismatches: number; rowsRepaired: number; timeouts: number };
  /**
   * Session floors: reads and slices whose first answers were older than a
   * session's floor and that asked the remaining live replicas (the second
   * round trip), and those that still failed with SessionFloorNotMet.
   */
  sessionFloor: { escalations: number; notMet: number };
  /** Peer timestamps not adopted by the clock because they lay beyond max_clock_skew. */
  refusedPeerTimestamps: number;
  peers: Record<string, { averageMs: number; p99Ms: number; samples: number }>;
}

export interface CoordinatorHandle {
  readonly ref: ActorRef<CoordinatorMsg>;
  put(keyspace: string, key: Key, clustering: Key | undefined, value: Uint8Array | string, options?: WriteOptions): Promise<{ timestampMicros: number }>;
  /** The live value; undefined when absent, deleted or expired. */
  get(keyspace: string, key: Key, clustering?: Key, options?: RowReadOptions): Promise<{ value: Uint8Array; timestampMicros: number } | undefined>;
  /** The resolved cell, tombstones and expired values included: for tools and tests that need the version a read saw. */
  getCell(keyspace: string, key: Key, clustering?: Key, options?: RowReadOptions): Promise<Cell | undefined>;
  /** Writes a row tombstone. */
  del(keyspace: string, key: Key, clustering?: Key, options?: Omit<WriteOptions, 'ttlSeconds'>): Promise<{ timestampMicros: number }>;
  /** Deletes every row of the partition written at or before the deletion's timestamp. */
  deletePartition(keyspace: string, partition: Key, options?: Omit<WriteOptions, 'ttlSeconds'>): Promise<{ timestampMicros: number }>;
  slice(keyspace: string, partition: Key, options?: SliceRequest): Promise<SliceResponse>;
  /** This node's own replica's raw cell (tombstones included), without coordination. */
  local(keyspace: string, key: Key, clustering?: Key): Promise<Cell | undefined>;
  stats(): CoordinatorStats;
  /** Per-peer clock offset estimates; `flagged` beyond max_clock_skew. */
  clockSkew(): Record<string, PeerSkew>;
  readonly clock: HybridLogicalClock;
  /** Stops the coordinator actor (the replica actor is the node's to stop). */
  stop(): Promise<void>;
}
