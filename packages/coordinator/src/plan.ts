import type { NodeId, Token } from '@chorus/core';
import type { ReplicationSpec, RingView } from '@chorus/ring';
import { Unavailable } from './errors.js';
import { type ConsistencyLevel, blockFor, eachQuorumBlockFor, isDatacenterLocal } from './levels.js';

/**
 * Whose answers count toward the level: every replica of the plan, only those
 * of one datacenter (LOCAL_*), or a given number in each datacenter (EACH_QUORUM).
 */
export type Scope =
  | { readonly kind: 'all' }
  | { readonly kind: 'dc'; readonly dc: string }
  | { readonly kind: 'each'; readonly perDc: ReadonlyMap<string, number> };

/**
 * Everything a request decided before it contacted anyone (Cassandra's
 * ReplicaPlan). Frozen: a membership change while the request runs does not
 * move its goalposts, so its outcome is explained by this one snapshot.
 */
export interface ReplicaPlan {
  readonly op: 'read' | 'write';
  readonly consistency: ConsistencyLevel;
  readonly natural: readonly NodeId[];
  /** Joining or moving nodes that will own the token; writes go to them too, reads never. */
  readonly pending: readonly NodeId[];
  /** Replicas believed alive when the request started (for reads, in proximity order). */
  readonly live: readonly NodeId[];
  /** Answers needed; for writes it includes the pending replicas in scope, as Cassandra's blockForWrite. */
  readonly blockFor: number;
  readonly scope: Scope;
  /** Contacted at once. For reads the first one is asked for data, the others for digests. */
  readonly contacts: readonly NodeId[];
  /** Further live replicas in scope, in proximity order: speculative retry and replacements for failed contacts. */
  readonly extras: readonly NodeId[];
  /** Datacenter of every replica of the plan. */
  readonly dcOf: ReadonlyMap<NodeId, string>;
}

export interface PlanInput {
  consistency: ConsistencyLevel;
  token: Token;
  replication: ReplicationSpec;
  ring: RingView;
  localDc: string;
  isAlive(node: NodeId): boolean;
  /** A replica's datacenter; the ring's member record is the usual source. */
  dcOf(node: NodeId): string | undefined;
  /** Sorts replicas closest first (reads only). */
  byProximity?(nodes: readonly NodeId[]): NodeId[];
  /**
   * Writes only: the coordinator stores hints, so a write at ANY may be met by
   * a stored hint alone and needs no live replica (Cassandra's ANY). Without
   * hints ANY needs one live replica, as ONE.
   */
  hintsAvailable?: boolean;
}

const UNKNOWN_DC = '';

function scopeOf(consistency: ConsistencyLevel, spec: ReplicationSpec, localDc: string): Scope {
  if (isDatacenterLocal(consistency)) return { kind: 'dc', dc: localDc };
  const each = eachQuorumBlockFor(consistency, spec);
  if (each !== undefined) return { kind: 'each', perDc: each };
  return { kind: 'all' };
}

function countIn(nodes: Iterable<NodeId>, dcOf: ReadonlyMap<NodeId, string>, dc: string): number {
  let n = 0;
  for (const node of nodes) if (dcOf.get(node) === dc) n++;
  return n;
}

/** Frozen through its lists too: one plan serves many requests (PlanCache). */
function freezePlan(plan: ReplicaPlan): ReplicaPlan {
  for (const list of [plan.natural, plan.pending, plan.live, plan.contacts, plan.extras]) Object.freeze(list);
  return Object.freeze(plan);
}

/**
 * Throws Unavailable when the live replicas cannot meet the plan's level; the
 * numbers are those of the first datacenter that falls short for EACH_QUORUM.
 */
function assureSufficient(consistency: ConsistencyLevel, scope: Scope, required: number | ReadonlyMap<string, number>, live: readonly NodeId[], dcOf: ReadonlyMap<NodeId, string>): void {
  if (scope.kind === 'each') {
    for (const [dc, need] of required as ReadonlyMap<string, number>) {
      const alive = countIn(live, dcOf, dc);
      if (alive < need) throw new Unavailable(consistency, need, alive, dc);
    }
    return;
  }
  const alive = scope.kind === 'dc' ? countIn(live, dcOf, scope.dc) : live.length;
  if (alive < (required as number)) throw new Unavailable(consistency, required as number, alive);
}

function dcMap(nodes: readonly NodeId[], dcOf: (n: NodeId) => string | undefined): Map<NodeId, string> {
  return new Map(nodes.map((n) => [n, dcOf(n) ?? UNKNOWN_DC]));
}

/**
 * The plan of a write: every live natural and pending replica is sent the
 * mutation; the level's count plus the pending replicas in scope must
 * acknowledge it (a node that is joining must not let a write count as
 * durable on the ring it is about to leave behind). At ANY with hints, a
 * plan may have no live replica at all: a stored hint is its acknowledgement.
 */
export function planWrite(input: PlanInput): ReplicaPlan {
  const { consistency, token, replication, ring, localDc } = input;
  const natural = ring.naturalReplicas(token, replication);
  const pending = ring.pendingReplicas(token, replication);
  const all = [...natural, ...pending];
  const dcOf = dcMap(all, input.dcOf);
  const scope = scopeOf(consistency, replication, localDc);
  let required: number;
  let perDc: Map<string, number> | undefined;
  if (scope.kind === 'each') {
    perDc = new Map([...scope.perDc].map(([dc, q]) => [dc, q + countIn(pending, dcOf, dc)]));
    required = [...perDc.values()].reduce((a, b) => a + b, 0);
  } else {
    const pendingInScope = scope.kind === 'dc' ? countIn(pending, dcOf, scope.dc) : pending.length;
    required = blockFor(consistency, replication, localDc) + pendingInScope;
  }
  const live = all.filter((n) => input.isAlive(n));
  if (!(consistency === 'ANY' && input.hintsAvailable === true)) assureSufficient(consistency, scope, perDc ?? required, live, dcOf);
  return freezePlan({
    op: 'write',
    consistency,
    natural,
    pending,
    live,
    blockFor: required,
    scope: perDc ? { kind: 'each', perDc } : scope,
    contacts: live,
    extras: [],
    dcOf,
  });
}

/**
 * The plan of a read: the closest live natural replicas in scope, as many as
 * the level needs (for EACH_QUORUM, a quorum from each datacenter), the
 * closest first; the remaining live ones wait as extras.
 */
export function planRead(input: PlanInput): ReplicaPlan {
  const { consistency, token, replication, ring, localDc } = input;
  const natural = ring.naturalReplicas(token, replication);
  const dcOf = dcMap(natural, input.dcOf);
  const scope = scopeOf(consistency, replication, localDc);
  const required = blockFor(consistency, replication, localDc);
  const aliveNatural = natural.filter((n) => input.isAlive(n));
  const live = input.byProximity ? input.byProximity(aliveNatural) : aliveNatural;
  assureSufficient(consistency, scope, scope.kind === 'each' ? scope.perDc : required, live, dcOf);
  let candidates: NodeId[];
  let contacts: NodeId[];
  if (scope.kind === 'each') {
    candidates = live.filter((n) => scope.perDc.has(dcOf.get(n)!));
    const taken = new Map<string, number>();
    contacts = [];
    for (const n of candidates) {
      const dc = dcOf.get(n)!;
      const have = taken.get(dc) ?? 0;
      if (have < scope.perDc.get(dc)!) {
        taken.set(dc, have + 1);
        contacts.push(n);
      }
    }
  } else {
    candidates = scope.kind === 'dc' ? live.filter((n) => dcOf.get(n) === scope.dc) : [...live];
    contacts = candidates.slice(0, required);
  }
  const chosen = new Set(contacts);
  return freezePlan({
    op: 'read',
    consistency,
    natural,
    pending: [],
    live,
    blockFor: required,
    scope,
    contacts,
    extras: candidates.filter((n) => !chosen.has(n)),
    dcOf,
  });
}

/** Whether an answer from `node` counts toward the plan's level. */
export function countsToward(plan: ReplicaPlan, node: NodeId): boolean {
  const dc = plan.dcOf.get(node);
  if (dc === undefined) return false;
  switch (plan.scope.kind) {
    case 'all':
      return true;
    case 'dc':
      return dc === plan.scope.dc;
    case 'each':
      return plan.scope.perDc.has(dc);
  }
}

/** `nodes` without repeats: a Set or a Map's keys are taken as they are (every answer calls this). */
function distinct(nodes: Iterable<NodeId> | ReadonlyMap<NodeId, unknown>): Iterable<NodeId> {
  if (nodes instanceof Set) return nodes;
  if (nodes instanceof Map) return nodes.keys();
  return new Set(nodes as Iterable<NodeId>);
}

/** How many of `nodes` count toward the level (for EACH_QUORUM, capped at each datacenter's need). */
export function countAnswers(plan: ReplicaPlan, nodes: Iterable<NodeId> | ReadonlyMap<NodeId, unknown>): number {
  const scope = plan.scope;
  if (scope.kind !== 'each') {
    let n = 0;
    for (const node of distinct(nodes)) if (countsToward(plan, node)) n++;
    return n;
  }
  const list = [...distinct(nodes)].filter((n) => countsToward(plan, n));
  let total = 0;
  for (const [dc, need] of scope.perDc) total += Math.min(need, countIn(list, plan.dcOf, dc));
  return total;
}

/** Whether answers from `nodes` (a Map: its keys) meet the level. */
export function isSatisfied(plan: ReplicaPlan, nodes: Iterable<NodeId> | ReadonlyMap<NodeId, unknown>): boolean {
  const scope = plan.scope;
  if (scope.kind !== 'each') return countAnswers(plan, nodes) >= plan.blockFor;
  const list = [...distinct(nodes)].filter((n) => countsToward(plan, n));
  for (const [dc, need] of scope.perDc) if (countIn(list, plan.dcOf, dc) < need) return false;
  return true;
}

/** `isSatisfied` over two sets that share no node (a write's acknowledgements and the replicas still asked), without building their union: every write calls it. */
/**
 * `countAnswers` of nodes known to be distinct (a request's own lists): no Set and no iterator for the usual
 * scopes, since every answer of every request comes here.
 */
export function countDistinct(plan: ReplicaPlan, nodes: readonly NodeId[]): number {
  if (plan.scope.kind === 'each') return countAnswers(plan, nodes);
  let n = 0;
  for (let i = 0; i < nodes.length; i++) if (countsToward(plan, nodes[i]!)) n++;
  return n;
}

/** `isSatisfied` of nodes known to be distinct. */
export function isSatisfiedByDistinct(plan: ReplicaPlan, nodes: readonly NodeId[]): boolean {
  return plan.scope.kind === 'each' ? isSatisfied(plan, nodes) : countDistinct(plan, nodes) >= plan.blockFor;
}

export function isSatisfiedByEither(plan: ReplicaPlan, a: readonly NodeId[], b: readonly NodeId[]): boolean {
  if (plan.scope.kind === 'each') return isSatisfied(plan, [...a, ...b]);
  return countDistinct(plan, a) + countDistinct(plan, b) >= plan.blockFor;
}

/**
 * Takes from `extras` (closest first) the replica to ask next, and removes
 * it; undefined when none would help. For EACH_QUORUM it must be in a
 * datacenter whose quota `covered` (the replicas answered or still asked)
 * leaves unmet, preferring `preferDc` (a failed replica's datacenter): the
 * closest extra is usually a local one, which counts nothing toward a remote
 * datacenter's quorum. Every other scope's extras all count, so the closest.
 */
export function takeExtra(plan: ReplicaPlan, extras: NodeId[], covered: Iterable<NodeId>, preferDc?: string): NodeId | undefined {
  const scope = plan.scope;
  if (scope.kind !== 'each') return extras.shift();
  const have = new Map<string, number>();
  for (const n of new Set(covered)) {
    const dc = plan.dcOf.get(n);
    if (dc !== undefined) have.set(dc, (have.get(dc) ?? 0) + 1);
  }
  const short = (dc: string | undefined): boolean => dc !== undefined && (have.get(dc) ?? 0) < (scope.perDc.get(dc) ?? 0);
  let i = preferDc !== undefined && short(preferDc) ? extras.findIndex((n) => plan.dcOf.get(n) === preferDc) : -1;
  if (i < 0) i = extras.findIndex((n) => short(plan.dcOf.get(n)));
  return i < 0 ? undefined : extras.splice(i, 1)[0];
}

/**
 * Plans reused by the requests of one replica set: a plan depends on the ring, the level, which replicas are
 * alive and (for reads) their proximity, not on the token. A plan is taken again while the ring view is the
 * same, the same replicas are alive, and it is younger than `maxAgeMs`, which bounds how long a read keeps an
 * order of proximity that latencies have changed since (Cassandra's dynamic snitch recomputes its scores on
 * an interval, too). A plan that throws (Unavailable) is not kept.
 */
export class PlanCache {
  private ring: RingView | undefined;
  private readonly byReplicas = new Map<readonly NodeId[], Map<ConsistencyLevel, { plan: ReplicaPlan; alive: number; madeAtMs: number }>>();

  constructor(
    private readonly op: 'read' | 'write',
    private readonly maxAgeMs: number,
  ) {}

  /** The plan for `natural` at `consistency`, cached or made by `make`. */
  plan(ring: RingView, natural: readonly NodeId[], consistency: ConsistencyLevel, isAlive: (n: NodeId) => boolean, nowMs: number, make: () => ReplicaPlan): ReplicaPlan {
    // Writes to a token in motion also go to its pending replicas, which depend on the token, not on its replica set.
    if (natural.length > 30 || (this.op === 'write' && ring.hasPendingChanges)) return make();
    if (ring !== this.ring) {
      this.ring = ring;
      this.byReplicas.clear();
    }
    let alive = 0;
    for (let i = 0; i < natural.length; i++) if (isAlive(natural[i]!)) alive |= 1 << i;
    let byLevel = this.byReplicas.get(natural);
    const cached = byLevel?.get(consistency);
    if (cached !== undefined && cached.alive === alive && nowMs - cached.madeAtMs < this.maxAgeMs) return cached.plan;
    const plan = make();
    if (byLevel === undefined) this.byReplicas.set(natural, (byLevel = new Map()));
    byLevel.set(consistency, { plan, alive, madeAtMs: nowMs });
    return plan;
  }
}
