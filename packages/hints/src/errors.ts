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

/**
 * A hand-off stopped before every hint moved: the node it was moving them to
 * went away, timed out or refused them. `moved` hints are on that node now
 * (as hints, or applied there when it was their target); the `remaining`
 * ones are still here, and calling `handOff` again resumes with them.
 */
export class HintHandOffFailed extends ChorusError {
  constructor(to: string, moved: number, remaining: number, reason: string) {
    super('HintHandOffFailed', 'HINT_HANDOFF_FAILED', `hint hand-off to ${to} stopped after ${moved} hint(s), ${remaining} left here: ${reason}`, { to, moved, remaining, reason }, 503);
  }
}

/**
 * A node refused hints handed to it: some were addressed to itself (a sender
 * delivers those as mutations instead; a node never keeps hints for itself).
 * Nothing of the message was stored.
 */
export class HintHandOffRefused extends ChorusError {
  constructor(reason: string) {
    super('HintHandOffRefused', 'HINT_HANDOFF_REFUSED', `hints handed off were refused: ${reason}`, { reason }, 400);
  }
}
