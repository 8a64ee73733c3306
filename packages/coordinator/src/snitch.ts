import type { NodeId } from '@chorus/core';

export interface Proximity {
  self: NodeId;
  localDc: string;
  localRack: string;
  locate(node: NodeId): { dc: string; rack: string } | undefined;
  /** Recent latency to the node, when measured. */
  latencyMs(node: NodeId): number | undefined;
}

function tier(p: Proximity, node: NodeId): number {
  if (node === p.self) return 0;
  const at = p.locate(node);
  if (at === undefined || at.dc !== p.localDc) return 3;
  return at.rack === p.localRack ? 1 : 2;
}

/**
 * Closest first: this node, then its rack, then its datacenter, then the
 * rest; within a tier the lower measured latency first, unmeasured nodes
 * after measured ones, then ring order (the sort is stable).
 */
export function sortByProximity(nodes: readonly NodeId[], p: Proximity): NodeId[] {
  const out = nodes.slice();
  const tiers: number[] = [];
  const lats: number[] = [];
  for (const n of out) {
    tiers.push(tier(p, n));
    lats.push(p.latencyMs(n) ?? Infinity);
  }
  // Insertion sort: a replica set is a handful of nodes, and it is stable.
  for (let i = 1; i < out.length; i++) {
    const n = out[i]!;
    const t = tiers[i]!;
    const l = lats[i]!;
    let j = i - 1;
    while (j >= 0 && (tiers[j]! > t || (tiers[j] === t && lats[j]! > l))) {
      out[j + 1] = out[j]!;
      tiers[j + 1] = tiers[j]!;
      lats[j + 1] = lats[j]!;
      j--;
    }
    out[j + 1] = n;
    tiers[j + 1] = t;
    lats[j + 1] = l;
  }
  return out;
}
