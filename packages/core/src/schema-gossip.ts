import type { NodeId } from './ids.js';

/** A live peer publishes another schema version than this node. */
export interface SchemaMismatch {
  readonly peer: NodeId;
  readonly theirs: string;
  readonly ours: string;
}

/**
 * How keyspace definitions spread without the schema importing gossip: the
 * schema actor publishes a digest of its definitions (its version) among this
 * node's gossiped state; gossip carries it to every node; a node that sees a
 * live peer with another version hears about that peer and pulls the peer's
 * definitions itself (the wire's schema messages), keeping the newest of
 * each. Implemented by packages/gossip, used by packages/schema.
 */
export interface SchemaGossip {
  /** Publishes this node's schema version. Returns at once; gossip spreads it from its next round. */
  publishVersion(version: string): void;
  /**
   * Calls `listener` whenever an UP peer's version differs from this node's:
   * when the peer comes up, when its version changes, or when ours does; and
   * for every UP peer that still differs each time this node publishes its
   * version, changed or not.
   *
   * Contract, as for `MembershipEvents`: the gossiper actor calls the
   * listener during its own turn; it must return at once and must not throw,
   * so the pull itself is the work of the listener's own actor. Returns the
   * function that unsubscribes.
   */
  onVersionMismatch(listener: (mismatch: SchemaMismatch) => void): () => void;
}
