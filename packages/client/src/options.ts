import { DEFAULT_MAX_IN_FLIGHT } from '@chorus/client-protocol';
import type { Env, Logger } from '@chorus/core';

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
  /** Bearer token sent on every connection, for nodes with client authentication on (`authenticator: token`). */
  token?: string;
  /** Connect over TLS (`wss://`); on when `ca` is given. Nodes with `client_encryption: true` need it. */
  tls?: boolean;
  /** PEM of the CA that signed the nodes' certificates, when it is not one the system trusts. */
  ca?: string | Buffer;
}

/** Options of `get`, and of every call that names one row. */
export interface GetOptions {
  consistency?: string;
  clustering?: Bytes;
}

export interface PutOptions extends GetOptions {
  /** Seconds until the value expires. */
  ttl?: number;
  /** The write's timestamp in microseconds since the epoch; the coordinator's clock by default. */
  timestamp?: number;
}

export interface DelOptions extends GetOptions {
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

/** ClientOptions with every default filled in. */
export interface Settings {
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
  token: string | undefined;
  tls: boolean;
  ca: string | Buffer | undefined;
}

export const DEFAULTS: Settings = {
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
  token: undefined,
  tls: false,
  ca: undefined,
};

/** The settings of `options`: the given ones over the defaults; `env` and unknown keys are not settings. */
export function settingsOf(options: ClientOptions): Settings {
  const given = Object.fromEntries(Object.entries(options).filter(([key, value]) => key in DEFAULTS && value !== undefined));
  const settings = { ...DEFAULTS, ...given } as Settings;
  if (settings.ca !== undefined && options.tls === undefined) settings.tls = true;
  return settings;
}
