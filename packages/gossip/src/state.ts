import type { NodeId } from '@chorus/core';
import { APP_KEY, AppStateKey, isGoneStatus } from './values.js';

/**
 * The pure core of gossip: endpoint states, digests, the merge rule and what
 * each side of an exchange sends. No actor, no clock — the gossiper calls these.
 *
 * One version counter per node orders its heartbeat and all its application
 * states together, so the largest version of an endpoint (its digest's
 * `maxVersion`) says exactly how much of it a peer has seen.
 */

export interface VersionedValue {
  readonly value: string;
  readonly version: number;
}

export interface HeartbeatState {
  /** The node's start time in seconds: a restart always brings a larger one. */
  readonly generation: number;
  readonly version: number;
}

/** Same shape as kinds.ts `EndpointState`, treated as immutable: every change builds a new object. */
export interface EndpointState {
  readonly heartbeat: HeartbeatState;
  readonly app: Readonly<Record<string, VersionedValue>>;
}

export interface GossipDigest {
  readonly node: string;
  readonly generation: number;
  readonly maxVersion: number;
}

export type EndpointStates = ReadonlyMap<NodeId, EndpointState>;

/**
 * Versions that outrank anything a live node of the same generation can
 * publish, so that a shutdown or removal seen by one node cannot be undone by
 * older gossip still in flight. Removal outranks shutdown.
 */
export const SHUTDOWN_VERSION = Number.MAX_SAFE_INTEGER - 1;
export const REMOVED_VERSION = Number.MAX_SAFE_INTEGER;

export function maxVersion(state: EndpointState): number {
  let max = state.heartbeat.version;
  for (const key in state.app) max = Math.max(max, state.app[key]!.version);
  return max;
}

export function digestOf(node: NodeId, state: EndpointState): GossipDigest {
  return { node, generation: state.heartbeat.generation, maxVersion: maxVersion(state) };
}

export function digestsOf(states: EndpointStates): GossipDigest[] {
  return [...states].map(([node, state]) => digestOf(node, state));
}

export function statusOf(state: EndpointState | undefined): string | undefined {
  return state && Object.hasOwn(state.app, AppStateKey.STATUS) ? state.app[AppStateKey.STATUS]!.value : undefined;
}

/**
 * The part of a state newer than `version`: the heartbeat plus the
 * application states above it, or undefined when there is nothing newer.
 */
export function deltaAbove(state: EndpointState, version: number): EndpointState | undefined {
  const app: Record<string, VersionedValue> = {};
  let any = state.heartbeat.version > version;
  for (const key in state.app) {
    const v = state.app[key]!;
    if (v.version > version) {
      app[key] = v;
      any = true;
    }
  }
  return any ? { heartbeat: state.heartbeat, app } : undefined;
}

/** Drops application states whose key is not an upper-case identifier (input from peers). */
export function sanitize(state: EndpointState): EndpointState {
  for (const key in state.app) {
    if (!APP_KEY.test(key)) {
      const app: Record<string, VersionedValue> = {};
      for (const k in state.app) if (APP_KEY.test(k)) app[k] = state.app[k]!;
      return { heartbeat: state.heartbeat, app };
    }
  }
  return state;
}

export interface AppChange {
  readonly key: string;
  readonly oldValue: string | undefined;
  readonly newValue: string;
}

export type MergeResult =
  | { readonly outcome: 'ignored' }
  | {
      /** `new`: first sight of the endpoint; `restarted`: a newer generation replaced it; `updated`: newer versions of the same generation. */
      readonly outcome: 'new' | 'restarted' | 'updated';
      readonly state: EndpointState;
      /** Application states whose value changed (a newer version with the same value is not a change). */
      readonly changes: readonly AppChange[];
      /** The heartbeat moved forward: evidence the node was alive after what we knew. */
      readonly heartbeatAdvanced: boolean;
    };

/**
 * Cassandra's rule: a newer generation replaces the whole state (the node
 * restarted and its versions started over); within a generation each part
 * keeps the larger version. An older generation is stale and ignored.
 */
export function mergeEndpoint(local: EndpointState | undefined, remote: EndpointState): MergeResult {
  if (!local) {
    const changes = Object.entries(remote.app).map(([key, v]) => ({ key, oldValue: undefined, newValue: v.value }));
    return { outcome: 'new', state: remote, changes, heartbeatAdvanced: true };
  }
  const lg = local.heartbeat.generation;
  const rg = remote.heartbeat.generation;
  if (rg < lg) return { outcome: 'ignored' };
  if (rg > lg) {
    const changes: AppChange[] = [];
    for (const [key, v] of Object.entries(remote.app)) {
      const old = Object.hasOwn(local.app, key) ? local.app[key]!.value : undefined;
      if (old !== v.value) changes.push({ key, oldValue: old, newValue: v.value });
    }
    return { outcome: 'restarted', state: remote, changes, heartbeatAdvanced: true };
  }
  const heartbeatAdvanced = remote.heartbeat.version > local.heartbeat.version;
  let app: Record<string, VersionedValue> | undefined;
  const changes: AppChange[] = [];
  for (const [key, v] of Object.entries(remote.app)) {
    const mine = Object.hasOwn(local.app, key) ? local.app[key] : undefined;
    if (mine && mine.version >= v.version) continue;
    app ??= { ...local.app };
    app[key] = v;
    if (mine?.value !== v.value) changes.push({ key, oldValue: mine?.value, newValue: v.value });
  }
  if (!heartbeatAdvanced && !app) return { outcome: 'ignored' };
  // The app object is kept when only the heartbeat moved, so decoded views can be cached by its identity.
  const state: EndpointState = { heartbeat: heartbeatAdvanced ? remote.heartbeat : local.heartbeat, app: app ?? local.app };
  return { outcome: 'updated', state, changes, heartbeatAdvanced };
}

export interface SynAnswer {
  /** Digests of what the receiver wants: `maxVersion` is what it already has, so only newer versions come back. */
  readonly request: GossipDigest[];
  /** What the initiator lacks, only the versions above its digest. */
  readonly send: Record<string, EndpointState>;
}

/**
 * The receiver's side of a SYN: compares each digest with the local state.
 * Endpoints the initiator did not mention at all are sent in full, so news of
 * a node travels in the ACK as well as in the ACK2.
 */
export function answerSyn(local: EndpointStates, digests: readonly GossipDigest[], self: NodeId): SynAnswer {
  const request: GossipDigest[] = [];
  const send: Record<string, EndpointState> = {};
  const mentioned = new Set<string>();
  for (const d of digests) {
    mentioned.add(d.node);
    const mine = local.get(d.node as NodeId);
    if (!mine) {
      if (d.node !== self) request.push({ node: d.node, generation: d.generation, maxVersion: 0 });
      continue;
    }
    const g = mine.heartbeat.generation;
    if (d.generation > g) {
      if (d.node !== self) request.push({ node: d.node, generation: d.generation, maxVersion: 0 });
    } else if (d.generation < g) {
      send[d.node] = mine;
    } else {
      const max = maxVersion(mine);
      if (d.maxVersion > max) {
        if (d.node !== self) request.push({ node: d.node, generation: g, maxVersion: max });
      } else if (d.maxVersion < max) {
        const delta = deltaAbove(mine, d.maxVersion);
        if (delta) send[d.node] = delta;
      }
    }
  }
  for (const [node, state] of local) if (!mentioned.has(node)) send[node] = state;
  return { request, send };
}

/** The initiator's side of an ACK: the states the receiver asked for, newer than its digests. */
export function statesRequested(local: EndpointStates, request: readonly GossipDigest[]): Record<string, EndpointState> {
  const out: Record<string, EndpointState> = {};
  for (const d of request) {
    const mine = local.get(d.node as NodeId);
    if (!mine) continue;
    const g = mine.heartbeat.generation;
    if (g > d.generation) out[d.node] = mine;
    else if (g === d.generation) {
      const delta = deltaAbove(mine, d.maxVersion);
      if (delta) out[d.node] = delta;
    }
  }
  return out;
}

/** A rough encoded size of a state: what the frame limit is about. */
export function approximateSize(node: string, state: EndpointState): number {
  let size = node.length + 24;
  for (const key in state.app) size += key.length + state.app[key]!.value.length + 12;
  return size;
}

/**
 * Keeps whole endpoints, in order, until `budget` bytes are used, so one
 * message stays under the frame limit (a new node learning 1,000 nodes of
 * 256 tokens each would need ~5 MB). What is left out still differs in the
 * digests and goes in the next exchanges. Always keeps at least one.
 */
export function withinBudget(states: Record<string, EndpointState>, budget: number): Record<string, EndpointState> {
  let used = 0;
  let out: Record<string, EndpointState> | undefined;
  const entries = Object.entries(states);
  for (let i = 0; i < entries.length; i++) {
    const [node, state] = entries[i]!;
    used += approximateSize(node, state);
    if (used > budget && i > 0) {
      out = Object.fromEntries(entries.slice(0, i));
      break;
    }
  }
  return out ?? states;
}

/** What a node that heard `gossip.shutdown` records: the heartbeat frozen and, unless the node already left, STATUS=shutdown. */
export function markedShutdown(state: EndpointState): EndpointState {
  const heartbeat = { generation: state.heartbeat.generation, version: Math.max(state.heartbeat.version, SHUTDOWN_VERSION) };
  if (isGoneStatus(statusOf(state))) return { heartbeat, app: state.app };
  const current = state.app[AppStateKey.STATUS];
  const version = Math.max(current?.version ?? 0, SHUTDOWN_VERSION);
  return { heartbeat, app: { ...state.app, [AppStateKey.STATUS]: { value: 'shutdown', version } } };
}

/** What `removeNode` records: STATUS=REMOVED at a version no gossip of that generation can beat. */
export function markedRemoved(state: EndpointState): EndpointState {
  return {
    heartbeat: { generation: state.heartbeat.generation, version: REMOVED_VERSION },
    app: { ...state.app, [AppStateKey.STATUS]: { value: 'REMOVED', version: REMOVED_VERSION } },
  };
}

/**
 * A LEFT or REMOVED state carried to a later `generation` of the same node,
 * at versions no gossip of that generation can beat: a departure is about the
 * host id, not about the run it was seen on.
 */
export function goneAtGeneration(state: EndpointState, generation: number): EndpointState {
  const status = state.app[AppStateKey.STATUS]!;
  return {
    heartbeat: { generation, version: REMOVED_VERSION },
    app: { ...state.app, [AppStateKey.STATUS]: { value: status.value, version: REMOVED_VERSION } },
  };
}
