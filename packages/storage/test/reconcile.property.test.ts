import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { type Cell, type Mutation, isDead, mergeCells } from '@chorus/model';
import type { StorageDb } from '../src/index.js';
import { Store } from '../src/store.js';
import { delayBatchWrites, enc, memoryBackend, testEnv, tokenOf } from './helpers.js';

/*
 * Writes never read, so the order in which versions arrive, how they are
 * batched, in which order batches land, and when sweeps and reads compact
 * must not change what reads see. The model applies mergeCells to every
 * version of a row and takes the newest partition deletion; the store must
 * agree after any arrival order. Point reads go through the row cache
 * (sometimes a tiny one, so rows are evicted and read again) and, in a
 * replica's batches, through the heads of key-value rows, at random points,
 * also while batches are still in flight; the store is sometimes reopened
 * (a restart), which must not make a head stale.
 */

const KS = 'ks';
const PARTITIONS = ['p', 'q'];
const CLUSTERINGS = ['', 'a', 'b\u0000'];

type Op =
  | { kind: 'row'; p: number; c: number; cell: Cell }
  | { kind: 'partition'; p: number; ts: number };

const ts = fc.integer({ min: 1, max: 6 });
// Two values past 32 bytes, which the version key holds as their digests, beside short ones held as themselves.
const value = fc.constantFrom('x', 'y', 'zz', '', `${'v'.repeat(40)}1`, `${'v'.repeat(40)}2`);
const cellArb: fc.Arbitrary<Cell> = fc.oneof(
  ts.map((t) => ({ tombstone: true as const, timestampMicros: t })),
  fc.record({ value: value.map(enc), timestampMicros: ts }),
  fc.record({ value: value.map(enc), timestampMicros: ts, expiresAtMicros: fc.constantFrom(2_000_000_000_000_000, 3_000_000_000_000_000) }),
);
// Half the row writes go to the key-value row (the empty clustering key), whose head reads take.
const KEY_VALUE_ROW_WEIGHTED = fc.constantFrom(0, 0, 1, 2);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('row' as const), p: fc.nat(PARTITIONS.length - 1), c: KEY_VALUE_ROW_WEIGHTED, cell: cellArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('partition' as const), p: fc.nat(PARTITIONS.length - 1), ts }) },
);

function toMutation(op: Op): Mutation {
  const pk = PARTITIONS[op.p]!;
  const base = { keyspace: KS, token: tokenOf(pk), partition: enc(pk) };
  return op.kind === 'row' ? { ...base, clustering: enc(CLUSTERINGS[op.c]!), cell: op.cell } : { ...base, partitionDeletion: { timestampMicros: op.ts } };
}

function model(ops: readonly Op[]): (p: number, c: number) => Cell | undefined {
  const rows = new Map<string, Cell>();
  const deletions = new Map<number, number>();
  for (const op of ops) {
    if (op.kind === 'row') rows.set(`${op.p}/${op.c}`, mergeCells(rows.get(`${op.p}/${op.c}`), op.cell)!);
    else deletions.set(op.p, Math.max(deletions.get(op.p) ?? 0, op.ts));
  }
  return (p, c) => {
    const row = rows.get(`${p}/${c}`);
    const d = deletions.get(p);
    if (d !== undefined && (row === undefined || row.timestampMicros <= d)) return { tombstone: true, timestampMicros: d };
    return row;
  };
}

/** Makes each chained batch of `db` wait the next of `delays` turns of the event loop before it is written, so batches land out of order. */
function scrambleLanding(db: StorageDb, delays: readonly number[]): void {
  delayBatchWrites(db, async (i) => {
    for (let turn = 0; turn < delays[i % delays.length]!; turn++) await new Promise((r) => setImmediate(r));
  });
}

const norm = (c: Cell | undefined) => (c === undefined ? undefined : 'tombstone' in c ? { t: c.timestampMicros } : { v: Array.from(c.value), t: c.timestampMicros, e: c.expiresAtMicros });

describe('reconciliation (property)', () => {
  it('any arrival order, batching, sweeps and reads give the reads of the model', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 1, maxLength: 40 }).chain((ops) =>
          fc.record({
            ops: fc.constant(ops),
            order: fc.shuffledSubarray(ops, { minLength: ops.length, maxLength: ops.length }),
            cuts: fc.array(fc.constantFrom('cut', 'sweep', 'read', 'check', 'reopen', 'none'), { minLength: ops.length, maxLength: ops.length }),
            cacheBytes: fc.constantFrom(0, 700, 1500, 64 * 1024 * 1024),
            delays: fc.array(fc.nat(3), { minLength: 1, maxLength: 8 }),
            openFirst: fc.boolean(),
          }),
        ),
        async ({ ops, order, cuts, cacheBytes, delays, openFirst }) => {
          const db = await memoryBackend().create();
          scrambleLanding(db, delays);
          const env = testEnv();
          const newStore = () => new Store(db, { env, gcGraceSeconds: 1_000_000, rowCacheBytes: cacheBytes });
          let store = newStore();
          // Without waiting, the first batches are written before the heads are open.
          if (openFirst) await store.open();
          const reads: Array<Promise<unknown>> = [];
          const addresses = PARTITIONS.flatMap((pk) => CLUSTERINGS.map((c) => ({ keyspace: KS, token: tokenOf(pk), partition: enc(pk), clustering: enc(c) })));
          const batchRead = async (): Promise<Array<Cell | undefined>> => {
            const out: Array<Cell | undefined> = [];
            await store.pointReads(
              addresses.map((address) => ({ address, digest: false })),
              (i, error, result) => {
                if (error !== undefined) throw error;
                out[i] = result as Cell | undefined;
              },
            );
            return out;
          };
          const readAll = async (): Promise<Array<Cell | undefined>> => {
            const single = await Promise.all(addresses.map((a) => store.getCell(a)));
            expect((await batchRead()).map(norm)).toEqual(single.map(norm));
            return single;
          };
          try {
            let batch: Mutation[] = [];
            for (let i = 0; i < order.length; i++) {
              batch.push(toMutation(order[i]!));
              const cut = cuts[i];
              if (cut === 'none' && i < order.length - 1) continue;
              // Batches may overlap in flight: submit without waiting, land later.
              void store.submit(batch).landed;
              batch = [];
              if (cut === 'sweep') await store.purge();
              // Reads are left running while later batches are submitted and land: whatever they see,
              // they must not leave the cache stale.
              if (cut === 'read') reads.push(batchRead(), Promise.all(addresses.map((a) => store.getCell(a))));
              if (cut === 'reopen') {
                await Promise.all(reads.splice(0));
                await store.close();
                await db.open();
                store = newStore();
                await store.open();
              }
              if (cut === 'check') {
                await Promise.all(reads.splice(0));
                await store.settled();
                const expected = model(order.slice(0, i + 1));
                const got = await readAll();
                expect(got.map(norm)).toEqual(PARTITIONS.flatMap((_, p) => CLUSTERINGS.map((__, c) => norm(expected(p, c)))));
              }
            }
            await Promise.all(reads.splice(0));
            await store.settled();
            const expected = model(ops);
            const check = async () => {
              for (let p = 0; p < PARTITIONS.length; p++) {
                const pk = PARTITIONS[p]!;
                const live: Array<[string, ReturnType<typeof norm>]> = [];
                for (let c = 0; c < CLUSTERINGS.length; c++) {
                  const want = expected(p, c);
                  const got = await store.getCell({ keyspace: KS, token: tokenOf(pk), partition: enc(pk), clustering: enc(CLUSTERINGS[c]!) });
                  expect(norm(got)).toEqual(norm(want));
                  if (want !== undefined && !isDead(want, env.clock.nowMicros())) live.push([CLUSTERINGS[c]!, norm(want)]);
                }
                live.sort((a, b) => Buffer.compare(Buffer.from(enc(a[0])), Buffer.from(enc(b[0]))));
                const page = await store.slice(KS, tokenOf(pk), enc(pk));
                expect(page.rows.map((r) => [new TextDecoder().decode(r.clustering), norm(r.cell)])).toEqual(live);
                const reversed = await store.slice(KS, tokenOf(pk), enc(pk), { reverse: true, limit: 2 });
                expect(reversed.rows.map((r) => norm(r.cell))).toEqual(live.reverse().slice(0, 2).map((l) => l[1]));
              }
            };
            await check();
            expect((await batchRead()).map(norm)).toEqual(addresses.map((_, i) => norm(expected(Math.floor(i / CLUSTERINGS.length), i % CLUSTERINGS.length))));
            await store.settled();
            await store.purge();
            await check();
          } finally {
            await store.close();
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});
