import { type ActorRef, ActorSystem } from '@chorus/actors';
import { type AntiEntropyHandle, type RepairService, repairedAtRange, startAntiEntropy } from '@chorus/anti-entropy';
import { type CoordinatorHandle, spawnCoordinator } from '@chorus/coordinator';
import { type Env, type HostId, type NodeId, Throttle, type Token, type Transport, token } from '@chorus/core';
import { AppStateKey, GONE_RETENTION_MS, type GossipMsg, isGoneStatus, LatestMembership, type MembershipEvent, type MembershipSnapshot, membership, membershipEventsOf, peersHoldingOwnStatus, removeNode as markRemoved, reportLink, schemaGossipOf, setApplicationState, spawnGossiper, subscribe } from '@chorus/gossip';
import { type HintStats, type HintsHandle, startHints } from '@chorus/hints';
import { HybridLogicalClock, type ReplicaMsg, SkewTracker, spawnReplica } from '@chorus/replica';
import { type KeyspaceDef, type ReadRepairMode, type ReplicationSpec, RingView, type TombstoneGcMode, allocateTokens, readRepairOf, tombstoneGcOf } from '@chorus/ring';
import { type SchemaSnapshot, loadSchema, putKeyspace, spawnSchema, validateKeyspaceRequest } from '@chorus/schema';
import { type CommitSyncMode, type DiskReads, SYSTEM_KEYSPACE, type StorageDb, type StorageHandle, spawnStorage } from '@chorus/storage';
import { DEFAULT_STREAM_THROUGHPUT_BYTES_PER_SEC, type MovementStatus, Movements } from '@chorus/streaming';
import { wireCodec } from '@chorus/wire';
import { bootstrap } from './bootstrap.js';
import { awaitLeftHeard, checkDecommission, decommission } from './decommission.js';
import { NodeRemoved, TopologyChangeInProgress } from './errors.js';
import { hasLeft, keepClockMark, keepGone, keepPeerStates, loadGone, loadLocalState, loadPeerStates, recordGeneration, recordLeft, savePeers, saveTokens } from './local-state.js';
import { purgeHorizonOf } from './purge-horizon.js';
import { JOIN_SETTLE_ROUNDS, SettlingRing } from './settling-ring.js';
import { checkRemoveNode, removeNode } from './removenode.js';
import { type HintsEntry, type RingEntry, type StatusEntry, hintsView, peersWithOtherSchema, ringEntries, ringOf, ringPeersOf, statusView } from './views.js';
import type { TopologyContext } from './topology.js';

export interface NodeSettings {
  name: string;
  clusterName: string;
  seeds: NodeId[];
  dc: string;
  rack: string;
  numTokens: number;
  /** Tokens for a first start; ignored once the node has tokens of its own. */
  initialTokens: string[];
  /**
   * Whether a node joining a ring that already has members streams its
   * ranges first (Cassandra's auto_bootstrap): it is UJ until it has them.
   * False joins at once without data, for repair to fill.
   */
  autoBootstrap: boolean;
  /** stream_throughput: bytes per second this node streams for bootstrap (default 24 MiB/s; 0: unpaced). */
  streamThroughputBytesPerSec?: number;
  phiConvictThreshold: number;
  /** dynamic_snitch_badness_threshold: see the coordinator's `badnessThreshold` (its default when absent). */
  dynamicSnitchBadnessThreshold?: number;
  gossipIntervalMs: number;
  writeTimeoutMs: number;
  /** max_background_writes: see the coordinator's `maxBackgroundWrites` (its default when absent). */
  maxBackgroundWrites?: number;
  readTimeoutMs: number;
  commitSync: CommitSyncMode;
  commitSyncPeriodMs: number;
  gcGraceSeconds: number;
  /** Pause between two gc sweeps of the store (gc_sweep_interval); the storage default (1 h) when absent. */
  gcSweepIntervalMs?: number;
  /** Bytes of reconciled rows cached for point reads (0: off); the storage default when absent. */
  rowCacheBytes?: number;
  /** point_reads = inline: point reads of key-value rows on the node's thread, not through the I/O pool, with the process's count of disk reads (storage's `inlinePointReads`). */
  inlinePointReads?: DiskReads;
  maxClockSkewMs: number;
  /** clock_skew_warn (default 20 ms): a peer's clock offset past it is reported (status, log, metric); max_clock_skew stays the refusal bound. */
  clockSkewWarnMs?: number;
  /** hinted_handoff_enabled (default true): store hints for replicas that miss writes; off, ANY behaves as ONE. */
  hintedHandoffEnabled?: boolean;
  /** max_hint_window (default 3 h), from the target's oldest undelivered hint. */
  maxHintWindowMs?: number;
  /** max_hints_size_per_host in bytes (default 1 GiB; 0: no cap). */
  maxHintsSizePerHostBytes?: number;
  /** hinted_handoff_throttle in KiB/s (default 1024; 0: unpaced). */
  hintedHandoffThrottleKiBps?: number;
  /** repair_throttle: bytes per second this node streams for repair (default 64 MiB/s; 0: unpaced). */
  repairThrottleBytesPerSec?: number;
  /** repair_max_sessions: range sessions this node coordinates at once (default 2). */
  repairMaxSessions?: number;
  /** repair_schedule_interval: a `--pr` repair of every keyspace this often, staggered across nodes (off when absent). */
  repairScheduleIntervalMs?: number;
  /** repair_history_size: finished repair jobs kept (default 100). */
  repairHistorySize?: number;
  /** gone_retention: how long LEFT and REMOVED nodes are gossiped and remembered on disk (default 3 days, as Cassandra). */
  goneRetentionMs?: number;
  /** Byte budgets of the node's queues; each package's default when absent. */
  memory?: MemoryBudgets;
}

/** Bytes the node's queues of values may hold; past a budget the work is refused with Overloaded, never queued. */
export interface MemoryBudgets {
  /** Mutations coordinated at once (max_coordinator_inflight_bytes). */
  coordinatorInflightBytes?: number;
  /** Mutations queued in the replica actor's and in the storage actor's mailbox, each (max_mailbox_bytes). */
  mailboxBytes?: number;
  /** Writes in one group-commit batch (max_storage_batch_bytes). */
  storageBatchBytes?: number;
}

export interface StartNodeOptions {
  env: Env;
  transport: Transport;
  db: StorageDb;
  /**
   * The hints' own database (`<data_dir>/hints`; memory-level in the
   * simulator). Without it the node keeps no hints: replicas that miss a
   * write wait for repair, and ANY behaves as ONE.
   */
  hintsDb?: StorageDb;
  settings: NodeSettings;
  /** Bytes the node's data takes on disk, published as LOAD; the node does no I/O of its own. */
  loadBytes?: () => Promise<number>;
  release?: string;
  /**
   * Called when the node learns, after it started, that the ring removed it
   * (or it left) while it was away; the node stops itself. At start the same
   * finding rejects `startChorusNode` with NodeRemoved instead, as does a
   * start after this node announced LEFT (once the live peers have heard it).
   */
  onRemoved?: (error: NodeRemoved) => void;
}

export interface NodeCounters {
  peersUp: number;
  peersDown: number;
  actors: number;
  pendingAsks: number;
  rejectedFrames: number;
  restarts: number;
  rowCache: { hits: number; misses: number; evictions: number; entries: number; bytes: number };
}

/** A keyspace as the node's API shows it. */
export interface KeyspaceView {
  name: string;
  replication: ReplicationSpec;
  readRepair: ReadRepairMode;
  tombstoneGc: TombstoneGcMode;
}

/** A running node: what the server process and the simulator drive it through. */
export interface ChorusNode {
  readonly address: NodeId;
  readonly name: string;
  readonly hostId: HostId;
  readonly system: ActorSystem;
  /** Reads and writes at any consistency level, with this node as coordinator. */
  readonly coordinator: CoordinatorHandle;
  /** The latest membership as gossip reports it. */
  membership(): MembershipSnapshot;
  status(): Promise<{ nodes: StatusEntry[] }>;
  ring(): Promise<{ tokens: RingEntry[] }>;
  /** The schema's keyspaces, and whether this node's schema is the one its live peers hold (a keyspace may not have arrived yet when it is not). */
  keyspaces(): Promise<{ keyspaces: KeyspaceView[]; schemaAgreed: boolean }>;
  /**
   * Creates or changes a keyspace; an option left out (`readRepair`,
   * `tombstoneGc`) keeps the keyspace's current one (blocking, repair for a new keyspace).
   */
  putKeyspace(name: string, replication: unknown, readRepair?: unknown, tombstoneGc?: unknown): Promise<KeyspaceView>;
  /** Hints this node holds, per target host id (`GET /v1/hints`); empty without a hints database. */
  hints(): Promise<{ targets: HintsEntry[] }>;
  /** Hinted handoff's counters; undefined without a hints database. */
  hintStats(): HintStats | undefined;
  /** Hinted handoff itself, for topology work (dropping a removed host id's hints; `handOff(to)`, which decommission calls to move this node's hints before it leaves); undefined without a hints database. */
  readonly hintedHandoff: HintsHandle | undefined;
  /** Anti-entropy repair jobs coordinated by this node (`chorus repair`, `/v1/repair`). */
  readonly repair: RepairService;
  /** Range movements (bootstrap) this node runs or ran lately (`chorus streams`, `GET /v1/streams`). */
  streams(): Promise<{ streams: MovementStatus[] }>;
  /**
   * Starts leaving the ring (`chorus decommission`): refuses at once with
   * DecommissionRefused or TopologyChangeInProgress, else announces LEAVING
   * and answers with the movement; `left` resolves once every range is
   * streamed to its new owner, the hints are handed off, LEFT is recorded on
   * disk and announced, and every live peer has heard it. Stop the node then:
   * a later start gossips LEFT again and rejects with NodeRemoved.
   */
  decommission(): Promise<{ movement: MovementStatus; left: Promise<MovementStatus> }>;
  /**
   * Removes the dead node with this host id from the ring (`chorus
   * removenode`), coordinated by this node: refuses at once with
   * UnknownHostId, RemoveNodeRefused or TopologyChangeInProgress, else
   * answers with the movement; `removed` resolves once the node's ranges are
   * re-replicated from the surviving replicas and it is gossiped REMOVED.
   */
  removeNode(hostId: string): Promise<{ movement: MovementStatus; removed: Promise<MovementStatus> }>;
  counters(): NodeCounters;
  stop(): Promise<void>;
}

const LOAD_INTERVAL_MS = 10_000;
const LOCAL_TIMEOUT_MS = 10_000;
/** Gossip intervals a restarted node waits to hear of the ring's other members again before it coordinates regardless. */
const RING_WAIT_ROUNDS = 30;
export const DEFAULT_KEYSPACE = 'default';

type ListenerMsg = { type: 'membership'; event: MembershipEvent } | { type: 'load' };

/**
 * Builds one node's actors from its Env: storage, schema, gossip, and the
 * listener that keeps the latest membership at hand. The same code runs in
 * the server process and inside the simulator.
 */
export async function startChorusNode(options: StartNodeOptions): Promise<ChorusNode> {
  const { env, transport, settings } = options;
  // One clock for this node's replica actor and its coordinator: writes it stamps move past every timestamp either has seen.
  const hlc = new HybridLogicalClock(() => env.clock.nowMicros(), settings.maxClockSkewMs * 1000);
  // Every peer message carries this clock and advances it on receipt (observe refuses a stamp past max_clock_skew), so
  // this node's timestamps trail the fastest clock it has heard from by at most one message, not only after replica answers.
  const system = new ActorSystem({ env, transport, codec: wireCodec(), clock: { stamp: () => hlc.peek(), observe: (micros) => void hlc.observe(micros) } });
  // Before the storage: its sweep reads the schema, and until the definitions are loaded a keyspace reads as repair (purges nothing).
  let schema: ReadonlyMap<string, KeyspaceDef> = new Map();
  let antiEntropy: AntiEntropyHandle | undefined;
  const purgeHorizon = purgeHorizonOf({
    clock: env.clock,
    gcGraceSeconds: settings.gcGraceSeconds,
    maxClockSkewMs: settings.maxClockSkewMs,
    keyspace: (name) => schema.get(name),
    // Until anti-entropy has loaded its history, no repair is known: a repair keyspace purges nothing.
    repairedAt: (keyspace, t) => antiEntropy?.repairedAt(keyspace, t),
  });
  const storage: StorageHandle = spawnStorage(system, {
    db: options.db,
    env,
    commitSync: settings.commitSync,
    commitSyncPeriodMs: settings.commitSyncPeriodMs,
    gcGraceSeconds: settings.gcGraceSeconds,
    purgeHorizon,
    ...(settings.gcSweepIntervalMs !== undefined ? { sweepIntervalMs: settings.gcSweepIntervalMs } : {}),
    ...(settings.rowCacheBytes !== undefined ? { rowCacheBytes: settings.rowCacheBytes } : {}),
    ...(settings.inlinePointReads !== undefined ? { inlinePointReads: settings.inlinePointReads } : {}),
    ...(settings.memory?.mailboxBytes !== undefined ? { mailboxBytes: settings.memory.mailboxBytes } : {}),
    ...(settings.memory?.storageBatchBytes !== undefined ? { batchBytes: settings.memory.storageBatchBytes } : {}),
  });
  let local: Awaited<ReturnType<typeof loadLocalState>>;
  try {
    local = await loadLocalState(storage, env, LOCAL_TIMEOUT_MS);
  } catch (error) {
    await storage.close();
    await system.shutdown();
    throw error;
  }
  // An earlier run announced LEFT: this one only tells the peers that missed it, and never serves.
  let leftAnnounced = await hasLeft(storage);
  const leftBefore = leftAnnounced;
  const startsAlone = settings.seeds.length === 0 || settings.seeds.every((s) => s === env.node);
  let tokens: Token[] = local.tokens;
  if (tokens.length === 0 && settings.initialTokens.length > 0) tokens = settings.initialTokens.map((t) => token(t));
  if (tokens.length === 0 && startsAlone) tokens = allocateTokens(RingView.empty(), { node: env.node, dc: settings.dc }, settings.numTokens, 1, env.random);
  if (tokens.length > 0 && local.tokens.length === 0) await saveTokens(storage, env, tokens, LOCAL_TIMEOUT_MS);

  const goneRetentionMs = settings.goneRetentionMs ?? GONE_RETENTION_MS;
  const gone = await loadGone(storage, env, goneRetentionMs);
  const goneKeeper = keepGone(storage, env, gone, goneRetentionMs, LOCAL_TIMEOUT_MS);
  const peerStates = await loadPeerStates(storage, env);
  const peerKeeper = keepPeerStates(storage, env, peerStates, LOCAL_TIMEOUT_MS);
  let current: LatestMembership | undefined;
  const gossiper: ActorRef<GossipMsg> = spawnGossiper(system, {
    clusterName: settings.clusterName,
    seeds: settings.seeds,
    gossipIntervalMs: settings.gossipIntervalMs,
    phiConvictThreshold: settings.phiConvictThreshold,
    previousGeneration: local.generation - 1,
    quarantineMs: goneRetentionMs,
    gone: [...gone].map(([node, r]) => ({ node, state: r.state, ageMs: Math.max(0, (env.clock.nowMicros() - r.atMicros) / 1000) })),
    onGone: (node, state) => goneKeeper.add(node, state),
    // Peers that are gone are the gone row's: kept with their age, and forgotten with it.
    known: [...peerStates].filter(([node]) => !gone.has(node)).map(([node, state]) => ({ node, state })),
    onRingState: (node, state) => peerKeeper.set(node, state === undefined || isGoneStatus(state.app[AppStateKey.STATUS]?.value) ? undefined : state),
    onGeneration: (generation) => {
      if (generation === local.generation) return;
      recordGeneration(storage, env, generation, LOCAL_TIMEOUT_MS).catch((error: unknown) => env.logger.warn({ err: error, generation }, 'could not record the gossip generation'));
    },
    initialState: {
      name: settings.name,
      hostId: local.hostId,
      dc: settings.dc,
      rack: settings.rack,
      release: options.release ?? '0.1.0',
      rpcAddress: env.node,
      ...(tokens.length > 0 ? { tokens, status: leftBefore ? ('LEFT' as const) : ('NORMAL' as const) } : {}),
    },
  });
  // A closed connection or unanswered pings corroborate silence: the failure detector convicts sooner.
  transport.onLinkState((peer, state) => {
    try {
      reportLink(gossiper, peer, state);
    } catch (error) {
      env.logger.warn({ peer, state, err: error }, 'could not pass a link report to gossip');
    }
  });
  // The ring's other members are kept on disk, for the next start to wait for (see awaitRingPeers). Until gossip
  // knows again every peer saved by the last run, what it knows is partial and must not replace them.
  let peersKnown = false;
  let savedPeers = local.peers.join(',');
  let savingPeers: Promise<void> = Promise.resolve();
  const keepPeers = (view: MembershipSnapshot): void => {
    if (!peersKnown) {
      if (!knowsAll(view, local.peers)) return;
      peersKnown = true;
    }
    const peers = ringPeersOf(view);
    const text = peers.join(',');
    if (text === savedPeers) return;
    savedPeers = text;
    savingPeers = savingPeers
      .then(() => savePeers(storage, env, peers, LOCAL_TIMEOUT_MS))
      .catch((error: unknown) => env.logger.warn({ err: error }, 'could not save the ring members'));
  };
  let schemaVersion: string | undefined;
  // Set when a peer says this node was removed (or left) while it was away; it must not serve then.
  let removedSelf: NodeRemoved | undefined;
  let serving: ChorusNode | undefined;
  const schemaRef = spawnSchema(system, {
    storage,
    initial: await loadSchema(storage),
    gossip: schemaGossipOf(gossiper),
    timeoutMs: LOCAL_TIMEOUT_MS,
    listener: {
      schemaChanged(snapshot: SchemaSnapshot) {
        schema = snapshot.keyspaces;
        schemaVersion = snapshot.version;
      },
    },
  });
  let observeRing: (() => void) | undefined;
  const listener = system.spawn<ListenerMsg>('membership-listener', () => ({
    started(ctx) {
      if (options.loadBytes) ctx.after(0, { type: 'load' });
    },
    async receive(msg, ctx) {
      if (msg.type === 'load') {
        ctx.after(LOAD_INTERVAL_MS, { type: 'load' });
        // Measured outside this turn: a slow disk walk must not hold back membership events.
        options.loadBytes!().then(
          (load) => setApplicationState(gossiper, { load }),
          (error: unknown) => ctx.log.warn({ err: error }, 'could not measure the data size'),
        );
        return;
      }
      if (msg.event.kind === 'removedSelf') {
        // Its own LEFT told back: the node stops once every live peer has heard it (decommission, or the start below).
        if (leftAnnounced && msg.event.status === 'LEFT') return;
        removedSelf ??= new NodeRemoved(local.hostId, msg.event.status, msg.event.from);
        if (serving !== undefined) {
          env.logger.error({ reason: removedSelf.message }, 'this node is gone from the ring; stopping');
          options.onRemoved?.(removedSelf);
          void serving.stop();
        }
        return;
      }
      // Until the first snapshot is asked for below, events bring nothing newer than it.
      if (current === undefined) return;
      current.update(msg.event.view);
      keepPeers(current.snapshot());
      // Every ring this node holds is seen, so that a join's end is noticed even with no request to plan.
      observeRing?.();
    },
  }));
  subscribe(gossiper, listener, (event): ListenerMsg => ({ type: 'membership', event }));
  current = new LatestMembership(await membership(gossiper, LOCAL_TIMEOUT_MS));
  const latest = current.snapshot.bind(current);
  // A keyspace unknown here while a live peer holds another schema may just not have arrived: retryable, not a 400.
  const schemaAgreed = () => peersWithOtherSchema(latest(), schemaVersion).length === 0;
  const heardBy = () => peersHoldingOwnStatus(gossiper, LOCAL_TIMEOUT_MS);

  if (leftBefore) {
    // It left, and may have stopped before every peer heard it: those still hold it NORMAL, in their ring. Gossip
    // tells them LEFT with this new generation; the data stays untouched and the node does not serve.
    env.logger.warn({ hostId: local.hostId }, 'this node left the ring in an earlier run; announcing LEFT again, then refusing to serve');
    let heard: NodeId[];
    try {
      heard = await awaitLeftHeard({ env, gossipIntervalMs: settings.gossipIntervalMs, latest, heardBy, stopped: () => false });
    } finally {
      await system.stop(gossiper as ActorRef<unknown>);
      await goneKeeper.flush();
      await storage.close();
      await system.shutdown();
    }
    throw new NodeRemoved(local.hostId, 'LEFT', heard[0]!);
  }

  let bootstrapping = false;
  if (tokens.length === 0) {
    // Not in the ring yet: learn it from the seeds first, then choose tokens that balance it.
    try {
      ({ tokens, bootstrap: bootstrapping } = await joinRing(env, settings, latest));
    } catch (error) {
      await system.stop(gossiper as ActorRef<unknown>);
      await storage.close();
      await system.shutdown();
      throw error;
    }
    // A bootstrapping node announces and stores its tokens once its replica takes writes (below).
    if (!bootstrapping) {
      await saveTokens(storage, env, tokens, LOCAL_TIMEOUT_MS);
      setApplicationState(gossiper, { tokens, status: 'NORMAL' });
    }
  }

  // Membership snapshots change with every load or schema update; the ring only when tokens, status or placement do.
  // Rebuild it (and its per-range replica caches) only then.
  let ringFor: { view: MembershipSnapshot; key: string; ring: RingView } | undefined;
  const currentRing = (): RingView => {
    const view = latest();
    if (ringFor?.view === view) return ringFor.ring;
    const key = view.endpoints().map((e) => `${e.node}|${e.status}|${e.dc}|${e.rack}|${e.tokens.join(',')}`).join(';');
    ringFor = { view, key, ring: ringFor?.key === key ? ringFor.ring : ringOf(view) };
    return ringFor.ring;
  };
  const settlingRing = new SettlingRing(env, JOIN_SETTLE_ROUNDS * settings.gossipIntervalMs);
  const requestRing = (): RingView => settlingRing.of(currentRing());
  observeRing = () => settlingRing.observe(currentRing());
  // Start above every timestamp the last run issued, and keep recording how far the clock got.
  hlc.restore(local.clockMarkMicros);
  if (local.clockMarkMicros > env.clock.nowMicros() + settings.maxClockSkewMs * 1000) {
    env.logger.warn({ aheadMs: Math.round((local.clockMarkMicros - env.clock.nowMicros()) / 1000) }, "this node's clock is behind the timestamps it issued before its restart; it stamps above them");
  }
  const clockMark = keepClockMark(storage, env, () => hlc.peek(), local.clockMarkMicros, LOCAL_TIMEOUT_MS);
  const skew = new SkewTracker(settings.maxClockSkewMs, env.logger, settings.clockSkewWarnMs !== undefined ? { warnMs: settings.clockSkewWarnMs } : {});
  const replica: ActorRef<ReplicaMsg> = spawnReplica(system, { env, storage, hlc, skew, left: () => leftAnnounced, ...(settings.memory?.mailboxBytes !== undefined ? { mailboxBytes: settings.memory.mailboxBytes } : {}) });
  const hints: HintsHandle | undefined =
    options.hintsDb === undefined
      ? undefined
      : await startHints(system, {
          env,
          db: options.hintsDb,
          membership: current,
          events: membershipEventsOf(gossiper),
          hlc,
          enabled: settings.hintedHandoffEnabled ?? true,
          ...(settings.maxHintWindowMs !== undefined ? { maxHintWindowMs: settings.maxHintWindowMs } : {}),
          ...(settings.maxHintsSizePerHostBytes !== undefined ? { maxHintsSizePerHostBytes: settings.maxHintsSizePerHostBytes } : {}),
          ...(settings.hintedHandoffThrottleKiBps !== undefined ? { throttleKiBps: settings.hintedHandoffThrottleKiBps } : {}),
          commitSync: settings.commitSync,
          commitSyncPeriodMs: settings.commitSyncPeriodMs,
          gcGraceSecondsOf: () => settings.gcGraceSeconds,
          purgeHorizon,
          deliveryTimeoutMs: settings.writeTimeoutMs * 5,
          isGone: (id) => latest().endpoints().some((e) => e.hostId === id && (e.status === 'LEFT' || e.status === 'REMOVED')),
        });
  const coordinator = spawnCoordinator(system, {
    env,
    hlc,
    skew,
    localReplica: storage.reader,
    membership: current,
    topology: {
      ring: requestRing,
      keyspace: (name) => (name === SYSTEM_KEYSPACE ? undefined : schema.get(name)),
      schemaAgreed,
      localDc: settings.dc,
      localRack: settings.rack,
    },
    writeTimeoutMs: settings.writeTimeoutMs,
    ...(settings.maxBackgroundWrites !== undefined ? { maxBackgroundWrites: settings.maxBackgroundWrites } : {}),
    readTimeoutMs: settings.readTimeoutMs,
    ...(settings.dynamicSnitchBadnessThreshold !== undefined ? { badnessThreshold: settings.dynamicSnitchBadnessThreshold } : {}),
    ...(settings.memory?.coordinatorInflightBytes !== undefined ? { maxInFlightBytes: settings.memory.coordinatorInflightBytes } : {}),
    // Read repair runs in the coordinator, as each keyspace's read_repair says; the node only tells the log.
    readRepair: (e) =>
      env.logger.debug(
        { op: e.op, keyspace: e.keyspace, token: e.token.toString(), mode: e.mode, stale: e.repairs.map((r) => r.target), rows: e.repairs.reduce((n, r) => n + r.rows, 0) },
        e.mode === 'none' ? 'replicas disagreed (read_repair none: not repaired)' : 'read repair',
      ),
    // Disabled hinted handoff gives the coordinator no sink at all: nothing is offered, and ANY needs a replica as ONE does.
    ...(hints?.enabled ? { hints } : {}),
  });

  let ringKnown!: () => void;
  const ringReady = new Promise<void>((resolve) => (ringKnown = resolve));
  const repairJobs = await startAntiEntropy(system, {
    env,
    ringReady,
    storage,
    membership: current,
    ring: currentRing,
    keyspaces: () => [...schema.values()],
    schemaAgreed,
    clocks: () => ({ hlc: hlc.peek(), wallMicros: env.clock.nowMicros() }),
    // Dead data both sides may already have purged is left out of comparisons: the same rule as the sweep's, for a whole range.
    purgeBefore: (keyspace, range, history) => {
      if (tombstoneGcOf(schema.get(keyspace) ?? {}) === 'grace') return env.clock.nowMicros() - settings.gcGraceSeconds * 1_000_000;
      const repaired = repairedAtRange(history, keyspace, range);
      return repaired === undefined ? 0 : repaired - settings.maxClockSkewMs * 1_000;
    },
    ...(settings.repairThrottleBytesPerSec !== undefined ? { throttleBytesPerSec: settings.repairThrottleBytesPerSec } : {}),
    ...(settings.repairMaxSessions !== undefined ? { maxSessions: settings.repairMaxSessions } : {}),
    ...(settings.repairScheduleIntervalMs !== undefined ? { scheduleIntervalMs: settings.repairScheduleIntervalMs } : {}),
    ...(settings.repairHistorySize !== undefined ? { historySize: settings.repairHistorySize } : {}),
  });
  antiEntropy = repairJobs;

  // Each kept endpoint's heartbeat as the disk gave it: one that differs, or a peer UP, is news of this run.
  const keptBeats = new Map([...peerStates, ...[...gone].map(([n, r]) => [n, r.state] as const)].map(([n, s]) => [n, `${s.heartbeat.generation}:${s.heartbeat.version}`]));
  const heard = (view: MembershipSnapshot): boolean =>
    keptBeats.size === 0 || view.endpoints().some((e) => !e.isSelf && (e.liveness === 'UP' || keptBeats.get(e.node) !== `${e.generation}:${e.heartbeat}`));
  await awaitRingPeers(env, settings, latest, local.peers, heard, () => removedSelf !== undefined);
  ringKnown();
  keepPeers(latest());

  let stopped = false;
  const movements = new Movements();
  const clocks = () => ({ hlc: hlc.peek(), wallMicros: env.clock.nowMicros() });
  const streamThrottle = new Throttle(settings.streamThroughputBytesPerSec ?? DEFAULT_STREAM_THROUGHPUT_BYTES_PER_SEC, env.clock, env.scheduler);
  // What bootstrap, decommission and removenode share.
  const topology: TopologyContext = {
    env,
    system,
    gossipIntervalMs: settings.gossipIntervalMs,
    latest,
    ring: currentRing,
    keyspaces: () => [...schema.values()].filter((k) => k.name !== SYSTEM_KEYSPACE),
    clocks,
    movements,
    throttle: streamThrottle,
    // A page is a local scan of at most a MiB: a few read timeouts are plenty, and a lost message then costs little.
    pageTimeoutMs: settings.readTimeoutMs * 3,
    writeTimeoutMs: settings.writeTimeoutMs * 3,
    stopped: () => stopped,
  };
  if (bootstrapping) {
    const joinTokens = tokens;
    bootstrap({
      ...topology,
      tokens: joinTokens,
      schemaVersion: () => schemaVersion,
      announce: (values) => setApplicationState(gossiper, values),
      saveTokens: () => saveTokens(storage, env, joinTokens, LOCAL_TIMEOUT_MS),
    }).catch((error: unknown) => {
      if (!stopped) env.logger.error({ err: error }, 'bootstrap failed; the node stays joining');
    });
  }
  const node: ChorusNode = {
    address: env.node,
    name: settings.name,
    hostId: local.hostId,
    system,
    coordinator,
    membership: latest,
    status: async () => statusView(latest(), schema.get(DEFAULT_KEYSPACE)?.replication, coordinator.clockSkew(), (id) => hints?.needsRepair(id) ?? false),
    hints: async () => hintsView(latest(), hints?.targets() ?? []),
    hintStats: () => hints?.stats(),
    hintedHandoff: hints,
    repair: repairJobs,
    streams: async () => ({ streams: movements.statuses() }),
    async removeNode(hostId) {
      const ctx = {
        ...topology,
        markRemoved: (n: NodeId) => markRemoved(gossiper, n, LOCAL_TIMEOUT_MS),
        ...(hints ? { dropHints: (id: HostId) => hints.dropHintsFor(id) } : {}),
      };
      const dead = checkRemoveNode(ctx, hostId);
      let movement!: MovementStatus;
      const removed = removeNode(ctx, dead, hostId as HostId, (m) => (movement = m));
      removed.catch(() => undefined);
      // The movement is known before the first pause; without it the start itself failed (another movement runs).
      if (movement === undefined) await removed;
      return { movement, removed };
    },
    async decommission() {
      const ctx = {
        ...topology,
        announce: (values: { status?: 'LEAVING' | 'LEFT'; streaming?: number }) => setApplicationState(gossiper, values),
        recordLeft: async () => {
          await recordLeft(storage, env, LOCAL_TIMEOUT_MS);
          // From here on the replica refuses reads: a coordinator that heard LEFT writes to the new ring only, so one
          // that has not yet must not count this node's answer. Its writes still count: they also need the pending replica.
          leftAnnounced = true;
        },
        heardBy,
        ...(hints ? { handOffHints: (to: NodeId) => hints.handOff(to) } : {}),
      };
      checkDecommission(ctx);
      let movement!: MovementStatus;
      const left = decommission(ctx, (m) => (movement = m));
      left.catch(() => undefined);
      // The movement is known before the first pause; without it the start itself failed (another movement runs).
      if (movement === undefined) await left;
      return { movement, left };
    },
    ring: async () => ringEntries(latest()),
    async keyspaces() {
      return { schemaAgreed: schemaAgreed(), keyspaces: [...schema.values()].map((k) => ({ name: k.name, replication: k.replication, readRepair: readRepairOf(k), tombstoneGc: tombstoneGcOf(k) })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) };
    },
    async putKeyspace(name, replication, readRepair, tombstoneGc) {
      const known = new Set(latest().endpoints().map((e) => e.dc).filter((dc): dc is string => dc !== undefined));
      const keyspace = validateKeyspaceRequest(name, replication, known, readRepair, tombstoneGc);
      const stored = (await putKeyspace(schemaRef, keyspace, LOCAL_TIMEOUT_MS)).keyspaces.get(keyspace.name)!;
      return { name: stored.name, replication: stored.replication, readRepair: stored.readRepair, tombstoneGc: stored.tombstoneGc };
    },
    counters() {
      const stats = system.stats();
      // Nodes that left or were removed are kept for days so they stay out; they are no peers that are down.
      const endpoints = latest().endpoints().filter((e) => !e.isSelf && e.status !== 'LEFT' && e.status !== 'REMOVED');
      return {
        peersUp: endpoints.filter((e) => e.liveness === 'UP').length,
        peersDown: endpoints.filter((e) => e.liveness === 'DOWN').length,
        actors: stats.actors,
        pendingAsks: stats.pendingAsks,
        rejectedFrames: stats.rejectedFrames,
        restarts: stats.restarts,
        rowCache: storage.reader.cacheStats(),
      };
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      // Gossip first, so peers hear the shutdown and mark us down at once; storage last, so nothing acknowledged is lost.
      await system.stop(gossiper as ActorRef<unknown>);
      await coordinator.stop();
      await hints?.stop();
      await repairJobs.stop();
      await system.stop(replica as ActorRef<unknown>);
      await clockMark.stop();
      await system.stop(listener as ActorRef<unknown>);
      await system.stop(schemaRef as ActorRef<unknown>);
      await savingPeers;
      await goneKeeper.flush();
      await peerKeeper.flush();
      await storage.close();
      await system.shutdown();
    },
  };
  if (removedSelf !== undefined) {
    await node.stop();
    throw removedSelf;
  }
  serving = node;
  return node;
}

/** Whether gossip has told this node the state of every one of `peers` (a node gossip knows by name only has no status yet). */
function knowsAll(view: MembershipSnapshot, peers: readonly NodeId[]): boolean {
  return peers.every((p) => view.endpoint(p)?.status !== undefined);
}

/**
 * A restarted node knows only its own tokens until gossip tells it the rest
 * of the ring. A coordinator working from that ring takes the node for the
 * only replica of every key: a write at ONE or ANY would be stored here
 * alone (on a node that may be no replica of the key) and hinted to no one,
 * and a read at ONE would answer from here. So before the node coordinates
 * it waits until gossip knows again every peer of the ring it last saw. The
 * peers' states kept on disk (`loadPeerStates`, as Cassandra's system.peers)
 * give it the ring at once; it still waits for a first word of this run from
 * a peer (`heard`), since that exchange is also where a peer tells a node that
 * was removed while away. The wait is bounded: with every peer down the node
 * starts all the same, and says so.
 */
async function awaitRingPeers(env: Env, settings: NodeSettings, current: () => MembershipSnapshot, peers: readonly NodeId[], heard: (view: MembershipSnapshot) => boolean, gone: () => boolean): Promise<void> {
  if (peers.length === 0 && heard(current())) return;
  const sleep = (ms: number) => new Promise<void>((resolve) => env.scheduler.setTimer(ms, resolve));
  const deadline = env.clock.monotonicMs() + RING_WAIT_ROUNDS * settings.gossipIntervalMs;
  while (!(knowsAll(current(), peers) && heard(current())) && !gone()) {
    if (env.clock.monotonicMs() >= deadline) {
      const missing = peers.filter((p) => current().endpoint(p)?.status === undefined);
      env.logger.warn({ missing, heard: heard(current()), waitedMs: RING_WAIT_ROUNDS * settings.gossipIntervalMs }, 'gossip has not told this node of every ring member it knew before its restart; coordinating with a partial ring');
      return;
    }
    await sleep(Math.max(1, settings.gossipIntervalMs / 4));
  }
}

/**
 * Waits until a seed has answered and the ring has been stable for a few
 * gossip rounds, then allocates tokens that balance it (Cassandra's
 * RING_DELAY, shortened: gossip converges in a few rounds on small clusters).
 */
async function joinRing(env: Env, settings: NodeSettings, current: () => MembershipSnapshot): Promise<{ tokens: Token[]; bootstrap: boolean }> {
  const sleep = (ms: number) => new Promise<void>((resolve) => env.scheduler.setTimer(ms, resolve));
  let stableRounds = 0;
  let lastRingSize = -1;
  while (stableRounds < 3) {
    await sleep(settings.gossipIntervalMs);
    const view = current();
    const seedUp = settings.seeds.some((s) => s !== env.node && view.isAlive(s));
    const ringSize = ringOf(view).tokens.length;
    stableRounds = seedUp && ringSize === lastRingSize ? stableRounds + 1 : 0;
    lastRingSize = ringSize;
  }
  const ring = ringOf(current());
  // This node's own entry may be left from a bootstrap its previous run did not finish.
  const moving = ring.members.filter((m) => m.status !== 'normal' && m.node !== env.node);
  if (moving.length > 0) throw new TopologyChangeInProgress(moving.map((m) => ({ node: m.node, status: m.status })));
  const streams = ring.members.length > 0 && settings.autoBootstrap;
  env.logger.info({ ringNodes: ring.members.length }, streams ? 'joining the ring with bootstrap' : 'joining the ring without bootstrap');
  const others = ring.member(env.node) === undefined ? ring : ring.without(env.node);
  const tokens = allocateTokens(others, { node: env.node, dc: settings.dc }, settings.numTokens, 3, env.random);
  // Nodes that join at the same moment see the same ring and would choose the very same tokens;
  // a nudge of at most a millionth of the ring keeps them apart without upsetting the balance.
  const nudge = 2n ** 64n / 1_000_000n;
  return { tokens: tokens.map((t) => token(BigInt.asIntN(64, t + (BigInt(env.random.int(2 ** 31)) * nudge) / 2n ** 31n))), bootstrap: streams };
}
