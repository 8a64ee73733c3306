import type { HostId, NodeId } from './ids.js';

/**
 * What the rest of a node may ask of membership and failure detection.
 * Implemented by the gossiper's snapshots (packages/gossip); read by
 * coordinators, hints and repair. Reads are synchronous and cheap: an
 * implementation keeps an immutable snapshot current and answers from it.
 */
export interface MembershipView {
  /** Whether the failure detector believes the node is up now. This node is always alive to itself. */
  isAlive(node: NodeId): boolean;
  /** The node's datacenter and rack as it announced them; undefined unless both are known. */
  locationOf(node: NodeId): { dc: string; rack: string } | undefined;
  /** Every node believed up, this one included, ordered by node id. */
  liveNodes(): readonly NodeId[];
  /**
   * The host id the node announced, if known. A node keeps its host id across
   * restarts and address changes, so hints and repair key their state by it.
   */
  hostIdOf(node: NodeId): HostId | undefined;
}

/** Why a node went DOWN. */
export type DownReason = 'convicted' | 'shutdown' | 'left' | 'removed';

/** One change of membership, as seen by one node. */
export type MembershipChange =
  /** First sight of a node; it is DOWN until a newer heartbeat of it arrives. */
  | { readonly kind: 'joined'; readonly node: NodeId }
  | { readonly kind: 'up'; readonly node: NodeId }
  | { readonly kind: 'down'; readonly node: NodeId; readonly reason: DownReason }
  /** A newer generation replaced the node's state: the node restarted. */
  | { readonly kind: 'restarted'; readonly node: NodeId; readonly generation: number; readonly previousGeneration: number }
  /** The node left the ring (decommission). */
  | { readonly kind: 'left'; readonly node: NodeId }
  /** The node was declared removed (removenode). */
  | { readonly kind: 'removed'; readonly node: NodeId }
  /** A LEFT or REMOVED node was forgotten after its quarantine. */
  | { readonly kind: 'evicted'; readonly node: NodeId }
  /**
   * One of the node's announced values changed (this node's own included).
   * `key` is the gossip application-state name: `STATUS`, `TOKENS`, `DC`,
   * `RACK`, `HOST_ID`, `LOAD`, `SCHEMA`, `RELEASE`, `RPC_ADDRESS`, `NAME`, `STREAMING`.
   */
  | { readonly kind: 'changed'; readonly node: NodeId; readonly key: string; readonly oldValue: string | undefined; readonly newValue: string };

/**
 * What a listener receives. The first event after `subscribe` is `snapshot`;
 * every later one carries the view as it was right after the change.
 */
export type MembershipEvent<V extends MembershipView = MembershipView> =
  | (MembershipChange & { readonly view: V })
  | { readonly kind: 'snapshot'; readonly view: V };

export type MembershipListener = (event: MembershipEvent) => void;

/**
 * Membership changes, for features that react to them (hints replay when a
 * node comes up, repair and streaming follow topology) without importing the
 * gossiper. Implemented by packages/gossip.
 *
 * Contract:
 * - The listener is called by the gossiper actor, during its own turn, once
 *   per change, in the order the changes happened; the first call is the
 *   `snapshot` event.
 * - It must return at once and must not throw: it runs in the gossiper's
 *   turn, so any real work goes to the listener's own actor (tell it a
 *   message). A listener that throws loses that event, with a warning.
 * - `subscribe` returns at once; events start after the gossiper has handled
 *   the subscription. The returned function unsubscribes; events already
 *   under way may still arrive.
 */
export interface MembershipEvents {
  subscribe(listener: MembershipListener): () => void;
}
