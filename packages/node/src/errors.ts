import { ChorusError } from '@chorus/core';

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
