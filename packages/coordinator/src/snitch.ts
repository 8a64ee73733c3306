import type { NodeId } from '@chorus/core';

export interface Proximity {
  self: NodeId;
  localDc: string;
  localRack: string;
  locate(node: NodeId): { dc: string; rack: string } | undefined;
  /** Recent latency to the node, when measured lately. */
  latencyMs(node: NodeId): number | undefined;
}

function tier(p: Proximity, node: NodeId): number {
  if (node === p.self) return 0;
  const at = p.locate(node);
  if (at === undefined || at.dc !== p.localDc) return 3;
  return at.rack === p.localRack ? 1 : 2;
}

/**
 * How much slower (by its latency average) than its tier's latency of the same rank a replica
 * may be and keep its ring-order place, as a fraction: 1.0 lets ring order
 * stand until a replica takes twice as long as that (Cassandra's
 * `dynamic_snitch_badness_threshold`, whose default is 1.0 since 4.0).
 */
export const DEFAULT_BADNESS_THRESHOLD = 1.0;

/**
 * Closest first: this node, then its rack, then its datacenter, then the
 * rest. Within a tier ring order from this node on stands while latencies
 * are alike, so each replica of a set (a vnode's natural order) is the
 * first peer of another and reads spread over the peers; sorting by
 * latency alone sent every digest read of a coordinator to the one peer
 * that was a little faster, until that made it the slowest. A tier is ordered by measured latency (ties in
 * ring order) once a node at some position is slower than the tier's
 * same-rank latency by more than `badnessThreshold` (Cassandra's dynamic
 * snitch compares the same way). A tier with a node not measured lately
 * keeps ring order: no evidence is no reason to pass a node over (Cassandra
 * ranks a node without a score first), and being asked is how it is
 * measured again.
 */
export function sortByProximity(natural: readonly NodeId[], p: Proximity, badnessThreshold = DEFAULT_BADNESS_THRESHOLD): NodeId[] {
  // Ring order from this node's successor, not from the range's primary
  // replica: from the primary, two thirds of a range's remote reads went to
  // the primary (rf 3), so a node's share of them followed its share of
  // primary ranges (23, 37 and 40 % for the first three nodes' 16 tokens).
  // From the successor, each replica is the next one of exactly one other,
  // whatever the tokens.
  const self = natural.indexOf(p.self);
  const nodes = self <= 0 ? natural : [...natural.slice(self), ...natural.slice(0, self)];
  const tiers = nodes.map((n) => tier(p, n));
  const lats = nodes.map((n) => p.latencyMs(n));
  // Array.prototype.sort is stable: equal tiers (and equal latencies) keep ring order.
  const byTier = nodes.map((_, i) => i).sort((a, b) => tiers[a]! - tiers[b]!);
  const out: NodeId[] = [];
  for (let from = 0; from < byTier.length; ) {
    let to = from + 1;
    while (to < byTier.length && tiers[byTier[to]!] === tiers[byTier[from]!]) to++;
    const group = byTier.slice(from, to);
    if (group.every((i) => lats[i] !== undefined)) {
      const fastest = group.map((i) => lats[i]!).sort((a, b) => a - b);
      if (group.some((i, rank) => lats[i]! > fastest[rank]! * (1 + badnessThreshold))) group.sort((a, b) => lats[a]! - lats[b]!);
    }
    for (const i of group) out.push(nodes[i]!);
    from = to;
  }
  return out;
}
