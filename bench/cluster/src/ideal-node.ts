import { createServer, type Server } from 'node:http';
import { IdTable } from '@chorus/core';
import { murmur3Hash64 } from '@chorus/ring';
import { Level } from 'level';
import { Packr } from 'msgpackr';
import WebSocket, { WebSocketServer } from 'ws';

/**
 * One process of the ideal pipeline: the least a replicated write or read
 * has to do with Chorus's own libraries, and nothing else. A coordinator
 * stamps the write, hands it to its local LevelDB batch and to the two
 * peers over `ws`, and answers the client once the level's count of
 * replicas acknowledged; a read asks the local store and as many peers as
 * the level needs, and answers the newest version. Everything that crosses
 * a boundary is gathered for one tick of the event loop: one LevelDB batch
 * (and one `getMany`) per tick, one msgpack frame per peer and per client
 * connection per tick. Rows are stored in token order, as on any store
 * whose ring places them by token (and as Chorus stores them). No
 * validation, no failure handling, no hints, no read repair: the figure it
 * gives is a ceiling, not a rival.
 */

export interface IdealNodeOptions {
  port: number;
  /** Every node's port, this one's included, in the cluster's order. */
  ports: number[];
  dir: string;
  /** Each LevelDB batch is fsynced before the writes in it are acknowledged, as Chorus's commit_sync=batch. */
  durable: boolean;
  /**
   * Store each row under the client's key as it is, not after its token. The load generator's keys are
   * numbered (`w:1`, `w:2`, …), so in key order a tick's writes land next to each other: each table LevelDB
   * writes covers a narrow range, compactions mostly move tables down without rewriting them, and a read
   * finds one table per level to look in. No store on a token ring gets that: in token order every table
   * covers the whole ring. For comparison only.
   */
  plainKeys?: boolean;
}

export interface IdealNode {
  close(): Promise<void>;
}

/** Peer frame kinds: [WRITE, rid, key, stamped] · [WRITE_ACK, rid] · [READ, rid, key] · [READ_ANSWER, rid, stamped | null]. */
const WRITE = 1;
const WRITE_ACK = 2;
const READ = 3;
const READ_ANSWER = 4;

export const CLIENT_PATH = '/client';
export const PEER_PATH = '/peer';
/** Bytes in, the same bytes out: the floor of one request's round trip. */
export const ECHO_PATH = '/echo';

type Frame = unknown[];

/** Replicas a level waits for, out of three. */
export function required(cl: string): number {
  return cl === 'ONE' ? 1 : cl === 'ALL' ? 3 : 2;
}

/** A stamped value: 8 bytes of write time in microseconds, then the value. */
export function stamp(micros: number, value: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(8 + value.length);
  out.writeDoubleLE(micros, 0);
  out.set(value, 8);
  return out;
}

const stampOf = (stamped: Buffer) => stamped.readDoubleLE(0);

/** A row's key in token order: its Murmur3 token (8 bytes, big-endian, sign bit flipped so that bytes order as tokens do), then the key. */
export function tokenOrderedKey(key: string): Buffer {
  const bytes = Buffer.from(key, 'utf8');
  const out = Buffer.allocUnsafe(8 + bytes.length);
  out.writeBigInt64BE(murmur3Hash64(bytes), 0);
  out[0]! ^= 0x80;
  out.set(bytes, 8);
  return out;
}

/** Everything queued for one socket during this tick leaves as one message. */
class Outbox {
  private frames: unknown[] = [];
  private scheduled = false;

  constructor(private readonly socket: () => WebSocket | undefined, private readonly packr: Packr) {}

  push(frame: unknown): void {
    this.frames.push(frame);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.scheduled = false;
    const frames = this.frames;
    this.frames = [];
    const ws = this.socket();
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(this.packr.pack(frames));
  }
}

/** The key a row is stored under: the client's (`plainKeys`) or its token-ordered bytes. */
type StoreKey = string | Buffer;

/** LevelDB work of one tick: one batch for the writes, one `getMany` for the reads. */
class TickStore {
  private puts: Array<{ type: 'put'; key: StoreKey; value: Buffer }> = [];
  private putDone: Array<() => void> = [];
  private gets: StoreKey[] = [];
  private getDone: Array<(value: Buffer | undefined) => void> = [];
  private scheduled = false;

  constructor(private readonly db: Level<StoreKey, Buffer>, private readonly durable: boolean) {}

  put(key: StoreKey, value: Buffer, done: () => void): void {
    this.puts.push({ type: 'put', key, value });
    this.putDone.push(done);
    this.schedule();
  }

  get(key: StoreKey, done: (value: Buffer | undefined) => void): void {
    this.gets.push(key);
    this.getDone.push(done);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    if (this.puts.length > 0) {
      const ops = this.puts;
      const done = this.putDone;
      this.puts = [];
      this.putDone = [];
      this.db.batch(ops, { sync: this.durable }).then(
        () => {
          for (const d of done) d();
        },
        (error: Error) => console.error(`batch failed: ${error.message}`),
      );
    }
    if (this.gets.length > 0) {
      const keys = this.gets;
      const done = this.getDone;
      this.gets = [];
      this.getDone = [];
      this.db.getMany(keys).then(
        (values) => {
          for (let i = 0; i < done.length; i++) done[i]!(values[i] ?? undefined);
        },
        (error: Error) => console.error(`getMany failed: ${error.message}`),
      );
    }
  }
}

/** A request this node coordinates, until its level is reached. */
interface Pending {
  client: Outbox;
  id: number;
  need: number;
  got: number;
  read: boolean;
  newest: Buffer | undefined;
}

export async function startIdealNode(o: IdealNodeOptions): Promise<IdealNode> {
  const packr = new Packr({ useRecords: false });
  const plainKeys = o.plainKeys === true;
  const db = new Level<StoreKey, Buffer>(o.dir, { keyEncoding: plainKeys ? 'utf8' : 'buffer', valueEncoding: 'buffer' });
  await db.open();
  const store = new TickStore(db, o.durable);
  // Slots, not a Map, as in Chorus (see IdTable): a Map of requests in flight has the scavenger promote them.
  const pending = new IdTable<Pending>();
  let nextRid = 1;
  let lastMicros = 0;
  const peers = o.ports.filter((p) => p !== o.port);
  const links = new Map<number, { ws: WebSocket | undefined; out: Outbox }>();
  let rotation = 0;

  const answered = (p: Pending, rid: number, stamped: Buffer | undefined) => {
    if (p.read && stamped && (!p.newest || stampOf(stamped) > stampOf(p.newest))) p.newest = stamped;
    if (++p.got !== p.need) return;
    pending.delete(rid);
    if (!p.read) p.client.push({ id: p.id, ok: true });
    else p.client.push({ id: p.id, ok: p.newest ? { ts: stampOf(p.newest), value: p.newest.subarray(8) } : null });
  };

  const coordinate = (client: Outbox, req: { id: number; op: string; key: string; value?: Uint8Array; cl?: string }) => {
    const rid = nextRid++;
    const read = req.op === 'get';
    const p: Pending = { client, id: req.id, need: required(req.cl ?? 'QUORUM'), got: 0, read, newest: undefined };
    pending.set(rid, p);
    const key = plainKeys ? req.key : tokenOrderedKey(req.key);
    if (!read) {
      // Microseconds that never repeat on this node, as a coordinator's clock must give.
      lastMicros = Math.max(lastMicros + 1, Date.now() * 1000);
      const stamped = stamp(lastMicros, req.value ?? new Uint8Array());
      store.put(key, stamped, () => answered(p, rid, undefined));
      for (const port of peers) links.get(port)!.out.push([WRITE, rid, key, stamped]);
      return;
    }
    store.get(key, (value) => answered(p, rid, value));
    // The peers asked take turns, so every node serves its share of remote reads.
    for (let i = 0; i < p.need - 1; i++) links.get(peers[(rotation + i) % peers.length]!)!.out.push([READ, rid, key]);
    rotation++;
  };

  const server: Server = createServer((_req, res) => res.writeHead(404).end());
  const clients = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  const peerServer = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  const echo = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on('upgrade', (req, socket, head) => {
    const wss = req.url === CLIENT_PATH ? clients : req.url === PEER_PATH ? peerServer : req.url === ECHO_PATH ? echo : undefined;
    if (!wss) return socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws));
  });
  clients.on('connection', (ws: WebSocket) => {
    const out = new Outbox(() => ws, packr);
    ws.on('message', (data: Buffer) => {
      const decoded = packr.unpack(data) as unknown;
      if (Array.isArray(decoded)) for (const req of decoded) coordinate(out, req);
      else coordinate(out, decoded as never);
    });
  });
  // A peer's requests arrive on the link it opened; the answers go back on it.
  peerServer.on('connection', (ws: WebSocket) => {
    const out = new Outbox(() => ws, packr);
    ws.on('message', (data: Buffer) => {
      for (const f of packr.unpack(data) as Frame[]) {
        const rid = f[1] as number;
        if (f[0] === WRITE) store.put(f[2] as StoreKey, f[3] as Buffer, () => out.push([WRITE_ACK, rid]));
        else if (f[0] === READ) store.get(f[2] as StoreKey, (value) => out.push([READ_ANSWER, rid, value ?? null]));
      }
    });
  });
  echo.on('connection', (ws: WebSocket) => ws.on('message', (data: Buffer) => ws.send(data)));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, '127.0.0.1', () => resolve());
  });

  // Links to the peers: each node opens its own, so a pair has one link per direction.
  const connectTo = (port: number): Promise<void> =>
    new Promise((resolve) => {
      const attempt = () => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}${PEER_PATH}`, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
        ws.binaryType = 'nodebuffer';
        ws.once('open', () => {
          links.get(port)!.ws = ws;
          resolve();
        });
        ws.once('error', () => setTimeout(attempt, 50));
        ws.on('message', (data: Buffer) => {
          for (const f of packr.unpack(data) as Frame[]) {
            const rid = f[1] as number;
            const p = pending.get(rid);
            if (!p) continue;
            answered(p, rid, f[0] === READ_ANSWER ? ((f[2] as Buffer | null) ?? undefined) : undefined);
          }
        });
      };
      attempt();
    });
  for (const port of peers) {
    const link: { ws: WebSocket | undefined; out: Outbox } = { ws: undefined, out: undefined as unknown as Outbox };
    link.out = new Outbox(() => link.ws, packr);
    links.set(port, link);
  }
  await Promise.all(peers.map(connectTo));

  return {
    async close() {
      for (const link of links.values()) link.ws?.terminate();
      for (const wss of [clients, peerServer, echo]) for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await db.close();
    },
  };
}
