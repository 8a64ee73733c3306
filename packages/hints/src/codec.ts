import { type HostId, type NodeId, type Token } from '@chorus/core';
import { type Mutation, isPartitionDelete } from '@chorus/model';
import { CorruptHint } from './errors.js';

/**
 * The on-disk form of hints. One LevelDB key per hint, grouped by the target's
 * host id and ordered by when the hint was first written, then by a
 * store-wide sequence number, so a target's hints are one ordered scan,
 * oldest first, even when some came from another node's store (a hand-off
 * keeps each hint's original creation time):
 *
 *   05 | host id (36 ASCII bytes) | created (8 bytes) | seq (8 bytes) -> hint record
 *   01 | host id | seq (8 bytes)                                     -> hint record of the first layout, moved under 05 on open
 *   02 | host id                                                     -> target record (JSON)
 *   03                                                               -> next sequence number
 *   04                                                               -> sync marker
 *
 * Numbers in keys are unsigned big-endian. A hint record holds the mutation
 * exactly as the coordinator built it (its timestamp and expiry are never
 * rewritten), when the hint was written, and the target's address at that time.
 */
const HINT = 0x05;
const LEGACY_HINT = 0x01;
const TARGET = 0x02;
const HOST_ID_BYTES = 36;
const CREATED_BYTES = 8;
const SEQ_BYTES = 8;
const RECORD_VERSION = 1;
export const HINT_KEY_BYTES = 1 + HOST_ID_BYTES + CREATED_BYTES + SEQ_BYTES;
const LEGACY_HINT_KEY_BYTES = 1 + HOST_ID_BYTES + SEQ_BYTES;

export const NEXT_SEQ_KEY = Uint8Array.of(0x03);
export const SYNC_MARKER_KEY = Uint8Array.of(0x04);

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

function hostBytes(hostId: HostId): Uint8Array {
  const b = utf8.encode(hostId);
  if (b.length !== HOST_ID_BYTES) throw new RangeError(`host id must be ${HOST_ID_BYTES} ASCII characters`);
  return b;
}

/** Where a hint sits in its target's order: when it was first written, then its sequence number. */
export interface HintPosition {
  createdAtMicros: number;
  seq: number;
}

export function hintKey(hostId: HostId, at: HintPosition): Uint8Array {
  const key = new Uint8Array(HINT_KEY_BYTES);
  key[0] = HINT;
  key.set(hostBytes(hostId), 1);
  const view = new DataView(key.buffer);
  // A creation time before the epoch (a clock gone badly wrong) sorts first rather than wrapping around.
  view.setBigUint64(1 + HOST_ID_BYTES, BigInt(Math.max(0, Math.trunc(at.createdAtMicros))));
  view.setBigUint64(1 + HOST_ID_BYTES + CREATED_BYTES, BigInt(at.seq));
  return key;
}

/** Bounds of every hint key of one target, or of those after `after`. */
export function hintRange(hostId: HostId, after?: HintPosition): { gte?: Uint8Array; gt?: Uint8Array; lt: Uint8Array } {
  const lt = new Uint8Array(1 + HOST_ID_BYTES);
  lt[0] = HINT;
  lt.set(hostBytes(hostId), 1);
  // The prefix followed by anything sorts below the prefix with its last byte raised.
  const upper = Uint8Array.from(lt);
  upper[HOST_ID_BYTES] = upper[HOST_ID_BYTES]! + 1;
  if (after !== undefined) return { gt: hintKey(hostId, after), lt: upper };
  return { gte: lt, lt: upper };
}

export function positionOfHintKey(key: Uint8Array): HintPosition {
  if (key.length !== HINT_KEY_BYTES || key[0] !== HINT) throw new CorruptHint('malformed hint key');
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength);
  return { createdAtMicros: Number(view.getBigUint64(1 + HOST_ID_BYTES)), seq: Number(view.getBigUint64(1 + HOST_ID_BYTES + CREATED_BYTES)) };
}

export function hostIdOfHintKey(key: Uint8Array): HostId {
  if ((key.length !== HINT_KEY_BYTES && key.length !== LEGACY_HINT_KEY_BYTES) || (key[0] !== HINT && key[0] !== LEGACY_HINT)) throw new CorruptHint('malformed hint key');
  return fromUtf8.decode(key.subarray(1, 1 + HOST_ID_BYTES)) as HostId;
}

/** Every key of the first layout (ordered by sequence number alone), which a store moves to the current one when it opens. */
export const LEGACY_HINT_RANGE = { gte: Uint8Array.of(LEGACY_HINT), lt: Uint8Array.of(LEGACY_HINT + 1) };

export function seqOfLegacyHintKey(key: Uint8Array): number {
  if (key.length !== LEGACY_HINT_KEY_BYTES || key[0] !== LEGACY_HINT) throw new CorruptHint('malformed hint key');
  return Number(new DataView(key.buffer, key.byteOffset, key.byteLength).getBigUint64(1 + HOST_ID_BYTES));
}

/** A key of the first layout, for tests of the move. */
export function legacyHintKey(hostId: HostId, seq: number): Uint8Array {
  const key = new Uint8Array(LEGACY_HINT_KEY_BYTES);
  key[0] = LEGACY_HINT;
  key.set(hostBytes(hostId), 1);
  new DataView(key.buffer).setBigUint64(1 + HOST_ID_BYTES, BigInt(seq));
  return key;
}

export function targetKey(hostId: HostId): Uint8Array {
  const key = new Uint8Array(1 + HOST_ID_BYTES);
  key[0] = TARGET;
  key.set(hostBytes(hostId), 1);
  return key;
}

export const TARGET_RANGE = { gte: Uint8Array.of(TARGET), lt: Uint8Array.of(TARGET + 1) };

export function hostIdOfTargetKey(key: Uint8Array): HostId {
  if (key.length !== 1 + HOST_ID_BYTES || key[0] !== TARGET) throw new CorruptHint('malformed target key');
  return fromUtf8.decode(key.subarray(1)) as HostId;
}

export function encodeSeq(seq: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, seq);
  return b;
}

export function decodeSeq(b: Uint8Array): number {
  if (b.length !== 8) throw new CorruptHint('malformed sequence record');
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getFloat64(0);
}

/** What the store keeps for each target besides its hints. */
export interface TargetRecord {
  /** The target's address when its latest hint was written. */
  node: NodeId;
  hints: number;
  bytes: number;
  needsRepair: boolean;
  /** Why hints were refused: the window passed, or the target's hints reached their byte cap. */
  needsRepairReason?: 'window' | 'size';
}

export function encodeTarget(t: TargetRecord): Uint8Array {
  return utf8.encode(JSON.stringify(t));
}

export function decodeTarget(b: Uint8Array): TargetRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fromUtf8.decode(b));
  } catch {
    throw new CorruptHint('malformed target record');
  }
  const t = parsed as Partial<TargetRecord>;
  if (typeof t !== 'object' || t === null || typeof t.node !== 'string' || !Number.isSafeInteger(t.hints) || !Number.isSafeInteger(t.bytes) || typeof t.needsRepair !== 'boolean') {
    throw new CorruptHint('malformed target record');
  }
  const out: TargetRecord = { node: t.node as NodeId, hints: t.hints!, bytes: t.bytes!, needsRepair: t.needsRepair };
  if (t.needsRepairReason === 'window' || t.needsRepairReason === 'size') out.needsRepairReason = t.needsRepairReason;
  return out;
}

/** A hint as stored. */
export interface HintRecord {
  createdAtMicros: number;
  target: NodeId;
  mutation: Mutation;
}

const KIND_VALUE = 0;
const KIND_TOMBSTONE = 1;
const KIND_PARTITION_DELETE = 2;

export function encodeHint(h: HintRecord): Uint8Array {
  const m = h.mutation;
  const target = utf8.encode(h.target);
  const keyspace = utf8.encode(m.keyspace);
  const clustering = isPartitionDelete(m) ? undefined : m.clustering;
  const cell = isPartitionDelete(m) ? undefined : m.cell;
  const value = cell !== undefined && !('tombstone' in cell && cell.tombstone === true) ? (cell as { value: Uint8Array }).value : undefined;
  const expires = cell !== undefined && 'expiresAtMicros' in cell ? cell.expiresAtMicros : undefined;
  const size =
    1 + 8 + 2 + target.length + 2 + keyspace.length + 8 + 4 + m.partition.length + 1 +
    (isPartitionDelete(m) ? 0 : 1 + (clustering === undefined ? 0 : 4 + clustering.length)) +
    8 + (value === undefined ? 0 : 4 + value.length + 1 + (expires === undefined ? 0 : 8));
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  const u8 = (n: number) => view.setUint8(at++, n);
  const u16 = (n: number) => {
    view.setUint16(at, n);
    at += 2;
  };
  const u32 = (n: number) => {
    view.setUint32(at, n);
    at += 4;
  };
  const f64 = (n: number) => {
    view.setFloat64(at, n);
    at += 8;
  };
  const bytes = (b: Uint8Array) => {
    out.set(b, at);
    at += b.length;
  };
  u8(RECORD_VERSION);
  f64(h.createdAtMicros);
  u16(target.length);
  bytes(target);
  u16(keyspace.length);
  bytes(keyspace);
  view.setBigInt64(at, BigInt(m.token));
  at += 8;
  u32(m.partition.length);
  bytes(m.partition);
  if (isPartitionDelete(m)) {
    u8(KIND_PARTITION_DELETE);
    f64(m.partitionDeletion.timestampMicros);
  } else {
    u8(value === undefined ? KIND_TOMBSTONE : KIND_VALUE);
    if (clustering === undefined) u8(0);
    else {
      u8(1);
      u32(clustering.length);
      bytes(clustering);
    }
    f64(m.cell.timestampMicros);
    if (value !== undefined) {
      u32(value.length);
      bytes(value);
      if (expires === undefined) u8(0);
      else {
        u8(1);
        f64(expires);
      }
    }
  }
  return out;
}

/** Decodes a hint record; throws CorruptHint for anything that is not one. */
export function decodeHint(b: Uint8Array): HintRecord {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let at = 0;
  const need = (n: number) => {
    if (at + n > b.length) throw new CorruptHint('truncated record');
  };
  const u8 = () => {
    need(1);
    return view.getUint8(at++);
  };
  const u16 = () => {
    need(2);
    const n = view.getUint16(at);
    at += 2;
    return n;
  };
  const u32 = () => {
    need(4);
    const n = view.getUint32(at);
    at += 4;
    return n;
  };
  const f64 = () => {
    need(8);
    const n = view.getFloat64(at);
    at += 8;
    return n;
  };
  const bytes = (n: number) => {
    need(n);
    const out = b.slice(at, at + n);
    at += n;
    return out;
  };
  const text = (n: number) => {
    try {
      return fromUtf8.decode(bytes(n));
    } catch (error) {
      if (error instanceof CorruptHint) throw error;
      throw new CorruptHint('invalid UTF-8');
    }
  };
  if (u8() !== RECORD_VERSION) throw new CorruptHint('unknown record version');
  const createdAtMicros = f64();
  const target = text(u16()) as NodeId;
  const keyspace = text(u16());
  need(8);
  const token = view.getBigInt64(at) as Token;
  at += 8;
  const partition = bytes(u32());
  const kind = u8();
  let mutation: Mutation;
  if (kind === KIND_PARTITION_DELETE) {
    mutation = { keyspace, token, partition, partitionDeletion: { timestampMicros: f64() } };
  } else if (kind === KIND_VALUE || kind === KIND_TOMBSTONE) {
    const hasClustering = u8();
    const clustering = hasClustering === 1 ? bytes(u32()) : undefined;
    if (hasClustering > 1) throw new CorruptHint('bad clustering flag');
    const timestampMicros = f64();
    let cell: Extract<Mutation, { cell: unknown }>['cell'];
    if (kind === KIND_TOMBSTONE) cell = { tombstone: true, timestampMicros };
    else {
      const value = bytes(u32());
      const hasExpiry = u8();
      if (hasExpiry > 1) throw new CorruptHint('bad expiry flag');
      cell = hasExpiry === 1 ? { value, timestampMicros, expiresAtMicros: f64() } : { value, timestampMicros };
    }
    mutation = clustering === undefined ? { keyspace, token, partition, cell } : { keyspace, token, partition, clustering, cell };
  } else throw new CorruptHint(`unknown mutation kind ${kind}`);
  if (at !== b.length) throw new CorruptHint('trailing bytes');
  return { createdAtMicros, target, mutation };
}
