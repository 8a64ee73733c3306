import {
  type Answer,
  CLIENT_PATH,
  type HelloResult,
  MAX_BATCH,
  MAX_REQUEST_ID,
  type Op,
  PROTOCOL_VERSION,
  type RequestBody,
  type WireError,
  type createPackr,
} from '@chorus/client-protocol';
import { type ChorusError, IdTable, type Logger, type Timer } from '@chorus/core';
import WebSocket from 'ws';
import { ConnectionError } from './errors.js';
import type { Bytes, ClientEnv, Settings } from './options.js';
import type { Host } from './routing.js';

/** Where a call may go: a replica of a key, one given host, or any host. */
export type Route = { kind: 'token'; keyspace: string; key: Bytes } | { kind: 'host'; host: string } | { kind: 'any' };

/** One request of the client, from the call until it settles, across every host it is tried on. */
export interface Call {
  /** The client's own number for the call, unique while the client lives. */
  readonly serial: number;
  readonly body: RequestBody;
  readonly op: Op;
  readonly route: Route;
  readonly bytes: number;
  readonly deadlineMs: number;
  /** Hosts already tried, with why they failed; made on the first failure (most calls never fail). */
  tried: Map<string, string> | undefined;
  attempts: number;
  host: Host | undefined;
  lastError: ChorusError | undefined;
  settled: boolean;
  internal: boolean;
  /** Turns the server's result into what the caller gets (see `Client.call`). */
  shape: ((result: unknown) => unknown) | undefined;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/**
 * What a connection needs of the client that owns it. The connection calls
 * these synchronously from its socket events and timers, so none may throw.
 * A call submitted to a connection comes back through one of `succeed`,
 * `failed` or `connectionLost`, unless it settled meanwhile (a timeout).
 */
export interface ConnectionOwner {
  readonly settings: Settings;
  readonly env: ClientEnv;
  readonly log: Logger;
  readonly packr: ReturnType<typeof createPackr>;
  readonly counters: { messagesSent: number; messagesReceived: number };
  /** A call the client itself makes (the hello), not counted among the user's requests. */
  internalCall(body: RequestBody, route: Route): Call;
  /** The hello was accepted: the connection takes requests. */
  connectionOpened(connection: Connection): void;
  /** The connection is closed for good; called before its calls are handed back. */
  connectionFailed(connection: Connection, reason: string, wasOpen: boolean): void;
  succeed(call: Call, result: unknown): void;
  /** An error answer from the server. */
  failed(call: Call, wire: WireError): void;
  /** The connection broke with `call` on it; `error.sent` tells whether it had been written. */
  connectionLost(call: Call, error: ConnectionError): void;
}

/** Largest message a client accepts: slices can be large. */
const CLIENT_MAX_PAYLOAD = 256 * 1024 * 1024;
/** A coalesced message is cut at about this many bytes. */
const SOFT_MESSAGE_BYTES = 1024 * 1024;

type ConnState = 'connecting' | 'open' | 'closed';

/** One WebSocket to one node: pipelined requests matched by id, coalesced sends. */
export class Connection {
  state: ConnState = 'connecting';
  /** Calls sent and not yet answered, by request id (slots, not a Map: see IdTable). */
  readonly inFlight = new IdTable<Call>();
  /** Calls waiting for the connection to open or for a free in-flight slot. */
  readonly waiting: Call[] = [];
  private outbox: Array<{ id: number; call: Call }> = [];
  private flushScheduled = false;
  private nextId = 1;
  private maxInFlight: number;
  private readonly ws: WebSocket;
  private connectTimer: Timer | undefined;
  private pingTimer: Timer | undefined;
  private pongSeen = true;
  hello: HelloResult | undefined;

  constructor(readonly host: Host, private readonly client: ConnectionOwner) {
    this.maxInFlight = client.settings.maxInFlightPerConnection;
    const { token, tls, ca } = client.settings;
    const url = `${tls ? 'wss' : 'ws'}://${host.address}${CLIENT_PATH}`;
    this.ws = new WebSocket(url, {
      maxPayload: CLIENT_MAX_PAYLOAD,
      perMessageDeflate: false,
      handshakeTimeout: client.settings.connectTimeoutMs,
      // A zero masking key: ws then neither copies nor XORs the payload, on either side. Masking guards
      // proxies against pages of a browser that forge frames; this client does not run a page's script.
      generateMask: zeroMask,
      ...(token !== undefined ? { headers: { authorization: `Bearer ${token}` } } : {}),
      ...(ca !== undefined ? { ca } : {}),
    });
    this.ws.binaryType = 'nodebuffer';
    this.connectTimer = client.env.scheduler.setTimer(client.settings.connectTimeoutMs, () => this.fail(`no hello within ${client.settings.connectTimeoutMs} ms`));
    this.ws.on('open', () => this.sendHello());
    this.ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
    this.ws.on('pong', () => (this.pongSeen = true));
    // A node that refuses the upgrade answers with its reason (401 Unauthorized, 503 when full); it is worth more than ws's generic error.
    this.ws.on('unexpected-response', (_request, response) => {
      const status = response.statusCode ?? 0;
      this.fail(status === 401 ? `Unauthorized: ${host.address} requires a valid token (the token option)` : `the node answered the upgrade with HTTP ${status}`);
      response.destroy();
    });
    this.ws.on('error', (error: Error) => this.fail((error as NodeJS.ErrnoException).code ?? error.message));
    this.ws.on('close', (code: number, reason: Buffer) => this.fail(`closed (${code}${reason.length ? ` ${reason.toString('utf8').slice(0, 120)}` : ''})`));
  }

  get load(): number {
    return this.inFlight.size + this.outbox.length + this.waiting.length;
  }

  /** Whether a new call would wait for a slot. */
  get full(): boolean {
    return this.state !== 'open' || this.inFlight.size + this.outbox.length >= this.maxInFlight;
  }

  submit(call: Call): void {
    if (this.full) this.waiting.push(call);
    else this.enqueue(call);
  }

  private enqueue(call: Call): void {
    const id = this.nextId;
    this.nextId = id >= MAX_REQUEST_ID ? 1 : id + 1;
    this.inFlight.set(id, call);
    this.outbox.push({ id, call });
    if (!this.client.settings.coalesce) {
      this.flush();
      return;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.client.env.scheduler.defer(() => this.flush());
    }
  }

  private sendHello(): void {
    const call = this.client.internalCall({ op: 'hello', v: PROTOCOL_VERSION, client: 'chorus-client/0.1' }, { kind: 'host', host: this.host.address });
    call.host = this.host;
    const id = this.nextId++;
    this.inFlight.set(id, call);
    this.outbox.push({ id, call });
    this.flush();
    call.resolve = (result) => {
      const hello = result as HelloResult;
      if (!hello || typeof hello !== 'object' || !Array.isArray(hello.versions) || !hello.versions.includes(PROTOCOL_VERSION)) {
        this.fail(`the server does not speak client protocol version ${PROTOCOL_VERSION}`);
        return;
      }
      this.hello = hello;
      this.maxInFlight = Math.max(1, Math.min(this.maxInFlight, typeof hello.maxInFlight === 'number' ? hello.maxInFlight : this.maxInFlight));
      this.connectTimer?.cancel();
      this.connectTimer = undefined;
      this.state = 'open';
      this.client.connectionOpened(this);
      this.schedulePing();
      this.pump();
    };
    call.reject = (error) => this.fail(`hello refused: ${error.message}`);
  }

  private schedulePing(): void {
    this.pingTimer = this.client.env.scheduler.setTimer(this.client.settings.pingIntervalMs, () => {
      if (this.state !== 'open') return;
      if (!this.pongSeen) {
        this.fail(`no pong within ${this.client.settings.pingIntervalMs} ms`);
        this.ws.terminate();
        return;
      }
      this.pongSeen = false;
      try {
        this.ws.ping();
      } catch {
        // The close event follows.
      }
      this.schedulePing();
    });
  }

  /** Moves waiting calls into free in-flight slots. */
  private pump(): void {
    while (this.waiting.length > 0 && !this.full) {
      const call = this.waiting.shift()!;
      if (call.settled) continue;
      this.enqueue(call);
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.outbox.length === 0 || this.ws.readyState !== WebSocket.OPEN) return;
    const items = this.outbox;
    this.outbox = [];
    let batch: Array<Record<string, unknown>> = [];
    let bytes = 0;
    for (const { id, call } of items) {
      if (call.settled && !call.internal) {
        // Timed out before it left: free its slot instead of sending it.
        this.inFlight.delete(id);
        continue;
      }
      // The id goes on the body itself (a call resent elsewhere gets its new id the same way): no copy per request.
      (call.body as RequestBody & { id: number }).id = id;
      batch.push(call.body);
      bytes += call.bytes;
      this.host.sent++;
      if (batch.length >= MAX_BATCH || bytes >= SOFT_MESSAGE_BYTES) {
        this.send(batch);
        batch = [];
        bytes = 0;
      }
    }
    if (batch.length > 0) this.send(batch);
  }

  private send(batch: Array<Record<string, unknown>>): void {
    const message = this.client.packr.pack(batch.length === 1 ? batch[0] : batch);
    this.client.counters.messagesSent++;
    this.ws.send(message);
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    this.client.counters.messagesReceived++;
    let decoded: unknown;
    try {
      if (!isBinary) throw new Error('a text message');
      decoded = this.client.packr.unpack(data);
    } catch (error) {
      this.fail(`undecodable answer from the server (${(error as Error).message})`);
      this.ws.terminate();
      return;
    }
    if (Array.isArray(decoded)) for (const answer of decoded) this.onAnswer(answer as Answer);
    else this.onAnswer(decoded as Answer);
    this.pump();
  }

  private onAnswer(answer: Answer): void {
    if (typeof answer !== 'object' || answer === null) return;
    const id = answer.id;
    if (id === 0) {
      const error = 'error' in answer ? answer.error : undefined;
      this.client.log.warn({ host: this.host.address, error }, 'the server reported a connection error');
      return;
    }
    const call = this.inFlight.get(id);
    if (!call) return;
    this.inFlight.delete(id);
    if ('error' in answer && answer.error) this.client.failed(call, answer.error);
    else this.client.succeed(call, (answer as { ok: unknown }).ok);
  }

  /** The connection is done for: every call it holds goes elsewhere or fails. Idempotent. */
  fail(reason: string): void {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    this.connectTimer?.cancel();
    this.pingTimer?.cancel();
    try {
      if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) this.ws.terminate();
    } catch {
      // Already gone.
    }
    const unsent = [...this.waiting, ...this.outbox.map((o) => o.call)];
    const sentIds = new Set(this.outbox.map((o) => o.id));
    const sent = [...this.inFlight.entries()].filter(([id]) => !sentIds.has(id)).map(([, call]) => call);
    this.waiting.length = 0;
    this.outbox = [];
    this.inFlight.clear();
    this.client.connectionFailed(this, reason, wasOpen);
    for (const call of unsent) this.client.connectionLost(call, new ConnectionError(this.host.address, reason, false));
    for (const call of sent) this.client.connectionLost(call, new ConnectionError(this.host.address, reason, true));
  }

  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.connectTimer?.cancel();
    this.pingTimer?.cancel();
    try {
      this.ws.close(1000, 'client closed');
    } catch {
      this.ws.terminate();
    }
  }
}

/** Fills a frame's masking key with zeros (see where the socket is opened). */
function zeroMask(mask: Uint8Array): void {
  mask.fill(0);
}
