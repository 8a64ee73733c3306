import type { HostId, NodeId, Token } from '@chorus/core';
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
}

/**
 * The read side of membership that other features need (coordinator,
 * hints, repair). Meant to move to @chorus/core; a snapshot implements it,
 * and so can a holder that swaps in each new snapshot pushed by the gossiper.
 */
export interface MembershipView {
  readonly self: NodeId;
  endpoint(node: NodeId): EndpointInfo | undefined;
  /** Every known endpoint, self included, ordered by node id. */
  endpoints(): readonly EndpointInfo[];
  isAlive(node: NodeId): boolean;
  /** UP endpoints, self included, ordered by node id. */
  liveNodes(): readonly NodeId[];
}

/** An immutable copy of one gossiper's membership at one instant. */
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

  endpoint(node: NodeId): EndpointInfo | undefined {
    return this.byNode.get(node);
  }

  endpoints(): readonly EndpointInfo[] {
    return this.ordered;
  }

  isAlive(node: NodeId): boolean {
    return this.byNode.get(node)?.liveness === 'UP';
  }

  liveNodes(): readonly NodeId[] {
    return this.ordered.filter((e) => e.liveness === 'UP').map((e) => e.node);
  }

  /** Plain data for logs and JSON answers; tokens as decimal strings. */
  toJSON(): { self: NodeId; takenAtMs: number; endpoints: Array<Record<string, unknown>> } {
    return { self: this.self, takenAtMs: this.takenAtMs, endpoints: this.ordered.map((e) => ({ ...e, tokens: e.tokens.map(String) })) };
  }
}
