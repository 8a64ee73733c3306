import { type Mutation, InvalidMutation, isPartitionDelete, unfilledBytes, validateMutationBody } from '@chorus/model';
import type { Batch } from './batch.js';
import { encodeDeletion, encodeStored, tieLength, writeTie } from './cell.js';
import { EMPTY } from './db.js';
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
 * Encodes a group of mutations into `batch`, one version each. Each mutation
 * is validated on its own, so a bad one fails alone. With `trackKeys` the
 * batch also records the rows it touches, for the row cache.
 */
export function encodeMutations(batch: Batch, mutations: readonly Mutation[], keyspaces: KeyspacePrefixes, now: number, trackKeys: boolean): ApplyOutcome[] {
  const n = mutations.length;
  const outcomes: ApplyOutcome[] = new Array(n);
  const keys = trackKeys ? new Array<Uint8Array | undefined>(n) : undefined;
  if (keys !== undefined) batch.touched = { mutations, keys };
  for (let i = 0; i < n; i++) {
    try {
      const key = encodeMutation(mutations[i]!, keyspaces, batch, now);
      if (keys !== undefined) keys[i] = key;
      outcomes[i] = STORED;
    } catch (error) {
      outcomes[i] = { ok: false, error: error as Error };
    }
  }
  return outcomes;
}

/** Validates one mutation and adds its version to the batch; returns the version's key. */
function encodeMutation(m: Mutation, keyspaces: KeyspacePrefixes, batch: Batch, now: number): Uint8Array {
  if (typeof m !== 'object' || m === null) throw new InvalidMutation('mutation must be an object');
  const ks = keyspaces.prefix(m.keyspace);
  validateMutationBody(m);
  const partition = m.partition;
  const partEnd = ks.length + 8 + escapedLength(partition);
  if (isPartitionDelete(m)) {
    const ts = m.partitionDeletion.timestampMicros;
    const key = new Uint8Array(partEnd + 1 + DELETION_VERSION_BYTES);
    key.set(ks, 0);
    writeToken(key, ks.length, m.token);
    writeEscaped(key, ks.length + 8, partition);
    key[partEnd] = KIND_PARTITION_DELETION;
    writeInvertedMicros(key, partEnd + 1, ts);
    batch.put(key, encodeDeletion(ts, now));
    return key;
  }
  const clustering = m.clustering ?? EMPTY;
  const cell = m.cell;
  const versionAt = partEnd + 1 + escapedLength(clustering);
  const key = unfilledBytes(versionAt + VERSION_TS_BYTES + tieLength(cell));
  key.set(ks, 0);
  writeToken(key, ks.length, m.token);
  writeEscaped(key, ks.length + 8, partition);
  key[partEnd] = KIND_ROW;
  writeEscaped(key, partEnd + 1, clustering);
  writeInvertedMicros(key, versionAt, cell.timestampMicros);
  writeTie(key, versionAt + VERSION_TS_BYTES, cell);
  batch.put(key, encodeStored(cell, now));
  return key;
}
