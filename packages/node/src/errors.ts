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
