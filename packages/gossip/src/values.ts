import { type HostId, type Token, hostId, token } from '@chorus/core';
import { InvalidAppState } from './errors.js';

/**
 * The application states a node publishes about itself. On the wire every
 * value is a string (kinds.ts `VersionedValue`); these helpers are the one
 * place that knows how each is spelled.
 */
export const AppStateKey = {
  STATUS: 'STATUS',
  TOKENS: 'TOKENS',
  DC: 'DC',
  RACK: 'RACK',
  HOST_ID: 'HOST_ID',
  LOAD: 'LOAD',
  SCHEMA: 'SCHEMA',
  RELEASE: 'RELEASE',
  RPC_ADDRESS: 'RPC_ADDRESS',
  NAME: 'NAME',
  STREAMING: 'STREAMING',
} as const;
export type AppStateKey = (typeof AppStateKey)[keyof typeof AppStateKey];

/**
 * Lifecycle of a node in the ring. `shutdown` is lower case as in Cassandra:
 * it is not a ring state but the announcement of a clean stop.
 */
export const STATUSES = ['BOOTSTRAPPING', 'NORMAL', 'LEAVING', 'LEFT', 'REMOVED', 'shutdown'] as const;
export type Status = (typeof STATUSES)[number];

/** Statuses after which a node of that generation never counts as UP again. */
export function isDeadStatus(status: string | undefined): boolean {
  return status === 'LEFT' || status === 'REMOVED' || status === 'shutdown';
}

/** Statuses whose endpoint is dropped after the quarantine period. */
export function isGoneStatus(status: string | undefined): boolean {
  return status === 'LEFT' || status === 'REMOVED';
}

/** The typed form of a node's application states; every field optional, as a node publishes them over time. */
export interface AppStateValues {
  status?: Status;
  tokens?: readonly Token[];
  dc?: string;
  rack?: string;
  hostId?: HostId;
  /** Bytes of data on disk. */
  load?: number;
  /** Digest of the node's schema (keyspace definitions); differing digests mean a pull is due. */
  schema?: string;
  release?: string;
  rpcAddress?: string;
  /** The node's human name, like `n1`. */
  name?: string;
  /** Percent (0–100) of the range movement the node is streaming for (bootstrap, decommission), while it streams. */
  streaming?: number;
}

/** Same bound as the wire schema's `VersionedValue.value`. */
export const MAX_VALUE_LENGTH = 65_536;
/** Keys are upper-case identifiers; anything else from the wire is dropped, which also keeps `__proto__` out. */
export const APP_KEY = /^[A-Z][A-Z0-9_]{0,63}$/;

export function encodeTokens(tokens: readonly Token[]): string {
  return tokens.map((t) => t.toString(10)).join(',');
}

/** Throws InvalidAppState on anything but comma-separated signed 64-bit decimals. */
export function decodeTokens(text: string): Token[] {
  if (text === '') return [];
  return text.split(',').map((part) => {
    if (!/^-?\d{1,20}$/.test(part)) throw new InvalidAppState(AppStateKey.TOKENS, `${JSON.stringify(part.slice(0, 32))} is not a decimal token`);
    try {
      return token(part);
    } catch (error) {
      throw new InvalidAppState(AppStateKey.TOKENS, (error as Error).message);
    }
  });
}

/**
 * Turns typed values into wire entries. Throws InvalidAppState for values
 * that could not be decoded again, so bad input fails at the caller, not
 * inside the gossiper.
 */
export function encodeAppState(values: AppStateValues): Array<[AppStateKey, string]> {
  const out: Array<[AppStateKey, string]> = [];
  const put = (key: AppStateKey, value: string | undefined) => {
    if (value === undefined) return;
    if (value.length > MAX_VALUE_LENGTH) throw new InvalidAppState(key, `${value.length} characters is over the ${MAX_VALUE_LENGTH} limit`);
    out.push([key, value]);
  };
  if (values.status !== undefined && !STATUSES.includes(values.status)) throw new InvalidAppState(AppStateKey.STATUS, `unknown status ${String(values.status)}`);
  put(AppStateKey.STATUS, values.status);
  if (values.tokens !== undefined) {
    for (const t of values.tokens) checked(AppStateKey.TOKENS, () => token(t));
    put(AppStateKey.TOKENS, encodeTokens(values.tokens));
  }
  put(AppStateKey.DC, values.dc);
  put(AppStateKey.RACK, values.rack);
  if (values.hostId !== undefined) checked(AppStateKey.HOST_ID, () => hostId(values.hostId!));
  put(AppStateKey.HOST_ID, values.hostId);
  if (values.load !== undefined && !(Number.isFinite(values.load) && values.load >= 0)) throw new InvalidAppState(AppStateKey.LOAD, `${values.load} is not a byte count`);
  put(AppStateKey.LOAD, values.load === undefined ? undefined : String(values.load));
  put(AppStateKey.SCHEMA, values.schema);
  put(AppStateKey.RELEASE, values.release);
  put(AppStateKey.RPC_ADDRESS, values.rpcAddress);
  put(AppStateKey.NAME, values.name);
  if (values.streaming !== undefined && !(Number.isFinite(values.streaming) && values.streaming >= 0 && values.streaming <= 100)) throw new InvalidAppState(AppStateKey.STREAMING, `${values.streaming} is not a percentage`);
  put(AppStateKey.STREAMING, values.streaming === undefined ? undefined : String(values.streaming));
  return out;
}

function checked(key: AppStateKey, check: () => unknown): void {
  try {
    check();
  } catch (error) {
    throw new InvalidAppState(key, (error as Error).message);
  }
}

/**
 * Reads the typed values out of wire entries. Values came from peers, so a
 * malformed one is left out rather than thrown: one bad field must not hide
 * the rest of an endpoint.
 */
export function decodeAppState(app: Readonly<Record<string, { readonly value: string }>>): AppStateValues {
  const out: AppStateValues = {};
  const get = (key: AppStateKey) => (Object.hasOwn(app, key) ? app[key]!.value : undefined);
  const status = get(AppStateKey.STATUS);
  if (status !== undefined && (STATUSES as readonly string[]).includes(status)) out.status = status as Status;
  const tokens = get(AppStateKey.TOKENS);
  if (tokens !== undefined) {
    try {
      out.tokens = Object.freeze(decodeTokens(tokens));
    } catch {
      // malformed: left out
    }
  }
  const dc = get(AppStateKey.DC);
  if (dc !== undefined) out.dc = dc;
  const rack = get(AppStateKey.RACK);
  if (rack !== undefined) out.rack = rack;
  const host = get(AppStateKey.HOST_ID);
  if (host !== undefined) {
    try {
      out.hostId = hostId(host);
    } catch {
      // malformed: left out
    }
  }
  const load = get(AppStateKey.LOAD);
  if (load !== undefined && /^\d+(\.\d+)?$/.test(load)) out.load = Number(load);
  const schema = get(AppStateKey.SCHEMA);
  if (schema !== undefined) out.schema = schema;
  const release = get(AppStateKey.RELEASE);
  if (release !== undefined) out.release = release;
  const rpc = get(AppStateKey.RPC_ADDRESS);
  if (rpc !== undefined) out.rpcAddress = rpc;
  const name = get(AppStateKey.NAME);
  if (name !== undefined) out.name = name;
  const streaming = get(AppStateKey.STREAMING);
  if (streaming !== undefined && /^\d{1,3}(\.\d+)?$/.test(streaming) && Number(streaming) <= 100) out.streaming = Number(streaming);
  return out;
}
