import { ChorusError } from '@chorus/core';

/**
 * Two members claim the same token. A ring snapshot with such a token has no
 * single owner for the range ending there, so it is refused rather than
 * resolved silently; gossip decides which claim wins before building a view.
 */
export class TokenConflict extends ChorusError {
  constructor(token: bigint, first: string, second: string) {
    super('TokenConflict', 'TOKEN_CONFLICT', `token ${token} is claimed by both ${first} and ${second}`, { token: token.toString(), first, second }, 409);
  }
}

/** A ring snapshot lists the same node twice. */
export class DuplicateMember extends ChorusError {
  constructor(node: string) {
    super('DuplicateMember', 'DUPLICATE_MEMBER', `node ${node} appears twice in the ring`, { node }, 409);
  }
}
