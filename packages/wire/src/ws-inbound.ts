import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Env, Logger, NodeId, Timer } from '@chorus/core';
import WebSocket, { WebSocketServer } from 'ws';
import { decodeBatch } from './batch.js';
import { HandshakeRefused } from './errors.js';
import { HANDSHAKE_MAX_BYTES, PEER_CLOSE_CODES, type PeerCloseReason, ServerHandshake, handshakeFailureOf } from './handshake.js';
import { PEER_PATH, sourceOf } from './ws-peer-address.js';
import { CLOSE_GRACE_MS, type Counters, type LinkContext, type Settings, toBuffer } from './ws-shared.js';

/** Everything a handshake needs fits in a few hundred bytes; a stranger gets this much of our memory and no more. */
const PRE_AUTH_MAX_BYTES = 4 * HANDSHAKE_MAX_BYTES;

export class InboundConnection {
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

/**
 * The server side of the transport: takes `/peer` upgrades, runs their
 * handshakes within a budget, and delivers the frames of authenticated
 * connections. A peer's frames arrive only on the connection it opened.
 */
export class InboundConnections {
  private readonly env: Env;
  private readonly log: Logger;
  private readonly settings: Settings;
  private readonly counters: Counters;
  private readonly wss: WebSocketServer;
  private readonly inboundByPeer = new Map<NodeId, InboundConnection>();
  private readonly inbound = new Set<InboundConnection>();
  private pending = 0;
  /** Handshakes in progress per source address; an entry goes when its count falls to zero. */
  private readonly pendingBySource = new Map<string, number>();

  constructor(
    private readonly ctx: LinkContext,
    private readonly frameHandlers: ReadonlyArray<(from: NodeId, frame: Uint8Array) => void>,
    /** Called when a peer has authenticated a connection to us. */
    private readonly peerConnected: (peer: NodeId) => void,
  ) {
    this.env = ctx.env;
    this.log = ctx.log;
    this.settings = ctx.settings;
    this.counters = ctx.counters;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.settings.maxPayloadBytes, perMessageDeflate: false, clientTracking: false });
    this.wss.on('error', (error) => this.log.warn({ err: error }, 'peer WebSocket server error'));
  }

  get pendingHandshakes(): number {
    return this.pending;
  }

  /** Whether the peer has an authenticated connection to this node. */
  has(peer: NodeId): boolean {
    return this.inboundByPeer.has(peer);
  }

  connectionFrom(peer: NodeId): InboundConnection | undefined {
    return this.inboundByPeer.get(peer);
  }

  peers(): IterableIterator<NodeId> {
    return this.inboundByPeer.keys();
  }

  penalize(peer: NodeId): void {
    const connection = this.inboundByPeer.get(peer);
    if (connection) this.penalizeConnection(connection, 'bad frame');
  }

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
    if (this.ctx.tls !== undefined && !this.tlsAccepted(request, socket)) return true;
    // Cut on arrival, before ws does any work: each source gets a share of the slots, so one flooding address cannot hold them all.
    const source = sourceOf(request.socket.remoteAddress);
    const fromSource = this.pendingBySource.get(source) ?? 0;
    if (fromSource >= this.settings.maxPendingHandshakesPerSource) {
      this.log.debug({ source, pending: fromSource }, 'too many peer handshakes in progress from one address; cut a new connection');
      this.counters.rejectedHandshakes++;
      this.counters.sourceLimited++;
      socket.destroy();
      return true;
    }
    if (this.pending >= this.settings.maxPendingHandshakes) {
      this.log.debug({ source, pending: this.pending }, 'too many peer handshakes in progress; cut a new connection');
      this.counters.rejectedHandshakes++;
      socket.destroy();
      return true;
    }
    this.pending++;
    this.pendingBySource.set(source, fromSource + 1);
    let budgetHeld = true;
    const releaseBudget = () => {
      if (budgetHeld) {
        budgetHeld = false;
        this.pending--;
        const left = (this.pendingBySource.get(source) ?? 1) - 1;
        if (left > 0) this.pendingBySource.set(source, left);
        else this.pendingBySource.delete(source);
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

  /**
   * With TLS on, a peer connection must come over TLS with a client
   * certificate the cluster CA signed; the server asks every connection for
   * one but lets TLS complete without it, since clients on the same port have
   * none. Refused before the budget of handshakes is touched.
   */
  private tlsAccepted(request: IncomingMessage, socket: Duplex): boolean {
    const tlsSocket = request.socket as Partial<TLSSocket>;
    let reason: string | undefined;
    if (tlsSocket.encrypted !== true) reason = 'not over TLS';
    else if (tlsSocket.authorized !== true) reason = String(tlsSocket.authorizationError ?? 'no client certificate');
    if (reason === undefined) return true;
    this.counters.tlsRefused++;
    this.counters.rejectedHandshakes++;
    this.log.warn({ remote: request.socket.remoteAddress, reason }, 'refused a peer connection without a certificate of the cluster CA');
    socket.end('HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    return false;
  }

  private accept(ws: WebSocket, remote: string, stopCounting: () => void, releaseBudget: () => void): void {
    if (this.closing) {
      ws.terminate();
      return;
    }
    const handshake = new ServerHandshake({ clusterName: this.ctx.clusterName, secret: this.ctx.secret, localNode: this.ctx.localNode, random: this.env.random });
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
    this.peerConnected(step.peer);
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

  /** Forgets every connection and hands its socket to `closeSocket`. */
  closeAll(closeSocket: (ws: WebSocket) => void): void {
    for (const connection of [...this.inbound]) {
      connection.closed = true;
      this.forgetInbound(connection);
      closeSocket(connection.socket);
    }
  }

  closeServer(): Promise<void> {
    return new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  private get closing(): boolean {
    return this.ctx.isClosing();
  }

  private now(): number {
    return this.env.clock.monotonicMs();
  }
}
