import type { HostId, MembershipView, NodeId, Token } from '@chorus/core';
import type { Status } from './values.js';

export type Liveness = 'UP' | 'DOWN';

/** What one node knows about one endpoint at the moment a snapshot was taken. */
export interface EndpointInfo {
  readonly node: NodeId;
  readonly isSelf: boolean;
  readonly generation: number;
  readonly heartbeat: number;
  /** The failure detector's verdict on this node (self is always UP). */
  readonly liveness: Liveness;
  readonly status: Status | undefined;
  readonly tokens: readonly Token[];
  readonly dc: string | undefined;
  readonly rack: string | undefined;
  readonly hostId: HostId | undefined;
  readonly load: number | undefined;
  readonly schema: string | undefined;
  readonly release: string | undefined;
  readonly rpcAddress: string | undefined;
  readonly name: string | undefined;
  /** Percent of the range movement the node streams for, while it streams (absent from older peers). */
  readonly streaming?: number | undefined;
}

/**
 * An immutable copy of one gossiper's membership at one instant. It is
 * core's `MembershipView` (what coordinators, hints and repair read), plus
 * everything gossip knows of each endpoint.
 */
export class MembershipSnapshot implements MembershipView {
  private readonly byNode: ReadonlyMap<NodeId, EndpointInfo>;
  private readonly ordered: readonly EndpointInfo[];

  constructor(
    readonly self: NodeId,
    /** The gossiper's monotonic clock when the snapshot was taken. */
    readonly takenAtMs: number,
    endpoints: readonly EndpointInfo[],
  ) {
    this.ordered = Object.freeze([...endpoints].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0)).map((e) => Object.freeze(e)));
    this.byNode = new Map(this.ordered.map((e) => [e.node, e]));
    Object.freeze(this);
  }

  /** What this node knows of `node`, if anything. */
  endpoint(node: NodeId): EndpointInfo | undefined {
    return this.byNode.get(node);
  }

  /** Every known endpoint, self included, ordered by node id. */
  endpoints(): readonly EndpointInfo[] {
    return this.ordered;
  }

  isAlive(node: NodeId): boolean {
    return this.byNode.get(node)?.liveness === 'UP';
  }

  liveNodes(): readonly NodeId[] {
    return this.ordered.filter((e) => e.liveness === 'UP').map((e) => e.node);
  }

  locationOf(node: NodeId): { dc: string; rack: string } | undefined {
    const e = this.byNode.get(node);
    return e?.dc && e.rack ? { dc: e.dc, rack: e.rack } : undefined;
  }

  hostIdOf(node: NodeId): HostId | undefined {
    return this.byNode.get(node)?.hostId;
  }

  /** Plain data for logs and JSON answers; tokens as decimal strings. */
  toJSON(): { self: NodeId; takenAtMs: number; endpoints: Array<Record<string, unknown>> } {
    return { self: this.self, takenAtMs: this.takenAtMs, endpoints: this.ordered.map((e) => ({ ...e, tokens: e.tokens.map(String) })) };
  }
}

/**
 * A `MembershipView` that answers from the newest snapshot it was handed:
 * what a long-lived reader (the coordinator) holds, while the owner of the
 * subscription swaps in each snapshot the gossiper pushes.
 */
export class LatestMembership implements MembershipView {
  constructor(private current: MembershipSnapshot) {}

  /** Called by the subscriber with each snapshot the gossiper pushes. */
  update(view: MembershipSnapshot): void {
    this.current = view;
  }

  snapshot(): MembershipSnapshot {
    return this.current;
  }

  isAlive(node: NodeId): boolean {
    return this.current.isAlive(node);
  }

  locationOf(node: NodeId): { dc: string; rack: string } | undefined {
    return this.current.locationOf(node);
  }

  liveNodes(): readonly NodeId[] {
    return this.current.liveNodes();
  }

  hostIdOf(node: NodeId): HostId | undefined {
    return this.current.hostIdOf(node);
  }
}
