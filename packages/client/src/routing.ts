import { READ_ONLY_OPS, type RingResult } from '@chorus/client-protocol';
import { type ChorusError, type Timer, type Token, nodeId } from '@chorus/core';
import { type ReplicationSpec, type RingMember, RingView, parseReplication, tokenOf } from '@chorus/ring';
import { type Call, Connection, type ConnectionOwner } from './connection.js';
import { ConnectionError, InvalidRequest, NoHostAvailable, READ_RETRIED_SERVER_ERRORS, RETRIED_SERVER_ERRORS } from './errors.js';
import type { Bytes } from './options.js';

export type HostState = 'idle' | 'connecting' | 'up' | 'down';

export interface RingInfo {
  members: Array<{ address: string; name: string; dc: string; rack: string; state: string; tokens: string[] }>;
  keyspaces: Array<{ name: string; replication: ReplicationSpec }>;
}

/** What hosts and the pool need of the client, beyond what its connections need. */
export interface RoutingOwner extends ConnectionOwner {
  readonly closed: boolean;
  readonly counters: ConnectionOwner['counters'] & { tokenAware: number; nonReplica: number };
  /** Monotonic milliseconds, for back-off. */
  now(): number;
  /** Asks for a fresh ring soon (rate-limited by the client). */
  requestRing(): void;
}

/** A node the client knows: its connections and its health. */
export class Host {
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

  constructor(readonly address: string, private readonly client: RoutingOwner) {}

  /** How the ring names this host: its own address once known, the given one before. */
  get id(): string {
    return this.node ?? this.address;
  }

  get hasOpenConnection(): boolean {
    for (const c of this.connections) if (c.state === 'open') return true;
    return false;
  }

  get state(): HostState {
    if (this.hasOpenConnection) return 'up';
    if (this.downUntilMs > this.client.now()) return 'down';
    if (this.connections.some((c) => c.state === 'connecting')) return 'connecting';
    return this.failures > 0 ? 'down' : 'idle';
  }

  /** Usable for a new request: not backing off after a failure. */
  get usable(): boolean {
    return this.hasOpenConnection || this.downUntilMs <= this.client.now();
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

/**
 * Replicas count as loaded alike while the requests a replica has in flight
 * are at most the least loaded one's times (1 + this factor), or at most
 * `ALIKE_LOAD_SLACK` more: then rotation decides, and each replica
 * coordinates its share of the keys. Picking the least loaded outright
 * follows every wobble of latency, and the node that happens to answer a
 * little faster coordinates (and spends the CPU of) more than its share.
 * A replica twice as loaded as another is passed over, as Cassandra's
 * dynamic snitch passes over one twice as slow (badness threshold 1.0).
 */
const ALIKE_LOAD_FACTOR = 1;
const ALIKE_LOAD_SLACK = 8;

/** The nodes the client knows, the last ring it fetched, and the host each call goes to. */
export class HostPool {
  readonly hosts = new Map<string, Host>();
  /** Node address (from hello or the ring) → host. */
  readonly byNode = new Map<string, Host>();
  ring: RingState | undefined;
  private rotation = 0;
  /** The replicas' scores of the call being routed (reused: routing runs for every request). */
  private scores = new Float64Array(8);

  constructor(private readonly client: RoutingOwner) {}

  hostOf(address: string): Host {
    let host = this.hosts.get(address);
    if (!host) {
      host = new Host(address, this.client);
      this.hosts.set(address, host);
      if (!this.byNode.has(address)) this.byNode.set(address, host);
    }
    return host;
  }

  /** Addresses of the natural replicas of `key` in the current ring (empty before the first ring). */
  replicasOf(keyspace: string, key: Bytes): string[] {
    const ring = this.ring;
    const replication = ring?.keyspaces.get(keyspace);
    if (!ring || !replication) return [];
    return [...ring.view.naturalReplicas(tokenOf(key), replication)];
  }

  /** The host a call goes to next: replicas of its key first, healthy and least loaded first. */
  pick(call: Call): Host | undefined {
    const route = call.route;
    if (route.kind === 'host') {
      const host = this.hostOf(route.host);
      return call.tried?.has(host.address) === true ? undefined : host;
    }
    const settings = this.client.settings;
    if (call.attempts >= settings.maxAttempts) return undefined;
    let replicas: readonly string[] = [];
    if (route.kind === 'token' && settings.tokenAware) {
      const ring = this.ring;
      const replication = ring?.keyspaces.get(route.keyspace);
      if (ring && replication) replicas = ring.view.naturalReplicas(tokenOf(route.key) as Token, replication);
      else if (ring) this.client.requestRing(); // a keyspace created after our last look
    }
    let best: Host | undefined;
    let bestScore = Number.POSITIVE_INFINITY;
    const start = this.rotation++;
    const n = replicas.length;
    const scores = n <= this.scores.length ? this.scores : (this.scores = new Float64Array(n));
    for (let i = 0; i < n; i++) {
      const host = this.byNode.get(replicas[(start + i) % n]!);
      const score = host === undefined ? Number.POSITIVE_INFINITY : this.score(host, 0, call);
      scores[i] = score;
      if (score < bestScore) {
        best = host;
        bestScore = score;
      }
    }
    if (best !== undefined && bestScore < 100_000_000) {
      // Replicas loaded alike take turns: the first in rotation within the bound wins, so each coordinates its share.
      const bound = bestScore + Math.max(ALIKE_LOAD_SLACK, best.load * ALIKE_LOAD_FACTOR);
      for (let i = 0; i < n; i++) {
        if (scores[i]! > bound) continue;
        best = this.byNode.get(replicas[(start + i) % n]!)!;
        bestScore = scores[i]!;
        break;
      }
    }
    if (!best || bestScore >= 100_000_000) {
      const all = [...this.hosts.values()];
      const m = all.length;
      for (let i = 0; i < m; i++) {
        const host = all[(start + i) % m]!;
        if (n > 0 && replicas.includes(host.id)) continue;
        const score = this.score(host, 1, call);
        if (score < bestScore) {
          best = host;
          bestScore = score;
        }
      }
    }
    const chosen = best as Host | undefined;
    if (chosen && route.kind === 'token') {
      if (n > 0 && replicas.includes(chosen.id)) this.client.counters.tokenAware++;
      else this.client.counters.nonReplica++;
    }
    return chosen;
  }

  /** Lower is better: replicas before other hosts, then healthy, then in the local datacenter, then least loaded; infinite when not to be tried. */
  private score(host: Host, rank: number, call: Call): number {
    if (call.tried?.has(host.address) === true) return Number.POSITIVE_INFINITY;
    // `usable` and `state` in one look at the connections: this runs for every replica of every request.
    const up = host.hasOpenConnection;
    if (!up && host.downUntilMs > this.client.now()) return Number.POSITIVE_INFINITY;
    const localDc = this.client.settings.localDc;
    let score = rank * 1_000_000_000;
    if (!up) score += 100_000_000;
    if (host.serverState !== undefined && host.serverState[0] === 'D') score += 200_000_000;
    if (localDc !== undefined && host.dc !== undefined && host.dc !== localDc) score += 400_000_000;
    return score + host.load;
  }

  /** A connection of `host` said hello: the host is healthy, and its hello names the node as the ring does. */
  opened(host: Host, node: string | undefined): void {
    host.opened();
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
  }

  /** Takes a ring answer: the view for routing, and nodes to connect to when discovering. */
  applyRing(result: RingResult): RingInfo {
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
      this.client.log.warn({ err: error }, 'ignored a ring the client cannot build');
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
      if (!host && this.client.settings.discover && m.state[1] !== 'L') {
        host = this.hostOf(m.address);
        host.node = m.address;
      }
      if (host) {
        host.serverState = m.state;
        host.dc = m.dc;
        // Open a pool to every node that serves, as drivers do: routing prefers hosts already up, so one never connected would never be picked.
        if (m.state === 'UN' && host.connections.length === 0 && host.usable && !this.client.closed) host.ensureConnections();
      }
    }
    this.ring = { view, keyspaces, info };
    return info;
  }

  close(): void {
    for (const host of this.hosts.values()) host.close();
  }
}

// ——— failover ———

/**
 * Whether a server's error answer sends the call to another host: the node
 * refused before doing anything, or a read met a node that went away
 * mid-request. A call to one given host never moves.
 */
export function failsOver(call: Call, error: ChorusError): boolean {
  return (RETRIED_SERVER_ERRORS.has(error.name) || (READ_RETRIED_SERVER_ERRORS.has(error.name) && READ_ONLY_OPS.has(call.op))) && call.route.kind !== 'host';
}

/** Whether a call whose connection broke is sent again: it never left, or it changes nothing. */
export function resendsAfterConnectionLoss(call: Call, error: ConnectionError): boolean {
  return !error.sent || READ_ONLY_OPS.has(call.op);
}

/**
 * The error of a call no host is left for: the server's own error when a
 * node refused it (Overloaded…), the connection error for a call to one
 * given host, NoHostAvailable with every host's reason otherwise.
 */
export function exhaustedError(call: Call): Error {
  const last = call.lastError;
  if (last && !(last instanceof ConnectionError)) return last;
  if (call.route.kind === 'host') return last ?? new ConnectionError(call.route.host, 'host is down');
  return new NoHostAvailable(Object.fromEntries(call.tried ?? []));
}
