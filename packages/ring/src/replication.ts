import { InvalidRequest } from '@chorus/core';

export type ReplicationSpec =
  | { readonly class: 'SimpleStrategy'; readonly rf: number }
  | { readonly class: 'NetworkTopologyStrategy'; readonly dcs: Readonly<Record<string, number>> };

/**
 * What a read does when the replicas it asked disagree (Cassandra's
 * `read_repair` table option): `blocking` writes the newest version to the
 * stale replicas that answered and waits for the level before answering;
 * `none` answers with the newest version and repairs nothing.
 */
export type ReadRepairMode = 'blocking' | 'none';
export const DEFAULT_READ_REPAIR: ReadRepairMode = 'blocking';

/**
 * When a replica may purge a keyspace's tombstones (Cassandra's
 * `tombstone_gc` table option): `grace` once they are older than
 * gc_grace_seconds, trusting that every replica got them in that time;
 * `repair` once a full repair of their token range, started after they were
 * stored, has put them on every replica. `repair` purges nothing in a range
 * that is never repaired.
 */
export type TombstoneGcMode = 'grace' | 'repair';
/** Also what a definition without the option reads as: purging on grace alone can bring deleted data back. */
export const DEFAULT_TOMBSTONE_GC: TombstoneGcMode = 'repair';

export interface KeyspaceDef {
  readonly name: string;
  readonly replication: ReplicationSpec;
  /** Absent: `blocking` (definitions stored before the option existed read so). */
  readonly readRepair?: ReadRepairMode;
  /** Absent: `repair` (definitions stored before the option existed read so). */
  readonly tombstoneGc?: TombstoneGcMode;
}

const KEYSPACE_NAME = /^[A-Za-z][A-Za-z0-9_]{0,47}$/;
const DC_NAME = /^[A-Za-z0-9._:-]{1,64}$/;
/** No real cluster needs more copies than this; a larger number is a typo. */
const MAX_RF = 64;

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function parseRf(value: unknown, where: string): number {
  // Cassandra's CQL carries replication factors as strings ('3'); accept both.
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_RF) {
    throw new InvalidRequest(`${where} must be an integer from 1 to ${MAX_RF}, got ${JSON.stringify(value)}`, { field: where });
  }
  return n;
}

function strategyClass(value: unknown): 'SimpleStrategy' | 'NetworkTopologyStrategy' {
  if (typeof value === 'string') {
    // Cassandra also accepts the fully qualified Java class name.
    const short = value.replace(/^org\.apache\.cassandra\.locator\./, '');
    if (short === 'SimpleStrategy' || short === 'NetworkTopologyStrategy') return short;
  }
  throw new InvalidRequest(`replication class must be SimpleStrategy or NetworkTopologyStrategy, got ${JSON.stringify(value)}`, { field: 'class' });
}

/**
 * Reads a replication setting in any of the shapes users write:
 * `{class: 'SimpleStrategy', rf: 3}` (or `replication_factor: '3'`),
 * `{class: 'NetworkTopologyStrategy', dc1: 3, dc2: 2}` as in CQL, or
 * `{class: 'NetworkTopologyStrategy', dcs: {dc1: 3}}` as this package stores it.
 * With `knownDcs`, every datacenter named must be one of them.
 */
export function parseReplication(input: unknown, knownDcs?: Iterable<string>): ReplicationSpec {
  if (!isRecord(input)) throw new InvalidRequest('replication must be an object with a class', { field: 'replication' });
  const cls = strategyClass(input['class']);
  if (cls === 'SimpleStrategy') {
    const extra = Object.keys(input).filter((k) => k !== 'class' && k !== 'rf' && k !== 'replication_factor');
    if (extra.length > 0) throw new InvalidRequest(`SimpleStrategy takes only rf, not ${extra.join(', ')}`, { field: extra[0] });
    const raw = input['rf'] ?? input['replication_factor'];
    return { class: 'SimpleStrategy', rf: parseRf(raw, 'rf') };
  }
  let entries: Array<[string, unknown]>;
  if ('dcs' in input) {
    const dcs = input['dcs'];
    if (!isRecord(dcs)) throw new InvalidRequest('NetworkTopologyStrategy dcs must be an object of datacenter: rf', { field: 'dcs' });
    const extra = Object.keys(input).filter((k) => k !== 'class' && k !== 'dcs');
    if (extra.length > 0) throw new InvalidRequest(`NetworkTopologyStrategy with dcs takes nothing else, got ${extra.join(', ')}`, { field: extra[0] });
    entries = Object.entries(dcs);
  } else {
    entries = Object.entries(input).filter(([k]) => k !== 'class');
  }
  if (entries.length === 0) throw new InvalidRequest('NetworkTopologyStrategy needs at least one datacenter', { field: 'dcs' });
  const known = knownDcs === undefined ? undefined : new Set(knownDcs);
  const dcs: Record<string, number> = {};
  for (const [dc, rf] of entries) {
    if (!DC_NAME.test(dc)) throw new InvalidRequest(`invalid datacenter name ${JSON.stringify(dc)}`, { field: 'dcs' });
    if (known !== undefined && !known.has(dc)) {
      throw new InvalidRequest(`unknown datacenter ${dc}; known: ${[...known].sort().join(', ') || 'none'}`, { field: 'dcs', dc });
    }
    dcs[dc] = parseRf(rf, `rf of ${dc}`);
  }
  return { class: 'NetworkTopologyStrategy', dcs };
}

/** Reads a `read_repair` setting, case-insensitive; absent (undefined) is the default, `blocking`. */
export function parseReadRepair(value: unknown): ReadRepairMode {
  if (value === undefined) return DEFAULT_READ_REPAIR;
  const mode = typeof value === 'string' ? value.trim().toLowerCase() : value;
  if (mode === 'blocking' || mode === 'none') return mode;
  throw new InvalidRequest(`read_repair must be blocking or none, got ${JSON.stringify(value)?.slice(0, 40)}`, { field: 'read_repair' });
}

/** A keyspace's read repair, absent meaning the default. */
export function readRepairOf(keyspace: Pick<KeyspaceDef, 'readRepair'>): ReadRepairMode {
  return keyspace.readRepair ?? DEFAULT_READ_REPAIR;
}

/** Reads a `tombstone_gc` setting, case-insensitive; absent (undefined) is the default, `repair`. */
export function parseTombstoneGc(value: unknown): TombstoneGcMode {
  if (value === undefined) return DEFAULT_TOMBSTONE_GC;
  const mode = typeof value === 'string' ? value.trim().toLowerCase() : value;
  if (mode === 'grace' || mode === 'repair') return mode;
  throw new InvalidRequest(`tombstone_gc must be grace or repair, got ${JSON.stringify(value)?.slice(0, 40)}`, { field: 'tombstone_gc' });
}

/** A keyspace's tombstone gc, absent meaning the default. */
export function tombstoneGcOf(keyspace: Pick<KeyspaceDef, 'tombstoneGc'>): TombstoneGcMode {
  return keyspace.tombstoneGc ?? DEFAULT_TOMBSTONE_GC;
}

/** A setting given as `snake_name` or `camelName`, but not both. */
function option(input: Record<string, unknown>, snake: string, camel: string): unknown {
  if (input[snake] !== undefined && input[camel] !== undefined) throw new InvalidRequest(`give ${snake} once`, { field: snake });
  return input[snake] !== undefined ? input[snake] : input[camel];
}

/**
 * Checks a keyspace definition from outside and returns it in canonical form
 * (`readRepair` and `tombstoneGc` always set). Options may be spelt
 * `read_repair` or `readRepair`, `tombstone_gc` or `tombstoneGc`.
 */
export function validateKeyspace(input: unknown, knownDcs?: Iterable<string>): KeyspaceDef {
  if (!isRecord(input)) throw new InvalidRequest('keyspace must be an object with name and replication', { field: 'keyspace' });
  const name = input['name'];
  if (typeof name !== 'string' || !KEYSPACE_NAME.test(name)) {
    throw new InvalidRequest(
      `invalid keyspace name ${JSON.stringify(name)}: a letter, then up to 47 letters, digits or underscores`,
      { field: 'name' },
    );
  }
  return {
    name,
    replication: parseReplication(input['replication'], knownDcs),
    readRepair: parseReadRepair(option(input, 'read_repair', 'readRepair')),
    tombstoneGc: parseTombstoneGc(option(input, 'tombstone_gc', 'tombstoneGc')),
  };
}

/** A stable text form, equal for equal settings: the key of per-strategy caches. */
export function replicationKey(spec: ReplicationSpec): string {
  if (spec.class === 'SimpleStrategy') return `SimpleStrategy:${spec.rf}`;
  const parts = Object.keys(spec.dcs)
    .sort()
    .map((dc) => `${dc}=${spec.dcs[dc]}`);
  return `NetworkTopologyStrategy:${parts.join(',')}`;
}

/** The total number of replicas a spec asks for. */
export function totalReplicationFactor(spec: ReplicationSpec): number {
  if (spec.class === 'SimpleStrategy') return spec.rf;
  return Object.values(spec.dcs).reduce((a, b) => a + b, 0);
}
