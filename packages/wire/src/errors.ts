import { ChorusError } from '@chorus/core';

export type RejectReason = 'too-large' | 'undecodable' | 'not-an-envelope' | 'unknown-kind' | 'invalid-fields' | 'unencodable';

/** A frame that failed the checks at the edge; it is dropped and never reaches an actor. */
export class FrameRejected extends ChorusError {
  constructor(readonly reason: RejectReason, detail: string, fields: Record<string, unknown> = {}) {
    super('FrameRejected', 'FRAME_REJECTED', `frame rejected (${reason}): ${detail}`, { reason, ...fields }, 400);
  }
}
