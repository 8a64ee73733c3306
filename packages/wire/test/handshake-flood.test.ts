import { type NodeId, SeededRandom, nodeId } from '@chorus/core';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ClientHandshake } from '../src/handshake.js';
import { sourceOf } from '../src/ws-peer-address.js';
import type { WsTransport } from '../src/index.js';
import { CLUSTER, SECRET, TEST_TIMEOUT_MS, canListenOn, freePort, scaled, startNode, until } from './net-helpers.js';

type Flooder = 'silent' | 'garbage' | 'stalled hello';

/**
 * Keeps `count` unauthenticated `/peer` connections open to `target` from
 * 127.0.0.1, opening a new one 50 ms after any of them is closed or cut, as
 * an attacker who can reach the peer port would.
 */
function flood(target: NodeId, count: number, kinds: readonly Flooder[]): { opened: () => number; stop: () => void } {
  let stopped = false;
  let opened = 0;
  const sockets = new Set<WebSocket>();
  const random = new SeededRandom(5);
  const open = (kind: Flooder) => {
    if (stopped) return;
    opened++;
    const ws = new WebSocket(`ws://${target}/peer`, { localAddress: '127.0.0.1' });
    sockets.add(ws);
    ws.on('error', () => {});
    ws.on('open', () => {
      if (kind === 'garbage') ws.send(random.bytes(64));
      if (kind === 'stalled hello') ws.send(new ClientHandshake({ clusterName: CLUSTER, secret: Buffer.from('a guess'), localNode: nodeId('127.0.0.1:1'), random }, target).hello());
    });
    ws.on('close', () => {
      sockets.delete(ws);
      setTimeout(() => open(kind), 50);
    });
  };
  for (let i = 0; i < count; i++) open(kinds[i % kinds.length]!);
  return {
    opened: () => opened,
    stop() {
      stopped = true;
      for (const ws of sockets) ws.terminate();
    },
  };
}

describe('handshake floods', { timeout: TEST_TIMEOUT_MS }, () => {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  }, TEST_TIMEOUT_MS);
  const started = async (...args: Parameters<typeof startNode>) => {
    const t = await startNode(...args);
    cleanups.push(() => t.close());
    return t;
  };

  it('a flood of silent and garbage /peer connections from one address does not keep a restarted peer from connecting', async ({ skip }) => {
    if (!(await canListenOn('127.0.0.2'))) skip('127.0.0.2 is not on this loopback');
    // The node under attack keeps its default handshake limits and timeout.
    const b = await started({ handshakeTimeoutMs: undefined });
    const port = await freePort();
    // The peer's own address is 127.0.0.2; it dials from there.
    const peerOptions = { port, localNode: nodeId(`127.0.0.2:${port}`), host: '127.0.0.2' } as const;
    let a: WsTransport = await startNode(peerOptions);
    const heard: string[] = [];
    b.onFrame((from, frame) => heard.push(`${from} ${Buffer.from(frame).toString()}`));
    a.send(b.localNode, Buffer.from('before'));
    expect(await until(() => heard.length === 1)).toBe(true);
    await a.close();

    const FLOOD = 150;
    const attack = flood(b.localNode, FLOOD, ['silent', 'silent', 'garbage', 'stalled hello']);
    cleanups.push(() => attack.stop());
    // Settled: every flooding connection is open or has been cut at least once (64 is the most the node ever lets wait).
    expect(await until(() => attack.opened() >= FLOOD && b.stats().rejectedHandshakes >= FLOOD - 64)).toBe(true);

    // The peer restarts, and must be heard well before the flood's own handshakes time out.
    const restartedAt = Date.now();
    a = await startNode(peerOptions);
    cleanups.push(() => a.close());
    const sentAt = Date.now();
    a.send(b.localNode, Buffer.from('after restart'));
    expect(await until(() => heard.length === 2, scaled(2_500)), 'the restarted peer could not connect through the flood').toBe(true);
    expect(heard[1]).toBe(`${a.localNode} after restart`);
    console.log(`restarted peer heard ${Date.now() - restartedAt} ms after it started (${Date.now() - sentAt} ms after its first send), through a flood of ${attack.opened()} connections; ${b.stats().rejectedHandshakes} handshakes refused`);
    // The flood holds no more than its address's share of the handshakes in progress.
    expect(b.stats().pendingHandshakes).toBeLessThanOrEqual(8);
  });

  it('counts handshakes by source: an IPv4 address, IPv4-mapped IPv6 as its IPv4 address, IPv6 by its /64', () => {
    expect(sourceOf('10.0.0.7')).toBe('10.0.0.7');
    expect(sourceOf('::ffff:10.0.0.7')).toBe('10.0.0.7');
    expect(sourceOf('2001:db8:1:2:aaaa::1')).toBe(sourceOf('2001:db8:1:2:bbbb::9'));
    expect(sourceOf('2001:db8:1:2::1')).not.toBe(sourceOf('2001:db8:1:3::1'));
    expect(sourceOf(undefined)).toBe('?');
    expect(sourceOf('not an address')).toBe('not an address');
  });
});
