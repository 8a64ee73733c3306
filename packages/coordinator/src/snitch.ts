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
  const keyed = nodes.map((n) => ({ n, tier: tier(p, n), lat: p.latencyMs(n) ?? Infinity }));
  keyed.sort((a, b) => a.tier - b.tier || (a.lat === b.lat ? 0 : a.lat < b.lat ? -1 : 1));
  return keyed.map((k) => k.n);
}
