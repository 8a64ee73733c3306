import type { ActorAddress, ActorContext, ActorRef, Behavior, ReplyTo, SpawnOptions } from '@chorus/actors';
import type { DownReason, MembershipChange as CoreMembershipChange, MembershipEvents, NodeId, SchemaGossip, SchemaMismatch } from '@chorus/core';
import { MESSAGE_KINDS, type WireMessage } from '@chorus/wire';
import { CannotRemoveNode } from './errors.js';
import { PhiAccrualFailureDetector, type PhiOptions } from './failure-detector.js';
import {
  type EndpointState,
  answerSyn,
  digestsOf,
  maxVersion,
  markedRemoved,
  goneAtGeneration,
  markedShutdown,
  mergeEndpoint,
  sanitize,
  statesRequested,
  statusOf,
  withinBudget,
} from './state.js';
import { AppStateKey, type AppStateValues, decodeAppState, encodeAppState, isDeadStatus, isGoneStatus } from './values.js';
import { type EndpointInfo, type Liveness, MembershipSnapshot } from './view.js';

export interface GossipOptions {
  /** Peers whose SYN names another cluster are ignored. */
  clusterName: string;
  /** Contact points. A node whose seeds are only itself starts a new cluster. */
  seeds: readonly NodeId[];
  /** One gossip round per interval; 1 s by default, as in Cassandra. */
  gossipIntervalMs?: number;
  /** Cassandra's `phi_convict_threshold`; 8 by default. */
  phiConvictThreshold?: number;
  /** Fine-tuning of the failure detector; intervals default to twice the gossip interval. */
  failureDetector?: Partial<Omit<PhiOptions, 'threshold'>>;
  /**
   * A peer whose connection the transport reports down, and from whom no
   * heartbeat has arrived for this long, is convicted without waiting for phi
   * (a killed process closes its sockets; a frozen one stops answering pings).
   * Two gossip intervals by default.
   */
  unreachableGraceMs?: number;
  /**
   * How long a LEFT or REMOVED endpoint keeps being gossiped before it is
   * dropped; 3 days by default (as Cassandra), so that a node partitioned
   * or down for less still learns of the removal from any peer.
   */
  quarantineMs?: number;
  /**
   * LEFT and REMOVED endpoints this node knew before its restart (see
   * `onGone`), with how long ago each was first seen so: they are gossiped
   * again for the rest of their quarantine, and the node they name is not
   * taken back with the same host id.
   */
  gone?: ReadonlyArray<{ node: NodeId; state: EndpointState; ageMs: number }>;
  /**
   * Told when an endpoint is first seen LEFT or REMOVED, with its state, for
   * the node to keep on disk (and hand back as `gone` at its next start).
   * Called from the actor's turn; must not block.
   */
  onGone?: (node: NodeId, state: EndpointState) => void;
  /**
   * Peers' endpoint states this node kept before its restart (see
   * `onRingState`; Cassandra's `system.peers`), held from the start so that
   * the ring keeps members that are down while this node restarts. Each is
   * checked as a peer's gossip is (this node, generations far ahead, bad
   * keys and `maxEndpoints` stay out; LEFT and REMOVED come through `gone`).
   * A kept endpoint is DOWN, with its generation: a newer generation
   * replaces it, an older one never does. Its first news counts as a first
   * sight, since it may be the last heartbeat of a node that died since; only
   * a heartbeat after that brings it UP.
   */
  known?: ReadonlyArray<{ node: NodeId; state: EndpointState }>;
  /**
   * Told when what the ring needs of a peer changes (a new endpoint, a new
   * generation, or a change of STATUS, TOKENS, DC, RACK, HOST_ID, NAME or
   * RPC_ADDRESS), with its whole state; `undefined` once it is evicted. Not
   * told of heartbeats or other states, so a node that keeps these on disk
   * (and hands them back as `known`) writes on change, not every round.
   * Called from the actor's turn; must not block.
   */
  onRingState?: (node: NodeId, state: EndpointState | undefined) => void;
  /** How long a dropped endpoint's generation is remembered, so stale gossip cannot bring it back; 3 days by default. */
  tombstoneMs?: number;
  /** How long to wait for the ACK of a SYN; the wire table's timeout of `gossip.syn` by default. */
  synTimeoutMs?: number;
  /** Most endpoints held; further unknown endpoints are ignored with a warning. */
  maxEndpoints?: number;
  /** This node's application states at start. NAME defaults to the node id. */
  initialState?: AppStateValues;
  /**
   * The generation this node used last time, if the node keeps it on disk:
   * the new one is always larger, even when the clock stepped back or the
   * node restarts within the same second.
   */
  previousGeneration?: number;
  /**
   * Told each generation the gossiper takes: at start (which may be past
   * `previousGeneration + 1` when the clock is ahead of it) and after every
   * supervised restart. A node that keeps its generation on disk records it,
   * so that its next start goes past it. Called from the actor's turn; must
   * not block.
   */
  onGeneration?: (generation: number) => void;
}

/**
 * One change of membership, as seen by one node: core's changes, plus one
 * that only the schema's gossip interface (`schemaGossipOf`) hands on.
 */
export type MembershipChange =
  | CoreMembershipChange
  /** An UP peer publishes a SCHEMA digest that differs from this node's: time to pull its schema. */
  | { readonly kind: 'schemaMismatch'; readonly node: NodeId; readonly theirs: string; readonly ours: string }
  /**
   * A peer holds this node (same host id) as REMOVED or LEFT: it was removed
   * or left while down, and came back. Told once; the node must not serve.
   */
  | { readonly kind: 'removedSelf'; readonly node: NodeId; readonly status: 'REMOVED' | 'LEFT'; readonly from: NodeId };

/**
 * What a subscriber receives. The first message after `subscribe` is
 * `snapshot`; every later one carries the view as it was right after the change.
 */
export type MembershipEvent =
  | (MembershipChange & { readonly view: MembershipSnapshot })
  | { readonly kind: 'snapshot'; readonly view: MembershipSnapshot };

export interface GossipStats {
  rounds: number;
  synsSent: number;
  synsReceived: number;
  /** SYNs ignored because they named another cluster. */
  foreignSyns: number;
  convictions: number;
}

type Ack = WireMessage<'gossip.ack'>;
type Syn = WireMessage<'gossip.syn'> & { replyTo?: ReplyTo<Ack> };

type Listener = (event: MembershipEvent) => void;

/** An actor told one message per event, or a listener called in the gossiper's turn (the core interfaces). */
type Subscription = { readonly ref: ActorRef<never>; readonly adapt: (event: MembershipEvent) => unknown } | { readonly listener: Listener };

/**
 * The gossiper's messages. The `gossip.syn/ack2/shutdown` ones come from
 * peers (validated by the wire codec); the `gossip.local.*` ones are sent by
 * the functions below and never cross the wire.
 */
export type GossipMsg =
  | Syn
  | WireMessage<'gossip.ack2'>
  | WireMessage<'gossip.shutdown'>
  | { type: 'gossip.local.tick' }
  | { type: 'gossip.local.ack'; from: NodeId; ack: Ack; sentVersion: number }
  | { type: 'gossip.local.subscribe'; subscription: Subscription }
  | { type: 'gossip.local.unsubscribe'; address: ActorAddress }
  | { type: 'gossip.local.unlisten'; listener: Listener }
  | { type: 'gossip.local.set'; entries: ReadonlyArray<readonly [string, string]> }
  | { type: 'gossip.local.membership'; replyTo: ReplyTo<MembershipSnapshot> }
  | { type: 'gossip.local.remove'; node: NodeId; replyTo: ReplyTo<boolean> }
  | { type: 'gossip.local.stats'; replyTo: ReplyTo<GossipStats> }
  | { type: 'gossip.local.heard'; replyTo: ReplyTo<NodeId[]> }
  | { type: 'gossip.local.link'; peer: NodeId; state: 'up' | 'down' };

export const DEFAULT_GOSSIPER_NAME = 'gossiper';
/** Bytes of endpoint states per ACK or ACK2, well under the wire's 4 MiB frame limit once msgpack adds its overhead. */
const STATES_BUDGET = 1024 * 1024;
/** A generation further ahead of our clock than this is garbage, not a restart (Cassandra uses a year too). */
const MAX_GENERATION_AHEAD_S = 365 * 24 * 3600;

interface Resolved {
  clusterName: string;
  seeds: readonly NodeId[];
  intervalMs: number;
  phi: Partial<PhiOptions>;
  quarantineMs: number;
  unreachableGraceMs: number;
  tombstoneMs: number;
  synTimeoutMs: number;
  maxEndpoints: number;
  initial: Array<[string, string]>;
  gone: ReadonlyArray<{ node: NodeId; state: EndpointState; ageMs: number }>;
  onGone: ((node: NodeId, state: EndpointState) => void) | undefined;
  known: ReadonlyArray<{ node: NodeId; state: EndpointState }>;
  onRingState: ((node: NodeId, state: EndpointState | undefined) => void) | undefined;
}

/** The application states whose change `onRingState` reports: what a restarted node needs to place the peer in its ring. */
const RING_KEYS: ReadonlySet<string> = new Set([AppStateKey.STATUS, AppStateKey.TOKENS, AppStateKey.DC, AppStateKey.RACK, AppStateKey.HOST_ID, AppStateKey.NAME, AppStateKey.RPC_ADDRESS]);

/** Cassandra's VERY_LONG_TIME: how long LEFT and REMOVED endpoints are kept. */
export const GONE_RETENTION_MS = 3 * 24 * 3600 * 1000;

function resolve(options: GossipOptions): Resolved {
  const intervalMs = options.gossipIntervalMs ?? 1_000;
  if (!(intervalMs > 0)) throw new RangeError('gossipIntervalMs must be positive');
  return {
    clusterName: options.clusterName,
    seeds: options.seeds,
    intervalMs,
    phi: {
      threshold: options.phiConvictThreshold ?? 8,
      initialIntervalMs: 2 * intervalMs,
      maxIntervalMs: 2 * intervalMs,
      maxLocalPauseMs: Math.max(5_000, 5 * intervalMs),
      ...options.failureDetector,
    },
    quarantineMs: options.quarantineMs ?? GONE_RETENTION_MS,
    unreachableGraceMs: options.unreachableGraceMs ?? 2 * intervalMs,
    tombstoneMs: options.tombstoneMs ?? 3 * 24 * 3600 * 1000,
    synTimeoutMs: options.synTimeoutMs ?? MESSAGE_KINDS['gossip.syn'].timeoutMs,
    maxEndpoints: options.maxEndpoints ?? 10_000,
    initial: encodeAppState(options.initialState ?? {}),
    gone: options.gone ?? [],
    onGone: options.onGone,
    known: options.known ?? [],
    onRingState: options.onRingState,
  };
}

/**
 * The gossiper's behavior factory. Encodes `initialState` at once, so bad
 * values throw here rather than in the actor.
 */
export function gossiperBehavior(options: GossipOptions): () => Behavior<GossipMsg> {
  const config = resolve(options);
  // Outside the behavior so it survives a supervised restart: the restarted
  // gossiper has lost its versions, so it must come back as a new generation
  // or peers would ignore everything it says.
  let lastGeneration = options.previousGeneration ?? 0;
  return () => {
    let gossiper: Gossiper | undefined;
    return {
      started(ctx) {
        gossiper = new Gossiper(ctx, config, lastGeneration);
        lastGeneration = gossiper.generation;
        options.onGeneration?.(gossiper.generation);
        gossiper.start();
      },
      receive(msg) {
        gossiper!.receive(msg);
      },
      stopping() {
        gossiper?.announceShutdown();
      },
    };
  };
}

interface Spawner {
  spawn<M>(name: string, factory: () => Behavior<M>, options?: SpawnOptions): ActorRef<M>;
}

/**
 * Starts the gossiper as `name` (default `gossiper`) under an ActorSystem or
 * an actor. Every node must use the same name: peers address it by it.
 */
export function spawnGossiper(parent: Spawner, options: GossipOptions, name = DEFAULT_GOSSIPER_NAME, spawnOptions: SpawnOptions = {}): ActorRef<GossipMsg> {
  return parent.spawn<GossipMsg>(name, gossiperBehavior(options), spawnOptions);
}

/**
 * Subscribes a local actor to membership events.
 *
 * Contract: the gossiper tells `subscriber` one message per event, built by
 * `adapt`, from inside its own turn, in the order the changes happened; the
 * first is `snapshot`. `adapt` runs in the gossiper's turn and must be a
 * cheap pure function that does not throw. Delivery never blocks the
 * gossiper: when the subscriber's mailbox refuses a message it is dropped
 * with a warning, and the subscriber can resynchronize with `membership()`.
 */
export function subscribe(gossiper: ActorRef<GossipMsg>, subscriber: ActorRef<MembershipEvent>): void;
export function subscribe<M>(gossiper: ActorRef<GossipMsg>, subscriber: ActorRef<M>, adapt: (event: MembershipEvent) => M): void;
export function subscribe<M>(gossiper: ActorRef<GossipMsg>, subscriber: ActorRef<M>, adapt?: (event: MembershipEvent) => M): void {
  const subscription: Subscription = { ref: subscriber as ActorRef<never>, adapt: adapt ?? ((e) => e) };
  gossiper.tell({ type: 'gossip.local.subscribe', subscription });
}

export function unsubscribe(gossiper: ActorRef<GossipMsg>, subscriber: ActorRef<unknown>): void {
  gossiper.tell({ type: 'gossip.local.unsubscribe', address: subscriber.address });
}

function listen(gossiper: ActorRef<GossipMsg>, listener: Listener): () => void {
  gossiper.tell({ type: 'gossip.local.subscribe', subscription: { listener } });
  return () => gossiper.tell({ type: 'gossip.local.unlisten', listener });
}

/**
 * The gossiper as core's `MembershipEvents`, for features that must not
 * import gossip. The listener is called in the gossiper's turn (the contract
 * is written on the interface); it gets every event but `schemaMismatch`.
 */
export function membershipEventsOf(gossiper: ActorRef<GossipMsg>): MembershipEvents {
  return {
    subscribe: (listener) =>
      listen(gossiper, (event) => {
        if (event.kind !== 'schemaMismatch' && event.kind !== 'removedSelf') listener(event);
      }),
  };
}

/**
 * The gossiper as core's `SchemaGossip`: the version travels as this node's
 * SCHEMA application state, and `schemaMismatch` events reach the listener,
 * in the gossiper's turn.
 */
export function schemaGossipOf(gossiper: ActorRef<GossipMsg>): SchemaGossip {
  return {
    publishVersion: (version) => setApplicationState(gossiper, { schema: version }),
    onVersionMismatch: (listener: (mismatch: SchemaMismatch) => void) =>
      listen(gossiper, (event) => {
        if (event.kind === 'schemaMismatch') listener({ peer: event.node, theirs: event.theirs, ours: event.ours });
      }),
  };
}

/** Publishes this node's application states; each gets a fresh version. Throws InvalidAppState before sending anything if a value is bad. */
export function setApplicationState(gossiper: ActorRef<GossipMsg>, values: AppStateValues): void {
  const entries = encodeAppState(values);
  if (entries.length > 0) gossiper.tell({ type: 'gossip.local.set', entries });
}

export function membership(gossiper: ActorRef<GossipMsg>, timeoutMs = 1_000): Promise<MembershipSnapshot> {
  return gossiper.ask<MembershipSnapshot>((replyTo) => ({ type: 'gossip.local.membership', replyTo }), timeoutMs);
}

/**
 * Declares a dead node REMOVED (`nodetool removenode`): the status spreads by
 * gossip, outranks anything that generation of the node could still say, and
 * the endpoint is dropped after the quarantine. Rejects with CannotRemoveNode
 * for self, an unknown node or one that is UP.
 */
export async function removeNode(gossiper: ActorRef<GossipMsg>, node: NodeId, timeoutMs = 1_000): Promise<void> {
  await gossiper.ask<boolean>((replyTo) => ({ type: 'gossip.local.remove', node, replyTo }), timeoutMs);
}

/**
 * Tells the gossiper what the transport knows about the link to `peer`.
 * Called by whoever owns the transport (the node), from a transport handler.
 */
export function reportLink(gossiper: ActorRef<GossipMsg>, peer: NodeId, state: 'up' | 'down'): void {
  gossiper.tell({ type: 'gossip.local.link', peer, state });
}

/**
 * The peers that have shown, through gossip, that they hold this node's
 * current STATUS: their digests carry this generation at or past the version
 * the status was set at, or they sent back this node's own state with that
 * status (a peer holding it LEFT from an earlier run). What a leaving node
 * waits for before it stops.
 */
export function peersHoldingOwnStatus(gossiper: ActorRef<GossipMsg>, timeoutMs = 1_000): Promise<NodeId[]> {
  return gossiper.ask<NodeId[]>((replyTo) => ({ type: 'gossip.local.heard', replyTo }), timeoutMs);
}

export function gossipStats(gossiper: ActorRef<GossipMsg>, timeoutMs = 1_000): Promise<GossipStats> {
  return gossiper.ask<GossipStats>((replyTo) => ({ type: 'gossip.local.stats', replyTo }), timeoutMs);
}

/** The actor's state and handlers; merge, digests and phi are the pure functions it calls. */
class Gossiper {
  readonly self: NodeId;
  readonly generation: number;
  private version = 0;
  private readonly states = new Map<NodeId, EndpointState>();
  /** Peers only; self is always UP. */
  private readonly liveness = new Map<NodeId, Liveness>();
  /** When each LEFT/REMOVED endpoint was first seen so, for the quarantine. */
  private readonly goneSince = new Map<NodeId, number>();
  /** Endpoints held as `known` from before this node's restart that gossip has not told of since. */
  private readonly kept = new Set<NodeId>();
  private readonly tombstones = new Map<NodeId, { generation: number; expiresAt: number }>();
  private readonly fd: PhiAccrualFailureDetector<NodeId>;
  /** Peers whose connection the transport reports down. */
  private readonly unreachable = new Set<NodeId>();
  private subscriptions: Subscription[] = [];
  private pending: MembershipChange[] = [];
  private view: MembershipSnapshot | undefined;
  private removedSelfTold = false;
  /** Per peer, the largest version of this node's own state, this generation, the peer has shown it holds. */
  private readonly heardSelf = new Map<NodeId, number>();
  /** Peers that sent back this node's own state with a status, whatever its generation (see `peersHoldingOwnStatus`). */
  private readonly echoedStatus = new Map<NodeId, string>();
  private readonly decoded = new WeakMap<object, AppStateValues>();
  private readonly seeds: NodeId[];
  private readonly seedSet: Set<NodeId>;
  private readonly peerName: string;
  private readonly counters: GossipStats = { rounds: 0, synsSent: 0, synsReceived: 0, foreignSyns: 0, convictions: 0 };

  constructor(private readonly ctx: ActorContext<GossipMsg>, private readonly config: Resolved, lastGeneration: number) {
    this.self = ctx.env.node;
    this.generation = Math.max(Math.floor(ctx.env.clock.nowMicros() / 1e6), lastGeneration + 1);
    this.fd = new PhiAccrualFailureDetector<NodeId>(config.phi);
    this.seeds = config.seeds.filter((s) => s !== this.self);
    this.seedSet = new Set(this.seeds);
    this.peerName = ctx.self.address.name;
    const app: Record<string, { value: string; version: number }> = {};
    for (const [key, value] of [[AppStateKey.NAME, this.self] as [string, string], ...config.initial]) app[key] = { value, version: ++this.version };
    this.states.set(this.self, { heartbeat: { generation: this.generation, version: ++this.version }, app });
    const now = ctx.env.clock.monotonicMs();
    for (const g of config.gone) {
      if (g.node === this.self || !isGoneStatus(statusOf(g.state)) || g.ageMs >= config.quarantineMs) continue;
      this.states.set(g.node, g.state);
      this.liveness.set(g.node, 'DOWN');
      this.goneSince.set(g.node, now - Math.max(0, g.ageMs));
    }
    const nowS = ctx.env.clock.nowMicros() / 1e6;
    for (const k of config.known) {
      if (k.node === this.self || this.states.has(k.node) || isGoneStatus(statusOf(k.state))) continue;
      if (k.state.heartbeat.generation > nowS + MAX_GENERATION_AHEAD_S) {
        ctx.log.warn({ peer: k.node, generation: k.state.heartbeat.generation }, 'ignored an endpoint state with a generation far in the future');
        continue;
      }
      if (this.states.size >= config.maxEndpoints) {
        ctx.log.warn({ peer: k.node, maxEndpoints: config.maxEndpoints }, 'too many endpoints; ignored a new one');
        continue;
      }
      this.states.set(k.node, sanitize(k.state));
      this.liveness.set(k.node, 'DOWN');
      this.kept.add(k.node);
    }
  }

  start(): void {
    // A random first delay spreads the rounds of nodes started together.
    this.ctx.after(1 + this.ctx.env.random.int(this.config.intervalMs), { type: 'gossip.local.tick' });
    this.ctx.log.info({ generation: this.generation, seeds: this.seeds }, 'gossiper started');
  }

  receive(msg: GossipMsg): void {
    switch (msg.type) {
      case 'gossip.local.tick':
        this.round();
        break;
      case 'gossip.syn':
        this.onSyn(msg);
        break;
      case 'gossip.local.ack':
        this.onAck(msg.from, msg.ack, msg.sentVersion);
        break;
      case 'gossip.ack2':
        this.applyRemote(msg.states, this.ctx.sender);
        break;
      case 'gossip.shutdown':
        this.onShutdown(msg, this.ctx.sender);
        break;
      case 'gossip.local.subscribe':
        this.subscriptions.push(msg.subscription);
        this.deliver(msg.subscription, { kind: 'snapshot', view: this.snapshot() });
        break;
      case 'gossip.local.unsubscribe':
        this.subscriptions = this.subscriptions.filter((s) => !('ref' in s) || s.ref.address.node !== msg.address.node || s.ref.address.name !== msg.address.name);
        break;
      case 'gossip.local.unlisten':
        this.subscriptions = this.subscriptions.filter((s) => !('listener' in s) || s.listener !== msg.listener);
        break;
      case 'gossip.local.set':
        this.setLocal(msg.entries);
        break;
      case 'gossip.local.membership':
        this.ctx.reply(msg.replyTo, this.snapshot());
        break;
      case 'gossip.local.remove':
        this.remove(msg.node, msg.replyTo);
        break;
      case 'gossip.local.stats':
        this.ctx.reply(msg.replyTo, { ...this.counters });
        break;
      case 'gossip.local.heard':
        this.ctx.reply(msg.replyTo, this.holdingOwnStatus());
        break;
      case 'gossip.local.link':
        if (msg.state === 'down') this.unreachable.add(msg.peer);
        else this.unreachable.delete(msg.peer);
        break;
    }
    this.flush();
  }

  /**
   * Best effort: peers that hear it mark this node DOWN at once instead of
   * waiting for phi. Not after the node left or was removed: a peer that
   * heard the shutdown before LEFT reached it would keep the node as a
   * stopped member of the ring, since a shutdown outranks any later gossip
   * of the same generation.
   */
  announceShutdown(): void {
    if (isGoneStatus(statusOf(this.states.get(this.self)))) return;
    for (const [peer, liveness] of this.liveness) {
      if (liveness !== 'UP') continue;
      try {
        this.peer(peer).tell({ type: 'gossip.shutdown', node: this.self, generation: this.generation });
      } catch (error) {
        this.ctx.log.debug({ peer, err: error }, 'could not announce shutdown');
      }
    }
  }

  // --- the round -------------------------------------------------------

  private round(): void {
    this.counters.rounds++;
    const now = this.ctx.env.clock.monotonicMs();
    const me = this.states.get(this.self)!;
    this.states.set(this.self, { heartbeat: { generation: this.generation, version: ++this.version }, app: me.app });
    this.view = undefined;

    const digests = digestsOf(this.states);
    const live: NodeId[] = [];
    const unreachable: NodeId[] = [];
    for (const [node, liveness] of this.liveness) {
      if (liveness === 'UP') live.push(node);
      else if (!isGoneStatus(statusOf(this.states.get(node)))) unreachable.push(node);
    }
    const random = this.ctx.env.random;
    let toSeed = false;
    if (live.length > 0) {
      const target = live[random.int(live.length)]!;
      this.syn(target, digests);
      toSeed = this.seedSet.has(target);
    }
    // Cassandra's rules: sometimes try a DOWN node, so partitions heal from both sides…
    if (unreachable.length > 0 && random.next() < unreachable.length / (live.length + 1)) this.syn(unreachable[random.int(unreachable.length)]!, digests);
    // …and talk to a seed often enough that separate groups of nodes find each other.
    if (this.seeds.length > 0 && (!toSeed || live.length < this.seeds.length)) {
      if (live.length === 0 || random.next() <= this.seeds.length / (live.length + unreachable.length)) this.syn(this.seeds[random.int(this.seeds.length)]!, digests);
    }
    this.checkStatus(now);
    this.ctx.after(this.config.intervalMs, { type: 'gossip.local.tick' });
  }

  private syn(target: NodeId, digests: ReturnType<typeof digestsOf>): void {
    this.counters.synsSent++;
    const self = this.ctx.self;
    const log = this.ctx.log;
    const sentVersion = digests.find((d) => d.node === this.self)?.maxVersion ?? 0;
    this.peer(target)
      .ask<Ack>((replyTo) => ({ type: 'gossip.syn', cluster: this.config.clusterName, digests, replyTo }), this.config.synTimeoutMs)
      .then(
        (ack) => {
          try {
            self.tell({ type: 'gossip.local.ack', from: target, ack, sentVersion });
          } catch (error) {
            log.warn({ peer: target, err: error }, 'dropped a gossip ACK');
          }
        },
        (error: unknown) => log.debug({ peer: target, err: error }, 'gossip SYN unanswered'),
      );
  }

  private checkStatus(now: number): void {
    const up: NodeId[] = [];
    for (const [node, liveness] of this.liveness) if (liveness === 'UP') up.push(node);
    const convicted = new Set(this.fd.convict(up, now));
    for (const node of up) {
      if (convicted.has(node) || !this.unreachable.has(node)) continue;
      if ((this.fd.silenceMs(node, now) ?? 0) >= this.config.unreachableGraceMs) convicted.add(node);
    }
    for (const node of convicted) {
      this.counters.convictions++;
      this.ctx.log.info({ peer: node, phi: this.fd.phi(node, now), meanIntervalMs: this.fd.meanIntervalMs(node), unreachable: this.unreachable.has(node) }, 'convicted a silent node');
      this.markDown(node, 'convicted');
    }
    for (const [node, since] of this.goneSince) if (now - since >= this.config.quarantineMs) this.evict(node, now);
    for (const [node, t] of this.tombstones) if (now >= t.expiresAt) this.tombstones.delete(node);
  }

  // --- the exchange ----------------------------------------------------

  private onSyn(msg: Syn): void {
    if (!msg.replyTo) return;
    const from = msg.replyTo.node;
    this.counters.synsReceived++;
    if (msg.cluster !== this.config.clusterName) {
      this.counters.foreignSyns++;
      this.ctx.log.warn({ peer: from, cluster: msg.cluster, ours: this.config.clusterName }, 'ignored a gossip SYN from another cluster');
      return;
    }
    const digests = msg.digests.filter((d) => !this.tombstoned(d.node as NodeId, d.generation));
    const mine = digests.find((d) => d.node === this.self);
    if (mine !== undefined && mine.generation === this.generation) this.noteHeard(from, mine.maxVersion);
    const { request, send } = answerSyn(this.states, digests, this.self);
    // A node we hold as gone that talks to us again came back from a removal it missed: tell it what we know.
    const held = this.states.get(from);
    if (held !== undefined && isGoneStatus(statusOf(held))) send[from] = held;
    this.ctx.reply(msg.replyTo, { type: 'gossip.ack', digests: request, states: withinBudget(send, STATES_BUDGET) });
  }

  private onAck(from: NodeId, ack: Ack, sentVersion: number): void {
    // No request for this node's own state: the peer holds it at least as far as the SYN's digest went.
    const asked = ack.digests.find((d) => d.node === this.self);
    if (asked === undefined) this.noteHeard(from, sentVersion);
    else if (asked.generation === this.generation) this.noteHeard(from, asked.maxVersion);
    this.applyRemote(ack.states, from);
    if (ack.digests.length === 0) return;
    const states = withinBudget(statesRequested(this.states, ack.digests), STATES_BUDGET);
    if (Object.keys(states).length > 0) this.peer(from).tell({ type: 'gossip.ack2', states });
  }

  /** Only a node itself may say it is going away: the node is the authenticated sender, and the message must agree. */
  private onShutdown(msg: WireMessage<'gossip.shutdown'>, sender: NodeId | undefined): void {
    if (sender === undefined || msg.node !== sender) {
      this.ctx.log.warn({ peer: sender, claimed: msg.node }, 'ignored a shutdown announced for another node');
      return;
    }
    const node = sender;
    const generation = msg.generation;
    const local = this.states.get(node);
    // Only the generation we know: an older one is stale, a newer one we have not met.
    if (node === this.self || !local || local.heartbeat.generation !== generation) return;
    this.ctx.log.info({ peer: node }, 'peer announced shutdown');
    this.apply(node, markedShutdown(local), this.ctx.env.clock.monotonicMs());
  }

  private applyRemote(states: Readonly<Record<string, EndpointState>>, from: NodeId | undefined): void {
    const now = this.ctx.env.clock.monotonicMs();
    const nowS = this.ctx.env.clock.nowMicros() / 1e6;
    // This node's own record first: its event must reach subscribers before the peers' states of the same exchange.
    const own = Object.hasOwn(states, this.self) ? states[this.self] : undefined;
    if (own !== undefined) {
      if (from !== undefined && from !== this.self && own.app[AppStateKey.HOST_ID]?.value === this.states.get(this.self)!.app[AppStateKey.HOST_ID]?.value) {
        const status = statusOf(own);
        if (status !== undefined) this.echoedStatus.set(from, status);
        if (own.heartbeat.generation === this.generation) this.noteHeard(from, maxVersion(own));
      }
      this.checkSelfGone(own, from);
    }
    for (const [name, state] of Object.entries(states)) {
      const node = name as NodeId;
      if (node === this.self) continue;
      if (this.returnedFromGone(node, state)) continue;
      const generation = state.heartbeat.generation;
      if (generation > nowS + MAX_GENERATION_AHEAD_S) {
        this.ctx.log.warn({ peer: node, generation }, 'ignored an endpoint state with a generation far in the future');
        continue;
      }
      if (this.tombstoned(node, generation)) continue;
      if (!this.states.has(node) && this.states.size >= this.config.maxEndpoints) {
        this.ctx.log.warn({ peer: node, maxEndpoints: this.config.maxEndpoints }, 'too many endpoints; ignored a new one');
        continue;
      }
      this.apply(node, sanitize(state), now);
    }
  }

  /** Merges one endpoint's state and turns the outcome into liveness, phi samples and events. */
  private apply(node: NodeId, remote: EndpointState, now: number): void {
    const local = this.states.get(node);
    const result = mergeEndpoint(local, remote);
    if (result.outcome === 'ignored') return;
    this.states.set(node, result.state);
    this.view = undefined;
    if (result.outcome !== 'updated' || result.changes.some((c) => RING_KEYS.has(c.key))) this.config.onRingState?.(node, result.state);
    // What was kept of it may be older than this news, which may itself be the last heartbeat of a node that died since.
    const firstNews = this.kept.delete(node);
    const status = statusOf(result.state);
    if (isGoneStatus(status)) {
      if (!this.goneSince.has(node)) {
        this.goneSince.set(node, now);
        this.config.onGone?.(node, result.state);
      }
    } else {
      this.goneSince.delete(node);
    }
    if (result.outcome === 'new') {
      // Not UP yet: the state may be an old report of a node long dead. A newer heartbeat will show it alive.
      this.liveness.set(node, 'DOWN');
      this.pending.push({ kind: 'joined', node });
      if (!isDeadStatus(status)) this.fd.report(node, now);
      else if (isGoneStatus(status)) this.pending.push({ kind: status === 'LEFT' ? 'left' : 'removed', node });
      return;
    }
    if (result.outcome === 'restarted') {
      this.pending.push({ kind: 'restarted', node, generation: result.state.heartbeat.generation, previousGeneration: local!.heartbeat.generation });
      this.fd.forget(node);
      // What its earlier run held of this node may be lost with it (a power failure takes what was not synced).
      this.heardSelf.delete(node);
      this.echoedStatus.delete(node);
    }
    for (const change of result.changes) {
      this.pending.push({ kind: 'changed', node, ...change });
      if (change.key === AppStateKey.STATUS && (change.newValue === 'LEFT' || change.newValue === 'REMOVED')) {
        this.pending.push({ kind: change.newValue === 'LEFT' ? 'left' : 'removed', node });
      }
      if (change.key === AppStateKey.SCHEMA) this.checkSchema(node);
    }
    if (isDeadStatus(status)) {
      this.markDown(node, status === 'LEFT' ? 'left' : status === 'REMOVED' ? 'removed' : 'shutdown');
    } else if (result.heartbeatAdvanced) {
      this.fd.report(node, now);
      if (!firstNews && this.liveness.get(node) !== 'UP') this.markUp(node);
    }
  }

  private markUp(node: NodeId): void {
    this.liveness.set(node, 'UP');
    this.view = undefined;
    this.pending.push({ kind: 'up', node });
    this.checkSchema(node);
  }

  private markDown(node: NodeId, reason: DownReason): void {
    if (this.liveness.get(node) !== 'UP') return;
    this.liveness.set(node, 'DOWN');
    this.view = undefined;
    this.pending.push({ kind: 'down', node, reason });
  }

  private evict(node: NodeId, now: number): void {
    const state = this.states.get(node);
    this.states.delete(node);
    this.liveness.delete(node);
    this.goneSince.delete(node);
    this.kept.delete(node);
    this.fd.forget(node);
    this.config.onRingState?.(node, undefined);
    if (state) this.tombstones.set(node, { generation: state.heartbeat.generation, expiresAt: now + this.config.tombstoneMs });
    this.view = undefined;
    this.pending.push({ kind: 'evicted', node });
    this.ctx.log.info({ peer: node }, 'evicted an endpoint after its quarantine');
  }

  /** A peer's record of this node as REMOVED or LEFT, with this node's own host id: it must not serve again. */
  private checkSelfGone(state: EndpointState, from: NodeId | undefined): void {
    if (this.removedSelfTold) return;
    const status = statusOf(state);
    if (status !== 'REMOVED' && status !== 'LEFT') return;
    const mine = this.states.get(this.self)!.app[AppStateKey.HOST_ID]?.value;
    if (mine === undefined || state.app[AppStateKey.HOST_ID]?.value !== mine) return;
    this.removedSelfTold = true;
    // A node that announced LEFT itself (decommission, or a restart after one) expects to hear it back.
    if (statusOf(this.states.get(this.self)) === status) this.ctx.log.info({ peer: from, status }, 'a peer holds the LEFT this node announced');
    else this.ctx.log.error({ peer: from, status }, 'a peer holds this node as gone from the ring');
    this.pending.push({ kind: 'removedSelf', node: this.self, status, from: from ?? this.self });
  }

  /**
   * Whether `state` is a later run of an endpoint held as LEFT or REMOVED,
   * with the same host id: the same data coming back, which the ring has
   * moved on from. A new node at that address (another host id) is welcome.
   */
  private returnedFromGone(node: NodeId, state: EndpointState): boolean {
    const held = this.states.get(node);
    if (held === undefined || !isGoneStatus(statusOf(held)) || state.heartbeat.generation <= held.heartbeat.generation) return false;
    const id = held.app[AppStateKey.HOST_ID]?.value;
    const theirs = state.app[AppStateKey.HOST_ID]?.value;
    if (id === undefined || (theirs !== undefined && theirs !== id)) return false;
    // Peers that heard this later run before the news of the departure would keep it, since a newer
    // generation outranks the older one the departure was set on: carry the departure to this generation.
    const lifted = goneAtGeneration(held, state.heartbeat.generation);
    this.states.set(node, lifted);
    this.view = undefined;
    this.config.onRingState?.(node, lifted);
    this.ctx.log.debug({ peer: node, status: statusOf(held) }, 'ignored gossip from a node that is gone from the ring');
    return true;
  }

  private noteHeard(peer: NodeId, version: number): void {
    if (peer !== this.self && version > (this.heardSelf.get(peer) ?? 0)) this.heardSelf.set(peer, version);
  }

  private holdingOwnStatus(): NodeId[] {
    const status = this.states.get(this.self)!.app[AppStateKey.STATUS];
    if (status === undefined) return [];
    const out = new Set<NodeId>();
    for (const [peer, version] of this.heardSelf) if (version >= status.version) out.add(peer);
    for (const [peer, echoed] of this.echoedStatus) if (echoed === status.value) out.add(peer);
    return [...out].sort();
  }

  private tombstoned(node: NodeId, generation: number): boolean {
    const t = this.tombstones.get(node);
    return t !== undefined && generation <= t.generation;
  }

  private checkSchema(node: NodeId): void {
    if (node === this.self || this.liveness.get(node) !== 'UP') return;
    const ours = this.states.get(this.self)!.app[AppStateKey.SCHEMA]?.value;
    const theirs = this.states.get(node)?.app[AppStateKey.SCHEMA]?.value;
    if (ours !== undefined && theirs !== undefined && ours !== theirs) this.pending.push({ kind: 'schemaMismatch', node, theirs, ours });
  }

  // --- local requests --------------------------------------------------

  private setLocal(entries: ReadonlyArray<readonly [string, string]>): void {
    const me = this.states.get(this.self)!;
    const app = { ...me.app };
    let schemaPublished = false;
    for (const [key, value] of entries) {
      const old = Object.hasOwn(app, key) ? app[key]!.value : undefined;
      app[key] = { value, version: ++this.version };
      if (old !== value) this.pending.push({ kind: 'changed', node: this.self, key, oldValue: old, newValue: value });
      if (key === AppStateKey.SCHEMA) schemaPublished = true;
    }
    this.states.set(this.self, { heartbeat: me.heartbeat, app });
    this.view = undefined;
    // Even an unchanged version: the schema publishes its own again to hear once more of the peers it still differs from.
    if (schemaPublished) for (const node of this.liveness.keys()) this.checkSchema(node);
  }

  private remove(node: NodeId, replyTo: ReplyTo<boolean>): void {
    const local = this.states.get(node);
    const refusal = node === this.self ? 'self' : !local ? 'unknown' : this.liveness.get(node) === 'UP' ? 'up' : undefined;
    if (refusal) {
      this.ctx.fail(replyTo, new CannotRemoveNode(node, refusal));
      return;
    }
    this.ctx.log.info({ peer: node }, 'removing node');
    this.apply(node, markedRemoved(local!), this.ctx.env.clock.monotonicMs());
    this.ctx.reply(replyTo, true);
  }

  // --- views and events ------------------------------------------------

  private snapshot(): MembershipSnapshot {
    if (this.view) return this.view;
    const endpoints: EndpointInfo[] = [];
    for (const [node, state] of this.states) endpoints.push(this.info(node, state));
    this.view = new MembershipSnapshot(this.self, this.ctx.env.clock.monotonicMs(), endpoints);
    return this.view;
  }

  private info(node: NodeId, state: EndpointState): EndpointInfo {
    let values = this.decoded.get(state.app);
    if (!values) {
      values = decodeAppState(state.app);
      this.decoded.set(state.app, values);
    }
    const isSelf = node === this.self;
    return {
      node,
      isSelf,
      generation: state.heartbeat.generation,
      heartbeat: state.heartbeat.version,
      liveness: isSelf ? 'UP' : (this.liveness.get(node) ?? 'DOWN'),
      status: values.status,
      tokens: values.tokens ?? [],
      dc: values.dc,
      rack: values.rack,
      hostId: values.hostId,
      load: values.load,
      schema: values.schema,
      release: values.release,
      rpcAddress: values.rpcAddress,
      name: values.name,
      streaming: values.streaming,
    };
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    const changes = this.pending;
    this.pending = [];
    if (this.subscriptions.length === 0) return;
    const view = this.snapshot();
    for (const change of changes) for (const s of this.subscriptions) this.deliver(s, { ...change, view });
  }

  private deliver(subscription: Subscription, event: MembershipEvent): void {
    try {
      if ('listener' in subscription) subscription.listener(event);
      else subscription.ref.tell(subscription.adapt(event) as never);
    } catch (error) {
      this.ctx.log.warn({ subscriber: 'ref' in subscription ? subscription.ref.address : 'listener', kind: event.kind, err: error }, 'dropped a membership event');
    }
  }

  private peer(node: NodeId): ActorRef<GossipMsg> {
    return this.ctx.system.ref<GossipMsg>({ node, name: this.peerName });
  }
}
