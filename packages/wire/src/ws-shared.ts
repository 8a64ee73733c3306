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
  /** `/peer` upgrades refused because TLS is on and they came without TLS or without a certificate signed by the cluster CA. */
  tlsRefused: number;
}

/**
 * TLS of peer links, PEM: this node's certificate and key, and the CA that
 * signs every node's certificate. With it, a node dials `wss://`, presents its
 * certificate and checks the peer's against the CA and the address dialed; it
 * takes `/peer` upgrades only over TLS with a certificate the CA signed.
 */
export interface PeerTls {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
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
  readonly tls: PeerTls | undefined;
  /** True from the moment `close()` is called, so no event of the teardown reaches a handler. */
  isClosing(): boolean;
}

export function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
