import { type IncomingMessage, type Server, createServer } from 'node:http';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Env, LinkState, Logger, NodeId, Timer, Transport } from '@chorus/core';
import WebSocket, { WebSocketServer } from 'ws';
import { batchBytes, decodeBatch, encodeBatch } from './batch.js';
import { MAX_FRAME_BYTES } from './codec.js';
import { HandshakeRefused } from './errors.js';
import { ClientHandshake, HANDSHAKE_MAX_BYTES, PEER_CLOSE_CODES, type PeerCloseReason, ServerHandshake, handshakeFailureOf, secretBytes } from './handshake.js';

/** The WebSocket path of peer traffic on a node's port. */
export const PEER_PATH = '/peer';

const MiB = 1024 * 1024;
const GOING_AWAY = 1001;
/** Everything a handshake needs fits in a few hundred bytes; a stranger gets this much of our memory and no more. */
const PRE_AUTH_MAX_BYTES = 4 * HANDSHAKE_MAX_BYTES;
/** Grace for a refused or shut-down socket to finish its close handshake before it is cut. */
const CLOSE_GRACE_MS = 500;
/** How often a peer whose socket buffer is full is looked at again. */
const DRAIN_POLL_MS = 5;

export interface WsTransportOptions {
  env: Env;
  /** Peers must name the same cluster. */
  clusterName: string;
  /** Shared by every node of the cluster; proves membership, never sent. */
  secret: string | Uint8Array;
  /** This node's id, its `host:port` listen address; `env.node` by default. */
  localNode?: NodeId;
  /** An HTTP server to take `/peer` upgrades from; other paths are left to the server's other `upgrade` listeners. */
  server?: Server;
  /** Address outgoing connections bind to, so partitions by address work; the host of `localNode` by default when it is an IP, `false` for none. */
  localAddress?: string | false;
  pingIntervalMs?: number;
  /** A link whose pings go unanswered this long is declared down. */
  pingTimeoutMs?: number;
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
  /** Bad frames from one connection within `penaltyWindowMs` that close it. */
  penaltyThreshold?: number;
  penaltyWindowMs?: number;
}

export interface WsListenOptions extends WsTransportOptions {
  /** Where to listen; the host and port of `localNode` by default. */
  host?: string;
  port?: number;
}

export type OutboundPhase = 'idle' | 'connecting' | 'up' | 'retrying';

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

export interface WsTransportStats {
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
  /** Received messages that were not a valid container. */
  badMessages: number;
  penalties: number;
  penalizedClosures: number;
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

interface Settings {
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
  penaltyThreshold: number;
  penaltyWindowMs: number;
}

const DEFAULTS: Settings = {
  pingIntervalMs: 1_000,
  pingTimeoutMs: 5_000,
  handshakeTimeoutMs: 5_000,
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
  penaltyThreshold: 10,
  penaltyWindowMs: 60_000,
};

class OutboundLink {
  phase: OutboundPhase = 'idle';
  reported: LinkState | undefined;
  socket: WebSocket | undefined;
  queue: Uint8Array[] = [];
  queuedBytes = 0;
  lastSendMs = Number.NEGATIVE_INFINITY;
  lastPongMs = 0;
  failures = 0;
  flushScheduled = false;
  retryTimer: Timer | undefined;
  handshakeTimer: Timer | undefined;
  pingTimer: Timer | undefined;
  drainTimer: Timer | undefined;
  framesSent = 0;
  framesDropped = 0;
  constructor(readonly peer: NodeId) {}
}

class InboundConnection {
  peer: NodeId | undefined;
  authenticated = false;
  closed = false;
  lastSeenMs: number;
  penalties: number[] = [];
  handshakeTimer: Timer | undefined;
  idleTimer: Timer | undefined;
  framesReceived = 0;
  constructor(readonly socket: WebSocket, readonly handshake: ServerHandshake, readonly remote: string, now: number, readonly releaseBudget: () => void) {
    this.lastSeenMs = now;
  }
}

/** `host:port` → the peer's `/peer` URL; undefined for anything that is not an address. */
function peerUrl(peer: NodeId): string | undefined {
  const colon = peer.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const host = peer.slice(0, colon);
  const port = Number(peer.slice(colon + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65_535) return undefined;
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare) === 6 && !host.startsWith('[')) return undefined;
  return `ws://${host}:${port}${PEER_PATH}`;
}

function hostOf(node: NodeId): { host: string; port: number } | undefined {
  const colon = node.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const raw = node.slice(0, colon);
  const host = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
  const port = Number(node.slice(colon + 1));
  return Number.isInteger(port) && port >= 0 && port <= 65_535 ? { host, port } : undefined;
}

function defaultLocalAddress(node: NodeId): string | undefined {
  const host = hostOf(node)?.host;
  if (host === undefined || isIP(host) === 0 || host === '0.0.0.0' || host === '::') return undefined;
  return host;
}

function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

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
  const server = createServer((_req, res) => {
    res.writeHead(426, { connection: 'close' }).end();
  });
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

class WsTransportImpl implements WsTransport {
  readonly localNode: NodeId;
  listeningAt: { host: string; port: number } | undefined;
  private readonly env: Env;
  private readonly log: Logger;
  private readonly settings: Settings;
  private readonly clusterName: string;
  private readonly secret: Uint8Array;
  private readonly localAddress: string | undefined;
  private readonly wss: WebSocketServer;
  private readonly links = new Map<NodeId, OutboundLink>();
  private readonly inboundByPeer = new Map<NodeId, InboundConnection>();
  private readonly inbound = new Set<InboundConnection>();
  private readonly frameHandlers: Array<(from: NodeId, frame: Uint8Array) => void> = [];
  private readonly linkHandlers: Array<(peer: NodeId, state: LinkState) => void> = [];
  private readonly detachServer: () => void;
  private pendingHandshakes = 0;
  private closing: Promise<void> | undefined;
  private readonly counters = {
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
    badMessages: 0,
    penalties: 0,
    penalizedClosures: 0,
  };

  constructor(options: WsTransportOptions, private readonly ownServer: Server | undefined) {
    this.env = options.env;
    this.localNode = options.localNode ?? options.env.node;
    this.log = options.env.logger.child({ component: 'peer-transport' });
    const given = Object.fromEntries(Object.entries(options).filter(([key, value]) => key in DEFAULTS && value !== undefined));
    this.settings = { ...DEFAULTS, ...given } as Settings;
    if (this.settings.pingTimeoutMs <= this.settings.pingIntervalMs) throw new RangeError('pingTimeoutMs must be longer than pingIntervalMs');
    if (typeof options.clusterName !== 'string' || options.clusterName.length === 0 || options.clusterName.length > 128) throw new TypeError('clusterName must be 1–128 characters');
    this.clusterName = options.clusterName;
    this.secret = secretBytes(options.secret);
    this.localAddress = options.localAddress === false ? undefined : (options.localAddress ?? defaultLocalAddress(this.localNode));
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.settings.maxPayloadBytes, perMessageDeflate: false, clientTracking: false });
    this.wss.on('error', (error) => this.log.warn({ err: error }, 'peer WebSocket server error'));
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
    if (this.closing) return;
    const link = this.linkFor(to);
    link.lastSendMs = this.now();
    if (frame.byteLength > this.settings.maxFrameBytes) {
      this.log.warn({ peer: to, bytes: frame.byteLength, limit: this.settings.maxFrameBytes }, 'dropped a frame over the size limit');
      this.drop(link, 1);
      return;
    }
    if (link.reported === 'down' && link.phase !== 'up') {
      // The contract drops frames while a peer is down; the send still tells us the peer is wanted.
      this.drop(link, 1);
      if (link.phase === 'idle') this.connect(link);
      return;
    }
    if (link.queue.length >= this.settings.maxQueuedFrames || link.queuedBytes + frame.byteLength > this.settings.maxQueuedBytes) {
      this.drop(link, 1);
      return;
    }
    link.queue.push(frame);
    link.queuedBytes += frame.byteLength;
    if (link.phase === 'up') this.scheduleFlush(link);
    else if (link.phase === 'idle') this.connect(link);
  }

  onFrame(handler: (from: NodeId, frame: Uint8Array) => void): void {
    this.frameHandlers.push(handler);
  }

  onLinkState(handler: (peer: NodeId, state: LinkState) => void): void {
    this.linkHandlers.push(handler);
  }

  penalize(peer: NodeId): void {
    const connection = this.inboundByPeer.get(peer);
    if (connection) this.penalizeConnection(connection, 'bad frame');
  }

  close(): Promise<void> {
    // Marked closing before any socket is touched, so no event of the teardown reaches a handler.
    this.closing ??= Promise.resolve().then(() => this.shutdown());
    return this.closing;
  }

  // ——— server side ———

  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    let path: string;
    try {
      path = new URL(request.url ?? '/', 'http://peer').pathname;
    } catch {
      return false;
    }
    if (path !== PEER_PATH) return false;
    socket.on('error', () => socket.destroy());
    if (this.closing) {
      socket.destroy();
      return true;
    }
    if (this.pendingHandshakes >= this.settings.maxPendingHandshakes) {
      this.log.debug({ remote: request.socket.remoteAddress, pending: this.pendingHandshakes }, 'too many peer handshakes in progress; cut a new connection');
      this.counters.rejectedHandshakes++;
      socket.destroy();
      return true;
    }
    this.pendingHandshakes++;
    let budgetHeld = true;
    const releaseBudget = () => {
      if (budgetHeld) {
        budgetHeld = false;
        this.pendingHandshakes--;
      }
    };
    // ws buffers a whole message (up to maxPayload) before we see it; a stranger may not make us hold that much.
    let preAuthBytes = 0;
    const countPreAuth = (chunk: Buffer) => {
      preAuthBytes += chunk.byteLength;
      if (preAuthBytes > PRE_AUTH_MAX_BYTES) {
        this.log.warn({ remote: request.socket.remoteAddress, bytes: preAuthBytes }, 'peer sent too much before authenticating; connection cut');
        this.counters.rejectedHandshakes++;
        socket.off('data', countPreAuth);
        socket.destroy();
      }
    };
    socket.once('close', releaseBudget);
    const remote = `${request.socket.remoteAddress ?? '?'}:${request.socket.remotePort ?? '?'}`;
    try {
      this.wss.handleUpgrade(request, socket, head, (ws) => this.accept(ws, remote, () => socket.off('data', countPreAuth), releaseBudget));
    } catch (error) {
      this.log.debug({ err: error, remote }, 'peer upgrade failed');
      releaseBudget();
      socket.destroy();
      return true;
    }
    // Attached after ws's own listener, which the upgrade set up synchronously, so no byte bypasses ws; the head ws re-emits is counted.
    socket.on('data', countPreAuth);
    return true;
  }

  private accept(ws: WebSocket, remote: string, stopCounting: () => void, releaseBudget: () => void): void {
    if (this.closing) {
      ws.terminate();
      return;
    }
    const handshake = new ServerHandshake({ clusterName: this.clusterName, secret: this.secret, localNode: this.localNode, random: this.env.random });
    const connection = new InboundConnection(ws, handshake, remote, this.now(), releaseBudget);
    this.inbound.add(connection);
    connection.handshakeTimer = this.env.scheduler.setTimer(this.settings.handshakeTimeoutMs, () => {
      if (!connection.authenticated && !connection.closed) this.refuseInbound(connection, new HandshakeRefused('handshake timeout', `no complete handshake within ${this.settings.handshakeTimeoutMs} ms`));
    });
    ws.on('error', (error) => this.log.debug({ err: error, remote, peer: connection.peer }, 'inbound peer socket error'));
    ws.on('ping', () => (connection.lastSeenMs = this.now()));
    ws.on('close', (code, reason) => this.inboundClosed(connection, code, reason));
    ws.on('message', (data, isBinary) => {
      if (connection.closed || this.closing) return;
      connection.lastSeenMs = this.now();
      const message = toBuffer(data);
      if (!connection.authenticated) {
        this.inboundHandshake(connection, message, isBinary, stopCounting);
        return;
      }
      this.receiveBatch(connection, message, isBinary);
    });
  }

  private inboundHandshake(connection: InboundConnection, message: Buffer, isBinary: boolean, stopCounting: () => void): void {
    let step;
    try {
      if (!isBinary) throw new HandshakeRefused('malformed handshake', 'text message');
      step = connection.handshake.receive(message);
    } catch (error) {
      if (error instanceof HandshakeRefused) this.refuseInbound(connection, error);
      else {
        this.log.error({ err: error, remote: connection.remote }, 'peer handshake failed unexpectedly');
        this.closeInbound(connection, 'malformed handshake');
      }
      return;
    }
    if (step.reply) connection.socket.send(step.reply, { binary: true });
    if (!step.done) return;
    connection.authenticated = true;
    connection.peer = step.peer;
    connection.handshakeTimer?.cancel();
    connection.handshakeTimer = undefined;
    stopCounting();
    connection.releaseBudget();
    const previous = this.inboundByPeer.get(step.peer);
    if (previous && previous !== connection) {
      // Frames still arriving on the old connection would be out of order with the new one's; drop them.
      this.closeInbound(previous, 'replaced');
    }
    this.inboundByPeer.set(step.peer, connection);
    this.startIdleWatch(connection);
    this.log.debug({ peer: step.peer, remote: connection.remote }, 'peer connected');
    // A peer that reaches us is alive: retry our own link to it now rather than at the end of a backoff.
    const link = this.links.get(step.peer);
    if (link && link.phase === 'retrying') {
      link.retryTimer?.cancel();
      link.retryTimer = undefined;
      link.failures = 0;
      this.connect(link);
    }
  }

  private receiveBatch(connection: InboundConnection, message: Buffer, isBinary: boolean): void {
    const peer = connection.peer!;
    this.counters.messagesReceived++;
    this.counters.bytesReceived += message.byteLength;
    const frames = isBinary ? decodeBatch(message, this.settings.maxFrameBytes) : 'text message';
    if (typeof frames === 'string') {
      this.counters.badMessages++;
      this.log.warn({ peer, bytes: message.byteLength, reason: frames }, 'dropped a malformed message from a peer');
      this.penalizeConnection(connection, frames);
      return;
    }
    for (const frame of frames) {
      if (connection.closed || this.closing) return;
      this.counters.framesReceived++;
      connection.framesReceived++;
      for (const handler of this.frameHandlers) {
        try {
          handler(peer, frame);
        } catch (error) {
          this.log.error({ err: error, peer }, 'frame handler threw');
        }
      }
    }
  }

  private startIdleWatch(connection: InboundConnection): void {
    // The dialing side pings; an inbound connection that hears nothing for this long is a dead one nobody closed.
    const idleLimit = 2 * this.settings.pingTimeoutMs;
    const check = () => {
      if (connection.closed || this.closing) return;
      if (this.now() - connection.lastSeenMs > idleLimit) {
        this.log.warn({ peer: connection.peer, silentMs: Math.round(this.now() - connection.lastSeenMs) }, 'inbound peer connection silent; closing');
        connection.closed = true;
        connection.socket.terminate();
        this.forgetInbound(connection);
        return;
      }
      connection.idleTimer = this.env.scheduler.setTimer(this.settings.pingTimeoutMs, check);
    };
    connection.idleTimer = this.env.scheduler.setTimer(this.settings.pingTimeoutMs, check);
  }

  private refuseInbound(connection: InboundConnection, error: HandshakeRefused): void {
    this.counters.rejectedHandshakes++;
    this.log.warn({ peer: connection.handshake.claimedPeer, remote: connection.remote, reason: error.reason, detail: error.message }, `refused a peer: ${error.reason}`);
    this.closeInbound(connection, error.reason);
  }

  private closeInbound(connection: InboundConnection, reason: PeerCloseReason): void {
    if (connection.closed) return;
    connection.closed = true;
    const socket = connection.socket;
    try {
      socket.close(PEER_CLOSE_CODES[reason], reason);
    } catch {
      socket.terminate();
    }
    this.env.scheduler.setTimer(CLOSE_GRACE_MS, () => socket.terminate());
    this.forgetInbound(connection);
  }

  private inboundClosed(connection: InboundConnection, code: number, reason: Buffer): void {
    if (!connection.closed && !this.closing) {
      const failure = handshakeFailureOf(code);
      if (failure) {
        this.counters.rejectedHandshakes++;
        this.log.warn({ peer: connection.peer ?? connection.handshake.claimedPeer, remote: connection.remote, reason: failure }, `peer refused this node: ${failure}`);
      } else {
        this.log.debug({ peer: connection.peer, code, reason: reason.toString('utf8').slice(0, 123) }, 'inbound peer connection closed');
      }
    }
    connection.closed = true;
    this.forgetInbound(connection);
  }

  private forgetInbound(connection: InboundConnection): void {
    connection.handshakeTimer?.cancel();
    connection.idleTimer?.cancel();
    connection.releaseBudget();
    this.inbound.delete(connection);
    if (connection.peer && this.inboundByPeer.get(connection.peer) === connection) this.inboundByPeer.delete(connection.peer);
  }

  private penalizeConnection(connection: InboundConnection, reason: string): void {
    if (connection.closed) return;
    this.counters.penalties++;
    const now = this.now();
    connection.penalties = connection.penalties.filter((t) => now - t < this.settings.penaltyWindowMs);
    connection.penalties.push(now);
    if (connection.penalties.length >= this.settings.penaltyThreshold) {
      this.counters.penalizedClosures++;
      this.log.warn({ peer: connection.peer, badFrames: connection.penalties.length, windowMs: this.settings.penaltyWindowMs, last: reason }, 'closing a peer connection that keeps sending bad frames');
      this.closeInbound(connection, 'too many bad frames');
    }
  }

  // ——— client side ———

  private linkFor(peer: NodeId): OutboundLink {
    let link = this.links.get(peer);
    if (!link) {
      link = new OutboundLink(peer);
      this.links.set(peer, link);
    }
    return link;
  }

  private connect(link: OutboundLink): void {
    link.phase = 'connecting';
    this.counters.connectAttempts++;
    const url = peerUrl(link.peer);
    if (url === undefined) {
      // Handlers must not run inside send(), which may have called us.
      this.env.scheduler.defer(() => this.linkLost(link, undefined, 'not a host:port address'));
      return;
    }
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, {
        perMessageDeflate: false,
        maxPayload: HANDSHAKE_MAX_BYTES,
        handshakeTimeout: this.settings.handshakeTimeoutMs,
        followRedirects: false,
        ...(this.localAddress !== undefined ? { localAddress: this.localAddress } : {}),
      });
    } catch (error) {
      this.env.scheduler.defer(() => this.linkLost(link, undefined, error instanceof Error ? error.message : String(error)));
      return;
    }
    link.socket = ws;
    const handshake = new ClientHandshake({ clusterName: this.clusterName, secret: this.secret, localNode: this.localNode, random: this.env.random }, link.peer);
    link.handshakeTimer = this.env.scheduler.setTimer(this.settings.handshakeTimeoutMs, () => {
      if (link.socket !== ws || link.phase !== 'connecting') return;
      this.counters.rejectedHandshakes++;
      this.log.warn({ peer: link.peer, reason: 'handshake timeout' }, 'peer did not complete the handshake in time');
      this.abandon(link, ws, 'handshake timeout');
    });
    ws.on('open', () => {
      if (link.socket === ws) ws.send(handshake.hello(), { binary: true });
    });
    ws.on('message', (data, isBinary) => {
      if (link.socket !== ws || this.closing) return;
      if (link.phase !== 'connecting') {
        this.log.warn({ peer: link.peer }, 'peer spoke on our outbound link after the handshake; closing it');
        this.abandon(link, ws, 'malformed handshake');
        return;
      }
      let step;
      try {
        if (!isBinary) throw new HandshakeRefused('malformed handshake', 'text message');
        step = handshake.receive(toBuffer(data));
      } catch (error) {
        const refusal = error instanceof HandshakeRefused ? error : new HandshakeRefused('malformed handshake', String(error));
        this.counters.rejectedHandshakes++;
        this.log.warn({ peer: link.peer, reason: refusal.reason, detail: refusal.message }, `refused a peer: ${refusal.reason}`);
        this.abandon(link, ws, refusal.reason);
        return;
      }
      if (step.reply) ws.send(step.reply, { binary: true });
      if (step.done) this.linkUp(link);
    });
    ws.on('pong', () => {
      if (link.socket === ws) link.lastPongMs = this.now();
    });
    ws.on('error', (error) => {
      if (link.socket === ws) this.log.debug({ peer: link.peer, err: error }, 'peer connection error');
    });
    ws.on('close', (code, reason) => {
      if (link.socket !== ws || this.closing) return;
      const failure = handshakeFailureOf(code);
      if (failure && link.phase === 'connecting') {
        this.counters.rejectedHandshakes++;
        this.log.warn({ peer: link.peer, reason: failure }, `peer refused this node: ${failure}`);
      } else if (code === PEER_CLOSE_CODES['too many bad frames']) {
        this.log.warn({ peer: link.peer, reason: 'too many bad frames' }, 'peer closed our link for sending bad frames');
      }
      this.linkLost(link, ws, failure ?? `closed (${code}${reason.byteLength ? ` ${reason.toString('utf8').slice(0, 123)}` : ''})`);
    });
  }

  private linkUp(link: OutboundLink): void {
    link.handshakeTimer?.cancel();
    link.handshakeTimer = undefined;
    link.phase = 'up';
    link.failures = 0;
    link.lastPongMs = this.now();
    this.schedulePing(link);
    if (link.reported === 'down') this.counters.reconnects++;
    this.log.debug({ peer: link.peer }, 'peer link up');
    this.report(link, 'up');
    this.scheduleFlush(link);
  }

  private schedulePing(link: OutboundLink): void {
    link.pingTimer = this.env.scheduler.setTimer(this.settings.pingIntervalMs, () => {
      const ws = link.socket;
      if (!ws || link.phase !== 'up' || this.closing) return;
      const silentMs = this.now() - link.lastPongMs;
      if (silentMs > this.settings.pingTimeoutMs) {
        this.log.warn({ peer: link.peer, silentMs: Math.round(silentMs), timeoutMs: this.settings.pingTimeoutMs }, 'peer silent past its ping timeout; link down');
        ws.terminate();
        this.linkLost(link, ws, 'ping timeout');
        return;
      }
      try {
        ws.ping();
      } catch {
        // A socket that cannot take a ping is closing; its close event reports it.
      }
      this.schedulePing(link);
    });
  }

  /** Closes our outbound socket with a reason the peer will log, and reports the link lost. */
  private abandon(link: OutboundLink, ws: WebSocket, reason: PeerCloseReason): void {
    try {
      ws.close(PEER_CLOSE_CODES[reason], reason);
    } catch {
      ws.terminate();
    }
    this.env.scheduler.setTimer(CLOSE_GRACE_MS, () => ws.terminate());
    this.linkLost(link, ws, reason);
  }

  private linkLost(link: OutboundLink, ws: WebSocket | undefined, why: string): void {
    if (this.closing || link.socket !== ws) return;
    link.socket = undefined;
    link.handshakeTimer?.cancel();
    link.pingTimer?.cancel();
    link.drainTimer?.cancel();
    link.handshakeTimer = link.pingTimer = link.drainTimer = undefined;
    if (link.queue.length > 0) this.drop(link, link.queue.length);
    link.queue = [];
    link.queuedBytes = 0;
    if (link.reported !== 'down') this.log.info({ peer: link.peer, reason: why }, 'peer link down');
    link.failures++;
    this.scheduleRetry(link);
    this.report(link, 'down');
  }

  private scheduleRetry(link: OutboundLink): void {
    if (!this.wanted(link)) {
      link.phase = 'idle';
      return;
    }
    link.phase = 'retrying';
    const ceiling = Math.min(this.settings.maxBackoffMs, this.settings.minBackoffMs * 2 ** Math.min(link.failures - 1, 30));
    // Jitter spreads the reconnects of many nodes after a shared outage.
    const delay = ceiling / 2 + this.env.random.next() * (ceiling / 2);
    link.retryTimer = this.env.scheduler.setTimer(delay, () => {
      link.retryTimer = undefined;
      if (this.closing || link.phase !== 'retrying') return;
      if (this.wanted(link)) this.connect(link);
      else link.phase = 'idle';
    });
  }

  /** Someone sent to the peer lately, or it talks to us: keep its link alive. */
  private wanted(link: OutboundLink): boolean {
    return this.now() - link.lastSendMs < this.settings.retryWindowMs || this.inboundByPeer.has(link.peer);
  }

  private scheduleFlush(link: OutboundLink): void {
    if (link.flushScheduled) return;
    link.flushScheduled = true;
    this.env.scheduler.defer(() => {
      link.flushScheduled = false;
      this.flush(link);
    });
  }

  private flush(link: OutboundLink): void {
    const ws = link.socket;
    if (this.closing || link.phase !== 'up' || !ws || link.queue.length === 0) return;
    const frames = link.queue;
    let next = 0;
    while (next < frames.length) {
      if (ws.bufferedAmount > this.settings.maxBufferedBytes) {
        this.waitForDrain(link);
        break;
      }
      let end = next;
      let bytes = 0;
      do {
        bytes += frames[end]!.byteLength;
        end++;
      } while (end < frames.length && end - next < this.settings.maxFramesPerMessage && bytes + frames[end]!.byteLength <= this.settings.maxMessageBytes);
      const chunk = frames.slice(next, end);
      const message = encodeBatch(chunk);
      try {
        ws.send(message, { binary: true, compress: false });
      } catch (error) {
        this.log.debug({ peer: link.peer, err: error }, 'send on a closing peer socket');
        return;
      }
      next = end;
      link.queuedBytes -= bytes;
      link.framesSent += chunk.length;
      this.counters.framesSent += chunk.length;
      this.counters.messagesSent++;
      this.counters.bytesSent += message.byteLength;
    }
    link.queue = next === frames.length ? [] : frames.slice(next);
  }

  private waitForDrain(link: OutboundLink): void {
    if (link.drainTimer) return;
    link.drainTimer = this.env.scheduler.setTimer(DRAIN_POLL_MS, () => {
      link.drainTimer = undefined;
      this.flush(link);
    });
  }

  // ——— shared ———

  private drop(link: OutboundLink, count: number): void {
    link.framesDropped += count;
    this.counters.framesDropped += count;
  }

  private report(link: OutboundLink, state: LinkState): void {
    if (link.reported === state || this.closing) return;
    link.reported = state;
    for (const handler of this.linkHandlers) {
      try {
        handler(link.peer, state);
      } catch (error) {
        this.log.error({ err: error, peer: link.peer }, 'link-state handler threw');
      }
    }
  }

  private now(): number {
    return this.env.clock.monotonicMs();
  }

  stats(): WsTransportStats {
    const peers: Record<string, PeerLinkStats> = {};
    const names = new Set<NodeId>([...this.links.keys(), ...this.inboundByPeer.keys()]);
    for (const peer of names) {
      const link = this.links.get(peer);
      const inbound = this.inboundByPeer.get(peer);
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
    return { ...this.counters, peers };
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
    for (const link of this.links.values()) {
      link.retryTimer?.cancel();
      link.handshakeTimer?.cancel();
      link.pingTimer?.cancel();
      link.drainTimer?.cancel();
      link.queue = [];
      link.queuedBytes = 0;
      if (link.socket) closeSocket(link.socket);
      link.socket = undefined;
    }
    for (const connection of [...this.inbound]) {
      connection.closed = true;
      this.forgetInbound(connection);
      closeSocket(connection.socket);
    }
    await Promise.all(closed);
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    if (this.ownServer) {
      const server = this.ownServer;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
  }
}
