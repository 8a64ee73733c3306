import { InvalidRequest, MIN_TOKEN, type NodeId, type Random, type Token } from '@chorus/core';
import type { RingView } from './ring.js';

export interface JoiningNode {
  readonly node: NodeId;
  /** Balance within this datacenter only, as each datacenter is its own replica ring under NetworkTopologyStrategy. */
  readonly dc?: string;
}

const RING_SIZE = 1n << 64n;
const RING_SIZE_NUMBER = 2 ** 64;
const MAX_TOKENS_PER_NODE = 4096;
/**
 * How unevenly one new token may split a range, tried in turn. Cutting slivers
 * helps the node being added but leaves ranges too small to be useful split
 * points for the nodes after it; which limit works best changes from ring to
 * ring, so all are tried. (Measured with the ownership command.)
 */
const SPLIT_LIMITS = [0.1, 0.25, 0.4];
const SPLIT_STEPS = 1 << 20;
const REFINE_PASSES = 4;

function checkCount(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 1 || value > max) throw new InvalidRequest(`${name} must be an integer from 1 to ${max}, got ${value}`, { field: name });
}

const toPosition = (t: Token): bigint => t - MIN_TOKEN;
const toToken = (position: bigint): Token => (BigInt.asUintN(64, position) + MIN_TOKEN) as Token;

function randomPosition(random: Random): bigint {
  const bytes = random.bytes(8);
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

/** `n` distinct uniformly random tokens, Cassandra's allocation before 3.0, for comparison. */
export function randomTokens(random: Random, n: number): Token[] {
  checkCount('numTokens', n, MAX_TOKENS_PER_NODE);
  const out = new Set<Token>();
  while (out.size < n) {
    const t = toToken(randomPosition(random));
    // MIN_TOKEN is the token of the empty key and the ring's open lower bound; no node should own it.
    if (t !== MIN_TOKEN) out.add(t);
  }
  return [...out].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** `n` tokens at equal distance, starting at a random offset. */
function evenlySpaced(random: Random, n: number): bigint[] {
  const step = RING_SIZE / BigInt(n);
  const offset = randomPosition(random) % step;
  return Array.from({ length: n }, (_, k) => offset + BigInt(k) * step);
}

/**
 * The sub-ring the allocator works on: token positions (token - MIN_TOKEN,
 * so unsigned and ordered), their owners as small integers, and the
 * replicated ownership that SimpleStrategy with `rf` gives each owner.
 */
class AllocationRing {
  readonly positions: bigint[] = [];
  readonly owners: number[] = [];
  private widths: number[] = [];
  private replicas = new Int32Array(0);
  private replicaCount = 0;
  ownership: Float64Array;

  constructor(
    entries: Array<[bigint, number]>,
    private readonly nodeCount: number,
    private readonly rf: number,
  ) {
    entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    for (const [p, o] of entries) {
      this.positions.push(p);
      this.owners.push(o);
    }
    this.ownership = new Float64Array(nodeCount);
    this.widths = this.positions.map((_, i) => this.fractionOf(i));
    this.refresh();
  }

  private fractionOf(i: number): number {
    return Number(this.width(i)) / RING_SIZE_NUMBER;
  }

  /** Only the ranges next to a changed token change width. */
  private rewiden(i: number): void {
    const n = this.positions.length;
    if (n === 0) return;
    this.widths[i % n] = this.fractionOf(i % n);
  }

  get size(): number {
    return this.positions.length;
  }

  width(i: number): bigint {
    const n = this.positions.length;
    const w = BigInt.asUintN(64, this.positions[i]! - this.positions[(i - 1 + n) % n]!);
    return w === 0n ? RING_SIZE : w;
  }

  /** Whether range i is wide enough to take one more token inside it. */
  private splittable(i: number): boolean {
    // Doubles cannot tell 1 from 2 tokens in 2^64; only suspiciously narrow ranges need the exact check.
    return this.widths[i]! > 1e-12 || this.width(i) >= 2n;
  }

  insert(position: bigint, owner: number): void {
    let i = 0;
    while (i < this.positions.length && this.positions[i]! < position) i++;
    this.positions.splice(i, 0, position);
    this.owners.splice(i, 0, owner);
    this.widths.splice(i, 0, 0);
    this.rewiden(i);
    this.rewiden(i + 1);
    this.refresh();
  }

  remove(position: bigint): void {
    const i = this.positions.indexOf(position);
    if (i < 0) return;
    this.positions.splice(i, 1);
    this.owners.splice(i, 1);
    this.widths.splice(i, 1);
    this.rewiden(i);
    this.refresh();
  }

  /** Recomputes replica sets and ownership; cheap next to evaluating every candidate. */
  private refresh(): void {
    const n = this.positions.length;
    const distinctOwners = new Set(this.owners).size;
    const r = Math.min(this.rf, distinctOwners);
    this.replicaCount = r;
    this.replicas = new Int32Array(n * r);
    this.ownership.fill(0);
    for (let i = 0; i < n; i++) {
      let found = 0;
      for (let step = 0; step < n && found < r; step++) {
        const o = this.owners[(i + step) % n]!;
        let seen = false;
        for (let k = 0; k < found; k++) if (this.replicas[i * r + k] === o) seen = true;
        if (!seen) {
          this.replicas[i * r + found++] = o;
          this.ownership[o]! += this.widths[i]!;
        }
      }
    }
  }

  private isReplica(range: number, node: number): boolean {
    const r = this.replicaCount;
    for (let k = 0; k < r; k++) if (this.replicas[range * r + k] === node) return true;
    return false;
  }

  private lastReplica(range: number): number {
    return this.replicas[range * this.replicaCount + this.replicaCount - 1]!;
  }

  /**
   * The best place for one more token of `node`. The score is the squared
   * distance of every node's replicated ownership from its goal: the fair
   * share `fairShare` for the others, and for `node` the part `nodeGoal` of
   * the fair share it should have reached with this token, so each token
   * takes about the same amount, taken from whoever holds too much.
   * A new token inside range i takes over, for each range whose replica walk
   * now meets it before rf distinct owners, the place of that range's last
   * replica; only those few ranges need looking at.
   */
  bestSplit(node: number, fairShare: number, nodeGoal: number, minSplit: number): { range: number; fraction: number } {
    const n = this.positions.length;
    const r = this.replicaCount;
    const delta = new Float64Array(this.nodeCount);
    const touched: number[] = [];
    const bump = (who: number, by: number): void => {
      if (!touched.includes(who)) touched.push(who);
      delta[who]! += by;
    };
    const goal = (who: number): number => (who === node ? nodeGoal : fairShare);
    let best = { range: -1, fraction: 0.5, score: Infinity, width: 0 };
    const distinct: number[] = [];
    for (let i = 0; i < n; i++) {
      if (!this.splittable(i)) continue;
      touched.length = 0;
      distinct.length = 0;
      for (let step = 1; step < n; step++) {
        const j = (i - step + n) % n;
        const o = this.owners[j]!;
        if (!distinct.includes(o)) distinct.push(o);
        if (distinct.length >= r) break;
        if (!this.isReplica(j, node)) {
          bump(node, this.widths[j]!);
          bump(this.lastReplica(j), -this.widths[j]!);
        }
      }
      let fraction = 0.5;
      if (!this.isReplica(i, node)) {
        // The new range (start of i, new token] moves from i's last replica to `node`; this share
        // minimises the two nodes' squared distance from their goals, within the allowed split.
        const loser = this.lastReplica(i);
        const gainerExcess = this.ownership[node]! + delta[node]! - nodeGoal;
        const loserExcess = this.ownership[loser]! + delta[loser]! - fairShare;
        const ideal = (loserExcess - gainerExcess) / (2 * this.widths[i]!);
        fraction = Math.min(1 - minSplit, Math.max(minSplit, ideal));
        bump(node, fraction * this.widths[i]!);
        bump(loser, -fraction * this.widths[i]!);
      }
      let score = 0;
      for (const who of touched) {
        const before = this.ownership[who]! - goal(who);
        const after = before + delta[who]!;
        score += after * after - before * before;
        delta[who] = 0;
      }
      if (score < best.score - 1e-15 || (Math.abs(score - best.score) <= 1e-15 && this.widths[i]! > best.width)) {
        best = { range: i, fraction, score, width: this.widths[i]! };
      }
    }
    return best;
  }

  /** The position `fraction` of the way through range i, never on either end. */
  positionIn(range: number, fraction: number): bigint {
    const n = this.positions.length;
    const start = this.positions[(range - 1 + n) % n]!;
    const width = this.width(range);
    let offset = (width * BigInt(Math.round(fraction * SPLIT_STEPS))) / BigInt(SPLIT_STEPS);
    if (offset < 1n) offset = 1n;
    if (offset > width - 1n) offset = width - 1n;
    return BigInt.asUintN(64, start + offset);
  }

  spread(): number {
    let min = Infinity;
    let max = 0;
    for (const o of this.ownership) {
      if (o < min) min = o;
      if (o > max) max = o;
    }
    return min === 0 ? Infinity : max / min;
  }
}

/**
 * Tokens for a node joining `ring`, chosen so that replicated ownership under
 * replication factor `rf` stays even: the idea of Cassandra 4's
 * allocate_tokens_for_local_replication_factor, as a greedy search. Each new
 * token goes where it most reduces the spread of ownership across the nodes
 * of the datacenter (normal and joining ones; leaving ones are ignored).
 * The first node gets evenly spaced tokens at an offset drawn from `random`.
 * `random` is used for nothing else, so the result depends on the ring alone.
 */
export function allocateTokens(ring: RingView, joining: JoiningNode, numTokens: number, rf: number, random: Random): Token[] {
  checkCount('numTokens', numTokens, MAX_TOKENS_PER_NODE);
  checkCount('rf', rf, 64);
  const existing = ring.member(joining.node);
  if (existing !== undefined && existing.tokens.length > 0) {
    throw new InvalidRequest(`node ${joining.node} already has ${existing.tokens.length} tokens`, { node: joining.node });
  }
  const peers = ring.members.filter(
    (m) => m.node !== joining.node && m.status !== 'leaving' && m.tokens.length > 0 && (joining.dc === undefined || m.dc === joining.dc),
  );
  const taken = new Set(ring.members.flatMap((m) => m.tokens.map(toPosition)));
  const finish = (positions: bigint[]): Token[] => {
    // Other datacenters' tokens are invisible to the search; a clash with one is next to impossible but must not happen.
    const out = positions.map((p) => {
      while (taken.has(p)) p = BigInt.asUintN(64, p + 1n);
      taken.add(p);
      return toToken(p);
    });
    return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  };
  if (peers.length === 0) return finish(evenlySpaced(random, numTokens));

  const entries: Array<[bigint, number]> = peers.flatMap((m, i) => [...new Set(m.tokens)].map((t): [bigint, number] => [toPosition(t), i]));
  // While the datacenter has no more than rf nodes each of them holds everything, whatever
  // the tokens. Balancing for a smaller factor then still leaves a regular ring behind,
  // which is what the nodes after them need to balance at the real factor.
  const searchRf = Math.min(rf, peers.length);
  // The greedy search is myopic and its outcome jumps with small changes of
  // its settings, so it runs with a few and the most even result is kept.
  let best: Placement | undefined;
  for (const minSplit of SPLIT_LIMITS) {
    for (const placement of searchPlacements(entries, peers.length, searchRf, numTokens, minSplit)) {
      if (best === undefined || placement.spread < best.spread) best = placement;
    }
  }
  return finish(best!.positions);
}

interface Placement {
  readonly positions: bigint[];
  /** max/min replicated ownership in the datacenter with these positions. */
  readonly spread: number;
}

/**
 * Places `numTokens` tokens for a new node (numbered `peerCount`) one by one,
 * each where it best moves ownership towards even, then places each again
 * with all the others in, as early tokens were placed knowing nothing of the
 * later ones. Yields the result after the first round and after every pass.
 */
function* searchPlacements(entries: Array<[bigint, number]>, peerCount: number, rf: number, numTokens: number, minSplit: number): Generator<Placement> {
  const self = peerCount;
  const sub = new AllocationRing([...entries], peerCount + 1, rf);
  const fairShare = rf / (peerCount + 1);
  const place = (goal: number): bigint => {
    const { range, fraction } = sub.bestSplit(self, fairShare, goal, minSplit);
    if (range < 0) throw new InvalidRequest('the ring has no room left for another token', {});
    return sub.positionIn(range, fraction);
  };
  const chosen: bigint[] = [];
  for (let k = 0; k < numTokens; k++) {
    chosen.push(place((fairShare * (k + 1)) / numTokens));
    sub.insert(chosen[k]!, self);
  }
  yield { positions: [...chosen], spread: sub.spread() };
  for (let pass = 0; pass < REFINE_PASSES && numTokens > 1; pass++) {
    for (let k = 0; k < numTokens; k++) {
      sub.remove(chosen[k]!);
      chosen[k] = place(fairShare);
      sub.insert(chosen[k]!, self);
    }
    yield { positions: [...chosen], spread: sub.spread() };
  }
}
