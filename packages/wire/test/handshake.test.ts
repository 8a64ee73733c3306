import { type NodeId, SeededRandom, nodeId } from '@chorus/core';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { encodeBatch } from '../src/batch.js';
import { ClientHandshake, NONCE_BYTES, PEER_CLOSE_CODES, ServerHandshake } from '../src/handshake.js';
import { HandshakeRefused, PEER_PROTOCOL_VERSION, type WsTransport } from '../src/index.js';
import { CLUSTER, SECRET, type LogLine, TEST_TIMEOUT_MS, WAIT_MS, recordingLogger, settles, startNode, until } from './net-helpers.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true });
const A = nodeId('127.0.0.1:7100');
const B = nodeId('127.0.0.1:7101');

function identity(node: NodeId, overrides: { secret?: string; clusterName?: string; seed?: number } = {}) {
  return { clusterName: overrides.clusterName ?? CLUSTER, secret: Buffer.from(overrides.secret ?? SECRET), localNode: node, random: new SeededRandom(overrides.seed ?? 1) };
}

/** Runs a whole handshake in memory; returns the messages exchanged, or the refusal. */
function converse(client: ClientHandshake, server: ServerHandshake): { wire: Uint8Array[]; peers: NodeId[] } {
  const wire: Uint8Array[] = [];
  const peers: NodeId[] = [];
  let toServer: Uint8Array | undefined = client.hello();
  while (toServer) {
    wire.push(toServer);
    const s = server.receive(toServer);
    if (s.done) peers.push(s.peer);
    if (!s.reply) break;
    wire.push(s.reply);
    const c = client.receive(s.reply);
    if (c.done) peers.push(c.peer);
    toServer = c.reply;
  }
  return { wire, peers };
}

function refusal(run: () => unknown): HandshakeRefused {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(HandshakeRefused);
    return error as HandshakeRefused;
  }
  throw new Error('handshake was accepted');
}

describe('handshake, in memory', { timeout: TEST_TIMEOUT_MS }, () => {
  it('authenticates both sides with the same secret and names each peer', () => {
    const { wire, peers } = converse(new ClientHandshake(identity(A), B), new ServerHandshake(identity(B, { seed: 2 })));
    expect(peers).toEqual([A, B]);
    expect(wire).toHaveLength(4);
    const secret = Buffer.from(SECRET);
    for (const message of wire) {
      expect(message.byteLength).toBeLessThan(512);
      expect(Buffer.from(message).includes(secret)).toBe(false);
    }
  });

  it('tells the dialing side whether the server reads positional frames; a server of an earlier build says nothing and gets maps', () => {
    const client = new ClientHandshake(identity(A), B);
    const server = new ServerHandshake(identity(B, { seed: 2 }));
    const hello = client.hello();
    const challenge = server.receive(hello).reply!;
    expect(packr.unpack(challenge)).toMatchObject({ t: 'challenge', positional: true, kinds: ['replica.batch'] });
    const done = server.receive(client.receive(challenge).reply!);
    const step = client.receive(done.reply!);
    expect(step).toMatchObject({ done: true, peer: B, positionalFrames: true });
    expect(step.done && [...step.laterKinds!]).toEqual(['replica.batch']);

    const withEarlierServer = new ClientHandshake(identity(A), B);
    const earlierServer = new ServerHandshake(identity(B, { seed: 3 }));
    const { positional: _, kinds: __, ...earlierChallenge } = packr.unpack(earlierServer.receive(withEarlierServer.hello()).reply!) as Record<string, unknown>;
    const auth = withEarlierServer.receive(packr.pack(earlierChallenge)).reply!;
    const earlier = withEarlierServer.receive(earlierServer.receive(auth).reply!);
    expect(earlier).toMatchObject({ done: true, peer: B, positionalFrames: false });
    expect(earlier.done && earlier.laterKinds!.size).toBe(0);
  });

  it('takes a challenge whose list of later kinds is malformed as listing none', () => {
    for (const kinds of ['replica.batch', [1, 2], Array.from({ length: 65 }, () => 'x'), ['x'.repeat(65)]]) {
      const client = new ClientHandshake(identity(A), B);
      const server = new ServerHandshake(identity(B, { seed: 4 }));
      const challenge = { ...(packr.unpack(server.receive(client.hello()).reply!) as Record<string, unknown>), kinds };
      const step = client.receive(server.receive(client.receive(packr.pack(challenge)).reply!).reply!);
      expect(step.done && step.laterKinds!.size).toBe(0);
    }
  });

  it('refuses a wrong secret, a wrong cluster name, another protocol version and a dialed id that is not the server', () => {
    expect(refusal(() => converse(new ClientHandshake(identity(A, { secret: 'other' }), B), new ServerHandshake(identity(B)))).reason).toBe('bad secret');
    expect(refusal(() => converse(new ClientHandshake(identity(A, { clusterName: 'other' }), B), new ServerHandshake(identity(B)))).reason).toBe('cluster name mismatch');
    expect(refusal(() => converse(new ClientHandshake(identity(A), nodeId('127.0.0.1:9999')), new ServerHandshake(identity(B)))).reason).toBe('node id mismatch');
    const hello = { t: 'hello', v: PEER_PROTOCOL_VERSION + 1, cluster: CLUSTER, node: A, to: B, nonce: new Uint8Array(NONCE_BYTES) };
    expect(refusal(() => new ServerHandshake(identity(B)).receive(packr.pack(hello))).reason).toBe('protocol version');
  });

  it('refuses a peer that claims to be this node, even one that knows the secret', () => {
    // The secret proves membership of the cluster, not which node: a connection claiming our own id could answer for us.
    const claim = refusal(() => converse(new ClientHandshake(identity(B), B), new ServerHandshake(identity(B, { seed: 2 }))));
    expect(claim.reason).toBe('node id mismatch');
    expect(claim.message).toContain('own id');
  });

  it('refuses a server that cannot prove the secret, even when it accepted ours', () => {
    const client = new ClientHandshake(identity(A), B);
    const server = new ServerHandshake(identity(B));
    const challenge = server.receive(client.hello()).reply!;
    const auth = client.receive(challenge).reply!;
    server.receive(auth);
    const forged = packr.pack({ t: 'ready', proof: new Uint8Array(32) });
    expect(refusal(() => client.receive(forged)).reason).toBe('bad secret');
  });

  it('answers every mutated or random handshake message with HandshakeRefused, nothing else', () => {
    const client = new ClientHandshake(identity(A), B);
    const hello = client.hello();
    const auth = (() => {
      const c = new ClientHandshake(identity(A), B);
      const s = new ServerHandshake(identity(B));
      return { server: s, bytes: c.receive(s.receive(c.hello()).reply!).reply! };
    })();
    const mutate = (frame: Uint8Array) =>
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }).map((edits) => {
        const copy = frame.slice();
        for (const [at, byte] of edits) copy[at % copy.length] = byte;
        return copy;
      });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 600 }), mutate(hello), mutate(auth.bytes)), (message) => {
        for (const server of [new ServerHandshake(identity(B))]) {
          try {
            server.receive(message);
          } catch (error) {
            expect(error).toBeInstanceOf(HandshakeRefused);
          }
        }
      }),
      { numRuns: 3_000 },
    );
    expect(refusal(() => new ServerHandshake(identity(B)).receive(new Uint8Array(5_000))).reason).toBe('malformed handshake');
  });
});

/** A raw WebSocket to a node's /peer path, recording how the node closes it. */
async function rawPeer(node: NodeId): Promise<{ ws: WebSocket; closed: Promise<number> }> {
  const ws = new WebSocket(`ws://${node}/peer`, { perMessageDeflate: false });
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  ws.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, closed };
}

const withReason = (lines: LogLine[], reason: string) => lines.filter((l) => l.level === 'warn' && l.obj.reason === reason);

describe('handshake over the network', { timeout: TEST_TIMEOUT_MS }, () => {
  const open: WsTransport[] = [];
  const raw: WebSocket[] = [];
  const started = async (...args: Parameters<typeof startNode>) => {
    const t = await startNode(...args);
    open.push(t);
    return t;
  };
  afterEach(async () => {
    for (const ws of raw.splice(0)) ws.terminate();
    await Promise.all(open.splice(0).map((t) => t.close()));
  }, TEST_TIMEOUT_MS);

  for (const [what, override, reason] of [
    ['a wrong secret', { secret: 'not the secret' }, 'bad secret'],
    ['a wrong cluster name', { clusterName: 'another-cluster' }, 'cluster name mismatch'],
  ] as const) {
    it(`refuses ${what}: both sides log '${reason}', the link is down, and retries stay refused`, async () => {
      const aLog = recordingLogger();
      const bLog = recordingLogger();
      const a = await started({ logger: aLog, ...override });
      const b = await started({ logger: bLog });
      const links: string[] = [];
      a.onLinkState((_peer, state) => links.push(state));
      let delivered = 0;
      b.onFrame(() => delivered++);
      a.send(b.localNode, new Uint8Array([1]));
      expect(await until(() => links.includes('down') && withReason(aLog.lines, reason).length > 0 && withReason(bLog.lines, reason).length > 0)).toBe(true);
      expect(await until(() => a.stats().rejectedHandshakes >= 2)).toBe(true); // it keeps retrying
      expect(links).toEqual(['down']);
      expect(delivered).toBe(0);
      expect(b.stats().rejectedHandshakes).toBeGreaterThan(0);
      expect(b.stats().peers[a.localNode]).toBeUndefined();
    });
  }

  it('accepts a peer with the right cluster and secret', async () => {
    const a = await started();
    const b = await started();
    const links: string[] = [];
    a.onLinkState((_peer, state) => links.push(state));
    a.send(b.localNode, new Uint8Array([1]));
    expect(await until(() => links.includes('up'))).toBe(true);
    expect(b.stats().peers[a.localNode]?.inbound).toBe(true);
    expect(a.stats().rejectedHandshakes + b.stats().rejectedHandshakes).toBe(0);
  });

  it('refuses another protocol version with its own close code and log line', async () => {
    const bLog = recordingLogger();
    const b = await started({ logger: bLog });
    const { ws, closed } = await rawPeer(b.localNode);
    raw.push(ws);
    ws.send(packr.pack({ t: 'hello', v: 99, cluster: CLUSTER, node: '127.0.0.1:1', to: b.localNode, nonce: new Uint8Array(NONCE_BYTES) }));
    expect(await closed).toBe(PEER_CLOSE_CODES['protocol version']);
    expect(withReason(bLog.lines, 'protocol version')).toHaveLength(1);
  });

  it('delivers no frame sent before authentication', async () => {
    const b = await started();
    let delivered = 0;
    b.onFrame(() => delivered++);
    const frames = encodeBatch([new Uint8Array([1, 2, 3])]);

    const first = await rawPeer(b.localNode);
    raw.push(first.ws);
    first.ws.send(frames);
    expect(await first.closed).toBe(PEER_CLOSE_CODES['malformed handshake']);

    // A correct hello, then frames instead of the proof.
    const second = await rawPeer(b.localNode);
    raw.push(second.ws);
    const client = new ClientHandshake(identity(nodeId('127.0.0.1:2')), b.localNode);
    second.ws.send(client.hello());
    second.ws.send(frames);
    second.ws.send(frames);
    expect(await second.closed).toBe(PEER_CLOSE_CODES['malformed handshake']);
    expect(delivered).toBe(0);
    expect(b.stats().framesReceived).toBe(0);
  });

  it('closes a handshake that stalls', async () => {
    const bLog = recordingLogger();
    const b = await started({ logger: bLog, handshakeTimeoutMs: 200 });
    const { ws, closed } = await rawPeer(b.localNode);
    raw.push(ws);
    ws.send(new ClientHandshake(identity(nodeId('127.0.0.1:3')), b.localNode).hello()); // and never the proof
    // The close code and the log line say it was the timeout that closed it; how soon after 200 ms depends on the machine.
    expect(await closed).toBe(PEER_CLOSE_CODES['handshake timeout']);
    expect(withReason(bLog.lines, 'handshake timeout')).toHaveLength(1);
  });

  it('survives garbage, oversized payloads, half-open and mutated handshakes, and keeps serving real peers (live fuzz)', async () => {
    // Short enough that half-open connections are closed within the test, long enough for the real handshakes below on a busy machine.
    const b = await started({ maxPendingHandshakes: 16, handshakeTimeoutMs: 1_000, penaltyThreshold: 5 });
    const a = await started();
    const got: string[] = [];
    b.onFrame((from, f) => got.push(`${from} ${Buffer.from(f).toString()}`));
    const random = new SeededRandom(42);
    const closes: Array<Promise<number>> = [];
    const connect = async () => {
      const peer = await rawPeer(b.localNode).catch(() => undefined); // cut before opening when over the handshake budget
      if (peer) {
        raw.push(peer.ws);
        closes.push(peer.closed);
      }
      return peer;
    };
    const hello = new ClientHandshake(identity(nodeId('127.0.0.1:4')), b.localNode).hello();

    // Random bytes, text, and mutated hellos, each on its own connection.
    for (let i = 0; i < 30; i++) {
      const peer = await connect();
      if (!peer) continue;
      const kind = i % 3;
      if (kind === 0) peer.ws.send(random.bytes(1 + random.int(2_000)));
      else if (kind === 1) peer.ws.send(`garbage ${i}`);
      else {
        const copy = Buffer.from(hello);
        for (let e = 0; e < 1 + random.int(4); e++) copy[random.int(copy.length)] = random.int(256);
        peer.ws.send(copy);
      }
    }
    // A message over the pre-authentication limit, and one over maxPayload.
    for (const size of [64 * 1024, 9 * 1024 * 1024]) {
      const peer = await connect();
      peer?.ws.send(new Uint8Array(size));
    }
    // Each of these is closed by a refusal or the handshake timeout; once they are, the handshake budget is free again.
    expect(await settles(Promise.all(closes))).toBe(true);
    // An authenticated peer that sends garbage containers until it is cut off.
    const liar = await connect();
    expect(liar).toBeDefined();
    if (liar) {
      const client = new ClientHandshake(identity(nodeId('127.0.0.1:5')), b.localNode);
      const done = new Promise<void>((resolve, reject) => {
        liar.ws.on('message', (data) => {
          const step = client.receive(data as Buffer);
          if (step.reply) liar.ws.send(step.reply);
          if (step.done) resolve();
        });
        void liar.closed.then((code) => reject(new Error(`closed before authenticating, with code ${code}`)));
      });
      liar.ws.send(client.hello());
      await done;
      for (let i = 0; i < 10; i++) liar.ws.send(random.bytes(1 + random.int(100)));
    }
    // Half-open: connections that say nothing, more than the handshake budget.
    for (let i = 0; i < 24; i++) await connect();
    expect(b.stats().rejectedHandshakes).toBeGreaterThan(0);
    // Raw TCP that is not even HTTP.
    const { connect: tcp } = await import('node:net');
    const [host, port] = [b.localNode.split(':')[0]!, Number(b.localNode.split(':')[1])];
    const junk = tcp(port, host, () => junk.end(Buffer.from(random.bytes(300))));
    junk.on('error', () => {});

    expect(await settles(Promise.all(closes))).toBe(true); // every hostile connection was closed
    expect(b.stats().badMessages).toBeGreaterThan(0);
    expect(b.stats().penalizedClosures).toBe(1);
    expect(got).toEqual([]);

    a.send(b.localNode, new TextEncoder().encode('still here'));
    expect(await until(() => got.length === 1)).toBe(true);
    expect(got).toEqual([`${a.localNode} still here`]);
    b.send(a.localNode, new TextEncoder().encode('and back'));
    let back = false;
    a.onFrame(() => (back = true));
    expect(await until(() => back)).toBe(true);
  });
});
