import { createServer, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { ActorSystem, type ReplyTo } from '@chorus/actors';
import { type LinkState, type NodeId, SeededRandom, nodeId, realEnv } from '@chorus/core';
import { describeTransportCompliance } from '@chorus/transport-compliance';
import { Type } from '@sinclair/typebox';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { ServerHandshake } from '../src/handshake.js';
import { MESSAGE_KINDS, type WsTransport, createWsTransport, wireCodec } from '../src/index.js';
import { CLUSTER, SECRET, TEST_TIMEOUT_MS, TIMINGS, WAIT_MS, canListenOn, closeHttp, freePort, listenHttp, recordingLogger, startNode, until } from './net-helpers.js';

describeTransportCompliance('ws', () => {
  const nodes: Array<WsTransport | undefined> = [];
  const ports: number[] = [];
  let nobody: NodeId | undefined;
  return {
    get nobody() {
      return nobody!;
    },
    async create(count) {
      nobody ??= nodeId(`127.0.0.1:${await freePort()}`);
      for (let i = 0; i < count; i++) {
        const transport = await startNode();
        nodes.push(transport);
        ports.push(transport.listening!.port);
      }
      return nodes.filter((n): n is WsTransport => n !== undefined);
    },
    async kill(index) {
      await nodes[index]?.close();
      nodes[index] = undefined;
    },
    async revive(index) {
      const transport = await startNode({ port: ports[index]! });
      nodes[index] = transport;
      return transport;
    },
    until,
    async dispose() {
      await Promise.all(nodes.map((n) => n?.close()));
    },
  };
});

const text = (s: string) => new TextEncoder().encode(s);

describe('ws transport', { timeout: TEST_TIMEOUT_MS }, () => {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  /** A peer that completes the handshake by hand, then does what `authenticated` makes it do. */
  const fakePeer = async (port: number, node: NodeId, seed: number, options: { autoPong?: boolean }, authenticated: (ws: WebSocket) => void) => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port, path: '/peer', ...options });
    cleanups.push(() => new Promise((resolve) => (wss.clients.forEach((c) => c.terminate()), wss.close(resolve))));
    await new Promise((resolve) => wss.once('listening', resolve));
    wss.on('connection', (ws) => {
      const handshake = new ServerHandshake({ clusterName: CLUSTER, secret: Buffer.from(SECRET), localNode: node, random: new SeededRandom(seed) });
      let done = false;
      ws.on('message', (data) => {
        if (done) return;
        const step = handshake.receive(data as Buffer);
        if (step.reply) ws.send(step.reply);
        done = step.done;
        if (done) authenticated(ws);
      });
    });
  };
  const started = async (...args: Parameters<typeof startNode>) => {
    const t = await startNode(...args);
    cleanups.push(() => t.close());
    return t;
  };
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  }, TEST_TIMEOUT_MS);

  it('attaches to an existing HTTP server and leaves other upgrade paths to their own listeners', async () => {
    const { server, node } = await listenHttp();
    cleanups.push(() => closeHttp(server));
    const others: string[] = [];
    server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
      if (req.url === '/client') {
        others.push(req.url);
        socket.end('HTTP/1.1 418 Teapot\r\n\r\n');
      }
    });
    const b = createWsTransport({ env: realEnv(node), clusterName: CLUSTER, secret: SECRET, server, ...TIMINGS });
    cleanups.push(() => b.close());
    const a = await started();
    const got: string[] = [];
    b.onFrame((from, f) => got.push(`${from} ${Buffer.from(f).toString()}`));
    a.send(b.localNode, text('hi'));
    expect(await until(() => got.length === 1)).toBe(true);
    expect(got).toEqual([`${a.localNode} hi`]);

    const client = new WebSocket(`ws://${node}/client`);
    const failed = new Promise((resolve) => client.on('error', resolve));
    await failed;
    expect(others).toEqual(['/client']);
    expect(b.stats().rejectedHandshakes).toBe(0);
  });

  it('carries a tell and an ask between two ActorSystems with the wire codec', async () => {
    const kinds = {
      ...MESSAGE_KINDS,
      'test.echo': { id: 900, schema: Type.Object({ text: Type.String() }, { additionalProperties: false }), reply: 'test.echoed' },
      'test.echoed': { id: 901, schema: Type.Object({ text: Type.String() }, { additionalProperties: false }) },
    };
    // A kind that is told, not asked: a told message of an asked kind would be refused.
    type Syn = { type: 'gossip.shutdown'; node: string; generation: number };
    type Echo = { type: 'test.echo'; text: string; replyTo: ReplyTo<{ type: 'test.echoed'; text: string }> };
    const a = await started();
    const b = await started();
    const systemA = new ActorSystem({ env: realEnv(a.localNode), transport: a, codec: wireCodec({ kinds }) });
    const systemB = new ActorSystem({ env: realEnv(b.localNode), transport: b, codec: wireCodec({ kinds }) });
    cleanups.push(() => systemA.shutdown(), () => systemB.shutdown());
    const heard: Syn[] = [];
    systemB.spawn<Syn>('gossiper', () => ({ receive: (m) => void heard.push(m) }));
    systemB.spawn<Echo>('echo', () => ({ receive: (m, ctx) => ctx.reply(m.replyTo, { type: 'test.echoed', text: m.text.toUpperCase() }) }));

    const syn: Syn = { type: 'gossip.shutdown', node: a.localNode, generation: 1 };
    systemA.ref<Syn>({ node: b.localNode, name: 'gossiper' }).tell(syn);
    const answer = await systemA.ref<Echo>({ node: b.localNode, name: 'echo' }).ask<{ type: 'test.echoed'; text: string }>((replyTo) => ({ type: 'test.echo', text: 'over the wire', replyTo }), WAIT_MS);
    expect(answer).toEqual({ type: 'test.echoed', text: 'OVER THE WIRE' });
    expect(await until(() => heard.length === 1)).toBe(true);
    expect(heard[0]).toEqual(syn);
    // The first frames went out before the handshake told what the peer reads, as maps; the link up, they go positional.
    expect(a.readsPositionalFrames(b.localNode)).toBe(true);
    const again = await systemA.ref<Echo>({ node: b.localNode, name: 'echo' }).ask<{ type: 'test.echoed'; text: string }>((replyTo) => ({ type: 'test.echo', text: 'positional', replyTo }), WAIT_MS);
    expect(again).toEqual({ type: 'test.echoed', text: 'POSITIONAL' });
  });

  it('coalesces the frames of one tick into few WebSocket messages, in order', async () => {
    const a = await started();
    const b = await started();
    const got: number[] = [];
    b.onFrame((_from, f) => got.push(Buffer.from(f).readUInt32BE(0)));
    a.send(b.localNode, new Uint8Array(4)); // opens the link
    expect(await until(() => got.length === 1)).toBe(true);
    const before = a.stats().messagesSent;
    for (let i = 1; i <= 1_000; i++) {
      const frame = Buffer.alloc(16);
      frame.writeUInt32BE(i);
      a.send(b.localNode, frame);
    }
    expect(await until(() => got.length === 1_001)).toBe(true);
    expect(got).toEqual(Array.from({ length: 1_001 }, (_, i) => i));
    const messages = a.stats().messagesSent - before;
    expect(messages).toBeLessThanOrEqual(2);
    expect(b.stats().framesReceived).toBe(1_001);
  });

  it('splits a burst into messages of bounded size', async () => {
    const a = await started({ maxMessageBytes: 64 * 1024 });
    const b = await started();
    let count = 0;
    b.onFrame(() => count++);
    for (let i = 0; i < 64; i++) a.send(b.localNode, new Uint8Array(16 * 1024));
    expect(await until(() => count === 64)).toBe(true);
    expect(a.stats().messagesSent).toBeGreaterThanOrEqual(16);
  });

  it('reports a silent peer down once its ping timeout has passed', async () => {
    const port = await freePort();
    const silentNode = nodeId(`127.0.0.1:${port}`);
    // A peer that authenticates correctly, then stops answering pings.
    await fakePeer(port, silentNode, 1, { autoPong: false }, () => {});
    const logger = recordingLogger();
    const pingTimeoutMs = 300;
    const a = await started({ logger, pingIntervalMs: 50, pingTimeoutMs });
    const links: LinkState[] = [];
    a.onLinkState((peer, state) => peer === silentNode && links.push(state));
    a.send(silentNode, text('anyone?'));
    expect(await until(() => links.includes('down'))).toBe(true);
    expect(links.slice(0, 2)).toEqual(['up', 'down']);
    // How late a busy machine notices the silence varies; what must hold is why the link went down, and that it was not before the timeout.
    expect(logger.lines.find((l) => l.msg === 'peer link down')?.obj).toMatchObject({ peer: silentNode, reason: 'ping timeout' });
    const verdict = logger.lines.find((l) => l.level === 'warn' && /ping timeout/.test(l.msg ?? ''));
    expect(verdict?.obj).toMatchObject({ peer: silentNode, timeoutMs: pingTimeoutMs });
    expect(verdict!.obj.silentMs).toBeGreaterThanOrEqual(pingTimeoutMs);
  });

  it('keeps memory bounded when a peer stops reading: frames are dropped and counted', async () => {
    const port = await freePort();
    const stalledNode = nodeId(`127.0.0.1:${port}`);
    await fakePeer(port, stalledNode, 2, {}, (ws) => ws.pause()); // reads nothing more: the kernel buffers fill, then ours
    const limit = 1024 * 1024;
    // The paused peer answers no pings either; the default timings outlast the test, so the link stays up.
    const a = await started({ maxBufferedBytes: limit, maxQueuedBytes: limit });
    const links: LinkState[] = [];
    a.onLinkState((_peer, state) => links.push(state));
    a.send(stalledNode, text('hello'));
    expect(await until(() => links.includes('up'))).toBe(true);
    const frame = new Uint8Array(64 * 1024);
    let peakQueued = 0;
    let peakBuffered = 0;
    for (let round = 0; round < 200 && a.stats().framesDropped === 0; round++) {
      for (let i = 0; i < 16; i++) a.send(stalledNode, frame);
      await new Promise((resolve) => setTimeout(resolve, 2));
      const peer = a.stats().peers[stalledNode]!;
      peakQueued = Math.max(peakQueued, peer.queuedBytes);
      peakBuffered = Math.max(peakBuffered, peer.bufferedBytes);
    }
    const stats = a.stats();
    expect(stats.framesDropped).toBeGreaterThan(0);
    expect(stats.peers[stalledNode]!.framesDropped).toBe(stats.framesDropped);
    expect(peakQueued).toBeLessThanOrEqual(limit);
    // One 1 MiB message can be in flight above the limit when the check passes.
    expect(peakBuffered).toBeLessThanOrEqual(limit + 1024 * 1024 + 64 * 1024);
  });

  it('reconnects in the background, so a restarted peer comes back up with nobody sending', async () => {
    const a = await started();
    let b: WsTransport | undefined = await started();
    const port = b.listening!.port;
    const links: LinkState[] = [];
    a.onLinkState((peer, state) => peer === b!.localNode && links.push(state));
    a.send(b.localNode, text('once'));
    expect(await until(() => links.includes('up'))).toBe(true);
    await b.close();
    expect(await until(() => links.at(-1) === 'down')).toBe(true);
    // Nobody listens on the port now: let a fail to reconnect a few times before the peer comes back.
    const attempts = a.stats().connectAttempts;
    expect(await until(() => a.stats().connectAttempts >= attempts + 2)).toBe(true);
    expect(links.at(-1)).toBe('down');
    b = await started({ port });
    expect(await until(() => links.at(-1) === 'up')).toBe(true);
    expect(links).toEqual(['up', 'down', 'up']);
    expect(a.stats().reconnects).toBe(1);
    const got: string[] = [];
    b.onFrame((_from, f) => got.push(Buffer.from(f).toString()));
    a.send(b.localNode, text('again'));
    expect(await until(() => got.includes('again'))).toBe(true);
  });

  it('closes an inbound connection that keeps sending bad frames, and the sender reconnects', async () => {
    const logger = recordingLogger();
    const a = await started();
    const b = await started({ logger, penaltyThreshold: 3 });
    const links: LinkState[] = [];
    a.onLinkState((_peer, state) => links.push(state));
    let got = 0;
    b.onFrame(() => got++);
    a.send(b.localNode, text('x'));
    expect(await until(() => got === 1)).toBe(true);
    b.penalize!(a.localNode);
    b.penalize!(a.localNode);
    expect(links).toEqual(['up']);
    b.penalize!(a.localNode);
    expect(await until(() => links.length >= 2)).toBe(true);
    expect(links[1]).toBe('down');
    expect(b.stats().penalizedClosures).toBe(1);
    expect(logger.lines.some((l) => l.level === 'warn' && /keeps sending bad frames/.test(l.msg ?? ''))).toBe(true);
    expect(await until(() => links.at(-1) === 'up')).toBe(true);
  });

  it('drops frames over the frame limit on send', async () => {
    const a = await started({ maxFrameBytes: 1024 });
    const b = await started();
    const sizes: number[] = [];
    b.onFrame((_f, frame) => sizes.push(frame.byteLength));
    a.send(b.localNode, new Uint8Array(2048));
    a.send(b.localNode, new Uint8Array(1024));
    expect(await until(() => sizes.length === 1)).toBe(true);
    expect(sizes).toEqual([1024]);
    expect(a.stats().framesDropped).toBe(1);
  });

  it('binds outgoing connections to its own listen host', async ({ skip }) => {
    skip(!(await canListenOn('127.0.0.2')), "no 127.0.0.2 on this machine's loopback");
    const probe = createServer();
    const seenFrom: string[] = [];
    probe.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
      seenFrom.push(req.socket.remoteAddress ?? '');
      socket.destroy();
    });
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => closeHttp(probe));
    const target = nodeId(`127.0.0.1:${(probe.address() as { port: number }).port}`);
    const a = await started({ localNode: nodeId(`127.0.0.2:${await freePort()}`) });
    a.send(target, text('x'));
    expect(await until(() => seenFrom.length > 0)).toBe(true);
    expect(seenFrom[0]).toBe('127.0.0.2');
  });

  it('reports nothing and sends nothing after close', async () => {
    const a = await started();
    const b = await started();
    const events: string[] = [];
    a.onLinkState((peer, state) => events.push(`${peer} ${state}`));
    a.onFrame(() => events.push('frame'));
    const bLinks: LinkState[] = [];
    b.onLinkState((peer, state) => peer === a.localNode && bLinks.push(state));
    const bGot: string[] = [];
    b.onFrame((_from, f) => bGot.push(Buffer.from(f).toString()));
    b.send(a.localNode, text('to a'));
    a.send(b.localNode, text('to b'));
    expect(await until(() => events.length === 2 && bGot.length === 1)).toBe(true);
    expect(events.sort()).toEqual([`${b.localNode} up`, 'frame']);
    const before = [...events];

    // Flushed on a later turn, so it reaches a while a is shutting down.
    b.send(a.localNode, text('during close'));
    // close() resolves once every socket of a has closed, so whatever the teardown could report has been reported by now.
    await a.close();
    expect(events).toEqual(before);

    // A send after close neither queues the frame nor dials: both would show in the stats at once.
    const stats = a.stats();
    a.send(b.localNode, text('late'));
    expect(a.stats()).toEqual(stats);

    // Once b has seen a go, any late socket event of the teardown has had its turn: still nothing from a, and nothing more at b.
    expect(await until(() => bLinks.includes('down'))).toBe(true);
    expect(events).toEqual(before);
    expect(bGot).toEqual(['to b']);
  });
});
