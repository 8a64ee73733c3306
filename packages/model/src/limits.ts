import type { Token } from '@chorus/core';
import { MAX_TOKEN, MIN_TOKEN } from '@chorus/core';
import {
  EmptyPartitionKey,
  InvalidKeyspaceName,
  InvalidMutation,
  InvalidTimestamp,
  InvalidTtl,
  KeyTooLarge,
  ValueTooLarge,
} from './errors.js';

/**
 * Size limits. Keys are kept small because every key is repeated in the
 * LevelDB index blocks and in every Merkle/streaming message; values are capped
 * so one write cannot stall a group-commit batch or a peer frame.
 */
export const LIMITS = Object.freeze({
  maxPartitionKeyBytes: 8 * 1024,
  maxClusteringKeyBytes: 8 * 1024,
  maxValueBytes: 1024 * 1024,
  /** Cassandra's cap: 20 years. */
  maxTtlSeconds: 630_720_000,
  maxSliceLimit: 10_000,
  /** A session's per-row floors sent with one slice page; a session with more rows in the range narrows the page instead. */
  maxSliceFloors: 1_000,
  /** One peer or client message after encoding; a value at its limit still fits with room for the envelope. */
  maxFrameBytes: 4 * 1024 * 1024,
});

const KEYSPACE = /^[A-Za-z][A-Za-z0-9_]{0,47}$/;

export function validateKeyspace(keyspace: unknown): asserts keyspace is string {
  if (typeof keyspace !== 'string' || !KEYSPACE.test(keyspace)) throw new InvalidKeyspaceName(String(keyspace));
}

export function validateToken(t: unknown): asserts t is Token {
  if (typeof t !== 'bigint' || t < MIN_TOKEN || t > MAX_TOKEN) throw new InvalidMutation(`token must be a signed 64-bit bigint, got ${String(t)}`);
}

export function validatePartitionKey(pk: unknown): asserts pk is Uint8Array {
  if (!(pk instanceof Uint8Array)) throw new InvalidMutation('partition key must be a Uint8Array');
  if (pk.length === 0) throw new EmptyPartitionKey();
  if (pk.length > LIMITS.maxPartitionKeyBytes) throw new KeyTooLarge('partition', pk.length, LIMITS.maxPartitionKeyBytes);
}

export function validateClusteringKey(ck: unknown): asserts ck is Uint8Array {
  if (!(ck instanceof Uint8Array)) throw new InvalidMutation('clustering key must be a Uint8Array');
  if (ck.length > LIMITS.maxClusteringKeyBytes) throw new KeyTooLarge('clustering', ck.length, LIMITS.maxClusteringKeyBytes);
}

export function validateValue(v: unknown): asserts v is Uint8Array {
  if (!(v instanceof Uint8Array)) throw new InvalidMutation('value must be a Uint8Array');
  if (v.length > LIMITS.maxValueBytes) throw new ValueTooLarge(v.length, LIMITS.maxValueBytes);
}

export function validateMicros(what: string, v: unknown): asserts v is number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new InvalidTimestamp(what, v);
}

/**
 * The expiry of a cell written at `nowMicros` with a TTL in seconds, as the
 * coordinator computes it. Kept here so the TTL rules live next to the cell.
 */
export function expiryFromTtl(nowMicros: number, ttlSeconds: number): number {
  if (typeof ttlSeconds !== 'number' || !Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > LIMITS.maxTtlSeconds) {
    throw new InvalidTtl(ttlSeconds, LIMITS.maxTtlSeconds);
  }
  validateMicros('now', nowMicros);
  return nowMicros + ttlSeconds * 1_000_000;
}
