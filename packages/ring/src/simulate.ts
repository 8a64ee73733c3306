import { nodeId, type Random } from '@chorus/core';
import { allocateTokens, randomTokens } from './allocate.js';
import { ownershipRatio, RingView } from './ring.js';

export type Allocation = 'balanced' | 'random';

export interface GrowthStep {
  readonly nodes: number;
  readonly ring: RingView;
  /** max/min replicated ownership under SimpleStrategy with the simulated rf. */
  readonly ratio: number;
}

/**
 * Grows a one-datacenter cluster node by node up to `maxNodes`, each node
 * getting its tokens from the chosen allocation, and reports the ownership
 * spread after every addition.
 */
export function simulateGrowth(maxNodes: number, numTokens: number, rf: number, allocation: Allocation, random: Random): GrowthStep[] {
  let ring = RingView.empty();
  const steps: GrowthStep[] = [];
  for (let i = 1; i <= maxNodes; i++) {
    const node = nodeId(`n${i}`);
    const tokens = allocation === 'balanced' ? allocateTokens(ring, { node, dc: 'dc1' }, numTokens, rf, random) : randomTokens(random, numTokens);
    ring = ring.with({ node, dc: 'dc1', rack: 'r1', tokens, status: 'normal' });
    steps.push({ nodes: i, ring, ratio: ownershipRatio(ring.ownership({ class: 'SimpleStrategy', rf })) });
  }
  return steps;
}
