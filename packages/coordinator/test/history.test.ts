import { SeededRandom } from '@chorus/core';
import { describe, expect, it } from 'vitest';
import { type Cell, compareCells } from '@chorus/model';
import type { ReadRepairMode } from '@chorus/ring';
import { scheduleFaults, startCluster } from './helpers.js';

/**
 * Randomized history check: random coordinators, QUORUM writes, deletes and
 * reads, lost frames, partitions and crashes that keep the disk. Every write
 * acknowledged at QUORUM must be seen (or superseded by a newer version) by
 * every QUORUM read that starts after the acknowledgement, and no QUORUM read
 * may return an older version than a QUORUM read that completed before it
 * started (monotonic quorum reads: blocking read repair makes a read's answer
 * durable at the level before it is returned, even when it came from a write
 * that was never acknowledged). A failure prints its seed;
 * CHORUS_SEED=<seed> replays just that one.
 */

interface WriteOp {
  key: string;
  value: string | undefined; // undefined: a delete
  start: number;
  end?: number;
  ts?: number;
  coordinator: string;
}
interface ReadOp {
  key: string;
  start: number;
  end: number;
  cell: Cell | undefined;
  coordinator: string;
}

const NODES = ['n1', 'n2', 'n3', 'n4', 'n5'];

/** Last-write-wins order of what reads returned; nothing is older than anything. */
function newer(a: Cell | undefined, b: Cell | undefined): boolean {
  if (a === undefined) return false;
  return b === undefined || compareCells(a, b) > 0;
}

async function runHistory(seed: number, ops: number, readRepair: ReadRepairMode = 'blocking') {
  const wallStart = performance.now();
  const c = await startCluster({
    seed,
    nodes: NODES.map((name) => ({ name })),
    keyspaces: [{ name: 'app', replication: { class: 'SimpleStrategy', rf: 3 }, readRepair }],
    network: { latencyMs: 1, jitterMs: 4, loss: 0.01 },
    coordinator: { writeTimeoutMs: 300, readTimeoutMs: 500 },
  });
  const { sim } = c;
  const rnd = new SeededRandom(seed, 'workload');
  const writes: WriteOp[] = [];
  const reads: ReadOp[] = [];
  const outcomes = { writeOk: 0, writeFailed: 0, readOk: 0, readFailed: 0, unavailable: 0 };
  const keys = Array.from({ length: 8 }, (_, i) => `key${i}`);
  const t0 = sim.now;
  const spacing = 4;

  for (let i = 0; i < ops; i++) {
    sim.at(t0 + 10 + i * spacing, `op ${i}`, () => {
      const up = NODES.filter((n) => sim.isUp(n));
      const coordinator = up[rnd.int(up.length)]!;
      const h = c.handle(coordinator);
      const key = keys[rnd.int(keys.length)]!;
      const roll = rnd.next();
      if (roll < 0.45) {
        const isDelete = roll < 0.07;
        const w: WriteOp = { key, value: isDelete ? undefined : `${seed}:${i}`, start: sim.now, coordinator };
        writes.push(w);
        const p = isDelete ? h.del('app', key) : h.put('app', key, undefined, w.value!);
        p.then(
          (r) => {
            w.end = sim.now;
            w.ts = r.timestampMicros;
            outcomes.writeOk++;
          },
          (e: Error) => {
            if (e.name === 'Unavailable') outcomes.unavailable++;
            outcomes.writeFailed++;
          },
        );
      } else {
        const start = sim.now;
        h.getCell('app', key).then(
          (cell) => {
            reads.push({ key, start, end: sim.now, cell, coordinator });
            outcomes.readOk++;
          },
          (e: Error) => {
            if (e.name === 'Unavailable') outcomes.unavailable++;
            outcomes.readFailed++;
          },
        );
      }
    });
  }
  // Faults: every 500 ms a crash, a restart or a partition (one node cut off for 250 ms).
  const horizon = t0 + 10 + ops * spacing;
  scheduleFaults(sim, rnd, NODES, { fromMs: t0 + 300, untilMs: horizon, everyMs: 500, cutMs: 250 });
  await sim.run({ untilMs: horizon + 2_000 });

  // Check.
  const violations: string[] = [];
  const byValue = new Map(writes.filter((w) => w.value !== undefined).map((w) => [w.value!, w]));
  const acked = writes.filter((w) => w.end !== undefined);
  for (const r of reads) {
    const cell = r.cell;
    const rts = cell === undefined ? -1 : cell.timestampMicros;
    if (cell !== undefined && !('tombstone' in cell)) {
      const w = byValue.get(new TextDecoder().decode(cell.value));
      if (!w || w.key !== r.key) violations.push(`read of ${r.key} at ${r.start} returned a value never written to it`);
      else if (w.ts !== undefined && w.ts !== rts) violations.push(`read of ${r.key} returned ${w.value} with timestamp ${rts}, written with ${w.ts}`);
    }
    for (const w of acked) {
      if (w.key === r.key && w.end! < r.start && rts < w.ts!) {
        violations.push(`read of ${r.key} via ${r.coordinator} at ${r.start} returned ts ${rts} but the write ${w.value ?? '(delete)'} (ts ${w.ts}) via ${w.coordinator} was acknowledged at ${w.end}`);
      }
    }
  }
  // Monotonic quorum reads: a read that started after another completed returns the same version or a newer one.
  let goneBack = 0;
  const byKey = new Map<string, ReadOp[]>();
  for (const r of reads) byKey.set(r.key, [...(byKey.get(r.key) ?? []), r]);
  for (const list of byKey.values()) {
    // The newest version returned by reads that completed before each start, found by walking completions in order.
    const byEnd = [...list].sort((a, b) => a.end - b.end);
    const byStart = [...list].sort((a, b) => a.start - b.start);
    let i = 0;
    let newest: ReadOp | undefined;
    for (const r of byStart) {
      for (; i < byEnd.length && byEnd[i]!.end < r.start; i++) if (newest === undefined || newer(byEnd[i]!.cell, newest.cell)) newest = byEnd[i]!;
      if (newest !== undefined && newer(newest.cell, r.cell)) {
        goneBack++;
        violations.push(
          `read of ${r.key} via ${r.coordinator} at ${r.start} returned ts ${r.cell?.timestampMicros ?? 'nothing'}, older than ts ${newest.cell!.timestampMicros} returned by a read via ${newest.coordinator} that completed at ${newest.end}`,
        );
      }
    }
  }
  // Timestamps issued by one coordinator increase in the order its writes started.
  for (const n of NODES) {
    const mine = writes.filter((w) => w.coordinator === n && w.ts !== undefined).sort((a, b) => a.start - b.start);
    for (let i = 1; i < mine.length; i++) if (mine[i]!.ts! <= mine[i - 1]!.ts!) violations.push(`${n} issued a non-increasing timestamp`);
  }
  const wallMs = performance.now() - wallStart;
  const repaired = [...c.handles.values()].reduce(
    (sum, h) => {
      const s = h.stats().readRepair;
      return { mismatches: sum.mismatches + s.mismatches, rowsRepaired: sum.rowsRepaired + s.rowsRepaired, timeouts: sum.timeouts + s.timeouts };
    },
    { mismatches: 0, rowsRepaired: 0, timeouts: 0 },
  );
  return { violations, goneBack, readRepair: repaired, outcomes, reads: reads.length, acked: acked.length, wallMs, virtualMs: sim.now - t0, rejected: c.rejectedFrames(), trace: sim.traceHash() };
}

const envSeed = process.env['CHORUS_SEED'];
const seeds = envSeed ? [Number(envSeed)] : [1, 2, 3, 4, 5];

describe('randomized history (QUORUM reads see acknowledged QUORUM writes and never go back in time)', () => {
  for (const seed of seeds) {
    it(`seed ${seed}`, async () => {
      const ops = 3_000;
      const result = await runHistory(seed, ops);
      const { outcomes } = result;
      console.log(
        `history seed ${seed}: ${ops} ops in ${result.wallMs.toFixed(0)} ms wall (${((ops / result.wallMs) * 1000).toFixed(0)} ops/s), ` +
          `${result.virtualMs} ms virtual; writes ok ${outcomes.writeOk} failed ${outcomes.writeFailed}, reads ok ${outcomes.readOk} failed ${outcomes.readFailed}, unavailable ${outcomes.unavailable}; ` +
          `read repair: ${result.readRepair.mismatches} mismatches, ${result.readRepair.rowsRepaired} rows, ${result.readRepair.timeouts} timeouts`,
      );
      if (result.violations.length > 0) {
        console.error(`history violations with seed ${seed} (replay: CHORUS_SEED=${seed}):\n${result.violations.slice(0, 10).join('\n')}`);
      }
      expect(result.violations, `seed ${seed}`).toEqual([]);
      expect(result.rejected).toBe(0);
      // The run must be meaningful: most operations succeed and the checker had real work.
      expect(outcomes.writeOk).toBeGreaterThan(ops * 0.2);
      expect(result.reads).toBeGreaterThan(ops * 0.3);
      // Replicas did disagree, so the monotonic-read check was exercised by repairs.
      expect(result.readRepair.rowsRepaired).toBeGreaterThan(0);
    });
  }
  // Which seed shows it moves with the request path's timing, so the check takes the first of a few that does.
  it('without read repair: the same workload lets QUORUM reads go back in time (the check has teeth)', async () => {
    let shown: { seed: number; goneBack: number } | undefined;
    for (const seed of [20, 8, 6, 4, 9, 10, 11, 12, 13, 14, 15, 16, 17]) {
      const result = await runHistory(seed, 3_000, 'none');
      expect(result.readRepair.rowsRepaired).toBe(0);
      if (result.goneBack > 0) {
        shown = { seed, goneBack: result.goneBack };
        break;
      }
    }
    console.log(`with read_repair none: ${shown ? `seed ${shown.seed}: ${shown.goneBack} QUORUM reads returned an older version than an earlier one` : 'no seed'}`);
    expect(shown).toBeDefined();
  }, 60_000);
  it('replays: the same seed gives the same history', async () => {
    const a = await runHistory(77, 400);
    const b = await runHistory(77, 400);
    expect(b.trace).toBe(a.trace);
    expect(b.outcomes).toEqual(a.outcomes);
  });
});
