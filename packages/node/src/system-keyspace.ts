import { type Token } from '@chorus/core';
import { tokenOf } from '@chorus/ring';
import type { RowAddress } from '@chorus/model';

/**
 * The node's own records (host id, tokens, generation, schema) live in the
 * local store under keyspace `system`, which is never replicated.
 */
export const SYSTEM_KEYSPACE = 'system';

const encoder = new TextEncoder();

export function systemRow(partition: string, clustering: string): RowAddress {
  return { keyspace: SYSTEM_KEYSPACE, token: tokenOf(partition) as Token, partition: encoder.encode(partition), clustering: encoder.encode(clustering) };
}

export const LOCAL = {
  hostId: systemRow('local', 'host_id'),
  tokens: systemRow('local', 'tokens'),
  generation: systemRow('local', 'generation'),
} as const;

export const SCHEMA_PARTITION = 'schema';
