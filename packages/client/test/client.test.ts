import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import * as protocol from '@chorus/client-protocol';
import { ConnectionError, NoHostAvailable, Overloaded, ReadTimeout, RequestTimeout, SessionFloorNotMet, type ChorusClient, connect, errorFromWire } from '../src/index.js';

const packr = protocol.createPackr();

type Behaviour = (request: Record<string, unknown>, ws: WebSocket) => 'answer' | 'drop' | 'close' | { error: Record<string, unknown> };

/** A node that speaks the client protocol from memory, with a hook per request. */
class FakeNode {
  readonly data = new Map<string, Buffer>();
  readonly seen: Array<Record<string, unknown>> = [];
  behaviour: Behaviour = () => 'answer';
  server!: Server;
  address = '';
  private wss = new WebSocketServer({ noServer: true });
  members: () => protocol.RingMemberWire[] = () => [{ address: this.address, name: 'n', dc: 'dc1', rack: 'r1', state: 'UN', tokens: ['0'] }];
  rf = 1;

  async start(): Promise<this> {
    this.server = createServer();
    this.server.on('upgrade', (req, socket, head) => this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws)));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.address = `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  private accept(ws: WebSocket): void {
    ws.on('message', (data: Buffer) => {
      const decoded = packr.unpack(data) as unknown;
      const items = (Array.isArray(decoded) ? decoded : [decoded]) as Array<Record<string, unknown>>;
      const out: unknown[] = [];
      for (const r of items) {
        if (r.op !== 'hello' && r.op !== 'ring') this.seen.push(r);
        const what = r.op === 'hello' || r.op === 'ring' ? 'answer' : this.behaviour(r, ws);
        if (what === 'close') {
          ws.terminate();
          return;
        }
        if (what === 'drop') continue;
        if (typeof what === 'object') out.push({ id: r.id, error: what.error });
        else out.push({ id: r.id, ok: this.execute(r) });
      }
      if (out.length) ws.send(packr.pack(out.length === 1 ? out[0] : out));
    });
  }

  private execute(r: Record<string, unknown>): unknown {
    switch (r.op) {
      case 'hello':
        return { v: 1, versions: [1], node: this.address, name: 'n', hostId: '', maxInFlight: 1024, maxMessageBytes: protocol.MAX_MESSAGE_BYTES };
      case 'ring':
        return { members: this.members(), keyspaces: [{ name: 'ks', replication: { class: 'SimpleStrategy', rf: this.rf } }] };
      case 'put':
        this.data.set(String(r.key), Buffer.from(r.value as string));
        return { ts: 7 };
      case 'get': {
        const v = this.data.get(String(r.key));
        return v ? { value: v, ts: 7 } : null;
      }
      default:
        return { ts: 1 };
    }
  }

  async stop(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

describe('protocol validation', () => {
  it('maps error answers onto typed errors with their numbers', () => {
    const e = errorFromWire({ name: 'ReadTimeout', message: 'timed out', consistency: 'QUORUM', required: 2, received: 1, dataPresent: false });
    expect(e).toBeInstanceOf(ReadTimeout);
    expect(e).toMatchObject({ consistency: 'QUORUM', required: 2, received: 1, dataPresent: false, message: 'timed out' });
    const other = errorFromWire({ name: 'ClockSkewed', message: 'ahead', aheadMs: 3000 });
    expect(other.name).toBe('ClockSkewed');
    expect(other.fields).toMatchObject({ aheadMs: 3000 });
  });

  it('maps a byte budget refusal onto Overloaded with its bytes and how long to wait', () => {
    const e = errorFromWire({ name: 'Overloaded', message: 'full', capacity: 33_554_432, budgetBytes: 33_554_432, heldBytes: 33_000_000, requestBytes: 1_048_840, retryAfterMs: 1000 });
    expect(e).toBeInstanceOf(Overloaded);
    expect(e).toMatchObject({ code: 'OVERLOADED', httpStatus: 503, budgetBytes: 33_554_432, heldBytes: 33_000_000, requestBytes: 1_048_840, retryAfterMs: 1000 });
  });
});

describe('the client against fake nodes', () => {
  const nodes: FakeNode[] = [];
  const clients: ChorusClient[] = [];
  const fast = { requestTimeoutMs: 2_000, minBackoffMs: 50, maxBackoffMs: 200, ringRefreshMs: 60_000 };
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
    for (const n of nodes.splice(0)) await n.stop();
  });
  const node = async () => {
    const n = await new FakeNode().start();
    nodes.push(n);
    return n;
  };
  const client = (hosts: string[], options = {}) => {
    const c = connect(hosts, { ...fast, ...options });
    clients.push(c);
    return c;
  };

  it('pipelines many requests on one connection and coalesces them', async () => {
    const a = await node();
    const c = client([a.address]);
    await c.ready();
    await Promise.all(Array.from({ length: 200 }, (_, i) => c.put('ks', `k${i}`, `v${i}`)));
    const values = await Promise.all(Array.from({ length: 200 }, (_, i) => c.get('ks', `k${i}`)));
    expect(values.map((v) => Buffer.from(v!.value).toString())).toEqual(Array.from({ length: 200 }, (_, i) => `v${i}`));
    const stats = c.stats();
    expect(stats.succeeded).toBe(401); // and the ring
    expect(stats.messagesSent).toBeLessThan(20);
  });

  it('a session sends its high-water mark with writes and the floor with reads, and a read that cannot meet it fails with SessionFloorNotMet', async () => {
    const a = await node();
    const c = client([a.address]);
    await c.ready();
    const s = c.session({ maxKeys: 100 });
    await s.put('ks', 'k', 'v1');
    await s.get('ks', 'k');
    a.behaviour = (r) => (r.op === 'get' ? { error: { name: 'SessionFloorNotMet', message: 'too old', consistency: 'ONE', floorMicros: 7, foundMicros: 3 } } : 'answer');
    const error = await s.get('ks', 'k', { consistency: 'ONE' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SessionFloorNotMet);
    expect(error).toMatchObject({ consistency: 'ONE', floorMicros: 7, foundMicros: 3, httpStatus: 503 });
    await s.del('ks', 'k');
    await c.get('ks', 'k').catch(() => undefined);
    expect(a.seen.map((r) => [r.op, r.after, r.floor])).toEqual([
      ['put', 0, undefined],
      ['get', undefined, 7],
      ['get', undefined, 7],
      ['del', 7, undefined],
      ['get', undefined, undefined],
    ]);
  });

  it('sends a key to its replica', async () => {
    const a = await node();
    const b = await node();
    // a owns (−∞, 0], b owns (0, +∞) with rf 1.
    const members = () => [
      { address: a.address, name: 'a', dc: 'dc1', rack: 'r1', state: 'UN', tokens: ['0'] },
      { address: b.address, name: 'b', dc: 'dc1', rack: 'r1', state: 'UN', tokens: ['4611686018427387904'] },
    ];
    a.members = members;
    b.members = members;
    const c = client([a.address, b.address]);
    await c.ready();
    for (let i = 0; i < 40; i++) {
      const key = `key${i}`;
      const [replica] = c.replicasOf('ks', key);
      await c.put('ks', key, 'v');
      expect((replica === a.address ? a : b).data.has(key), key).toBe(true);
    }
    expect(a.data.size).toBeGreaterThan(0);
    expect(b.data.size).toBeGreaterThan(0);
    expect(a.data.size + b.data.size).toBe(40);
    expect(c.stats().tokenAware).toBe(40);
  });

  /** Three nodes that each replicate every key (rf 3), on a ring of one token each. */
  const threeReplicas = async () => {
    const all = [await node(), await node(), await node()];
    const members = () => all.map((n, i) => ({ address: n.address, name: `n${i}`, dc: 'dc1', rack: 'r1', state: 'UN', tokens: [String(BigInt(i) * 6148914691236517205n - 6148914691236517205n)] }));
    for (const n of all) {
      n.members = members;
      n.rf = 3;
    }
    return all;
  };

  it('spreads keys over every replica, also replicas the client learnt of only from the ring', async () => {
    const all = await threeReplicas();
    const c = client([all[0]!.address]);
    await c.ready();
    for (let round = 0; round < 10; round++) await Promise.all(Array.from({ length: 30 }, (_, i) => c.put('ks', `key${round}-${i}`, 'v')));
    // Every node replicates every key: token-aware routing may pick any, and should not leave two of them idle.
    for (const n of all) expect(n.seen.length, all.map((x) => x.seen.length).join(' ')).toBeGreaterThan(50);
    expect(c.stats().tokenAware).toBe(300);
  });

  it('takes replicas in turn while their loads are alike, and passes over one loaded past the bound', async () => {
    const all = await threeReplicas();
    const c = client([all[0]!.address], { requestTimeoutMs: 5_000 });
    await c.ready();
    const slow = all[0]!;
    /** Leaves `count` requests unanswered on the slow node, in flight until they time out. */
    const stall = async (count: number) => {
      const before = slow.seen.length;
      slow.behaviour = () => 'drop';
      for (let i = 0; slow.seen.length < before + count; i++) {
        void c.put('ks', `stalled${before}-${i}`, 'v').catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      slow.behaviour = () => 'answer';
    };
    const sequential = async (label: string) => {
      const before = all.map((n) => n.seen.length);
      for (let i = 0; i < 90; i++) await c.put('ks', `${label}${i}`, 'v');
      return all.map((n, i) => n.seen.length - before[i]!);
    };
    await stall(3);
    // 3 in flight against 0 is alike (within 8): the replicas take turns, so each coordinates about a third.
    const alike = await sequential('alike');
    for (const share of alike) expect(share, alike.join(' ')).toBeGreaterThanOrEqual(15);
    // 9 in flight against 0 is past the slack (and twice the least loaded): passed over while it lasts.
    await stall(6);
    const passedOver = await sequential('loaded');
    expect(passedOver[0]).toBe(0);
    expect(passedOver[1]! + passedOver[2]!).toBe(90);
  });

  it('goes to another node when one refuses connections, and marks it down', async () => {
    const a = await node();
    const dead = await node();
    const deadAddress = dead.address;
    await dead.stop();
    nodes.splice(nodes.indexOf(dead), 1);
    const c = client([deadAddress, a.address], { tokenAware: false });
    for (let i = 0; i < 10; i++) await c.put('ks', `k${i}`, 'v');
    expect(a.data.size).toBe(10);
    // Down, or already probing again once its back-off ran out (a slow run): either way, marked as failed.
    const marked = c.stats().hosts[deadAddress]!;
    expect(['down', 'connecting']).toContain(marked.state);
    expect(marked.failures).toBeGreaterThan(0);
    expect(marked.lastError).toBeDefined();
  });

  it('sends a read again to another node when the connection breaks with it in flight, but not a write', async () => {
    const a = await node();
    const b = await node();
    a.data.set('k', Buffer.from('from-a'));
    b.data.set('k', Buffer.from('from-b'));
    const c = client([a.address, b.address], { tokenAware: false });
    await c.ready();
    // Whichever node gets a request first drops the connection.
    let broken = 0;
    const breakOnce: Behaviour = () => (broken++ === 0 ? 'close' : 'answer');
    a.behaviour = breakOnce;
    b.behaviour = breakOnce;
    const got = await c.get('ks', 'k');
    expect(['from-a', 'from-b']).toContain(Buffer.from(got!.value).toString());
    expect(c.stats().retries).toBe(1);

    broken = 0;
    const error = await c.put('ks', 'w', 'v').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).toMatchObject({ sent: true });
  });

  it('retries Overloaded on another node, and surfaces it when there is none', async () => {
    const a = await node();
    const b = await node();
    a.behaviour = () => ({ error: { name: 'Overloaded', message: 'full', capacity: 1 } });
    const c = client([a.address, b.address], { tokenAware: false });
    for (let i = 0; i < 6; i++) await c.put('ks', `k${i}`, 'v');
    expect(b.data.size).toBe(6);

    const only = client([a.address]);
    const error = await only.put('ks', 'x', 'v').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Overloaded);
    expect(error).toMatchObject({ capacity: 1 });
  });

  it('fails with RequestTimeout when no answer comes, and NoHostAvailable when nothing is up', async () => {
    const a = await node();
    a.behaviour = () => 'drop';
    const c = client([a.address], { requestTimeoutMs: 300 });
    const error = await c.get('ks', 'k').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RequestTimeout);

    const dead = await node();
    const address = dead.address;
    await dead.stop();
    nodes.splice(nodes.indexOf(dead), 1);
    const nobody = client([address]);
    const none = await nobody.get('ks', 'k').catch((e: unknown) => e);
    expect(none).toBeInstanceOf(NoHostAvailable);
    expect(Object.keys((none as NoHostAvailable).errors)).toEqual([address]);
  });
});
