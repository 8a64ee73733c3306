import { ChorusError } from '@chorus/core';

/**
 * This node announced LEFT: it no longer answers reads as a replica (a
 * coordinator that has not heard yet would count a copy the new ring does not
 * read), though it still acknowledges writes, which reach the new replicas
 * as well. The coordinator counts the read as unanswered.
 */
export class ReplicaLeft extends ChorusError {
  constructor(node: string) {
    super('ReplicaLeft', 'REPLICA_LEFT', `${node} has left the ring and answers no reads as a replica`, { node }, 503);
  }
}
