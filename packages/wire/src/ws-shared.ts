import type { Env, Logger, NodeId } from '@chorus/core';
import type WebSocket from 'ws';

/** Grace for a refused or shut-down socket to finish its close handshake before it is cut. */
export const CLOSE_GRACE_MS = 500;

/** `WsTransportOptions` with every default filled in. */
export interface Settings {
  pingIntervalMs: number;
  pingTimeoutMs: number;
  handshakeTimeoutMs: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  retryWindowMs: number;
  maxPayloadBytes: number;
  maxFrameBytes: number;
  maxMessageBytes: number;
  maxFramesPerMessage: number;
  maxQueuedFrames: number;
  maxQueuedBytes: number;
  maxBufferedBytes: number;
  maxPendingHandshakes: number;
  maxPendingHandshakesPerSource: number;
  penaltyThreshold: number;
  penaltyWindowMs: number;
}

/** The transport-wide counters of `WsTransportStats`, which both sides add to. */
export interface Counters {
  framesSent: number;
  framesReceived: number;
  framesDropped: number;
  bytesSent: number;
  bytesReceived: number;
  messagesSent: number;
  messagesReceived: number;
  connectAttempts: number;
  /** Links that came back up after having been reported down. */
  reconnects: number;
  rejectedHandshakes: number;
  /** Connections cut on arrival because their source address already had its share of handshakes in progress. */
  sourceLimited: number;
  /** Received messages that were not a valid container. */
  badMessages: number;
  penalties: number;
  penalizedClosures: number;
}

/** What the inbound and outbound sides of one transport share. */
export interface LinkContext {
  readonly env: Env;
  readonly log: Logger;
  readonly settings: Settings;
  readonly counters: Counters;
  readonly localNode: NodeId;
  readonly clusterName: string;
  readonly secret: Uint8Array;
  /** True from the moment `close()` is called, so no event of the teardown reaches a handler. */
  isClosing(): boolean;
}

export function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
