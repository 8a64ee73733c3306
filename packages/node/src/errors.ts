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
