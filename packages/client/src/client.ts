import { ChorusError, type Env, type Logger, type Timer, type Token, nodeId, realEnv, silentLogger } from '@chorus/core';
import { type ReplicationSpec, type RingMember, RingView, parseReplication, tokenOf } from '@chorus/ring';
import WebSocket from 'ws';
import { ClientClosed, ConnectionError, InvalidRequest, NoHostAvailable, Overloaded, READ_RETRIED_SERVER_ERRORS, RETRIED_SERVER_ERRORS, RequestTimeout, errorFromWire } from './errors.js';
import {
  type Answer,
  CLIENT_PATH,
  DEFAULT_MAX_IN_FLIGHT,
  type GetResult,
  type HelloResult,
  type LocalResult,
  MAX_BATCH,
  MAX_REQUEST_ID,
  type Op,
  PROTOCOL_VERSION,
  READ_ONLY_OPS,
  type RequestBody,
  type RingResult,
  type SliceResultWire,
  type WireError,
  type WriteResult,
  createPackr,
} from './protocol.js';

/** Keys and values: bytes, or strings taken as UTF-8. */
export type Bytes = Uint8Array | string;

/** What the client takes from its environment: time, timers and randomness (the real ones by default). */
export type ClientEnv = Pick<Env, 'clock' | 'scheduler' | 'random'> & { logger?: Logger };

export interface ClientOptions {
  /** Clock, scheduler and random source; `realEnv` by default. */
  env?: ClientEnv;
  /** A request not answered within this long fails with RequestTimeout (default 12000, beyond the server's own read timeout). */
  requestTimeoutMs?: number;
  /** Opening a connection, WebSocket handshake and hello included (default 5000). */
  connectTimeoutMs?: number;
  /** Connections kept to each node (default 1). */
  connectionsPerHost?: number;
  /** Requests in flight on one connection; the server's limit if lower (default 1024). */
  maxInFlightPerConnection?: number;
  /** Requests outstanding in the client at once before new ones fail with Overloaded (default 100000). */
  maxPending?: number;
  /** How often the ring is fetched again (default 10000 ms); also fetched after connection failures and for unknown keyspaces. */
  ringRefreshMs?: number;
  /** Send keyed requests to a replica of the key (default true); false spreads them over all nodes. */
  tokenAware?: boolean;
  /** Prefer replicas in this datacenter (for LOCAL_* levels). */
  localDc?: string;
  /** Connect to nodes learnt from the ring, not only to the given ones (default true). */
  discover?: boolean;
  /** Hosts tried for one request at most (default 3). */
  maxAttempts?: number;
  /** Back-off of a host after a failed or broken connection: doubles from min to max (defaults 250 and 10000 ms). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** WebSocket ping interval; a connection that missed a whole interval's pong is cut (default 5000 ms). */
  pingIntervalMs?: number;
  /** Requests issued in one turn go out in one WebSocket message (default true). */
  coalesce?: boolean;
  /** Consistency when a call names none; the server's default (QUORUM) otherwise. */
  consistency?: string;
}

export interface ReadOptions {
  consistency?: string;
  clustering?: Bytes;
}

export interface PutOptions extends ReadOptions {
  /** Seconds until the value expires. */
  ttl?: number;
  /** The write's timestamp in microseconds since the epoch; the coordinator's clock by default. */
  timestamp?: number;
}

export interface DelOptions extends ReadOptions {
  timestamp?: number;
}

export interface SliceOptions {
  consistency?: string;
  /** Inclusive clustering bounds. */
  from?: Bytes;
  to?: Bytes;
  /** Live rows per page (server default 1000, at most 10000). */
  limit?: number;
  /** `nextPage` of the previous page. */
  page?: Uint8Array;
  reverse?: boolean;
}

export interface Row {
  clustering: Uint8Array;
  value: Uint8Array;
  timestamp: number;
  expiresAt?: number;
}

export interface SliceResult {
  rows: Row[];
  nextPage?: Uint8Array;
}

export interface LocalCell {
  /** Undefined for a tombstone. */
  value: Uint8Array | undefined;
  timestamp: number;
  tombstone: boolean;
  expiresAt?: number;
}

export interface RingInfo {
  members: Array<{ address: string; name: string; dc: string; rack: string; state: string; tokens: string[] }>;
  keyspaces: Array<{ name: string; replication: ReplicationSpec }>;
}

export type HostState = 'idle' | 'connecting' | 'up' | 'down';

export interface HostStats {
  state: HostState;
  /** The node's own view of itself in the last ring (UN, DN, …). */
  serverState: string | undefined;
  dc: string | undefined;
  /** Requests written to this host. */
  sent: number;
  inFlight: number;
  queued: number;
  failures: number;
  lastError: string | undefined;
}

export interface ClientStats {
  requests: number;
  succeeded: number;
  failed: number;
  /** Requests sent again to another host (see the README for which). */
  retries: number;
  /** Keyed requests sent to a natural replica of their key. */
  tokenAware: number;
  /** Keyed requests sent elsewhere: no ring yet, unknown keyspace, or no replica reachable. */
  nonReplica: number;
  timeouts: number;
  messagesSent: number;
  messagesReceived: number;
  /** Failed requests by error name. */
  errors: Record<string, number>;
  ringFetches: number;
  hosts: Record<string, HostStats>;
}

export interface ChorusClient {
  put(keyspace: string, key: Bytes, value: Bytes, options?: PutOptions): Promise<{ timestamp: number }>;
  /** The live value, or undefined when absent, deleted or expired. */
  get(keyspace: string, key: Bytes, options?: ReadOptions): Promise<{ value: Uint8Array; timestamp: number } | undefined>;
  del(keyspace: string, key: Bytes, options?: DelOptions): Promise<{ timestamp: number }>;
  slice(keyspace: string, partition: Bytes, options?: SliceOptions): Promise<SliceResult>;
  /** What `host`'s own replica holds, without coordination (tombstones included): inspection and tests. */
  local(host: string, keyspace: string, key: Bytes, options?: { clustering?: Bytes }): Promise<LocalCell | undefined>;
  /** Fetches the ring now and returns it. */
  ring(): Promise<RingInfo>;
  /** Addresses of the natural replicas of `key` in the client's current ring (empty before the first ring). */
  replicasOf(keyspace: string, key: Bytes): string[];
  /** Resolves once the client has a ring (token-aware routing works from then on). */
  ready(): Promise<void>;
  stats(): ClientStats;
  /** Closes every connection; pending requests fail with ClientClosed. */
  close(): Promise<void>;
}

interface Settings {
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  connectionsPerHost: number;
  maxInFlightPerConnection: number;
  maxPending: number;
  ringRefreshMs: number;
  tokenAware: boolean;
  localDc: string | undefined;
  discover: boolean;
  maxAttempts: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  pingIntervalMs: number;
  coalesce: boolean;
  consistency: string | undefined;
}

const DEFAULTS: Settings = {
  requestTimeoutMs: 12_000,
  connectTimeoutMs: 5_000,
  connectionsPerHost: 1,
  maxInFlightPerConnection: DEFAULT_MAX_IN_FLIGHT,
  maxPending: 100_000,
  ringRefreshMs: 10_000,
  tokenAware: true,
  localDc: undefined,
  discover: true,
  maxAttempts: 3,
  minBackoffMs: 250,
  maxBackoffMs: 10_000,
  pingIntervalMs: 5_000,
  coalesce: true,
  consistency: undefined,
};

/** Largest message a client accepts: slices can be large. */
const CLIENT_MAX_PAYLOAD = 256 * 1024 * 1024;
/** A coalesced message is cut at about this many bytes. */
const SOFT_MESSAGE_BYTES = 1024 * 1024;
const SWEEP_INTERVAL_MS = 100;
const RING_RETRY_MS = 1_000;

type Route = { kind: 'token'; keyspace: string; key: Bytes } | { kind: 'host'; host: string } | { kind: 'any' };

interface Call {
  readonly body: RequestBody;
  readonly op: Op;
  readonly route: Route;
  readonly bytes: number;
  readonly deadlineMs: number;
  /** Hosts already tried, with why they failed. */
  readonly tried: Map<string, string>;
  attempts: number;
  host: Host | undefined;
  lastError: ChorusError | undefined;
  settled: boolean;
  internal: boolean;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

type ConnState = 'connecting' | 'open' | 'closed';

/** One WebSocket to one node: pipelined requests matched by id, coalesced sends. */
class Connection {
  state: ConnState = 'connecting';
  readonly inFlight = new Map<number, Call>();
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

  constructor(readonly host: Host, private readonly client: Client) {
    this.maxInFlight = client.settings.maxInFlightPerConnection;
    const url = `ws://${host.address}${CLIENT_PATH}`;
    this.ws = new WebSocket(url, { maxPayload: CLIENT_MAX_PAYLOAD, perMessageDeflate: false, handshakeTimeout: client.settings.connectTimeoutMs });
    this.ws.binaryType = 'nodebuffer';
    this.connectTimer = client.env.scheduler.setTimer(client.settings.connectTimeoutMs, () => this.fail(`no hello within ${client.settings.connectTimeoutMs} ms`));
    this.ws.on('open', () => this.sendHello());
    this.ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
    this.ws.on('pong', () => (this.pongSeen = true));
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
      batch.push({ id, ...call.body });
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
    const sent = [...this.inFlight].filter(([id]) => !sentIds.has(id)).map(([, call]) => call);
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

/** A node the client knows: its connections and its health. */
class Host {
  readonly connections: Connection[] = [];
  /** The node's own address as the ring names it, once a hello told us. */
  node: string | undefined;
  serverState: string | undefined;
  dc: string | undefined;
  downUntilMs = 0;
  failures = 0;
  lastError: string | undefined;
  sent = 0;
  private probeTimer: Timer | undefined;

  constructor(readonly address: string, private readonly client: Client) {}

  /** How the ring names this host: its own address once known, the given one before. */
  get id(): string {
    return this.node ?? this.address;
  }

  get state(): HostState {
    if (this.connections.some((c) => c.state === 'open')) return 'up';
    if (this.downUntilMs > this.client.now()) return 'down';
    if (this.connections.some((c) => c.state === 'connecting')) return 'connecting';
    return this.failures > 0 ? 'down' : 'idle';
  }

  /** Usable for a new request: not backing off after a failure. */
  get usable(): boolean {
    return this.connections.some((c) => c.state === 'open') || this.downUntilMs <= this.client.now();
  }

  get load(): number {
    let n = 0;
    for (const c of this.connections) n += c.load;
    return n;
  }

  /** The connection a new request goes on; opens connections up to connectionsPerHost. */
  connection(): Connection {
    this.ensureConnections();
    let best: Connection | undefined;
    for (const c of this.connections) {
      if (c.state === 'closed') continue;
      if (!best || (best.state !== 'open' && c.state === 'open') || (c.state === best.state && c.load < best.load)) best = c;
    }
    return best!;
  }

  ensureConnections(): void {
    for (let i = this.connections.length - 1; i >= 0; i--) if (this.connections[i]!.state === 'closed') this.connections.splice(i, 1);
    while (this.connections.length < this.client.settings.connectionsPerHost) this.connections.push(new Connection(this, this.client));
  }

  opened(): void {
    this.failures = 0;
    this.downUntilMs = 0;
    this.lastError = undefined;
  }

  /** Marks the host down for a back-off period, then tries to connect again in the background. */
  markDown(reason: string): void {
    this.lastError = reason;
    this.failures++;
    const s = this.client.settings;
    const base = Math.min(s.maxBackoffMs, s.minBackoffMs * 2 ** Math.min(this.failures - 1, 20));
    const backoff = Math.round(base * (0.75 + 0.5 * this.client.env.random.next()));
    this.downUntilMs = this.client.now() + backoff;
    this.probeTimer?.cancel();
    this.probeTimer = this.client.env.scheduler.setTimer(backoff, () => {
      this.probeTimer = undefined;
      if (!this.client.closed && !this.connections.some((c) => c.state !== 'closed')) this.ensureConnections();
    });
  }

  close(): void {
    this.probeTimer?.cancel();
    for (const c of this.connections) c.close();
  }
}

interface RingState {
  view: RingView;
  keyspaces: Map<string, ReplicationSpec>;
  info: RingInfo;
}

const RING_STATUS: Record<string, RingMember['status'] | undefined> = { N: 'normal', L: 'leaving', J: 'joining' };

class Client implements ChorusClient {
  readonly settings: Settings;
  readonly env: ClientEnv;
  readonly log: Logger;
  readonly packr = createPackr();
  readonly counters = { requests: 0, succeeded: 0, failed: 0, retries: 0, tokenAware: 0, nonReplica: 0, timeouts: 0, messagesSent: 0, messagesReceived: 0, ringFetches: 0 };
  private readonly errorCounts = new Map<string, number>();
  private readonly hosts = new Map<string, Host>();
  /** Node address (from hello or the ring) → host. */
  private readonly byNode = new Map<string, Host>();
  private readonly pending = new Set<Call>();
  private ringState: RingState | undefined;
  private ringFetch: Promise<RingInfo> | undefined;
  private lastRingRequestMs = Number.NEGATIVE_INFINITY;
  private ringTimer: Timer | undefined;
  private sweepTimer: Timer | undefined;
  private rotation = 0;
  closed = false;

  constructor(hosts: readonly string[], options: ClientOptions) {
    const given = Object.fromEntries(Object.entries(options).filter(([key, value]) => key in DEFAULTS && value !== undefined));
    this.settings = { ...DEFAULTS, ...given } as Settings;
    this.env = options.env ?? realEnv(nodeId('chorus-client'));
    this.log = (options.env?.logger ?? silentLogger).child({ component: 'chorus-client' });
    if (hosts.length === 0) throw new TypeError('connect() needs at least one host:port');
    for (const address of hosts) {
      if (typeof address !== 'string' || !/^[^\s/]+:\d{1,5}$/.test(address)) throw new TypeError(`not a host:port: ${JSON.stringify(address)}`);
      this.hostOf(address);
    }
    this.scheduleSweep();
    void this.refreshRing().catch(() => {});
  }

  now(): number {
    return this.env.clock.monotonicMs();
  }

  // ——— public API ———

  async put(keyspace: string, key: Bytes, value: Bytes, options: PutOptions = {}): Promise<{ timestamp: number }> {
    const result = (await this.call(
      strip({ op: 'put', ks: keyspace, key, value, ck: options.clustering, cl: options.consistency ?? this.settings.consistency, ttl: options.ttl, ts: options.timestamp }) as RequestBody,
      { kind: 'token', keyspace, key },
    )) as WriteResult;
    return { timestamp: result.ts };
  }

  async get(keyspace: string, key: Bytes, options: ReadOptions = {}): Promise<{ value: Uint8Array; timestamp: number } | undefined> {
    const result = (await this.call(strip({ op: 'get', ks: keyspace, key, ck: options.clustering, cl: options.consistency ?? this.settings.consistency }) as RequestBody, {
      kind: 'token',
      keyspace,
      key,
    })) as GetResult | null;
    return result ? { value: result.value, timestamp: result.ts } : undefined;
  }

  async del(keyspace: string, key: Bytes, options: DelOptions = {}): Promise<{ timestamp: number }> {
    const result = (await this.call(
      strip({ op: 'del', ks: keyspace, key, ck: options.clustering, cl: options.consistency ?? this.settings.consistency, ts: options.timestamp }) as RequestBody,
      { kind: 'token', keyspace, key },
    )) as WriteResult;
    return { timestamp: result.ts };
  }

  async slice(keyspace: string, partition: Bytes, options: SliceOptions = {}): Promise<SliceResult> {
    const result = (await this.call(
      strip({
        op: 'slice',
        ks: keyspace,
        key: partition,
        from: options.from,
        to: options.to,
        limit: options.limit,
        page: options.page,
        reverse: options.reverse,
        cl: options.consistency ?? this.settings.consistency,
      }) as RequestBody,
      { kind: 'token', keyspace, key: partition },
    )) as SliceResultWire;
    return {
      rows: result.rows.map((r) => ({ clustering: r.ck, value: r.value, timestamp: r.ts, ...(r.exp !== undefined ? { expiresAt: r.exp } : {}) })),
      ...(result.next ? { nextPage: result.next } : {}),
    };
  }

  async local(host: string, keyspace: string, key: Bytes, options: { clustering?: Bytes } = {}): Promise<LocalCell | undefined> {
    const target = this.byNode.get(host) ?? this.hostOf(host);
    const result = (await this.call(strip({ op: 'local', ks: keyspace, key, ck: options.clustering }) as RequestBody, { kind: 'host', host: target.address })) as LocalResult | null;
    if (!result) return undefined;
    return { value: result.value ?? undefined, timestamp: result.ts, tombstone: result.tombstone, ...(result.exp !== undefined ? { expiresAt: result.exp } : {}) };
  }

  async ring(): Promise<RingInfo> {
    return this.refreshRing();
  }

  replicasOf(keyspace: string, key: Bytes): string[] {
    const ring = this.ringState;
    const replication = ring?.keyspaces.get(keyspace);
    if (!ring || !replication) return [];
    return [...ring.view.naturalReplicas(tokenOf(key), replication)];
  }

  async ready(): Promise<void> {
    if (this.ringState) return;
    await this.refreshRing();
  }

  stats(): ClientStats {
    const hosts: Record<string, HostStats> = {};
    for (const host of this.hosts.values()) {
      let inFlight = 0;
      let queued = 0;
      for (const c of host.connections) {
        inFlight += c.inFlight.size;
        queued += c.waiting.length;
      }
      hosts[host.node ?? host.address] = { state: host.state, serverState: host.serverState, dc: host.dc, sent: host.sent, inFlight, queued, failures: host.failures, lastError: host.lastError };
    }
    return { ...this.counters, errors: Object.fromEntries(this.errorCounts), hosts };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ringTimer?.cancel();
    this.sweepTimer?.cancel();
    for (const call of [...this.pending]) this.settle(call, new ClientClosed());
    for (const host of this.hosts.values()) host.close();
  }

  // ——— requests ———

  internalCall(body: RequestBody, route: Route): Call {
    return this.newCall(body, route, true, () => {}, () => {});
  }

  private newCall(body: RequestBody, route: Route, internal: boolean, resolve: (v: unknown) => void, reject: (e: Error) => void): Call {
    return {
      body,
      op: body.op,
      route,
      bytes: 48 + byteLength((body as { value?: Bytes }).value) + byteLength((body as { key?: Bytes }).key),
      deadlineMs: this.now() + this.settings.requestTimeoutMs,
      tried: new Map(),
      attempts: 0,
      host: undefined,
      lastError: undefined,
      settled: false,
      internal,
      resolve,
      reject,
    };
  }

  private call(body: RequestBody, route: Route): Promise<unknown> {
    if (this.closed) return Promise.reject(new ClientClosed());
    this.counters.requests++;
    if (this.pending.size >= this.settings.maxPending) {
      this.counters.failed++;
      this.errorCounts.set('Overloaded', (this.errorCounts.get('Overloaded') ?? 0) + 1);
      return Promise.reject(new Overloaded(`client requests outstanding is full (capacity ${this.settings.maxPending})`, { capacity: this.settings.maxPending }));
    }
    return new Promise((resolve, reject) => {
      const call = this.newCall(body, route, false, resolve, reject);
      this.pending.add(call);
      this.dispatch(call);
    });
  }

  private dispatch(call: Call): void {
    if (call.settled) return;
    if (this.closed) {
      this.settle(call, new ClientClosed());
      return;
    }
    const host = this.pick(call);
    if (!host) {
      this.settle(call, this.exhausted(call));
      return;
    }
    call.attempts++;
    call.host = host;
    host.connection().submit(call);
  }

  /** The host a call goes to next: replicas of its key first, healthy and least loaded first. */
  private pick(call: Call): Host | undefined {
    const route = call.route;
    if (route.kind === 'host') {
      const host = this.hostOf(route.host);
      return call.tried.has(host.address) ? undefined : host;
    }
    if (call.attempts >= this.settings.maxAttempts) return undefined;
    let replicas: readonly string[] = [];
    if (route.kind === 'token' && this.settings.tokenAware) {
      const ring = this.ringState;
      const replication = ring?.keyspaces.get(route.keyspace);
      if (ring && replication) replicas = ring.view.naturalReplicas(tokenOf(route.key) as Token, replication);
      else if (ring) this.requestRing(); // a keyspace created after our last look
    }
    let best: Host | undefined;
    let bestScore = Number.POSITIVE_INFINITY;
    const start = this.rotation++;
    const consider = (host: Host | undefined, rank: number) => {
      if (!host || call.tried.has(host.address) || !host.usable) return;
      let score = rank * 1_000_000_000;
      if (host.state !== 'up') score += 100_000_000;
      if (host.serverState !== undefined && host.serverState[0] === 'D') score += 200_000_000;
      if (this.settings.localDc !== undefined && host.dc !== undefined && host.dc !== this.settings.localDc) score += 400_000_000;
      score += host.load;
      if (score < bestScore) {
        best = host;
        bestScore = score;
      }
    };
    const n = replicas.length;
    for (let i = 0; i < n; i++) consider(this.byNode.get(replicas[(start + i) % n]!), 0);
    if (!best || bestScore >= 100_000_000) {
      const all = [...this.hosts.values()];
      const m = all.length;
      for (let i = 0; i < m; i++) {
        const host = all[(start + i) % m]!;
        if (n === 0 || !replicas.includes(host.id)) consider(host, 1);
      }
    }
    const chosen = best as Host | undefined;
    if (chosen && route.kind === 'token') {
      if (n > 0 && replicas.includes(chosen.id)) this.counters.tokenAware++;
      else this.counters.nonReplica++;
    }
    return chosen;
  }

  succeed(call: Call, result: unknown): void {
    if (call.internal) {
      call.resolve(result);
      return;
    }
    if (call.settled) return;
    this.settle(call, undefined, result);
  }

  /** An error answer from the server. */
  failed(call: Call, wire: WireError): void {
    const error = errorFromWire(typeof wire === 'object' && wire !== null ? wire : { name: 'ServerError', message: String(wire) });
    if (call.internal) {
      call.reject(error);
      return;
    }
    if (call.settled) return;
    if ((RETRIED_SERVER_ERRORS.has(error.name) || (READ_RETRIED_SERVER_ERRORS.has(error.name) && READ_ONLY_OPS.has(call.op))) && call.route.kind !== 'host') {
      this.retry(call, `${error.name}: ${error.message}`, error);
      return;
    }
    if (error instanceof InvalidRequest && error.fields.reason === 'UNKNOWN_KEYSPACE') this.requestRing();
    this.settle(call, error);
  }

  /**
   * The connection holding `call` broke. Calls that never left go to another
   * host; calls that were written are sent again only when read-only.
   */
  connectionLost(call: Call, error: ConnectionError): void {
    if (call.internal) {
      call.reject(error);
      return;
    }
    if (call.settled) return;
    if (!error.sent || READ_ONLY_OPS.has(call.op)) this.retry(call, error.message, error);
    else this.settle(call, error);
  }

  private retry(call: Call, reason: string, error: ChorusError): void {
    if (call.host) call.tried.set(call.host.address, reason);
    call.lastError = error;
    if (call.route.kind === 'host' || call.attempts >= this.settings.maxAttempts) {
      this.settle(call, this.exhausted(call));
      return;
    }
    this.counters.retries++;
    this.dispatch(call);
  }

  /**
   * The error of a call no host is left for: the server's own error when a
   * node refused it (Overloaded…), the connection error for a call to one
   * given host, NoHostAvailable with every host's reason otherwise.
   */
  private exhausted(call: Call): Error {
    const last = call.lastError;
    if (last && !(last instanceof ConnectionError)) return last;
    if (call.route.kind === 'host') return last ?? new ConnectionError(call.route.host, 'host is down');
    return new NoHostAvailable(Object.fromEntries(call.tried));
  }

  private settle(call: Call, error: Error | undefined, result?: unknown): void {
    if (call.settled) return;
    call.settled = true;
    this.pending.delete(call);
    if (error) {
      this.counters.failed++;
      this.errorCounts.set(error.name, (this.errorCounts.get(error.name) ?? 0) + 1);
      call.reject(error);
    } else {
      this.counters.succeeded++;
      call.resolve(result);
    }
  }

  /** One timer for every request's deadline. */
  private scheduleSweep(): void {
    this.sweepTimer = this.env.scheduler.setTimer(SWEEP_INTERVAL_MS, () => {
      if (this.closed) return;
      const now = this.now();
      for (const call of this.pending) {
        if (call.deadlineMs <= now) {
          this.counters.timeouts++;
          this.settle(call, new RequestTimeout(this.settings.requestTimeoutMs, call.host?.address));
        }
      }
      this.scheduleSweep();
    });
  }

  // ——— hosts and connections ———

  private hostOf(address: string): Host {
    let host = this.hosts.get(address);
    if (!host) {
      host = new Host(address, this);
      this.hosts.set(address, host);
      if (!this.byNode.has(address)) this.byNode.set(address, host);
    }
    return host;
  }

  connectionOpened(connection: Connection): void {
    const host = connection.host;
    host.opened();
    const node = connection.hello?.node;
    if (typeof node === 'string' && node !== host.node) {
      host.node = node;
      this.byNode.set(node, host);
      // A seed given by another name (localhost:7100) is the ring's 127.0.0.1:7100: keep one host for both.
      const twin = this.hosts.get(node);
      if (twin && twin !== host && twin.connections.every((c) => c.state === 'closed')) {
        twin.close();
        this.hosts.delete(node);
      }
    }
    if (!this.ringState) this.requestRing();
  }

  connectionFailed(connection: Connection, reason: string, wasOpen: boolean): void {
    const host = connection.host;
    if (this.closed) return;
    this.log.debug({ host: host.address, reason, wasOpen }, 'connection failed');
    host.markDown(reason);
    this.requestRing();
  }

  // ——— ring ———

  /** Asks for the ring soon, at most once a second. */
  private requestRing(): void {
    if (this.closed || this.ringFetch) return;
    if (this.now() - this.lastRingRequestMs < RING_RETRY_MS) return;
    void this.refreshRing().catch(() => {});
  }

  private refreshRing(): Promise<RingInfo> {
    if (this.closed) return Promise.reject(new ClientClosed());
    if (this.ringFetch) return this.ringFetch;
    this.lastRingRequestMs = this.now();
    this.counters.ringFetches++;
    this.ringTimer?.cancel();
    const fetch = (async () => {
      try {
        const result = (await this.call({ op: 'ring' }, { kind: 'any' })) as RingResult;
        return this.applyRing(result);
      } finally {
        this.ringFetch = undefined;
        if (!this.closed) {
          this.ringTimer?.cancel();
          this.ringTimer = this.env.scheduler.setTimer(this.ringState ? this.settings.ringRefreshMs : RING_RETRY_MS, () => void this.refreshRing().catch(() => {}));
        }
      }
    })();
    this.ringFetch = fetch;
    return fetch;
  }

  private applyRing(result: RingResult): RingInfo {
    if (!result || !Array.isArray(result.members) || !Array.isArray(result.keyspaces)) throw new InvalidRequest('the server sent a malformed ring');
    const members: RingMember[] = [];
    for (const m of result.members) {
      const status = RING_STATUS[m.state?.[1] ?? ''];
      if (!status || m.tokens.length === 0) continue;
      members.push({ node: nodeId(m.address), dc: m.dc || 'dc1', rack: m.rack || 'rack1', tokens: m.tokens.map((t) => BigInt(t) as Token), status });
    }
    let view: RingView;
    try {
      view = RingView.of(members);
    } catch (error) {
      this.log.warn({ err: error }, 'ignored a ring the client cannot build');
      throw error;
    }
    const keyspaces = new Map<string, ReplicationSpec>();
    const info: RingInfo = { members: [], keyspaces: [] };
    for (const k of result.keyspaces) {
      try {
        const replication = parseReplication(k.replication);
        keyspaces.set(k.name, replication);
        info.keyspaces.push({ name: k.name, replication });
      } catch {
        // A strategy this client does not know: its keys are routed without token awareness.
      }
    }
    for (const m of result.members) {
      info.members.push({ address: m.address, name: m.name, dc: m.dc, rack: m.rack, state: m.state, tokens: [...m.tokens] });
      let host = this.byNode.get(m.address);
      if (!host && this.settings.discover && m.state[1] !== 'L') {
        host = this.hostOf(m.address);
        host.node = m.address;
      }
      if (host) {
        host.serverState = m.state;
        host.dc = m.dc;
      }
    }
    this.ringState = { view, keyspaces, info };
    return info;
  }
}

function byteLength(x: Bytes | undefined): number {
  return x === undefined ? 0 : typeof x === 'string' ? x.length * 3 : x.byteLength;
}

/** Drops undefined fields: the server refuses fields it does not know, and msgpack would send undefined as nil. */
function strip<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

/**
 * A client of the Chorus nodes at `hosts` (`host:port`, the nodes' one port).
 * Returns at once; connections open on first use, and the ring is fetched in
 * the background (`await client.ready()` to wait for it).
 */
export function connect(hosts: string | readonly string[], options: ClientOptions = {}): ChorusClient {
  const list = typeof hosts === 'string' ? hosts.split(',').map((h) => h.trim()).filter(Boolean) : hosts;
  return new Client(list, options);
}
