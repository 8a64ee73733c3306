import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { Env, LinkState, Logger, NodeId, Transport } from '@chorus/core';
import WebSocket from 'ws';
import { MAX_FRAME_BYTES } from './codec.js';
import { secretBytes } from './handshake.js';
import { InboundConnections } from './ws-inbound.js';
import { type OutboundPhase, OutboundLinks } from './ws-outbound.js';
import { defaultLocalAddress, hostOf } from './ws-peer-address.js';
import { CLOSE_GRACE_MS, type Counters, type LinkContext, type PeerTls, type Settings } from './ws-shared.js';

const MiB = 1024 * 1024;
const GOING_AWAY = 1001;

export interface WsTransportOptions {
  env: Env;
  /** Peers must name the same cluster. */
  clusterName: string;
  /** Shared by every node of the cluster; proves membership, never sent. */
  secret: string | Uint8Array;
  /** This node's id, its `host:port` listen address; `env.node` by default. */
  localNode?: NodeId;
  /**
   * TLS of peer links (PEM). A `server` given with it must be an HTTPS server
   * of the same certificate that requests client certificates (see
   * `peerTlsServerOptions`).
   */
  tls?: PeerTls;
  /** An HTTP server to take `/peer` upgrades from; other paths are left to the server's other `upgrade` listeners. */
  server?: Server;
  /** Address outgoing connections bind to, so partitions by address work; the host of `localNode` by default when it is an IP, `false` for none. */
  localAddress?: string | false;
  pingIntervalMs?: number;
  /** A link whose pings go unanswered this long is declared down. */
  pingTimeoutMs?: number;
  /** Time an inbound connection has to complete its handshake; a stranger holds a slot no longer. */
  handshakeTimeoutMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** After a peer goes down, reconnecting continues in the background while something was sent to it this recently. */
  retryWindowMs?: number;
  /** Largest WebSocket message accepted; ws closes the connection on a larger one before buffering it. */
  maxPayloadBytes?: number;
  /** Largest single frame; larger ones are dropped on send and refused on receipt. */
  maxFrameBytes?: number;
  /** Coalesced messages are cut at about this size, so one burst does not hold a peer's socket for long. */
  maxMessageBytes?: number;
  /** 1 sends one WebSocket message per frame (for comparison); unbounded by default. */
  maxFramesPerMessage?: number;
  /** Frames and bytes waiting for one peer beyond which new frames to it are dropped. */
  maxQueuedFrames?: number;
  maxQueuedBytes?: number;
  /** Socket send buffer of one peer above which nothing more is written to it. */
  maxBufferedBytes?: number;
  /** Inbound connections still in their handshake beyond which new ones are cut. */
  maxPendingHandshakes?: number;
  /**
   * The share of `maxPendingHandshakes` one source address (an IPv6 /64) may
   * hold, so a flood from one place cannot keep every other peer out.
   */
  maxPendingHandshakesPerSource?: number;
  /** Bad frames from one connection within `penaltyWindowMs` that close it. */
  penaltyThreshold?: number;
  penaltyWindowMs?: number;
}

export interface WsListenOptions extends WsTransportOptions {
  /** Where to listen; the host and port of `localNode` by default. */
  host?: string;
  port?: number;
}

export interface PeerLinkStats {
  /** The outbound link: what this node sends on. */
  phase: OutboundPhase;
  reported: LinkState | 'none';
  /** Whether the peer has an authenticated connection to this node (what it sends on). */
  inbound: boolean;
  queuedFrames: number;
  queuedBytes: number;
  bufferedBytes: number;
  framesSent: number;
  framesDropped: number;
  framesReceived: number;
}

export interface WsTransportStats extends Counters {
  /** Inbound connections in their handshake right now. */
  pendingHandshakes: number;
  peers: Record<string, PeerLinkStats>;
}

/** A `Transport` over WebSockets, plus what the node's HTTP server and operators need. */
export interface WsTransport extends Transport {
  /**
   * Takes a `/peer` upgrade and returns true; returns false and leaves the
   * socket alone for any other path, so the caller can route it elsewhere.
   */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  stats(): WsTransportStats;
  /** The address the transport's own server listens on, when it has one. */
  readonly listening: { host: string; port: number } | undefined;
}

const DEFAULTS: Settings = {
  pingIntervalMs: 1_000,
  pingTimeoutMs: 5_000,
  // A real handshake is two round trips and two HMACs; a stranger's connection holds a slot no longer than this.
  handshakeTimeoutMs: 2_000,
  minBackoffMs: 100,
  maxBackoffMs: 5_000,
  retryWindowMs: 60_000,
  maxPayloadBytes: 2 * MAX_FRAME_BYTES,
  maxFrameBytes: MAX_FRAME_BYTES,
  maxMessageBytes: 1 * MiB,
  maxFramesPerMessage: Number.POSITIVE_INFINITY,
  maxQueuedFrames: 50_000,
  maxQueuedBytes: 16 * MiB,
  maxBufferedBytes: 16 * MiB,
  maxPendingHandshakes: 64,
  maxPendingHandshakesPerSource: 8,
  penaltyThreshold: 10,
  penaltyWindowMs: 60_000,
};

/**
 * Builds the WebSocket transport. Without `server` it serves only through
 * `handleUpgrade`; `listenWsTransport` gives it a server of its own.
 */
export function createWsTransport(options: WsTransportOptions): WsTransport {
  return new WsTransportImpl(options, undefined);
}

/** A transport with its own HTTP server listening on the node's address; `close()` closes the server too. */
export async function listenWsTransport(options: WsListenOptions): Promise<WsTransport> {
  const localNode = options.localNode ?? options.env.node;
  const address = hostOf(localNode);
  const host = options.host ?? address?.host;
  const port = options.port ?? address?.port;
  if (host === undefined || port === undefined) throw new TypeError(`cannot listen: node id ${localNode} is not host:port and no host/port was given`);
  const answer = (_req: IncomingMessage, res: ServerResponse) => void res.writeHead(426, { connection: 'close' }).end();
  const server: Server = options.tls ? createHttpsServer(peerTlsServerOptions(options.tls), answer) : createServer(answer);
  server.on('clientError', (_error, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  const transport = new WsTransportImpl({ ...options, server: undefined }, server);
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!transport.handleUpgrade(request, socket, head)) socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n');
  });
  transport.listeningAt = typeof bound === 'object' && bound !== null ? { host: bound.address, port: bound.port } : undefined;
  return transport;
}

/**
 * Options of an HTTPS server on a node's port with peer TLS: it asks every
 * connection for a certificate signed by the CA but completes TLS without one
 * (clients of the HTTP API have none); `/peer` upgrades without one are refused.
 */
export function peerTlsServerOptions(tls: PeerTls): { cert: string | Buffer; key: string | Buffer; ca: string | Buffer; requestCert: true; rejectUnauthorized: false } {
  return { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: false };
}

/** Composes the two sides: sends go out on the outbound links, frames come in on the inbound connections. */
class WsTransportImpl implements WsTransport {
  readonly localNode: NodeId;
  listeningAt: { host: string; port: number } | undefined;
  private readonly env: Env;
  private readonly log: Logger;
  private readonly outbound: OutboundLinks;
  private readonly inbound: InboundConnections;
  private readonly frameHandlers: Array<(from: NodeId, frame: Uint8Array) => void> = [];
  private readonly linkHandlers: Array<(peer: NodeId, state: LinkState) => void> = [];
  private readonly detachServer: () => void;
  private closing: Promise<void> | undefined;
  private readonly counters: Counters = {
    framesSent: 0,
    framesReceived: 0,
    framesDropped: 0,
    bytesSent: 0,
    bytesReceived: 0,
    messagesSent: 0,
    messagesReceived: 0,
    connectAttempts: 0,
    reconnects: 0,
    rejectedHandshakes: 0,
    sourceLimited: 0,
    badMessages: 0,
    penalties: 0,
    penalizedClosures: 0,
    tlsRefused: 0,
  };

  constructor(options: WsTransportOptions, private readonly ownServer: Server | undefined) {
    this.env = options.env;
    this.localNode = options.localNode ?? options.env.node;
    this.log = options.env.logger.child({ component: 'peer-transport' });
    const given = Object.fromEntries(Object.entries(options).filter(([key, value]) => key in DEFAULTS && value !== undefined));
    const settings = { ...DEFAULTS, ...given } as Settings;
    if (settings.pingTimeoutMs <= settings.pingIntervalMs) throw new RangeError('pingTimeoutMs must be longer than pingIntervalMs');
    if (typeof options.clusterName !== 'string' || options.clusterName.length === 0 || options.clusterName.length > 128) throw new TypeError('clusterName must be 1–128 characters');
    const context: LinkContext = {
      env: this.env,
      log: this.log,
      settings,
      counters: this.counters,
      localNode: this.localNode,
      clusterName: options.clusterName,
      secret: secretBytes(options.secret),
      tls: options.tls,
      isClosing: () => this.closing !== undefined,
    };
    const localAddress = options.localAddress === false ? undefined : (options.localAddress ?? defaultLocalAddress(this.localNode));
    this.outbound = new OutboundLinks(context, localAddress, this.linkHandlers, (peer) => this.inbound.has(peer));
    this.inbound = new InboundConnections(context, this.frameHandlers, (peer) => this.outbound.peerConnected(peer));
    const server = options.server;
    if (server) {
      const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => void this.handleUpgrade(request, socket, head);
      server.on('upgrade', onUpgrade);
      this.detachServer = () => server.off('upgrade', onUpgrade);
    } else {
      this.detachServer = () => {};
    }
  }

  get listening(): { host: string; port: number } | undefined {
    return this.listeningAt;
  }

  // ——— Transport ———

  send(to: NodeId, frame: Uint8Array): void {
    this.outbound.send(to, frame);
  }

  readsPositionalFrames(peer: NodeId): boolean {
    return this.outbound.readsPositionalFrames(peer);
  }

  readsKind(peer: NodeId, kind: string): boolean {
    return this.outbound.readsKind(peer, kind);
  }

  onFrame(handler: (from: NodeId, frame: Uint8Array) => void): void {
    this.frameHandlers.push(handler);
  }

  onLinkState(handler: (peer: NodeId, state: LinkState) => void): void {
    this.linkHandlers.push(handler);
  }

  penalize(peer: NodeId): void {
    this.inbound.penalize(peer);
  }

  close(): Promise<void> {
    // Marked closing before any socket is touched, so no event of the teardown reaches a handler.
    this.closing ??= Promise.resolve().then(() => this.shutdown());
    return this.closing;
  }

  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    return this.inbound.handleUpgrade(request, socket, head);
  }

  stats(): WsTransportStats {
    const peers: Record<string, PeerLinkStats> = {};
    const names = new Set<NodeId>([...this.outbound.peers(), ...this.inbound.peers()]);
    for (const peer of names) {
      const link = this.outbound.linkTo(peer);
      const inbound = this.inbound.connectionFrom(peer);
      peers[peer] = {
        phase: link?.phase ?? 'idle',
        reported: link?.reported ?? 'none',
        inbound: inbound !== undefined,
        queuedFrames: link?.queue.length ?? 0,
        queuedBytes: link?.queuedBytes ?? 0,
        bufferedBytes: link?.socket?.bufferedAmount ?? 0,
        framesSent: link?.framesSent ?? 0,
        framesDropped: link?.framesDropped ?? 0,
        framesReceived: inbound?.framesReceived ?? 0,
      };
    }
    return { ...this.counters, pendingHandshakes: this.inbound.pendingHandshakes, peers };
  }

  private async shutdown(): Promise<void> {
    this.detachServer();
    const closed: Array<Promise<void>> = [];
    const closeSocket = (ws: WebSocket) => {
      if (ws.readyState === WebSocket.CLOSED) return;
      closed.push(new Promise<void>((resolve) => ws.once('close', () => resolve())));
      try {
        ws.close(GOING_AWAY, 'node shutting down');
      } catch {
        ws.terminate();
      }
      this.env.scheduler.setTimer(CLOSE_GRACE_MS, () => ws.terminate());
    };
    this.outbound.closeAll(closeSocket);
    this.inbound.closeAll(closeSocket);
    await Promise.all(closed);
    await this.inbound.closeServer();
    if (this.ownServer) {
      const server = this.ownServer;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
  }
}
