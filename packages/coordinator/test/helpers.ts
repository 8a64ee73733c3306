import { ActorSystem } from '@chorus/actors';
import { type NodeId, SeededRandom, nodeId } from '@chorus/core';
import { DEFAULT_MAX_CLOCK_SKEW_MS, HybridLogicalClock, SkewTracker, spawnReplica } from '@chorus/replica';
import { type KeyspaceDef, RingView, type RingMember, allocateTokens, tokenOf } from '@chorus/ring';
import { type LinkFaults, Simulation } from '@chorus/sim';
import { spawnStorage } from '@chorus/storage';
import { type KindSpec, LATER_KINDS, MESSAGE_KINDS, wireCodec } from '@chorus/wire';
import { MemoryLevel } from 'memory-level';
import { type CoordinatorHandle, type CoordinatorMembership, type CoordinatorOptions, type CoordinatorTopology, spawnCoordinator } from '../src/index.js';

export interface NodeSpec {
  name: string;
  dc?: string;
  rack?: string;
}

export interface ClusterOptions {
  seed: number;
  nodes: NodeSpec[];
  keyspaces: KeyspaceDef[];
  network?: Partial<LinkFaults>;
  numTokens?: number;
  coordinator?: Partial<Pick<CoordinatorOptions, 'writeTimeoutMs' | 'readTimeoutMs' | 'defaultSpeculativeDelayMs' | 'readRepair' | 'hints' | 'maxInFlightBytes' | 'maxBackgroundWrites'>> & { maxClockSkewMs?: number };
  /** Nodes every membership view reports alive even while crashed: a failure detector that has not noticed yet. */
  believedUp?: readonly string[];
  /**
   * Nodes of an earlier build: their codec knows none of the message kinds
   * added after the protocol version, and no peer is told they read them.
   */
  earlierBuild?: readonly string[];
  /** Replaces a node's topology (say, with one whose ring() throws). */
  topology?: (node: string, base: CoordinatorTopology) => CoordinatorTopology;
}

/**
 * A test-only membership view: the simulation itself says who is up, and a
 * node counts a peer as dead while a partition cuts the link between them.
 * (The gossiper's failure detector would learn the same, only later.)
 */
export class SimMembership implements CoordinatorMembership {
  constructor(private readonly sim: Simulation, private readonly self: NodeId, private readonly ring: RingView, private readonly believedUp: ReadonlySet<string> = new Set()) {}
  isAlive(node: NodeId): boolean {
    if (this.believedUp.has(node)) return true;
    return node === this.self || (this.sim.isUp(node) && !this.sim.network.isCut(this.self, node));
  }
  locationOf(node: NodeId): { dc: string; rack: string } | undefined {
    const m = this.ring.member(node);
    return m && { dc: m.dc, rack: m.rack };
  }
}

export function buildRing(nodes: NodeSpec[], seed: number, numTokens = 8, rf = 3): RingView {
  const random = new SeededRandom(seed, 'tokens');
  let ring = RingView.empty();
  for (const spec of nodes) {
    const node = nodeId(spec.name);
    const dc = spec.dc ?? 'dc1';
    const tokens = allocateTokens(ring, { node, dc }, numTokens, rf, random);
    const member: RingMember = { node, dc, rack: spec.rack ?? 'r1', tokens, status: 'normal' };
    ring = ring.with(member);
  }
  return ring;
}

export interface Cluster {
  sim: Simulation;
  ring: RingView;
  handles: Map<string, CoordinatorHandle>;
  systems: Map<string, ActorSystem>;
  /** Frames any node's codec rejected: must stay 0, or a message broke its wire schema. */
  rejectedFrames(): number;
  handle(name: string): CoordinatorHandle;
  keyspace(name: string): KeyspaceDef;
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const sim = new Simulation({ seed: options.seed, network: options.network ?? { latencyMs: 1, jitterMs: 1 } });
  const ring = buildRing(options.nodes, options.seed, options.numTokens ?? 8);
  const keyspaces = new Map(options.keyspaces.map((k) => [k.name, k]));
  const handles = new Map<string, CoordinatorHandle>();
  const systems = new Map<string, ActorSystem>();
  const rejectedBefore = new Map<string, number>();
  const earlier = new Set(options.earlierBuild ?? []);
  const kinds: Record<string, KindSpec> = MESSAGE_KINDS;
  // A later kind's reply kind is as new as the kind itself.
  const later = new Set(LATER_KINDS.flatMap((kind) => [kind, kinds[kind]!.reply]));
  const earlierKinds = Object.fromEntries(Object.entries(kinds).filter(([kind]) => !later.has(kind)));
  for (const spec of options.nodes) {
    await sim.addNode(spec.name, ({ env, transport: network, disk }) => {
      // Neither side of a link with a node of an earlier build sends it a later kind.
      const transport = { ...network, readsKind: (peer: NodeId, kind: string) => !earlier.has(spec.name) && !earlier.has(peer) && network.readsKind?.(peer, kind) === true };
      const system = new ActorSystem({ env, transport, codec: earlier.has(spec.name) ? wireCodec({ kinds: earlierKinds }) : wireCodec() });
      const before = systems.get(spec.name)?.stats().rejectedFrames ?? 0;
      rejectedBefore.set(spec.name, (rejectedBefore.get(spec.name) ?? 0) + before);
      systems.set(spec.name, system);
      let db = disk.get('db') as MemoryLevel<Uint8Array, Uint8Array> | undefined;
      if (db === undefined) {
        db = new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
        disk.set('db', db);
      }
      const storage = spawnStorage(system, { db, env, commitSync: 'none' });
      const topology: CoordinatorTopology = { ring: () => ring, keyspace: (n) => keyspaces.get(n), localDc: spec.dc ?? 'dc1', localRack: spec.rack ?? 'r1' };
      // As a node wires them: one clock shared by the replica actor and the coordinator.
      const { maxClockSkewMs = DEFAULT_MAX_CLOCK_SKEW_MS, ...coordinatorOptions } = options.coordinator ?? {};
      const hlc = new HybridLogicalClock(() => env.clock.nowMicros(), maxClockSkewMs * 1000);
      const skew = new SkewTracker(maxClockSkewMs, env.logger);
      spawnReplica(system, { env, storage, hlc, skew });
      const handle = spawnCoordinator(system, {
        env,
        membership: new SimMembership(sim, env.node, ring, new Set(options.believedUp ?? [])),
        topology: options.topology ? options.topology(spec.name, topology) : topology,
        hlc,
        skew,
        localReplica: storage.reader,
        ...coordinatorOptions,
      });
      handles.set(spec.name, handle);
    });
  }
  await sim.runFor(5);
  return {
    sim,
    ring,
    handles,
    systems,
    rejectedFrames() {
      let n = 0;
      for (const [name, system] of systems) n += system.stats().rejectedFrames + (rejectedBefore.get(name) ?? 0);
      return n;
    },
    handle(name) {
      const h = handles.get(name);
      if (!h) throw new Error(`no node ${name}`);
      return h;
    },
    keyspace(name) {
      return keyspaces.get(name)!;
    },
  };
}

export type Settled<T> = { ok: true; value: T } | { ok: false; error: Error & { fields?: Record<string, unknown> } };

/** Runs the simulation until the promise settles (bounded in virtual time). */
export async function settle<T>(sim: Simulation, p: Promise<T>, maxMs = 60_000): Promise<Settled<T>> {
  let outcome: Settled<T> | undefined;
  p.then(
    (value) => (outcome = { ok: true, value }),
    (error: unknown) => (outcome = { ok: false, error: error as Error }),
  );
  await sim.run({ stopWhen: () => outcome !== undefined, untilMs: sim.now + maxMs });
  if (!outcome) throw new Error('promise never settled');
  return outcome;
}

/** A key whose replicas (for `ks`) match the predicate, found by trying k0, k1, … */
export function findKey(ring: RingView, ks: KeyspaceDef, predicate: (replicas: readonly NodeId[]) => boolean, prefix = 'k'): string {
  for (let i = 0; i < 100_000; i++) {
    const key = `${prefix}${i}`;
    if (predicate(ring.naturalReplicas(tokenOf(key), ks.replication))) return key;
  }
  throw new Error('no key found');
}

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
export const str = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));

/**
 * Seeded faults for history tests: every `everyMs` from `fromMs` to `untilMs`, a crash (when no node is down),
 * a restart of the node that is down, or one node cut off from the rest for `cutMs`.
 */
export function scheduleFaults(sim: Simulation, rnd: SeededRandom, nodes: readonly string[], o: { fromMs: number; untilMs: number; everyMs: number; cutMs: number }): void {
  const down = new Set<string>();
  for (let t = o.fromMs; t < o.untilMs; t += o.everyMs) {
    sim.at(t, 'fault', async () => {
      const roll = rnd.next();
      if (roll < 0.3 && down.size === 0) {
        const victim = nodes[rnd.int(nodes.length)]!;
        down.add(victim);
        sim.crash(victim);
      } else if (roll < 0.6 && down.size > 0) {
        const back = [...down][0]!;
        down.delete(back);
        await sim.restart(back);
      } else {
        const cut = nodes[rnd.int(nodes.length)]!;
        sim.network.partition([nodeId(cut)], nodes.filter((n) => n !== cut).map(nodeId));
        sim.at(sim.now + o.cutMs, 'heal', () => sim.network.heal());
      }
    });
  }
}
