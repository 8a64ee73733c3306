import type { NodeId } from './ids.js';

export type LinkState = 'up' | 'down';

/**
 * Moves opaque frames between nodes. Implemented by the simulator's in-memory
 * network and by the WebSocket transport; both pass the same compliance suite.
 *
 * Contract:
 * - `send` never throws and never blocks. Frames to one peer arrive in the
 *   order they were sent, or not at all.
 * - When the transport learns that a peer cannot be reached (refused,
 *   closed, crashed, silent past its ping timeout) it reports `down` for that
 *   peer; frames sent while a peer is down are dropped. `up` is reported when
 *   a link (re)establishes. Reports for one peer alternate.
 * - Handlers are called from the transport's event loop turn, never
 *   re-entrantly from inside `send`.
 */
export interface Transport {
  readonly localNode: NodeId;
  send(to: NodeId, frame: Uint8Array): void;
  onFrame(handler: (from: NodeId, frame: Uint8Array) => void): void;
  onLinkState(handler: (peer: NodeId, state: LinkState) => void): void;
  /**
   * Called by the receiver when a frame from `peer` failed validation. A
   * transport may close a connection that keeps sending bad frames.
   */
  penalize?(peer: NodeId): void;
  /**
   * Whether `peer` has said it reads positional frames (see the wire codec),
   * on the link a frame sent now goes out on. Without the method, or before a
   * link has said so, frames use the format every build reads.
   */
  readsPositionalFrames?(peer: NodeId): boolean;
  /**
   * Whether `peer` has said it reads the message kind `kind`, one added
   * after the protocol version both speak, on the link a frame sent now goes
   * out on. Without the method, or before a link has said so, such kinds are
   * not sent to it.
   */
  readsKind?(peer: NodeId, kind: string): boolean;
  close(): Promise<void>;
}
