import { ChorusError } from '@chorus/core';

/**
 * The node cannot record a gossip generation larger than its last one, so it
 * does not start: peers ignore a node whose generation did not grow (and keep
 * a cleanly stopped one down for good). `reason` says which record is in the
 * way; `previousGeneration` is the last one recorded, when it could be read.
 */
export class GenerationNotIncreasing extends ChorusError {
  constructor(reason: 'unreadable' | 'exhausted' | 'not-stored', message: string, fields: { previousGeneration?: number; generation?: number; storedAtMicros?: number } = {}) {
    super('GenerationNotIncreasing', 'GENERATION_NOT_INCREASING', `cannot start with a larger gossip generation than the last one: ${message}`, { reason, ...fields }, 500);
  }
}

/**
 * Another node is joining or leaving the ring. Two range movements at once
 * would each copy ranges from owners the other is changing, so a join waits
 * until the ring is settled again (as Cassandra refuses with consistent range
 * movement on).
 */
export class TopologyChangeInProgress extends ChorusError {
  constructor(moving: ReadonlyArray<{ node: string; status: string }>) {
    super(
      'TopologyChangeInProgress',
      'TOPOLOGY_CHANGE_IN_PROGRESS',
      `another topology change is in progress (${moving.map((m) => `${m.node} ${m.status}`).join(', ')}); start this node again once it has finished (chorus status shows every node UN)`,
      { moving: moving.map((m) => ({ ...m })) },
      409,
    );
  }
}

/** Decommission would leave a keyspace with fewer nodes than its replication factor in a datacenter (or the ring). */
export class DecommissionRefused extends ChorusError {
  constructor(reason: string, fields: Record<string, unknown> = {}) {
    super('DecommissionRefused', 'DECOMMISSION_REFUSED', `decommission refused: ${reason}`, fields, 409);
  }
}

/** `removenode` refused: the host id is this node's own, or the node is alive as the asked node sees it (only a dead node is removed; a live one decommissions). */
export class RemoveNodeRefused extends ChorusError {
  constructor(reason: 'self' | 'alive' | 'not-in-ring', hostId: string, node: string) {
    const why =
      reason === 'self'
        ? 'it is the asked node itself (ask another node, or decommission this one)'
        : reason === 'alive'
          ? 'it is UP as the asked node sees it; decommission a live node instead, or stop it first'
          : 'it holds no tokens in the ring';
    super('RemoveNodeRefused', 'REMOVE_NODE_REFUSED', `removenode ${hostId} (${node}) refused: ${why}`, { reason, hostId, node }, 409);
  }
}

/** No member of the ring, as the asked node knows it, has this host id. */
export class UnknownHostId extends ChorusError {
  constructor(hostId: string) {
    super('UnknownHostId', 'UNKNOWN_HOST_ID', `no node with host id ${hostId} is known to the asked node (chorus status lists the host ids)`, { hostId }, 404);
  }
}

/**
 * This node was removed from the ring (`removenode`) or left it: it must not
 * serve again with its old data and identity, or it would answer reads with
 * data the ring has moved on from. Wipe its data directory to join anew.
 */
export class NodeRemoved extends ChorusError {
  constructor(hostId: string, status: 'REMOVED' | 'LEFT', learnedFrom: string) {
    const what = status === 'REMOVED' ? 'was removed from the ring' : 'left the ring';
    super('NodeRemoved', 'NODE_REMOVED', `this node (host id ${hostId}) ${what}, as ${learnedFrom} reports; it does not serve again with this data (empty its data directory to join as a new node)`, { hostId, status, learnedFrom }, 409);
  }
}
