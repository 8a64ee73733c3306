import { type ChorusClient, connect } from '@chorus/client';
import { IdTable } from '@chorus/core';
import { Packr } from 'msgpackr';
import WebSocket from 'ws';
import { CLIENT_PATH, ECHO_PATH } from './ideal-node.js';

/** What the load generator drives: Chorus through its client, or the ideal pipeline through a client of the same shape. */
export interface Target {
  put(key: string, value: Uint8Array, consistency: string): Promise<unknown>;
  /** Whether the key was found. */
  get(key: string, consistency: string): Promise<boolean>;
  /** Requests sent to each node so far, where the client counts them: how evenly the routing spreads the coordinators. */
  sentPerHost?(): Record<string, number>;
  close(): Promise<void>;
}

/** Chorus through @chorus/client: token-aware routing, pipelined and coalesced requests, as `chorus bench` uses it. */
export async function chorusTarget(hosts: string[], maxInFlight: number): Promise<Target> {
  const client: ChorusClient = connect(hosts, { connectionsPerHost: 1, maxInFlightPerConnection: Math.max(1024, maxInFlight) });
  await client.ready();
  return {
    put: (key, value, consistency) => client.put('default', key, value, { consistency }),
    get: async (key, consistency) => (await client.get('default', key, { consistency })) !== undefined,
    sentPerHost: () => Object.fromEntries(Object.entries(client.stats().hosts).map(([host, s]) => [host, s.sent])),
    close: () => client.close(),
  };
}

interface Waiter {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** One WebSocket to one ideal node: requests matched by id, everything of a tick in one message. */
class IdealConnection {
  sent = 0;
  private readonly waiting = new IdTable<Waiter>();
  private outbox: unknown[] = [];
  private scheduled = false;
  private nextId = 1;

  private constructor(private readonly ws: WebSocket, private readonly packr: Packr) {
    ws.on('message', (data: Buffer) => {
      const answers = packr.unpack(data) as Array<{ id: number; ok: unknown }>;
      for (const a of answers) {
        const w = this.waiting.get(a.id);
        if (!w) continue;
        this.waiting.delete(a.id);
        w.resolve(a.ok);
      }
    });
    ws.on('close', () => {
      for (const [, w] of this.waiting.entries()) w.reject(new Error('connection closed'));
      this.waiting.clear();
    });
  }

  static open(host: string, packr: Packr): Promise<IdealConnection> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${host}${CLIENT_PATH}`, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
      ws.binaryType = 'nodebuffer';
      ws.once('open', () => resolve(new IdealConnection(ws, packr)));
      ws.once('error', reject);
    });
  }

  call(body: Record<string, unknown>): Promise<unknown> {
    const id = this.nextId++;
    this.sent++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.outbox.push({ id, ...body });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.outbox;
    this.outbox = [];
    this.ws.send(this.packr.pack(batch));
  }

  close(): void {
    this.ws.close();
  }
}

/** The ideal pipeline's client: one connection per node, the coordinator taken in rotation (with rf 3 every node is a replica of every key). */
export async function idealTarget(hosts: string[]): Promise<Target> {
  const packr = new Packr({ useRecords: false });
  const connections = await Promise.all(hosts.map((h) => IdealConnection.open(h, packr)));
  let next = 0;
  const pick = () => connections[next++ % connections.length]!;
  return {
    put: (key, value, cl) => pick().call({ op: 'put', key, value, cl }),
    get: async (key, cl) => (await pick().call({ op: 'get', key, cl })) !== null,
    sentPerHost: () => Object.fromEntries(connections.map((c, i) => [hosts[i]!, c.sent])),
    close: async () => {
      for (const c of connections) c.close();
    },
  };
}

/** A bare WebSocket round trip: one small msgpack message to a node's echo path and back. */
export async function echoTarget(host: string): Promise<Target> {
  const packr = new Packr({ useRecords: false });
  const ws = await new Promise<WebSocket>((resolve, reject) => {
    const s = new WebSocket(`ws://${host}${ECHO_PATH}`, { perMessageDeflate: false });
    s.once('open', () => resolve(s));
    s.once('error', reject);
  });
  let waiter: (() => void) | undefined;
  ws.on('message', () => {
    const w = waiter;
    waiter = undefined;
    w?.();
  });
  const roundTrip = (body: Record<string, unknown>) =>
    new Promise<boolean>((resolve) => {
      waiter = () => resolve(true);
      ws.send(packr.pack([{ id: 1, ...body }]));
    });
  return {
    put: (key, value, cl) => roundTrip({ op: 'put', key, value, cl }),
    get: (key, cl) => roundTrip({ op: 'get', key, cl }),
    close: async () => ws.close(),
  };
}
