import { ChorusError } from '@chorus/core';

/** The hint store was closed (the node is stopping); nothing more is stored or delivered. */
export class HintStoreClosed extends ChorusError {
  constructor() {
    super('HintStoreClosed', 'HINT_STORE_CLOSED', 'the hint store is closed', {}, 503);
  }
}

/**
 * A stored hint that cannot be decoded (a damaged or foreign record). It is
 * dropped with a log line rather than delivered, and stops nothing else.
 */
export class CorruptHint extends ChorusError {
  constructor(reason: string) {
    super('CorruptHint', 'CORRUPT_HINT', `corrupt hint record: ${reason}`, { reason }, 500);
  }
}
