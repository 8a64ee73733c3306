import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type ChorusClient, Unavailable, connect } from '@chorus/client';
import * as protocol from '@chorus/client-protocol';
import { ChorusError } from '@chorus/core';
import type { ChorusNode } from '@chorus/node';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type ClientApi, attachClientApi } from '../src/client-api.js';
import { RequestBudget } from '../src/request-budget.js';

const packr = protocol.createPackr();

interface Fake {
  node: ChorusNode;
  data: Map<string, { value: Uint8Array; ts: number }>;
  /** Gets park here while `hold` is set, and puts while `holdPuts` is. */
  held: Array<() => void>;
  hold: boolean;
  holdPuts: boolean;
  /** The options each data call reached the coordinator with. */
  options: Array<[string, unknown]>;
  /** The keyspaces local reads reached the coordinator with. */
  localAsked: string[];
  /** Resolves once `count` gets are parked: the requests reached the coordinator. */
  whenHeld(count: number): Promise<void>;
}

function fakeNode(address: string): Fake {
  const heldWaiters: Array<() => void> = [];
  const fake: Fake = {
    node: undefined as unknown as ChorusNode,
    data: new Map(),
    held: [],
    localAsked: [],
    hold: false,
    holdPuts: false,
    options: [],
    async whenHeld(count) {
      while (fake.held.length < count) await new Promise<void>((r) => heldWaiters.push(r));
    },
  };
  let clock = 1_000;
  const keyOf = (k: Uint8Array | string) => (typeof k === 'string' ? k : Buffer.from(k).toString('utf8'));
  const coordinator = {
    async put(_ks: string, key: Uint8Array | string, _ck: unknown, value: Uint8Array | string, options: { consistency?: string; timestampMicros?: number } = {}) {
      fake.options.push(['put', options]);
      if (fake.holdPuts) {
        const parked = new Promise<void>((release) => fake.held.push(release));
        for (const wake of heldWaiters.splice(0)) wake();
        await parked;
      }
      if (options.consistency === 'ALL') throw new ChorusError('Unavailable', 'UNAVAILABLE', 'cannot achieve consistency level ALL', { consistency: 'ALL', required: 3, alive: 2 }, 503);
      const ts = options.timestampMicros ?? ++clock;
      fake.data.set(keyOf(key), { value: typeof value === 'string' ? Buffer.from(value) : value, ts });
      return { timestampMicros: ts };
    },
    async get(_ks: string, key: Uint8Array | string, _ck: unknown, options: unknown) {
      fake.options.push(['get', options]);
      if (fake.hold) {
        const parked = new Promise<void>((release) => fake.held.push(release));
        for (const wake of heldWaiters.splice(0)) wake();
        await parked;
      }
      const found = fake.data.get(keyOf(key));
      return found ? { value: found.value, timestampMicros: found.ts } : undefined;
    },
    async del(_ks: string, key: Uint8Array | string, _ck: unknown, options: unknown) {
      fake.options.push(['del', options]);
      fake.data.delete(keyOf(key));
      return { timestampMicros: ++clock };
    },
    async slice(_ks: string, _key: unknown, options: unknown) {
      fake.options.push(['slice', options]);
      return { rows: [{ clustering: Buffer.from('c1'), value: Buffer.from('v1'), timestampMicros: 5 }], nextPage: Buffer.from('p') };
    },
    async local(ks: string, key: Uint8Array | string) {
      fake.localAsked.push(ks);
      const found = fake.data.get(keyOf(key));
      return found ? { value: found.value, timestampMicros: found.ts } : undefined;
    },
  };
  fake.node = {
    address,
    name: 'n1',
    hostId: '00000000-0000-4000-8000-000000000001',
    coordinator,
    async ring() {
      return { tokens: [{ token: '0', name: 'n1', address, dc: 'dc1', rack: 'rack1', state: 'UN' }] };
    },
    async keyspaces() {
      return { schemaAgreed: true, keyspaces: [{ name: 'default', replication: { class: 'SimpleStrategy', rf: 1 } }] };
    },
  } as unknown as ChorusNode;
  return fake;
}

/** A raw WebSocket on /client that collects decoded messages. */
async function rawSocket(address: string): Promise<{ ws: WebSocket; messages: unknown[]; closed: Promise<number>; next(count?: number): Promise<unknown[]> }> {
  const ws = new WebSocket(`ws://${address}${protocol.CLIENT_PATH}`);
  const messages: unknown[] = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (data: Buffer) => {
    messages.push(packr.unpack(data));
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const next = async (count = 1) => {
    while (messages.length < count) await new Promise<void>((r) => waiters.push(r));
    return messages.splice(0, count);
  };
  return { ws, messages, closed, next };
}

/** Every answer in the messages, flattening coalesced arrays. */
const answers = (messages: unknown[]) => messages.flatMap((m) => (Array.isArray(m) ? m : [m])) as Array<{ id: number; ok?: unknown; error?: Record<string, unknown> }>;

describe('the client API on /client', () => {
  let server: Server;
  let api: ClientApi;
  let address: string;
  let fake: Fake;
  let ready = true;
  const clients: ChorusClient[] = [];

  const start = async (options: { maxInFlight?: number; coalesce?: boolean; budget?: RequestBudget; maxInflightBytesPerConnection?: number } = {}) => {
    server = createServer((_req, res) => res.writeHead(404).end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    fake = fakeNode(address);
    api = attachClientApi({ server, node: () => (ready ? fake.node : undefined), logger: pino({ level: 'silent' }), ...options });
  };

  beforeEach(() => {
    ready = true;
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
    await api.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('serves put, get, del, slice, local and ring to the client, routing by token', async () => {
    await start();
    const client = connect([address]);
    clients.push(client);
    await client.ready();
    expect(client.replicasOf('default', 'k1')).toEqual([address]);
    const { timestamp } = await client.put('default', 'k1', 'hello', { consistency: 'ONE' });
    expect(timestamp).toBeGreaterThan(0);
    const got = await client.get('default', 'k1');
    expect(Buffer.from(got!.value).toString()).toBe('hello');
    expect(got!.timestamp).toBe(timestamp);
    expect(await client.get('default', 'absent')).toBeUndefined();
    const local = await client.local(address, 'default', 'k1');
    expect(local).toMatchObject({ timestamp, tombstone: false });
    // The node's own records and keyspaces it does not know are not for clients.
    await expect(client.local(address, 'system', 'local')).rejects.toMatchObject({ name: 'InvalidRequest' });
    await expect(client.local(address, 'nope', 'k1')).rejects.toMatchObject({ name: 'InvalidRequest' });
    expect(fake.localAsked).toEqual(['default']);
    const slice = await client.slice('default', 'p', { limit: 10 });
    expect(slice.rows).toHaveLength(1);
    expect(Buffer.from(slice.nextPage!).toString()).toBe('p');
    await client.del('default', 'k1');
    expect(await client.get('default', 'k1')).toBeUndefined();
    const stats = client.stats();
    expect(stats.tokenAware).toBeGreaterThanOrEqual(5);
    expect(stats.nonReplica).toBe(0);
    expect(api.stats().ops).toMatchObject({ hello: 1, put: 1, get: 3, del: 1, slice: 1, local: 3 });
  });

  it("passes a session's fields to the coordinator: the high-water mark with writes, the floors with reads", async () => {
    await start();
    const client = connect([address]);
    clients.push(client);
    const session = client.session();
    const a = await session.put('default', 'k1', 'v', { consistency: 'ONE' });
    const b = await session.put('default', 'p', 'v', { clustering: 'c' });
    await session.get('default', 'k1');
    await session.slice('default', 'p', { limit: 10 });
    await session.del('default', 'k1');
    expect(fake.options).toEqual([
      ['put', { consistency: 'ONE', afterMicros: 0 }],
      ['put', { afterMicros: a.timestamp }],
      ['get', { floorMicros: a.timestamp }],
      ['slice', { limit: 10, floors: [{ clustering: Buffer.from('c'), timestampMicros: b.timestamp }] }],
      // The slice read a row written at 5: below the high-water mark, which stays.
      ['del', { afterMicros: b.timestamp }],
    ]);
  });

  it("turns the coordinator's errors into typed errors with their numbers", async () => {
    await start();
    const client = connect([address]);
    clients.push(client);
    const error = await client.put('default', 'k', 'v', { consistency: 'ALL' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Unavailable);
    expect(error).toMatchObject({ name: 'Unavailable', consistency: 'ALL', required: 3, alive: 2 });
  });

  it('answers bad requests with InvalidRequest and keeps the connection', async () => {
    await start();
    const s = await rawSocket(address);
    s.ws.send(
      packr.pack([
        { id: 1, op: 'nope' },
        { op: 'get', ks: 'default', key: 'k' },
        { id: 3, op: 'get', ks: 'default', key: 'k', extra: true },
        { id: 4, op: 'put', ks: 'default', key: 'k', value: 5 },
        { id: 5, op: 'get', ks: 'default', key: 'k', cl: 'x'.repeat(100) },
        { id: 6, op: 'put', ks: 'default', key: 'k', value: 'v', ttl: -1 },
        'not a map',
        { id: 8, op: 'hello', v: 1 },
      ]),
    );
    const got = answers(await s.next());
    const byId = (id: number) => got.filter((a) => a.id === id);
    expect(byId(1)[0]!.error).toMatchObject({ name: 'InvalidRequest', field: 'op' });
    expect(byId(0)).toHaveLength(2); // the map without an id, and the string
    for (const a of byId(0)) expect(a.error!.name).toBe('InvalidRequest');
    expect(byId(3)[0]!.error).toMatchObject({ name: 'InvalidRequest' });
    expect(byId(4)[0]!.error).toMatchObject({ name: 'InvalidRequest', field: 'value' });
    expect(byId(5)[0]!.error).toMatchObject({ name: 'InvalidRequest', field: 'cl' });
    expect(byId(6)[0]!.error).toMatchObject({ name: 'InvalidRequest', field: 'ttl' });
    expect(byId(8)[0]!.ok).toMatchObject({ v: 1, versions: [1], node: address });
    expect(api.stats().badRequests).toBe(7);
    expect(s.ws.readyState).toBe(WebSocket.OPEN);
    s.ws.close();
  });

  it('closes a connection that sends a text message (1003) or bytes that are not msgpack (1007)', async () => {
    await start();
    const text = await rawSocket(address);
    text.ws.send('{"id":1,"op":"hello","v":1}');
    expect(await text.closed).toBe(1003);
    expect(answers(text.messages)[0]).toMatchObject({ id: 0, error: { name: 'InvalidRequest' } });

    const garbage = await rawSocket(address);
    garbage.ws.send(Buffer.from([0xc1, 0xff, 0x00]));
    expect(await garbage.closed).toBe(1007);

    const empty = await rawSocket(address);
    empty.ws.send(packr.pack([]));
    expect(await empty.closed).toBe(1007);

    const scalar = await rawSocket(address);
    scalar.ws.send(packr.pack(42));
    expect(await scalar.closed).toBe(1007);

    // msgpackr quotes what it read in its error; a close reason is at most 123 bytes, not characters.
    const quoted = await rawSocket(address);
    quoted.ws.send(Buffer.concat([packr.pack('€'.repeat(60)), Buffer.from([0x01])]));
    expect(await quoted.closed).toBe(1007);
    expect(api.stats().badFrames).toBe(5);
  });

  it('closes a connection whose message is over the size limit (1009)', async () => {
    server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    fake = fakeNode(address);
    api = attachClientApi({ server, node: () => fake.node, logger: pino({ level: 'silent' }), maxPayloadBytes: 1024 });
    const s = await rawSocket(address);
    s.ws.send(packr.pack({ id: 1, op: 'put', ks: 'default', key: 'k', value: Buffer.alloc(4096) }));
    expect(await s.closed).toBe(1009);
  });

  it('answers Overloaded beyond the in-flight limit of a connection', async () => {
    await start({ maxInFlight: 2 });
    fake.hold = true;
    const s = await rawSocket(address);
    s.ws.send(packr.pack([1, 2, 3, 4, 5].map((id) => ({ id, op: 'get', ks: 'default', key: `k${id}` }))));
    const first = answers(await s.next());
    expect(first.map((a) => a.id).sort()).toEqual([3, 4, 5]);
    for (const a of first) expect(a.error).toMatchObject({ name: 'Overloaded', capacity: 2 });
    await fake.whenHeld(2);
    expect(fake.held).toHaveLength(2);
    fake.hold = false;
    for (const release of fake.held.splice(0)) release();
    const rest = answers(await s.next());
    expect(rest.map((a) => a.id).sort()).toEqual([1, 2]);
    s.ws.close();
  });

  it('answers Overloaded, with Retry-After in ms, past the bytes in flight of a connection and of the node', async () => {
    const MiB = 1024 * 1024;
    const budget = new RequestBudget(4 * MiB + MiB / 2);
    await start({ budget, maxInflightBytesPerConnection: 3 * MiB + MiB / 2 });
    fake.holdPuts = true;
    const a = await rawSocket(address);
    const b = await rawSocket(address);
    for (const id of [1, 2, 3, 4]) a.ws.send(packr.pack({ id, op: 'put', ks: 'default', key: `a${id}`, value: Buffer.alloc(MiB) }));
    const perConnection = answers(await a.next());
    expect(perConnection.map((x) => x.id)).toEqual([4]);
    expect(perConnection[0]!.error).toMatchObject({ name: 'Overloaded', budgetBytes: 3 * MiB + MiB / 2, retryAfterMs: 1000 });
    await fake.whenHeld(3);
    for (const id of [1, 2, 3]) b.ws.send(packr.pack({ id, op: 'put', ks: 'default', key: `b${id}`, value: Buffer.alloc(MiB) }));
    const perNode = answers(await b.next(2));
    expect(perNode.map((x) => x.id)).toEqual([2, 3]);
    for (const x of perNode) expect(x.error).toMatchObject({ name: 'Overloaded', budgetBytes: 4 * MiB + MiB / 2, retryAfterMs: 1000 });
    await fake.whenHeld(4);
    fake.holdPuts = false;
    for (const release of fake.held.splice(0)) release();
    const rest = [...answers(await a.next()), ...answers(await b.next())];
    expect(rest.filter((x) => x.ok !== undefined)).toHaveLength(4);
    expect(budget.held).toBe(0);
    expect(api.stats().inFlightBytes).toBe(0);
    a.ws.close();
    b.ws.close();
  });

  it('coalesces the answers of one turn into one message, and not when told', async () => {
    await start();
    const s = await rawSocket(address);
    s.ws.send(packr.pack(Array.from({ length: 20 }, (_, i) => ({ id: i + 1, op: 'get', ks: 'default', key: `k${i}` }))));
    const [message] = await s.next();
    expect(Array.isArray(message)).toBe(true);
    expect(message as unknown[]).toHaveLength(20);
    s.ws.close();
    await api.close();

    api = attachClientApi({ server, node: () => fake.node, logger: pino({ level: 'silent' }), coalesce: false });
    const t = await rawSocket(address);
    t.ws.send(packr.pack(Array.from({ length: 5 }, (_, i) => ({ id: i + 1, op: 'get', ks: 'default', key: `k${i}` }))));
    const separate = await t.next(5);
    for (const m of separate) expect(Array.isArray(m)).toBe(false);
    t.ws.close();
  });

  it('answers NodeStarting while the node starts, and hello all the same', async () => {
    await start();
    ready = false;
    const s = await rawSocket(address);
    s.ws.send(packr.pack([{ id: 1, op: 'hello', v: 1 }, { id: 2, op: 'get', ks: 'default', key: 'k' }]));
    const got = answers(await s.next());
    expect(got.find((a) => a.id === 1)!.ok).toMatchObject({ versions: [1] });
    expect(got.find((a) => a.id === 2)!.error).toMatchObject({ name: 'NodeStarting' });
    s.ws.close();
  });

  it('drains: new requests get NodeStopping, those in flight their answers, then the connection closes 1001', async () => {
    await start();
    fake.hold = true;
    const s = await rawSocket(address);
    s.ws.send(packr.pack({ id: 1, op: 'get', ks: 'default', key: 'k' }));
    // Request 1 must be in flight when the drain starts, or it would be answered NodeStopping too.
    await fake.whenHeld(1);
    const drained = api.drain(5_000);
    s.ws.send(packr.pack({ id: 2, op: 'get', ks: 'default', key: 'k' }));
    expect(answers(await s.next())[0]).toMatchObject({ id: 2, error: { name: 'NodeStopping' } });
    for (const release of fake.held.splice(0)) release();
    expect(answers(await s.next())[0]).toMatchObject({ id: 1, ok: null });
    await drained;
    expect(await s.closed).toBe(1001);
  });

  it('leaves other upgrade paths alone and closes its connections on close()', async () => {
    await start();
    let otherUpgrades = 0;
    server.on('upgrade', (request, socket) => {
      if (request.url === '/peer') {
        otherUpgrades++;
        socket.destroy();
      }
    });
    const peer = new WebSocket(`ws://${address}/peer`);
    await new Promise<void>((r) => peer.once('error', () => r()));
    expect(otherUpgrades).toBe(1);
    const s = await rawSocket(address);
    await api.close();
    expect(await s.closed).toBe(1001);
  });
});
