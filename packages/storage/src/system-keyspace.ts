import { type Token, token } from '@chorus/core';
import type { RowAddress } from '@chorus/model';

/**
 * The node's own records (host id, tokens, generation, schema) live in the
 * local store under keyspace `system`, which is never replicated.
 */
export const SYSTEM_KEYSPACE = 'system';

export const SCHEMA_PARTITION = 'schema';

/**
 * The token each system partition is stored under. The system keyspace is
 * local-only and never placed on the ring, so its token only orders its rows
 * in the store; the values are the partitioner's tokens of the partition
 * names (Murmur3 of `local` and `schema`), which is what earlier versions
 * wrote, so rows already on disk keep reading. Storage does not depend on the
 * ring; a test in the node package checks these against it.
 */
export const SYSTEM_PARTITION_TOKENS: Readonly<Record<'local' | typeof SCHEMA_PARTITION | 'repair', Token>> = Object.freeze({
  local: token(-7564491331177403445n),
  schema: token(-1472852311895967843n),
  repair: token(-8606083262265237234n),
});

export type SystemPartition = keyof typeof SYSTEM_PARTITION_TOKENS;

const encoder = new TextEncoder();

export function systemRow(partition: SystemPartition, clustering: string): RowAddress {
  return { keyspace: SYSTEM_KEYSPACE, token: SYSTEM_PARTITION_TOKENS[partition], partition: encoder.encode(partition), clustering: encoder.encode(clustering) };
}

export const LOCAL = {
  hostId: systemRow('local', 'host_id'),
  tokens: systemRow('local', 'tokens'),
  generation: systemRow('local', 'generation'),
} as const;
