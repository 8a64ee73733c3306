import type { NodeId } from './ids.js';

/**
 * What the rest of a node may ask of membership and failure detection.
 * Implemented by the gossiper (packages/gossip); read by coordinators,
 * hints and repair. Reads are synchronous and cheap: an implementation keeps
 * an immutable snapshot current and answers from it.
 */
export interface MembershipView {
  /** Whether the failure detector believes the node is up now. This node is always alive to itself. */
  isAlive(node: NodeId): boolean;
  /** The node's datacenter and rack as it announced them, if known. */
  locationOf(node: NodeId): { dc: string; rack: string } | undefined;
}
