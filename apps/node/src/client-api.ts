import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import * as protocol from '@chorus/client-protocol';
import { type ChorusError, Overloaded, isChorusError } from '@chorus/core';
import type { ChorusNode } from '@chorus/node';
import type { Logger } from 'pino';
import WebSocket, { WebSocketServer } from 'ws';
import type { Authenticator } from './auth.js';
import { AUTHENTICATE_HEADER, NodeStarting, NodeStopping, Unauthorized, wireErrorOf } from './errors.js';
import { readLocal } from './local-read.js';
import type { RequestOp, RequestTimer } from './metrics.js';
import { RequestBudget } from './request-budget.js';

type Request = protocol.Request;
type Answer = protocol.Answer;
type WireError = protocol.WireError;

export interface ClientApiOptions {
  /** The node's HTTP server: `/client` upgrades are taken from it, other paths left to its other `upgrade` listeners. */
  server?: Server;
  /**
   * Or the fastify app: its server, plus a `preClose` hook that closes the
   * client connections so `app.close()` does not wait for them.
   */
  app?: { server: Server; addHook(name: 'preClose', hook: () => Promise<void>): unknown };
  /** Undefined until the node has started; requests meanwhile get NodeStarting (the client tries another node). */
  node: () => ChorusNode | undefined;
  logger: Logger;
  /** Requests in flight per connection before Overloaded answers (default 1024). */
  maxInFlight?: number;
  /** Largest message accepted (default 4 MiB); ws closes the connection with 1009 on a larger one. */
  maxPayloadBytes?: number;
  /** Answers produced in one turn go out as one message (default true; env CHORUS_CLIENT_COALESCE=0 turns it off). */
  coalesce?: boolean;
  /** Where a connection's flush of answers is deferred to: the node's scheduler, so it runs in the same pass as the work that answered (default `setImmediate`). */
  defer?: (fn: () => void) => void;
  /** Connections at once before new ones are refused (default 4096). */
  maxConnections?: number;
  /** Times the data requests (put, get, del, slice). */
  timeRequest?: RequestTimer;
  /** Client authentication: the upgrade must carry a token of this authenticator, or is answered 401. */
  authenticator?: Authenticator;
  /** Bytes client requests may hold at once on this node, shared with the HTTP API (max_inflight_request_bytes). */
  budget?: RequestBudget;
  /**
   * Bytes one connection's requests may hold at once, and unsent answers
   * it may leave queued before the node stops reading from it
   * (max_inflight_request_bytes_per_connection, derived from max_heap_size unless set).
   */
  maxInflightBytesPerConnection?: number;
}

export const DEFAULT_MAX_INFLIGHT_BYTES_PER_CONNECTION = 8 * 1024 * 1024;
/** Counted for every request beside its keys and value. */
const REQUEST_OVERHEAD_BYTES = 256;

/** What a request holds while it is in flight: its keys, its value and a fixed cost. */
function requestBytesOf(r: Request): number {
  let bytes = REQUEST_OVERHEAD_BYTES;
  const add = (v: unknown) => (bytes += v instanceof Uint8Array ? v.byteLength : typeof v === 'string' ? v.length * 3 : 0);
  const fields = r as unknown as Record<string, unknown>;
  add(fields.key);
  add(fields.ck);
  add(fields.value);
  return bytes;
}

export interface ClientApiStats {
  connections: number;
  connectionsTotal: number;
  requests: number;
  /** Requests by op. */
  ops: Record<string, number>;
  /** Error answers by name. */
  errors: Record<string, number>;
  badRequests: number;
  badFrames: number;
  overloaded: number;
  messagesIn: number;
  messagesOut: number;
  answersOut: number;
  inFlight: number;
  /** Bytes the requests in flight hold, as the byte budgets count them. */
  inFlightBytes: number;
  /** Connections whose unsent answers went past their budget, so the node stopped reading from them until they drain. */
  pausedConnections: number;
}

export interface ClientApi {
  /** Takes a `/client` upgrade and returns true; false (socket untouched) for other paths. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  stats(): ClientApiStats;
  /** Refuses new requests with NodeStopping, waits up to `graceMs` for those in flight, then closes. */
  drain(graceMs?: number): Promise<void>;
  /** Closes every client connection (1001 going away) and stops taking upgrades. */
  close(): Promise<void>;
}

/** Bad requests of one connection logged in full; past that, one line per LOG_EVERY. */
const LOG_FIRST = 5;
const LOG_EVERY = 1000;
/** A coalesced message is cut at about this many bytes of values. */
const SOFT_MESSAGE_BYTES = 1024 * 1024;
type Coordinator = ChorusNode['coordinator'];
type PutOptions = NonNullable<Parameters<Coordinator['put']>[4]>;
type GetOptions = NonNullable<Parameters<Coordinator['get']>[3]>;
type DelOptions = NonNullable<Parameters<Coordinator['del']>[3]>;
const DATA_OPS: Partial<Record<Request['op'], RequestOp>> = { put: 'write', del: 'write', get: 'read', slice: 'slice' };

/** A request's answer and the bytes it holds until sent. */
type Executed = { ok: unknown; bytes: number };
const writeAnswer = (result: { timestampMicros: number }): Executed => ({ ok: { ts: result.timestampMicros }, bytes: 24 });
const readAnswer = (found: { value: Uint8Array; timestampMicros: number } | undefined): Executed =>
  found ? { ok: { value: found.value, ts: found.timestampMicros }, bytes: 32 + found.value.byteLength } : { ok: null, bytes: 16 };

class ClientConnection {
  inFlight = 0;
  inFlightBytes = 0;
  bad = 0;
  paused = false;
  closed = false;
  private out: Answer[] = [];
  private outBytes = 0;
  private flushScheduled = false;

  constructor(
    readonly ws: WebSocket,
    readonly remote: string,
    private readonly api: ClientApiImpl,
  ) {}

  answer(answer: Answer, bytes = 32): void {
    if (this.closed) return;
    this.out.push(answer);
    this.outBytes += bytes;
    if (!this.api.coalesce || this.outBytes >= SOFT_MESSAGE_BYTES || this.out.length >= protocol.MAX_BATCH) {
      this.flush();
      return;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.api.defer(() => this.flush());
    }
  }

  flush(): void {
    this.flushScheduled = false;
    if (this.out.length === 0) return;
    const batch = this.out;
    this.out = [];
    this.outBytes = 0;
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return;
    let message: Buffer;
    try {
      message = this.api.packr.pack(batch.length === 1 ? batch[0] : batch);
    } catch (error) {
      this.api.log.error({ err: error, remote: this.remote }, 'cannot encode client answers');
      return;
    }
    this.api.counters.messagesOut++;
    this.api.counters.answersOut += batch.length;
    this.ws.send(message);
    if (this.ws.bufferedAmount > this.api.maxConnectionBytes) this.pause();
  }

  /**
   * A client that sends faster than it reads its answers: stop reading its
   * requests until the answers queued for it drain, so TCP pushes back on
   * it instead of this node queueing its answers without bound.
   */
  private pause(): void {
    if (this.paused || this.closed) return;
    this.paused = true;
    this.ws.pause();
    const check = setInterval(() => {
      if (this.closed || this.ws.readyState !== WebSocket.OPEN) {
        clearInterval(check);
        return;
      }
      if (this.ws.bufferedAmount > this.api.maxConnectionBytes / 2) return;
      clearInterval(check);
      this.paused = false;
      this.ws.resume();
    }, 20);
    check.unref();
  }
}

class ClientApiImpl implements ClientApi {
  readonly log: Logger;
  readonly packr = protocol.createPackr();
  readonly coalesce: boolean;
  readonly defer: (fn: () => void) => void;
  readonly counters = { connectionsTotal: 0, requests: 0, badRequests: 0, badFrames: 0, overloaded: 0, messagesIn: 0, messagesOut: 0, answersOut: 0 };
  private readonly ops = new Map<string, number>();
  private readonly errors = new Map<string, number>();
  private readonly maxInFlight: number;
  readonly maxConnectionBytes: number;
  private readonly budget: RequestBudget;
  private readonly maxConnections: number;
  private readonly wss: WebSocketServer;
  private readonly connections = new Set<ClientConnection>();
  private readonly detach: () => void;
  private closing = false;
  private stopping = false;

  constructor(private readonly options: ClientApiOptions) {
    this.log = options.logger.child({ component: 'client-api' });
    this.maxInFlight = options.maxInFlight ?? protocol.DEFAULT_MAX_IN_FLIGHT;
    this.maxConnectionBytes = options.maxInflightBytesPerConnection ?? DEFAULT_MAX_INFLIGHT_BYTES_PER_CONNECTION;
    this.budget = options.budget ?? new RequestBudget(4 * this.maxConnectionBytes);
    this.maxConnections = options.maxConnections ?? 4096;
    this.coalesce = options.coalesce ?? process.env.CHORUS_CLIENT_COALESCE !== '0';
    this.defer = options.defer ?? setImmediate;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayloadBytes ?? protocol.MAX_MESSAGE_BYTES, perMessageDeflate: false, clientTracking: false });
    this.wss.on('error', (error) => this.log.warn({ err: error }, 'client WebSocket server error'));
    const server = options.app?.server ?? options.server;
    if (server) {
      const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => void this.handleUpgrade(request, socket, head);
      server.on('upgrade', onUpgrade);
      this.detach = () => server.off('upgrade', onUpgrade);
    } else {
      this.detach = () => {};
    }
    options.app?.addHook('preClose', () => this.close());
  }

  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    let path: string;
    try {
      path = new URL(request.url ?? '/', 'http://client').pathname;
    } catch {
      return false;
    }
    if (path !== protocol.CLIENT_PATH) return false;
    socket.on('error', () => socket.destroy());
    const authenticator = this.options.authenticator;
    if (authenticator && !authenticator.allows(request.headers.authorization)) {
      authenticator.refused(request.socket.remoteAddress, path);
      const body = JSON.stringify({ error: 'Unauthorized', message: new Unauthorized().message });
      socket.end(`HTTP/1.1 401 Unauthorized\r\nwww-authenticate: ${AUTHENTICATE_HEADER}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      return true;
    }
    if (this.closing || this.connections.size >= this.maxConnections) {
      if (!this.closing) this.log.warn({ remote: request.socket.remoteAddress, limit: this.maxConnections }, 'too many client connections; refused one');
      socket.end('HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\r\n');
      return true;
    }
    const remote = `${request.socket.remoteAddress ?? '?'}:${request.socket.remotePort ?? '?'}`;
    try {
      this.wss.handleUpgrade(request, socket, head, (ws) => this.accept(ws, remote));
    } catch (error) {
      this.log.debug({ err: error, remote }, 'client upgrade failed');
      socket.destroy();
    }
    return true;
  }

  private accept(ws: WebSocket, remote: string): void {
    if (this.closing) {
      ws.close(protocol.CLOSE_CODES.goingAway, 'node is stopping');
      return;
    }
    const connection = new ClientConnection(ws, remote, this);
    this.connections.add(connection);
    this.counters.connectionsTotal++;
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      // A throw here would be an uncaught exception: the whole node down for one client's message.
      try {
        this.onMessage(connection, data, isBinary);
      } catch (error) {
        this.log.error({ err: error, remote }, 'client message handling failed; connection closed');
        connection.closed = true;
        this.connections.delete(connection);
        ws.close(1011, 'internal error');
      }
    });
    ws.on('error', (error) => this.log.debug({ err: error, remote }, 'client socket error'));
    ws.on('close', () => {
      connection.closed = true;
      this.connections.delete(connection);
    });
  }

  private onMessage(connection: ClientConnection, data: WebSocket.RawData, isBinary: boolean): void {
    this.counters.messagesIn++;
    if (!isBinary) {
      this.badFrame(connection, protocol.CLOSE_CODES.unsupportedData, 'text messages are not part of the protocol; send binary msgpack');
      return;
    }
    let decoded: unknown;
    try {
      decoded = this.packr.unpack(toBuffer(data));
    } catch (error) {
      this.badFrame(connection, protocol.CLOSE_CODES.invalidPayload, `the message is not msgpack (${(error as Error).message.slice(0, 120)})`);
      return;
    }
    if (Array.isArray(decoded)) {
      if (decoded.length === 0 || decoded.length > protocol.MAX_BATCH) {
        this.badFrame(connection, protocol.CLOSE_CODES.invalidPayload, `a batch holds 1 to ${protocol.MAX_BATCH} requests, got ${decoded.length}`);
        return;
      }
      for (const item of decoded) this.onRequest(connection, item);
    } else if (typeof decoded === 'object' && decoded !== null && !(decoded instanceof Uint8Array)) {
      this.onRequest(connection, decoded);
    } else {
      this.badFrame(connection, protocol.CLOSE_CODES.invalidPayload, 'a message must be a request map or an array of them');
    }
  }

  /** A message that cannot be read at all: one id-0 error answer, then the connection is closed. */
  private badFrame(connection: ClientConnection, code: number, message: string): void {
    this.counters.badFrames++;
    this.log.warn({ remote: connection.remote, code, reason: message }, 'bad client frame; connection closed');
    connection.answer({ id: 0, error: { name: 'InvalidRequest', message } });
    connection.flush();
    connection.closed = true;
    this.connections.delete(connection);
    connection.ws.close(code, closeReason(message));
  }

  private onRequest(connection: ClientConnection, item: unknown): void {
    this.counters.requests++;
    const checked = protocol.validateRequest(item);
    if (!checked.ok) {
      this.counters.badRequests++;
      connection.bad++;
      if (connection.bad <= LOG_FIRST || connection.bad % LOG_EVERY === 0) {
        const op = typeof item === 'object' && item !== null ? String((item as { op?: unknown }).op).slice(0, 32) : undefined;
        this.log.warn({ remote: connection.remote, id: checked.id, op, reason: checked.message, badRequests: connection.bad }, 'bad client request');
      }
      this.countError('InvalidRequest');
      connection.answer({ id: checked.id, error: { name: 'InvalidRequest', message: checked.message, ...(checked.field ? { field: checked.field } : {}) } });
      return;
    }
    const request = checked.request;
    this.ops.set(request.op, (this.ops.get(request.op) ?? 0) + 1);
    const dataOp = DATA_OPS[request.op];
    if (connection.inFlight >= this.maxInFlight) {
      this.shed(connection, request, new Overloaded('client connection in-flight requests', this.maxInFlight));
      return;
    }
    const bytes = requestBytesOf(request);
    const refused =
      connection.inFlight > 0 && connection.inFlightBytes + bytes > this.maxConnectionBytes
        ? new Overloaded('client connection in-flight request bytes', this.maxConnectionBytes, { heldBytes: connection.inFlightBytes, requestBytes: bytes })
        : this.budget.take(bytes, 'client');
    if (refused) {
      this.shed(connection, request, refused);
      return;
    }
    const release = () => {
      connection.inFlightBytes -= bytes;
      this.budget.release(bytes);
    };
    connection.inFlightBytes += bytes;
    if (this.stopping && request.op !== 'hello' && request.op !== 'stats') {
      release();
      this.countError('NodeStopping');
      connection.answer({ id: request.id, error: wireErrorOf(new NodeStopping()) });
      return;
    }
    const node = this.options.node();
    if (!node && request.op !== 'hello' && request.op !== 'stats') {
      release();
      this.countError('NodeStarting');
      connection.answer({ id: request.id, error: wireErrorOf(new NodeStarting()) });
      return;
    }
    connection.inFlight++;
    const done = dataOp ? this.options.timeRequest?.(dataOp, consistencyOf(request)) : undefined;
    let promise: Promise<Executed>;
    try {
      promise = this.execute(node, request);
    } catch (error) {
      promise = Promise.reject(error);
    }
    promise.then(
      ({ ok, bytes: answerBytes }) => {
        connection.inFlight--;
        release();
        done?.();
        connection.answer({ id: request.id, ok }, answerBytes);
      },
      (error: unknown) => {
        connection.inFlight--;
        release();
        done?.(error);
        connection.answer({ id: request.id, error: this.wireError(error, request) });
      },
    );
  }

  /** A request refused by a bound: answered like any other error, so it shows beside the timeouts of its level. */
  private shed(connection: ClientConnection, request: Request, error: ChorusError): void {
    this.counters.overloaded++;
    this.countError('Overloaded');
    const dataOp = DATA_OPS[request.op];
    if (dataOp) this.options.timeRequest?.(dataOp, consistencyOf(request))({ name: 'Overloaded' });
    connection.answer({ id: request.id, error: wireErrorOf(error) });
  }

  /**
   * Runs a request. Data requests (every request under load) chain on the coordinator's one promise instead of
   * awaiting it in an async function, which would be one more promise and job each; the rest go to `executeOther`.
   * The options are built field by field, not spread from literals.
   */
  private execute(node: ChorusNode | undefined, r: Request): Promise<Executed> {
    switch (r.op) {
      case 'put': {
        const options: PutOptions = {};
        if (r.cl !== undefined) options.consistency = r.cl;
        if (r.ttl !== undefined) options.ttlSeconds = r.ttl;
        if (r.ts !== undefined) options.timestampMicros = r.ts;
        if (r.after !== undefined) options.afterMicros = r.after;
        return node!.coordinator.put(r.ks, r.key, r.ck, r.value, options).then(writeAnswer);
      }
      case 'get': {
        const options: GetOptions = {};
        if (r.cl !== undefined) options.consistency = r.cl;
        if (r.floor !== undefined) options.floorMicros = r.floor;
        return node!.coordinator.get(r.ks, r.key, r.ck, options).then(readAnswer);
      }
      case 'del': {
        const options: DelOptions = {};
        if (r.cl !== undefined) options.consistency = r.cl;
        if (r.ts !== undefined) options.timestampMicros = r.ts;
        if (r.after !== undefined) options.afterMicros = r.after;
        return node!.coordinator.del(r.ks, r.key, r.ck, options).then(writeAnswer);
      }
      default:
        return this.executeOther(node, r);
    }
  }

  private async executeOther(node: ChorusNode | undefined, r: Exclude<Request, { op: 'put' | 'get' | 'del' }>): Promise<Executed> {
    switch (r.op) {
      case 'hello':
        return {
          ok: {
            v: Math.min(r.v, protocol.PROTOCOL_VERSION),
            versions: [...protocol.SUPPORTED_VERSIONS],
            node: node?.address ?? '',
            name: node?.name ?? '',
            hostId: node?.hostId ?? '',
            maxInFlight: this.maxInFlight,
            maxMessageBytes: this.options.maxPayloadBytes ?? protocol.MAX_MESSAGE_BYTES,
          },
          bytes: 128,
        };
      case 'slice': {
        const result = await node!.coordinator.slice(r.ks, r.key, {
          ...(r.cl !== undefined ? { consistency: r.cl } : {}),
          ...(r.from !== undefined ? { from: r.from } : {}),
          ...(r.to !== undefined ? { to: r.to } : {}),
          ...(r.limit !== undefined ? { limit: r.limit } : {}),
          ...(r.page !== undefined ? { page: r.page } : {}),
          ...(r.reverse !== undefined ? { reverse: r.reverse } : {}),
          ...(r.floors !== undefined ? { floors: r.floors.map((f) => ({ clustering: f.ck, timestampMicros: f.ts })) } : {}),
        });
        let bytes = 32;
        const rows = result.rows.map((row) => {
          bytes += 24 + row.clustering.byteLength + row.value.byteLength;
          return { ck: row.clustering, value: row.value, ts: row.timestampMicros, ...(row.expiresAtMicros !== undefined ? { exp: row.expiresAtMicros } : {}) };
        });
        return { ok: { rows, ...(result.nextPage ? { next: result.nextPage } : {}) }, bytes };
      }
      case 'local': {
        const cell = await readLocal(node!, r.ks, r.key, r.ck);
        if (!cell) return { ok: null, bytes: 16 };
        const tombstone = 'tombstone' in cell && cell.tombstone === true;
        const value = tombstone ? null : (cell as { value: Uint8Array }).value;
        const exp = 'expiresAtMicros' in cell ? cell.expiresAtMicros : undefined;
        return { ok: { value, ts: cell.timestampMicros, tombstone, ...(exp !== undefined ? { exp } : {}) }, bytes: 32 + (value?.byteLength ?? 0) };
      }
      case 'ring': {
        const [ring, keyspaces] = await Promise.all([node!.ring(), node!.keyspaces()]);
        const members = new Map<string, protocol.RingMemberWire>();
        for (const entry of ring.tokens) {
          let member = members.get(entry.address);
          if (!member) {
            member = { address: entry.address, name: entry.name, dc: entry.dc, rack: entry.rack, state: entry.state, tokens: [] };
            members.set(entry.address, member);
          }
          member.tokens.push(entry.token);
        }
        const ok: protocol.RingResult = { members: [...members.values()], keyspaces: keyspaces.keyspaces.map((k) => ({ name: k.name, replication: k.replication })) };
        return { ok, bytes: 64 * ring.tokens.length };
      }
      case 'stats':
        return { ok: { node: node?.address ?? '', ...this.stats() }, bytes: 512 };
    }
  }

  private wireError(error: unknown, request: Request): WireError {
    if (isChorusError(error)) {
      this.countError(error.name);
      return wireErrorOf(error);
    }
    const message = error instanceof Error ? error.message : String(error);
    this.countError('ServerError');
    this.log.error({ err: error, op: request.op }, 'client request failed');
    return { name: 'ServerError', message };
  }

  private countError(name: string): void {
    this.errors.set(name, (this.errors.get(name) ?? 0) + 1);
  }

  stats(): ClientApiStats {
    let inFlight = 0;
    let inFlightBytes = 0;
    let pausedConnections = 0;
    for (const c of this.connections) {
      inFlight += c.inFlight;
      inFlightBytes += c.inFlightBytes;
      if (c.paused) pausedConnections++;
    }
    return {
      connections: this.connections.size,
      ...this.counters,
      ops: Object.fromEntries(this.ops),
      errors: Object.fromEntries(this.errors),
      inFlight,
      inFlightBytes,
      pausedConnections,
    };
  }

  async drain(graceMs = 2_000): Promise<void> {
    if (this.stopping || this.closing) return;
    this.stopping = true;
    const inFlight = () => [...this.connections].reduce((n, c) => n + c.inFlight, 0);
    const deadline = Date.now() + graceMs;
    while (inFlight() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await this.close();
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.stopping = true;
    this.detach();
    const closing = [...this.connections].map(
      (c) =>
        new Promise<void>((done) => {
          c.flush();
          c.closed = true;
          if (c.ws.readyState === WebSocket.CLOSED) return done();
          const timer = setTimeout(() => {
            c.ws.terminate();
            done();
          }, 500);
          c.ws.once('close', () => {
            clearTimeout(timer);
            done();
          });
          c.ws.close(protocol.CLOSE_CODES.goingAway, 'node is stopping');
        }),
    );
    this.connections.clear();
    await Promise.all(closing);
  }
}

function consistencyOf(request: Request): string | undefined {
  return 'cl' in request && typeof request.cl === 'string' ? request.cl : undefined;
}

/** A WebSocket close reason: at most 123 bytes of UTF-8, cut on a character boundary. */
function closeReason(text: string): string {
  let out = text.slice(0, 123);
  while (Buffer.byteLength(out) > 123) out = out.slice(0, -1);
  return out;
}

function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/**
 * The client protocol (`@chorus/client-protocol`) on the `/client`
 * WebSocket path of the node's port, beside the peer transport's `/peer`.
 */
export function attachClientApi(options: ClientApiOptions): ClientApi {
  return new ClientApiImpl(options);
}
