import type { Token } from '@chorus/core';
import type { Cell } from './cell.js';
import { InvalidMutation } from './errors.js';
import { validateClusteringKey, validateKeyspace, validateMicros, validatePartitionKey, validateToken, validateValue } from './limits.js';

/** Where a row lives. `clustering` defaults to the empty key. */
export interface RowAddress {
  keyspace: string;
  token: Token;
  partition: Uint8Array;
  clustering?: Uint8Array;
}

/**
 * Write one cell (a value or a row tombstone) into a row. Build one as a
 * literal with its fields written out: V8 (Node 20) gives every object built
 * as `{ ...row, cell }` (a spread first, then more fields) a hidden class of
 * its own, so each write would leave one in the old space, and every function
 * that reads mutations would see a new shape each time.
 */
export interface RowWrite extends RowAddress {
  cell: Cell;
}

/** Delete a whole partition: shadows every row whose timestamp is ≤ `timestampMicros`. */
export interface PartitionDelete {
  keyspace: string;
  token: Token;
  partition: Uint8Array;
  partitionDeletion: { timestampMicros: number };
}

export type Mutation = RowWrite | PartitionDelete;

export function isPartitionDelete(m: Mutation): m is PartitionDelete {
  // `!= null`: a `partitionDeletion: null` from the wire is a malformed row write, not a deletion.
  return (m as PartitionDelete).partitionDeletion != null;
}

/** Fixed cost counted per mutation beside its keys and value: the objects around them. */
const MUTATION_OVERHEAD_BYTES = 128;

/**
 * About the memory a mutation holds: its keys, its value, and a fixed cost
 * for the rest. What byte budgets (mailboxes, batches, requests in flight)
 * count; it never throws, even on a malformed mutation from the wire.
 */
export function mutationBytes(m: Mutation): number {
  const partition = (m as { partition?: unknown }).partition;
  const clustering = (m as { clustering?: unknown }).clustering;
  const value = (m as { cell?: { value?: unknown } }).cell?.value;
  const sizeOf = (b: unknown) => (b instanceof Uint8Array ? b.byteLength : 0);
  return MUTATION_OVERHEAD_BYTES + sizeOf(partition) + sizeOf(clustering) + sizeOf(value);
}

function validateCell(cell: unknown): asserts cell is Cell {
  if (typeof cell !== 'object' || cell === null) throw new InvalidMutation('cell must be an object');
  const c = cell as Record<string, unknown>;
  validateMicros('timestampMicros', c['timestampMicros']);
  if (c['tombstone'] === true) {
    if (c['value'] !== undefined) throw new InvalidMutation('a tombstone has no value');
    if (c['expiresAtMicros'] !== undefined) throw new InvalidMutation('a tombstone has no expiry');
    return;
  }
  if (c['tombstone'] !== undefined) throw new InvalidMutation('tombstone must be true or absent');
  validateValue(c['value']);
  if (c['expiresAtMicros'] !== undefined) validateMicros('expiresAtMicros', c['expiresAtMicros']);
}

/** Everything but the keyspace name, for a store that checks names against its own cache of them. */
export function validateMutationBody(m: Mutation): void {
  validateToken(m.token);
  validatePartitionKey(m.partition);
  if (isPartitionDelete(m)) {
    if ((m as Partial<RowWrite>).cell !== undefined) throw new InvalidMutation('a mutation is either a cell write or a partition deletion');
    validateMicros('timestampMicros', m.partitionDeletion.timestampMicros);
    return;
  }
  if (m.clustering !== undefined) validateClusteringKey(m.clustering);
  validateCell(m.cell);
}

/** Throws the typed InvalidRequest/ValueTooLarge error for a malformed mutation. */
export function validateMutation(m: Mutation): void {
  if (typeof m !== 'object' || m === null) throw new InvalidMutation('mutation must be an object');
  validateKeyspace(m.keyspace);
  validateMutationBody(m);
}

export function validateAddress(a: RowAddress): void {
  validateKeyspace(a.keyspace);
  validateToken(a.token);
  validatePartitionKey(a.partition);
  if (a.clustering !== undefined) validateClusteringKey(a.clustering);
}

