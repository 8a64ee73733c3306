import { describe, expect, it } from 'vitest';
import { token } from '@chorus/core';
import { EmptyPartitionKey, InvalidKeyspaceName, InvalidMutation, InvalidTimestamp, InvalidTtl, KeyTooLarge, LIMITS, type Mutation, ValueTooLarge, expiryFromTtl, isPartitionDelete, validateMutation } from '../src/index.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const row = { keyspace: 'ks', token: token(1n), partition: enc('p') };

describe('mutation validation', () => {
  it('accepts values, row tombstones and partition deletions', () => {
    const ok: Mutation[] = [
      { ...row, cell: { value: enc('v'), timestampMicros: 1 } },
      { ...row, clustering: enc('c'), cell: { value: enc('v'), timestampMicros: 1, expiresAtMicros: 5 } },
      { ...row, cell: { tombstone: true, timestampMicros: 2 } },
      { ...row, partitionDeletion: { timestampMicros: 3 } },
    ];
    for (const m of ok) expect(() => validateMutation(m)).not.toThrow();
    expect(ok.map(isPartitionDelete)).toEqual([false, false, false, true]);
  });

  it('refuses each malformed field with its typed error', () => {
    const bad = (m: unknown) => () => validateMutation(m as Mutation);
    expect(bad({ ...row, keyspace: '1ks', cell: { value: enc('v'), timestampMicros: 1 } })).toThrow(InvalidKeyspaceName);
    expect(bad({ ...row, partition: enc(''), cell: { value: enc('v'), timestampMicros: 1 } })).toThrow(EmptyPartitionKey);
    expect(bad({ ...row, partition: new Uint8Array(LIMITS.maxPartitionKeyBytes + 1), cell: { value: enc('v'), timestampMicros: 1 } })).toThrow(KeyTooLarge);
    expect(bad({ ...row, cell: { value: new Uint8Array(LIMITS.maxValueBytes + 1), timestampMicros: 1 } })).toThrow(ValueTooLarge);
    expect(bad({ ...row, cell: { value: enc('v'), timestampMicros: -1 } })).toThrow(InvalidTimestamp);
    expect(bad({ ...row, cell: { tombstone: true, value: enc('v'), timestampMicros: 1 } })).toThrow(InvalidMutation);
    expect(bad({ ...row, token: 5, cell: { value: enc('v'), timestampMicros: 1 } })).toThrow(InvalidMutation);
    expect(bad({ ...row, partitionDeletion: { timestampMicros: 1 }, cell: { value: enc('v'), timestampMicros: 1 } })).toThrow(InvalidMutation);
    expect(bad(null)).toThrow(InvalidMutation);
  });

  it('a value at the limit fits a frame with room for its envelope', () => {
    expect(LIMITS.maxValueBytes + LIMITS.maxPartitionKeyBytes + LIMITS.maxClusteringKeyBytes).toBeLessThan(LIMITS.maxFrameBytes / 2);
  });

  it('computes expiry from a TTL within Cassandra\'s 20-year cap', () => {
    expect(expiryFromTtl(1_000_000, 10)).toBe(11_000_000);
    expect(() => expiryFromTtl(0, 0)).toThrow(InvalidTtl);
    expect(() => expiryFromTtl(0, LIMITS.maxTtlSeconds + 1)).toThrow(InvalidTtl);
  });
});

describe('mutationBytes', () => {
  it('counts keys and value and a fixed cost, and never throws on a malformed mutation', async () => {
    const { mutationBytes } = await import('../src/index.js');
    const base = { keyspace: 'ks', token: 0n as never, partition: new Uint8Array(10) };
    const plain = mutationBytes({ ...base, cell: { value: new Uint8Array(1000), timestampMicros: 1 } });
    expect(mutationBytes({ ...base, clustering: new Uint8Array(5), cell: { value: new Uint8Array(1000), timestampMicros: 1 } })).toBe(plain + 5);
    expect(mutationBytes({ ...base, cell: { tombstone: true, timestampMicros: 1 } })).toBe(plain - 1000);
    expect(mutationBytes({ ...base, partitionDeletion: { timestampMicros: 1 } })).toBe(plain - 1000);
    expect(mutationBytes({ keyspace: 'ks', cell: null } as never)).toBeGreaterThan(0);
  });
});
