import { InvalidRequest } from '@chorus/core';
import type { ReplicationSpec } from '@chorus/ring';

export const CONSISTENCY_LEVELS = ['ANY', 'ONE', 'TWO', 'THREE', 'QUORUM', 'ALL', 'LOCAL_ONE', 'LOCAL_QUORUM', 'EACH_QUORUM'] as const;
export type ConsistencyLevel = (typeof CONSISTENCY_LEVELS)[number];

/** The level used when a request names none (DESIGN.md section 4). */
export const DEFAULT_CONSISTENCY: ConsistencyLevel = 'QUORUM';

/** Reads a level as users write it, in any case; anything else is an InvalidRequest naming the valid ones. */
export function parseConsistency(input: unknown): ConsistencyLevel {
  if (typeof input === 'string') {
    const upper = input.trim().toUpperCase();
    if ((CONSISTENCY_LEVELS as readonly string[]).includes(upper)) return upper as ConsistencyLevel;
  }
  throw new InvalidRequest(`unknown consistency level ${JSON.stringify(input)}; expected one of ${CONSISTENCY_LEVELS.join(', ')}`, {
    field: 'consistency',
  });
}

/** Levels whose counts look only at the coordinator's datacenter. */
export function isDatacenterLocal(level: ConsistencyLevel): boolean {
  return level === 'LOCAL_ONE' || level === 'LOCAL_QUORUM';
}

/** ANY stands for "a hint will do", which only means something for writes (Cassandra refuses it for reads too). */
export function validateForRead(level: ConsistencyLevel): void {
  if (level === 'ANY') throw new InvalidRequest('consistency level ANY is only supported for writes', { field: 'consistency' });
}

export function quorumOf(rf: number): number {
  return Math.floor(rf / 2) + 1;
}

export function totalRf(spec: ReplicationSpec): number {
  return spec.class === 'SimpleStrategy' ? spec.rf : Object.values(spec.dcs).reduce((a, b) => a + b, 0);
}

/**
 * The replication factor of one datacenter. SimpleStrategy knows no
 * datacenters, so (as Cassandra does) its whole rf stands for every one.
 */
export function rfIn(spec: ReplicationSpec, dc: string): number {
  return spec.class === 'SimpleStrategy' ? spec.rf : spec.dcs[dc] ?? 0;
}

/**
 * How many replica answers a level needs, before pending replicas are added
 * (Cassandra's ConsistencyLevel.blockFor). For EACH_QUORUM over
 * NetworkTopologyStrategy it is the sum of every datacenter's quorum; use
 * `eachQuorumBlockFor` for the per-datacenter split. With SimpleStrategy,
 * EACH_QUORUM means QUORUM.
 */
export function blockFor(level: ConsistencyLevel, spec: ReplicationSpec, localDc: string): number {
  switch (level) {
    case 'ANY':
    case 'ONE':
    case 'LOCAL_ONE':
      return 1;
    case 'TWO':
      return 2;
    case 'THREE':
      return 3;
    case 'QUORUM':
      return quorumOf(totalRf(spec));
    case 'ALL':
      return totalRf(spec);
    case 'LOCAL_QUORUM':
      return quorumOf(rfIn(spec, localDc));
    case 'EACH_QUORUM':
      if (spec.class === 'SimpleStrategy') return quorumOf(spec.rf);
      return Object.values(spec.dcs).reduce((sum, rf) => sum + quorumOf(rf), 0);
  }
}

/** EACH_QUORUM's quorum per datacenter; undefined when the level is not split by datacenter. */
export function eachQuorumBlockFor(level: ConsistencyLevel, spec: ReplicationSpec): ReadonlyMap<string, number> | undefined {
  if (level !== 'EACH_QUORUM' || spec.class === 'SimpleStrategy') return undefined;
  return new Map(Object.entries(spec.dcs).map(([dc, rf]) => [dc, quorumOf(rf)]));
}
