import type { NodeId, Token } from '@chorus/core';
import { DuplicateMember, TokenConflict } from './errors.js';
import { replicationKey, type ReplicationSpec } from './replication.js';

export type MemberStatus = 'normal' | 'joining' | 'leaving';

export interface RingMember {
  readonly node: NodeId;
  readonly dc: string;
  readonly rack: string;
  readonly tokens: readonly Token[];
  readonly status: MemberStatus;
}

/**
 * A range of the ring as Cassandra writes it: `(start, end]`, start exclusive,
 * end inclusive. When `start >= end` the range wraps past MAX_TOKEN to
 * MIN_TOKEN; when `start === end` it is the whole ring (a one-token ring).
 */
export interface TokenRange {
  readonly start: Token;
  readonly end: Token;
}

export interface ReplicatedRange {
  readonly range: TokenRange;
  readonly replicas: readonly NodeId[];
}

/** A datacenter (or, for SimpleStrategy, the whole ring) with fewer nodes than its replication factor. */
export interface ReplicationShortfall {
  readonly dc?: string;
  readonly rf: number;
  readonly nodes: number;
}

const RING_SIZE = 1n << 64n;
const RING_SIZE_NUMBER = 2 ** 64;

export function rangeContains(range: TokenRange, t: Token): boolean {
  if (range.start < range.end) return t > range.start && t <= range.end;
  return t > range.start || t <= range.end;
}

/** How many tokens the range holds: between 1 and 2^64. */
export function rangeWidth(range: TokenRange): bigint {
  const width = (((range.end - range.start) % RING_SIZE) + RING_SIZE) % RING_SIZE;
  return width === 0n ? RING_SIZE : width;
}

/** The share of the ring the range covers, in (0, 1]. */
export function rangeFraction(range: TokenRange): number {
  return Number(rangeWidth(range)) / RING_SIZE_NUMBER;
}

/** max/min over the values of an ownership map; Infinity when some node owns nothing. */
export function ownershipRatio(ownership: ReadonlyMap<NodeId, number>): number {
  const values = [...ownership.values()];
  if (values.length === 0) return 1;
  const min = Math.min(...values);
  return min === 0 ? Infinity : Math.max(...values) / min;
}

/** A joining member owns no range until it has streamed its data; a leaving one keeps its ranges until it is gone. */
function owns(member: RingMember): boolean {
  return member.status !== 'joining';
}

/**
 * An immutable snapshot of the ring: who is a member, which tokens each owns,
 * and the replica placement that follows. Lookups are binary searches over
 * the sorted tokens; replica lists are computed once per range and strategy
 * and kept, which is safe because the snapshot never changes.
 */
export class RingView {
  /** Every member, sorted by node id. */
  readonly members: readonly RingMember[];
  /** Tokens of the owning members (normal and leaving), ascending. */
  readonly tokens: readonly Token[];
  private readonly byNode: ReadonlyMap<NodeId, RingMember>;
  /** For each entry of `tokens`, the index in `owners` of the member owning it. */
  private readonly tokenOwner: Int32Array;
  private readonly owners: readonly RingMember[];
  private readonly replicaCache = new Map<string, (readonly NodeId[] | undefined)[]>();
  /** The same per-range lists by the spec object callers pass again and again: no key string to build per lookup. */
  private readonly replicaCacheBySpec = new WeakMap<ReplicationSpec, (readonly NodeId[] | undefined)[]>();
  /** Each distinct replica list once, by replication and content. */
  private readonly replicaLists = new Map<string, readonly NodeId[]>();
  private future: RingView | undefined;

  private constructor(members: readonly RingMember[]) {
    this.members = members;
    this.byNode = new Map(members.map((m) => [m.node, m]));
    this.owners = members.filter(owns);
    const claims = new Map<Token, NodeId>();
    const entries: Array<[Token, number]> = [];
    for (const m of members) {
      for (const t of m.tokens) {
        const other = claims.get(t);
        if (other !== undefined && other !== m.node) throw new TokenConflict(t, other, m.node);
        claims.set(t, m.node);
      }
    }
    this.owners.forEach((m, i) => {
      for (const t of new Set(m.tokens)) entries.push([t, i]);
    });
    entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    this.tokens = entries.map((e) => e[0]);
    this.tokenOwner = Int32Array.from(entries, (e) => e[1]);
  }

  static of(members: Iterable<RingMember>): RingView {
    const list: RingMember[] = [];
    const seen = new Set<NodeId>();
    for (const m of members) {
      if (seen.has(m.node)) throw new DuplicateMember(m.node);
      seen.add(m.node);
      list.push({ node: m.node, dc: m.dc, rack: m.rack, tokens: Object.freeze([...m.tokens]), status: m.status });
    }
    list.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    return new RingView(Object.freeze(list));
  }

  static empty(): RingView {
    return RingView.of([]);
  }

  member(node: NodeId): RingMember | undefined {
    return this.byNode.get(node);
  }

  /** A new snapshot with `member` added, or replacing the member of the same node. */
  with(member: RingMember): RingView {
    return RingView.of([...this.members.filter((m) => m.node !== member.node), member]);
  }

  without(node: NodeId): RingView {
    return RingView.of(this.members.filter((m) => m.node !== node));
  }

  /** Datacenters of the owning members. */
  datacenters(): ReadonlySet<string> {
    return new Set(this.owners.map((m) => m.dc));
  }

  get hasPendingChanges(): boolean {
    return this.members.some((m) => m.status !== 'normal');
  }

  /** The ring once every joining node has joined and every leaving node has left. */
  afterPendingChanges(): RingView {
    if (!this.hasPendingChanges) return this;
    this.future ??= RingView.of(
      this.members.filter((m) => m.status !== 'leaving').map((m) => (m.status === 'joining' ? { ...m, status: 'normal' as const } : m)),
    );
    return this.future;
  }

  /** Index into `tokens` of the range `(tokens[i-1], tokens[i]]` holding `t`; -1 on a ring without tokens. */
  rangeIndexOf(t: Token): number {
    const n = this.tokens.length;
    if (n === 0) return -1;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.tokens[mid]! < t) lo = mid + 1;
      else hi = mid;
    }
    return lo === n ? 0 : lo;
  }

  rangeAt(index: number): TokenRange {
    const n = this.tokens.length;
    return { start: this.tokens[(index - 1 + n) % n]!, end: this.tokens[index]! };
  }

  /** The member whose token ends the range holding `t`: its primary owner. */
  primaryOwnerOf(t: Token): NodeId | undefined {
    const i = this.rangeIndexOf(t);
    return i < 0 ? undefined : this.owners[this.tokenOwner[i]!]!.node;
  }

  /** The replicas of `t`, frozen; ranges with the same replicas in the same order give the same array. */
  naturalReplicas(t: Token, replication: ReplicationSpec): readonly NodeId[] {
    const i = this.rangeIndexOf(t);
    return i < 0 ? [] : this.replicasOfRange(i, replication);
  }

  /**
   * Nodes that will become replicas of `t` once the pending joins and leaves
   * complete and are not replicas now: writes go to them too, so a node that
   * finishes bootstrapping already has what was written meanwhile.
   */
  pendingReplicas(t: Token, replication: ReplicationSpec): readonly NodeId[] {
    if (!this.hasPendingChanges) return [];
    const now = new Set(this.naturalReplicas(t, replication));
    return this.afterPendingChanges()
      .naturalReplicas(t, replication)
      .filter((n) => !now.has(n));
  }

  /** Every range of the ring in token order with its replicas. */
  replicatedRanges(replication: ReplicationSpec): readonly ReplicatedRange[] {
    return this.tokens.map((_, i) => ({ range: this.rangeAt(i), replicas: this.replicasOfRange(i, replication) }));
  }

  /** The ranges `node` holds a replica of. */
  rangesFor(node: NodeId, replication: ReplicationSpec): TokenRange[] {
    const out: TokenRange[] = [];
    for (let i = 0; i < this.tokens.length; i++) {
      if (this.replicasOfRange(i, replication).includes(node)) out.push(this.rangeAt(i));
    }
    return out;
  }

  /** The ranges ending at `node`'s own tokens: what `repair -pr` on that node covers. */
  primaryRanges(node: NodeId): TokenRange[] {
    const out: TokenRange[] = [];
    for (let i = 0; i < this.tokens.length; i++) {
      if (this.owners[this.tokenOwner[i]!]!.node === node) out.push(this.rangeAt(i));
    }
    return out;
  }

  /** For every member, the share of the ring it holds a replica of (0 for joining members). */
  ownership(replication: ReplicationSpec): Map<NodeId, number> {
    const result = new Map<NodeId, number>(this.members.map((m) => [m.node, 0]));
    for (let i = 0; i < this.tokens.length; i++) {
      const share = rangeFraction(this.rangeAt(i));
      for (const n of this.replicasOfRange(i, replication)) result.set(n, result.get(n)! + share);
    }
    return result;
  }

  private replicasOfRange(index: number, replication: ReplicationSpec): readonly NodeId[] {
    let perRange = this.replicaCacheBySpec.get(replication);
    if (perRange === undefined) {
      const key = replicationKey(replication);
      perRange = this.replicaCache.get(key);
      if (perRange === undefined) {
        perRange = new Array<readonly NodeId[] | undefined>(this.tokens.length);
        this.replicaCache.set(key, perRange);
      }
      this.replicaCacheBySpec.set(replication, perRange);
    }
    let replicas = perRange[index];
    if (replicas === undefined) {
      const key = replicationKey(replication);
      const computed = replication.class === 'SimpleStrategy' ? this.simpleReplicas(index, replication.rf) : this.topologyReplicas(index, replication.dcs);
      // Ranges with the same replicas in the same order share one array: with vnodes a few lists serve every
      // range, so what callers key by a list (the coordinator's plans) is shared by all of its ranges.
      const listKey = `${key}\u0000${computed.join('\u0000')}`;
      replicas = this.replicaLists.get(listKey);
      if (replicas === undefined) this.replicaLists.set(listKey, (replicas = Object.freeze(computed)));
      perRange[index] = replicas;
    }
    return replicas;
  }

  private simpleReplicas(index: number, rf: number): NodeId[] {
    const want = Math.min(rf, this.owners.length);
    const n = this.tokens.length;
    const picked = new Set<number>();
    const out: NodeId[] = [];
    for (let step = 0; step < n && out.length < want; step++) {
      const owner = this.tokenOwner[(index + step) % n]!;
      if (!picked.has(owner)) {
        picked.add(owner);
        out.push(this.owners[owner]!.node);
      }
    }
    return out;
  }

  /**
   * Per datacenter, walk clockwise taking nodes of that datacenter, one per
   * rack until every rack of the datacenter has a replica; nodes met on an
   * already used rack wait in line and fill the remaining places once all
   * racks are used, so racks are spread whenever there are enough of them.
   */
  private topologyReplicas(index: number, dcs: Readonly<Record<string, number>>): NodeId[] {
    interface DcWalk {
      want: number;
      racksInDc: number;
      racksUsed: Set<string>;
      chosen: Set<number>;
      waiting: number[];
    }
    const walks = new Map<string, DcWalk>();
    for (const [dc, rf] of Object.entries(dcs)) {
      const inDc = this.owners.filter((m) => m.dc === dc);
      if (rf < 1 || inDc.length === 0) continue;
      walks.set(dc, {
        want: Math.min(rf, inDc.length),
        racksInDc: new Set(inDc.map((m) => m.rack)).size,
        racksUsed: new Set(),
        chosen: new Set(),
        waiting: [],
      });
    }
    const out: NodeId[] = [];
    let open = walks.size;
    const n = this.tokens.length;
    const choose = (walk: DcWalk, owner: number): void => {
      walk.chosen.add(owner);
      out.push(this.owners[owner]!.node);
      if (walk.chosen.size === walk.want) open--;
    };
    for (let step = 0; step < n && open > 0; step++) {
      const owner = this.tokenOwner[(index + step) % n]!;
      const member = this.owners[owner]!;
      const walk = walks.get(member.dc);
      if (walk === undefined || walk.chosen.size >= walk.want || walk.chosen.has(owner) || walk.waiting.includes(owner)) continue;
      if (!walk.racksUsed.has(member.rack)) {
        walk.racksUsed.add(member.rack);
        choose(walk, owner);
        if (walk.racksUsed.size === walk.racksInDc) {
          while (walk.waiting.length > 0 && walk.chosen.size < walk.want) choose(walk, walk.waiting.shift()!);
        }
      } else if (walk.racksUsed.size === walk.racksInDc) {
        choose(walk, owner);
      } else {
        walk.waiting.push(owner);
      }
    }
    return out;
  }
}

/**
 * Where the replication factor exceeds the nodes that can hold replicas.
 * Cassandra allows such keyspaces (nodes may be added later); each range then
 * has fewer replicas than asked, and operators should be told.
 */
export function replicationShortfalls(ring: RingView, replication: ReplicationSpec): ReplicationShortfall[] {
  const owning = ring.members.filter(owns);
  if (replication.class === 'SimpleStrategy') {
    return owning.length < replication.rf ? [{ rf: replication.rf, nodes: owning.length }] : [];
  }
  const out: ReplicationShortfall[] = [];
  for (const dc of Object.keys(replication.dcs).sort()) {
    const rf = replication.dcs[dc]!;
    const nodes = owning.filter((m) => m.dc === dc).length;
    if (nodes < rf) out.push({ dc, rf, nodes });
  }
  return out;
}
