import { type Mutation, InvalidMutation, isPartitionDelete, unfilledBytes, validateMutationBody } from '@chorus/model';
import type { Batch } from './batch.js';
import { encodeDeletion, encodeStored, tieLength, writeTie } from './cell.js';
import { EMPTY } from './db.js';
import type { Heads } from './heads.js';
import { DELETION_VERSION_BYTES, KIND_PARTITION_DELETION, KIND_ROW, VERSION_TS_BYTES, escapedLength, writeEscaped, writeInvertedMicros, writeToken } from './keys.js';
import type { KeyspacePrefixes } from './keyspaces.js';

/**
 * The outcome of one mutation of a batch: stored (`ok: true`), or rejected
 * with its validation error. Writes never read, so a stored write may well be
 * older than what the row holds: reads reconcile and it never wins there.
 */
export type ApplyOutcome = { ok: true } | { ok: false; error: Error };

const STORED: ApplyOutcome = Object.freeze({ ok: true }) as ApplyOutcome;

/**
 * Encodes a group of mutations into `batch`, one entry each: a key-value
 * row's head when the write is known to be its newest, else a version. Each
 * mutation is validated on its own, so a bad one fails alone. With
 * `trackKeys` the batch also records the rows it touches, for the row cache.
 */
export function encodeMutations(
  batch: Batch,
  mutations: readonly Mutation[],
  keyspaces: KeyspacePrefixes,
  heads: Heads,
  now: number,
  trackKeys: boolean,
): ApplyOutcome[] {
  const n = mutations.length;
  const outcomes: ApplyOutcome[] = new Array(n);
  const keys = trackKeys ? new Array<Uint8Array | undefined>(n) : undefined;
  if (keys !== undefined) batch.touched = { mutations, keys };
  let newest = 0;
  for (let i = 0; i < n; i++) {
    try {
      const m = mutations[i]!;
      const key = encodeMutation(m, keyspaces, heads, batch, now);
      if (keys !== undefined) keys[i] = key;
      const ts = isPartitionDelete(m) ? m.partitionDeletion.timestampMicros : m.cell.timestampMicros;
      if (ts > newest) newest = ts;
      outcomes[i] = STORED;
    } catch (error) {
      outcomes[i] = { ok: false, error: error as Error };
    }
  }
  heads.finish(batch, newest);
  return outcomes;
}

/** Validates one mutation and adds it to the batch (a head or a version); returns the key it is stored under. */
function encodeMutation(m: Mutation, keyspaces: KeyspacePrefixes, heads: Heads, batch: Batch, now: number): Uint8Array {
  if (typeof m !== 'object' || m === null) throw new InvalidMutation('mutation must be an object');
  const ks = keyspaces.prefix(m.keyspace);
  validateMutationBody(m);
  const partition = m.partition;
  const tokenEnd = ks.length + 8;
  const partEnd = tokenEnd + escapedLength(partition);
  if (isPartitionDelete(m)) {
    const ts = m.partitionDeletion.timestampMicros;
    const key = new Uint8Array(partEnd + 1 + DELETION_VERSION_BYTES);
    key.set(ks, 0);
    writeToken(key, ks.length, m.token);
    writeEscaped(key, tokenEnd, partition);
    key[partEnd] = KIND_PARTITION_DELETION;
    writeInvertedMicros(key, partEnd + 1, ts);
    batch.put(key, encodeDeletion(ts, now));
    heads.partitionDeleted(batch, rowPrefixOf(m, ks, partEnd), tokenEnd, ts);
    return key;
  }
  const clustering = m.clustering ?? EMPTY;
  const cell = m.cell;
  const stored = encodeStored(cell, now);
  if (clustering.length === 0) {
    // A key-value row's newest write goes under the row prefix alone: its head.
    const rowPrefix = rowPrefixOf(m, ks, partEnd);
    if (heads.takesHead(batch, rowPrefix, tokenEnd, cell.timestampMicros)) {
      batch.put(rowPrefix, stored);
      return rowPrefix;
    }
  }
  const versionAt = partEnd + 1 + escapedLength(clustering);
  const key = unfilledBytes(versionAt + VERSION_TS_BYTES + tieLength(cell));
  key.set(ks, 0);
  writeToken(key, ks.length, m.token);
  writeEscaped(key, tokenEnd, partition);
  key[partEnd] = KIND_ROW;
  writeEscaped(key, partEnd + 1, clustering);
  writeInvertedMicros(key, versionAt, cell.timestampMicros);
  writeTie(key, versionAt + VERSION_TS_BYTES, cell);
  batch.put(key, stored);
  return key;
}

/** The key-value row's prefix `P | 01 | 00 01` of a mutation's partition (`P` is `partEnd` bytes). */
function rowPrefixOf(m: Mutation, ks: Uint8Array, partEnd: number): Uint8Array {
  const out = unfilledBytes(partEnd + 3);
  out.set(ks, 0);
  writeToken(out, ks.length, m.token);
  writeEscaped(out, ks.length + 8, m.partition);
  out[partEnd] = KIND_ROW;
  writeEscaped(out, partEnd + 1, EMPTY);
  return out;
}
