import type { Env, LinkState, Logger, NodeId, Timer } from '@chorus/core';
import WebSocket from 'ws';
import { encodeBatch } from './batch.js';
import { HandshakeRefused } from './errors.js';
import { ClientHandshake, HANDSHAKE_MAX_BYTES, PEER_CLOSE_CODES, type PeerCloseReason, handshakeFailureOf } from './handshake.js';
import { peerUrl } from './ws-peer-address.js';
import { CLOSE_GRACE_MS, type Counters, type LinkContext, type Settings, toBuffer } from './ws-shared.js';

/** How often a peer whose socket buffer is full is looked at again. */
const DRAIN_POLL_MS = 5;
const NO_KINDS: ReadonlySet<string> = new Set();

export type OutboundPhase = 'idle' | 'connecting' | 'up' | 'retrying';

export class OutboundLink {
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
  /** The peer at the other end of the link now up said it reads positional frames. */
  positionalFrames = false;
  /** The later message kinds (see the handshake) that peer said it reads. */
  laterKinds: ReadonlySet<string> = NO_KINDS;
  constructor(readonly peer: NodeId) {}
}

/**
 * The client side of the transport: one outbound link per peer, which this
 * node sends on. Dials, reconnects with backoff, queues and coalesces frames
 * and holds back while a peer's socket is full; its link state is what the
 * transport reports.
 */
export class OutboundLinks {
  private readonly env: Env;
  private readonly log: Logger;
  private readonly settings: Settings;
  private readonly counters: Counters;
  private readonly links = new Map<NodeId, OutboundLink>();

  constructor(
    private readonly ctx: LinkContext,
    /** Address outgoing connections bind to; none when undefined. */
    private readonly localAddress: string | undefined,
    private readonly linkHandlers: ReadonlyArray<(peer: NodeId, state: LinkState) => void>,
    /** Whether the peer has an authenticated connection to this node. */
    private readonly hasInbound: (peer: NodeId) => boolean,
  ) {
    this.env = ctx.env;
    this.log = ctx.log;
    this.settings = ctx.settings;
    this.counters = ctx.counters;
  }

  linkTo(peer: NodeId): OutboundLink | undefined {
    return this.links.get(peer);
  }

  peers(): IterableIterator<NodeId> {
    return this.links.keys();
  }

  /** Frames queued before a link is up are sent as maps: the peer's answer is not known yet. */
  readsPositionalFrames(peer: NodeId): boolean {
    const link = this.links.get(peer);
    return link !== undefined && link.phase === 'up' && link.positionalFrames;
  }

  /** Whether the peer at the other end of the link now up said it reads `kind`, one of the handshake's later kinds. */
  readsKind(peer: NodeId, kind: string): boolean {
    const link = this.links.get(peer);
    return link !== undefined && link.phase === 'up' && link.laterKinds.has(kind);
  }

  send(to: NodeId, frame: Uint8Array): void {
    if (this.closing) return;
    const link = this.linkFor(to);
    // Once per burst: the frames queued behind a scheduled flush were sent in the same tick, at the same time.
    if (!link.flushScheduled) link.lastSendMs = this.now();
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

  /** A peer that reaches us is alive: retry our own link to it now rather than at the end of a backoff. */
  peerConnected(peer: NodeId): void {
    const link = this.links.get(peer);
    if (link && link.phase === 'retrying') {
      link.retryTimer?.cancel();
      link.retryTimer = undefined;
      link.failures = 0;
      this.connect(link);
    }
  }

  /** Stops every link and hands its socket to `closeSocket`. */
  closeAll(closeSocket: (ws: WebSocket) => void): void {
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
  }

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
    const tls = this.ctx.tls;
    const url = peerUrl(link.peer, tls !== undefined);
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
        // A zero masking key: ws then neither copies nor XORs the payload, on either side. Masking guards
        // proxies against pages of a browser that forge frames; nothing here runs a page's script.
        generateMask: zeroMask,
        // The peer's certificate must be signed by the cluster CA and name the address dialed (Node's default identity check).
        ...(tls !== undefined ? { ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: true } : {}),
        ...(this.localAddress !== undefined ? { localAddress: this.localAddress } : {}),
      });
    } catch (error) {
      this.env.scheduler.defer(() => this.linkLost(link, undefined, error instanceof Error ? error.message : String(error)));
      return;
    }
    link.socket = ws;
    const handshake = new ClientHandshake({ clusterName: this.ctx.clusterName, secret: this.ctx.secret, localNode: this.ctx.localNode, random: this.env.random }, link.peer);
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
      if (step.done) {
        link.positionalFrames = step.positionalFrames === true;
        link.laterKinds = step.laterKinds ?? NO_KINDS;
        this.linkUp(link);
      }
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
    link.positionalFrames = false;
    link.laterKinds = NO_KINDS;
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
    return this.now() - link.lastSendMs < this.settings.retryWindowMs || this.hasInbound(link.peer);
  }

  private scheduleFlush(link: OutboundLink): void {
    if (link.flushScheduled) return;
    link.flushScheduled = true;
    this.env.scheduler.deferIo(() => {
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

  private get closing(): boolean {
    return this.ctx.isClosing();
  }
}

/** Fills a frame's masking key with zeros (see where the socket is opened). */
function zeroMask(mask: Uint8Array): void {
  mask.fill(0);
}
