import { type GetResult, type LocalResult, type RequestBody, type RingResult, type SliceResultWire, type WireError, type WriteResult, createPackr } from '@chorus/client-protocol';
import { type ChorusError, IdTable, type Logger, type Timer, nodeId, realEnv, silentLogger } from '@chorus/core';
import type { Call, Connection, Route } from './connection.js';
import { ClientClosed, type ConnectionError, InvalidRequest, Overloaded, RequestTimeout, errorFromWire } from './errors.js';
import { type Bytes, type ClientEnv, type ClientOptions, type DelOptions, type GetOptions, type PutOptions, type Settings, type SliceOptions, settingsOf } from './options.js';
import { type HostState, HostPool, type RingInfo, type RoutingOwner, exhaustedError, failsOver, resendsAfterConnectionLoss } from './routing.js';
import { type ChorusSession, Session, type SessionOptions } from './session.js';

/** One row of a slice, as the client returns it. */
export interface ClientRow {
  clustering: Uint8Array;
  value: Uint8Array;
  timestamp: number;
  expiresAt?: number;
}

export interface SliceResult {
  rows: ClientRow[];
  nextPage?: Uint8Array;
}

export interface LocalCell {
  /** Undefined for a tombstone. */
  value: Uint8Array | undefined;
  timestamp: number;
  tombstone: boolean;
  expiresAt?: number;
}

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
  get(keyspace: string, key: Bytes, options?: GetOptions): Promise<{ value: Uint8Array; timestamp: number } | undefined>;
  del(keyspace: string, key: Bytes, options?: DelOptions): Promise<{ timestamp: number }>;
  slice(keyspace: string, partition: Bytes, options?: SliceOptions): Promise<SliceResult>;
  /**
   * A session over this client's connections: its reads never return a row
   * older than the session's own last write of it, at any level, and its
   * writes are stamped above every timestamp it wrote or read (see the
   * README's Sessions).
   */
  session(options?: SessionOptions): ChorusSession;
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

const SWEEP_INTERVAL_MS = 100;
const RING_RETRY_MS = 1_000;

/** The client: the public calls, each request's life (deadline, retries, outcome) and the ring's refresh. */
class Client implements ChorusClient, RoutingOwner {
  readonly settings: Settings;
  readonly env: ClientEnv;
  readonly log: Logger;
  readonly packr = createPackr();
  readonly counters = { requests: 0, succeeded: 0, failed: 0, retries: 0, tokenAware: 0, nonReplica: 0, timeouts: 0, messagesSent: 0, messagesReceived: 0, ringFetches: 0 };
  private readonly errorCounts = new Map<string, number>();
  private readonly pool = new HostPool(this);
  /** Calls not yet settled, by serial (slots, not a Set: see IdTable). */
  private readonly pending = new IdTable<Call>();
  private nextSerial = 1;
  private ringFetch: Promise<RingInfo> | undefined;
  private lastRingRequestMs = Number.NEGATIVE_INFINITY;
  private ringTimer: Timer | undefined;
  private sweepTimer: Timer | undefined;
  closed = false;

  constructor(hosts: readonly string[], options: ClientOptions) {
    this.settings = settingsOf(options);
    this.env = options.env ?? realEnv(nodeId('chorus-client'));
    this.log = (options.env?.logger ?? silentLogger).child({ component: 'chorus-client' });
    if (hosts.length === 0) throw new TypeError('connect() needs at least one host:port');
    for (const address of hosts) {
      if (typeof address !== 'string' || !/^[^\s/]+:\d{1,5}$/.test(address)) throw new TypeError(`not a host:port: ${JSON.stringify(address)}`);
      this.pool.hostOf(address);
    }
    this.scheduleSweep();
    void this.refreshRing().catch(() => {});
  }

  now(): number {
    return this.env.clock.monotonicMs();
  }

  // ——— public API ———

  put(keyspace: string, key: Bytes, value: Bytes, options: PutOptions = {}): Promise<{ timestamp: number }> {
    return this.putIn(keyspace, key, value, options, undefined);
  }

  get(keyspace: string, key: Bytes, options: GetOptions = {}): Promise<{ value: Uint8Array; timestamp: number } | undefined> {
    return this.getIn(keyspace, key, options, undefined);
  }

  del(keyspace: string, key: Bytes, options: DelOptions = {}): Promise<{ timestamp: number }> {
    return this.delIn(keyspace, key, options, undefined);
  }

  slice(keyspace: string, partition: Bytes, options: SliceOptions = {}): Promise<SliceResult> {
    return this.sliceIn(keyspace, partition, options, undefined);
  }

  session(options: SessionOptions = {}): ChorusSession {
    return new Session(this, options);
  }

  // ——— the calls, with a session's fields (see session.ts) ———

  // Not async: an async function and its await would be one more promise and job per call. The bodies of
  // the three calls every load makes are built field by field, the optional ones only when set (the server
  // refuses fields it does not know, and msgpack would send undefined as nil), without strip()'s loop.
  putIn(keyspace: string, key: Bytes, value: Bytes, options: PutOptions, after: number | undefined): Promise<{ timestamp: number }> {
    const body: Record<string, unknown> = { op: 'put', ks: keyspace, key, value, cl: options.consistency ?? this.settings.consistency };
    if (options.clustering !== undefined) body.ck = options.clustering;
    if (options.ttl !== undefined) body.ttl = options.ttl;
    if (options.timestamp !== undefined) body.ts = options.timestamp;
    if (after !== undefined) body.after = after;
    return this.call(body as RequestBody, { kind: 'token', keyspace, key }, writeTimestamp) as Promise<{ timestamp: number }>;
  }

  getIn(keyspace: string, key: Bytes, options: GetOptions, floor: number | undefined): Promise<{ value: Uint8Array; timestamp: number } | undefined> {
    const body: Record<string, unknown> = { op: 'get', ks: keyspace, key, cl: options.consistency ?? this.settings.consistency };
    if (options.clustering !== undefined) body.ck = options.clustering;
    if (floor !== undefined) body.floor = floor;
    return this.call(body as RequestBody, { kind: 'token', keyspace, key }, readValue) as Promise<{ value: Uint8Array; timestamp: number } | undefined>;
  }

  delIn(keyspace: string, key: Bytes, options: DelOptions, after: number | undefined): Promise<{ timestamp: number }> {
    const body: Record<string, unknown> = { op: 'del', ks: keyspace, key, cl: options.consistency ?? this.settings.consistency };
    if (options.clustering !== undefined) body.ck = options.clustering;
    if (options.timestamp !== undefined) body.ts = options.timestamp;
    if (after !== undefined) body.after = after;
    return this.call(body as RequestBody, { kind: 'token', keyspace, key }, writeTimestamp) as Promise<{ timestamp: number }>;
  }

  async sliceIn(keyspace: string, partition: Bytes, options: SliceOptions, floors: Array<{ ck: Uint8Array; ts: number }> | undefined): Promise<SliceResult> {
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
        floors,
      }) as RequestBody,
      { kind: 'token', keyspace, key: partition },
    )) as SliceResultWire;
    return {
      rows: result.rows.map((r) => ({ clustering: r.ck, value: r.value, timestamp: r.ts, ...(r.exp !== undefined ? { expiresAt: r.exp } : {}) })),
      ...(result.next ? { nextPage: result.next } : {}),
    };
  }

  async local(host: string, keyspace: string, key: Bytes, options: { clustering?: Bytes } = {}): Promise<LocalCell | undefined> {
    const target = this.pool.byNode.get(host) ?? this.pool.hostOf(host);
    const result = (await this.call(strip({ op: 'local', ks: keyspace, key, ck: options.clustering }) as RequestBody, { kind: 'host', host: target.address })) as LocalResult | null;
    if (!result) return undefined;
    return { value: result.value ?? undefined, timestamp: result.ts, tombstone: result.tombstone, ...(result.exp !== undefined ? { expiresAt: result.exp } : {}) };
  }

  async ring(): Promise<RingInfo> {
    return this.refreshRing();
  }

  replicasOf(keyspace: string, key: Bytes): string[] {
    return this.pool.replicasOf(keyspace, key);
  }

  async ready(): Promise<void> {
    if (this.pool.ring) return;
    await this.refreshRing();
  }

  stats(): ClientStats {
    const hosts: Record<string, HostStats> = {};
    for (const host of this.pool.hosts.values()) {
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
    for (const [, call] of [...this.pending.entries()]) this.settle(call, new ClientClosed());
    this.pool.close();
  }

  // ——— requests ———

  internalCall(body: RequestBody, route: Route): Call {
    return this.newCall(body, route, true, undefined, () => {}, () => {});
  }

  private newCall(body: RequestBody, route: Route, internal: boolean, shape: ((result: unknown) => unknown) | undefined, resolve: (v: unknown) => void, reject: (e: Error) => void): Call {
    return {
      serial: this.nextSerial++,
      body,
      op: body.op,
      route,
      bytes: 48 + byteLength((body as { value?: Bytes }).value) + byteLength((body as { key?: Bytes }).key),
      deadlineMs: this.now() + this.settings.requestTimeoutMs,
      tried: undefined,
      attempts: 0,
      host: undefined,
      lastError: undefined,
      settled: false,
      internal,
      shape,
      resolve,
      reject,
    };
  }

  /** Resolves with `shape` of the server's result, when given: one promise per call rather than a `then` more. */
  private call(body: RequestBody, route: Route, shape?: (result: unknown) => unknown): Promise<unknown> {
    if (this.closed) return Promise.reject(new ClientClosed());
    this.counters.requests++;
    if (this.pending.size >= this.settings.maxPending) {
      this.counters.failed++;
      this.errorCounts.set('Overloaded', (this.errorCounts.get('Overloaded') ?? 0) + 1);
      return Promise.reject(new Overloaded(`client requests outstanding is full (capacity ${this.settings.maxPending})`, { capacity: this.settings.maxPending }));
    }
    return new Promise((resolve, reject) => {
      const call = this.newCall(body, route, false, shape, resolve, reject);
      this.pending.set(call.serial, call);
      this.dispatch(call);
    });
  }

  private dispatch(call: Call): void {
    if (call.settled) return;
    if (this.closed) {
      this.settle(call, new ClientClosed());
      return;
    }
    const host = this.pool.pick(call);
    if (!host) {
      this.settle(call, exhaustedError(call));
      return;
    }
    call.attempts++;
    call.host = host;
    host.connection().submit(call);
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
    if (failsOver(call, error)) {
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
    if (resendsAfterConnectionLoss(call, error)) this.retry(call, error.message, error);
    else this.settle(call, error);
  }

  private retry(call: Call, reason: string, error: ChorusError): void {
    if (call.host) (call.tried ??= new Map()).set(call.host.address, reason);
    call.lastError = error;
    if (call.route.kind === 'host' || call.attempts >= this.settings.maxAttempts) {
      this.settle(call, exhaustedError(call));
      return;
    }
    this.counters.retries++;
    this.dispatch(call);
  }

  private settle(call: Call, error: Error | undefined, result?: unknown): void {
    if (call.settled) return;
    call.settled = true;
    this.pending.delete(call.serial);
    if (error) {
      this.counters.failed++;
      this.errorCounts.set(error.name, (this.errorCounts.get(error.name) ?? 0) + 1);
      call.reject(error);
    } else {
      this.counters.succeeded++;
      call.resolve(call.shape === undefined ? result : call.shape(result));
    }
  }

  /** One timer for every request's deadline. */
  private scheduleSweep(): void {
    this.sweepTimer = this.env.scheduler.setTimer(SWEEP_INTERVAL_MS, () => {
      if (this.closed) return;
      const now = this.now();
      for (const [, call] of this.pending.entries()) {
        if (call.deadlineMs <= now) {
          this.counters.timeouts++;
          this.settle(call, new RequestTimeout(this.settings.requestTimeoutMs, call.host?.address));
        }
      }
      this.scheduleSweep();
    });
  }

  // ——— connections ———

  connectionOpened(connection: Connection): void {
    this.pool.opened(connection.host, connection.hello?.node);
    if (!this.pool.ring) this.requestRing();
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
  requestRing(): void {
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
        return this.pool.applyRing(result);
      } finally {
        this.ringFetch = undefined;
        if (!this.closed) {
          this.ringTimer?.cancel();
          this.ringTimer = this.env.scheduler.setTimer(this.pool.ring ? this.settings.ringRefreshMs : RING_RETRY_MS, () => void this.refreshRing().catch(() => {}));
        }
      }
    })();
    this.ringFetch = fetch;
    return fetch;
  }
}

function byteLength(x: Bytes | undefined): number {
  return x === undefined ? 0 : typeof x === 'string' ? x.length * 3 : x.byteLength;
}

const writeTimestamp = (result: unknown): { timestamp: number } => ({ timestamp: (result as WriteResult).ts });

function readValue(result: unknown): { value: Uint8Array; timestamp: number } | undefined {
  const r = result as GetResult | null;
  return r ? { value: r.value, timestamp: r.ts } : undefined;
}

/**
 * `o` without its undefined fields (the server refuses fields it does not know, and msgpack would send
 * undefined as nil), built field by field: deleting them instead would turn every request into a slow
 * dictionary-mode object for the encoder.
 */
function strip<T extends Record<string, unknown>>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const k in o) if (o[k] !== undefined) out[k] = o[k];
  return out as T;
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
