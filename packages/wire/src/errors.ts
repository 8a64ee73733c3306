import { ChorusError } from '@chorus/core';

export type RejectReason = 'too-large' | 'undecodable' | 'not-an-envelope' | 'unknown-kind' | 'invalid-fields' | 'unencodable' | 'not-a-request' | 'wrong-actor' | 'bad-clock';

/** A frame that failed the checks at the edge; it is dropped and never reaches an actor. */
export class FrameRejected extends ChorusError {
  constructor(readonly reason: RejectReason, detail: string, fields: Record<string, unknown> = {}) {
    super('FrameRejected', 'FRAME_REJECTED', `frame rejected (${reason}): ${detail}`, { reason, ...fields }, 400);
  }
}

/** Why a peer connection was refused before it could carry frames. Each reason has its own WebSocket close code. */
export type HandshakeFailure = 'protocol version' | 'cluster name mismatch' | 'bad secret' | 'node id mismatch' | 'malformed handshake' | 'handshake timeout';

/** A peer failed the handshake: wrong protocol version, cluster name or secret, or it spoke nonsense or too slowly. */
export class HandshakeRefused extends ChorusError {
  constructor(readonly reason: HandshakeFailure, detail: string, fields: Record<string, unknown> = {}) {
    super('HandshakeRefused', 'HANDSHAKE_REFUSED', `peer handshake refused (${reason}): ${detail}`, { reason, ...fields }, 401);
  }
}
