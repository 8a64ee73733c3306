import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { type Cell, type Mutation, cellDigest } from '@chorus/model';
import { Store } from '../src/store.js';
import { enc, memoryBackend, testEnv, tokenOf } from './helpers.js';

/*
 * The row cache must be invisible: a store with it (of any size) and one
 * without, given the same writes, gc purges and clock, read the same at every
 * quiet point — including after tombstones and expired values are purged,
 * which a merge cannot follow. Reads on the cached store also run while
 * batches are in flight, to race the fills against landing writes.
 */

const KS = 'ks';
const PARTITIONS = ['p', 'q'];
const CLUSTERINGS = ['', 'a', 'b\u0000'];
const START = 1_700_000_000_000_000;

type Op =
  | { kind: 'row'; p: number; c: number; cell: Cell }
  | { kind: 'partition'; p: number; ts: number }
  | { kind: 'advance'; seconds: number }
  | { kind: 'purge' }
  | { kind: 'read' }
  | { kind: 'check' };

const ts = fc.integer({ min: 1, max: 6 });
// Two values past 32 bytes, which the version key holds as their digests, beside short ones held as themselves.
const value = fc.constantFrom('x', 'y', 'zz', `${'v'.repeat(40)}1`, `${'v'.repeat(40)}2`);
const cellArb: fc.Arbitrary<Cell> = fc.oneof(
  ts.map((t) => ({ tombstone: true as const, timestampMicros: t })),
  fc.record({ value: value.map(enc), timestampMicros: ts }),
  fc.record({ value: value.map(enc), timestampMicros: ts, expiresAtMicros: fc.integer({ min: 1, max: 8 }).map((s) => START + s * 1_000_000) }),
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('row' as const), p: fc.nat(PARTITIONS.length - 1), c: fc.nat(CLUSTERINGS.length - 1), cell: cellArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('partition' as const), p: fc.nat(PARTITIONS.length - 1), ts }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('advance' as const), seconds: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'purge' as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'read' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'check' as const }) },
);

function toMutation(op: Extract<Op, { kind: 'row' | 'partition' }>): Mutation {
  const pk = PARTITIONS[op.p]!;
  const base = { keyspace: KS, token: tokenOf(pk), partition: enc(pk) };
  return op.kind === 'row' ? { ...base, clustering: enc(CLUSTERINGS[op.c]!), cell: op.cell } : { ...base, partitionDeletion: { timestampMicros: op.ts } };
}

const addresses = PARTITIONS.flatMap((pk) => CLUSTERINGS.map((c) => ({ keyspace: KS, token: tokenOf(pk), partition: enc(pk), clustering: enc(c) })));
const norm = (c: Cell | undefined) => (c === undefined ? undefined : 'tombstone' in c ? { t: c.timestampMicros } : { v: Array.from(c.value), t: c.timestampMicros, e: c.expiresAtMicros });

describe('row cache (property)', () => {
  it('a cached store reads exactly as an uncached one through writes, races, expiry and gc purges', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 1, maxLength: 50 }),
        fc.constantFrom(700, 1500, 64 * 1024 * 1024),
        fc.constantFrom(0, 3),
        async (ops, cacheBytes, graceSeconds) => {
          const env = testEnv(START);
          const cached = new Store(await memoryBackend().create(), { env, gcGraceSeconds: graceSeconds, rowCacheBytes: cacheBytes });
          const plain = new Store(await memoryBackend().create(), { env, gcGraceSeconds: graceSeconds, rowCacheBytes: 0 });
          // Reads left running while later batches are submitted and land: their fills race those writes.
          let reads: Array<Promise<unknown>> = [];
          const quiet = async () => {
            await Promise.all(reads);
            reads = [];
            await Promise.all([cached.settled(), plain.settled()]);
          };
          const compare = async () => {
            await quiet();
            for (const a of addresses) {
              expect(norm(await cached.getCell(a))).toEqual(norm(await plain.getCell(a)));
              expect(norm(await cached.get(a))).toEqual(norm(await plain.get(a)));
              expect(await cached.digest(a)).toEqual(cellDigest(await plain.getCell(a)));
            }
          };
          try {
            let batch: Mutation[] = [];
            const flush = () => {
              if (batch.length === 0) return;
              // Not awaited: batches overlap in flight and land in any order.
              void cached.submit(batch).landed;
              void plain.submit(batch).landed;
              batch = [];
            };
            for (const op of ops) {
              if (op.kind === 'row' || op.kind === 'partition') {
                batch.push(toMutation(op));
                if (batch.length >= 3) flush();
                continue;
              }
              flush();
              if (op.kind === 'advance') env.advanceSeconds(op.seconds);
              else if (op.kind === 'read') reads.push(...addresses.map((a) => cached.getCell(a)));
              else if (op.kind === 'check') await compare();
              else {
                await quiet();
                await cached.purge();
                await plain.purge();
              }
            }
            flush();
            await compare();
            await Promise.all([cached.purge(), plain.purge()]);
            await compare();
          } finally {
            await cached.close();
            await plain.close();
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
