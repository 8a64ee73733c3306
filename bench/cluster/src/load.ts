import { performance } from 'node:perf_hooks';
import { IdTable } from '@chorus/core';
import hdr from 'hdr-histogram-js';
import type { Target } from './targets.js';

type Histogram = ReturnType<typeof hdr.build>;

/** The next request of a workload: a read or a write of one key. */
export type NextOp = () => { read: boolean; key: string };

export interface LoadResult {
  ops: number;
  opsPerSec: number;
  errors: number;
  /** Reads that found nothing (a read workload over keys that were never written would show it). */
  notFound: number;
  /** Open loop only: requests not issued because too many were already waiting. */
  shed?: number;
  /** The first failure seen, warm-up included, to tell why errors is not 0. */
  firstError?: string;
  latencyMs: { p50: number; p99: number; 'p99.9': number; max: number };
}

export interface LoadOptions {
  target: Target;
  next: NextOp;
  consistency: string;
  value: Uint8Array;
  seconds: number;
  /** Seconds of load before the measurement starts. */
  warmupSeconds: number;
}

// Microseconds from 1 µs to 10 minutes at 3 significant digits, the histogram `chorus bench` keeps.
const newHistogram = (): Histogram =>
  hdr.build({ useWebAssembly: false, lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3, autoResize: true });

const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

class Recorder {
  readonly histogram = newHistogram();
  recording = false;
  ops = 0;
  errors = 0;
  notFound = 0;
  firstError: string | undefined;

  done(micros: number, found: boolean, counted = this.recording): void {
    if (!counted) return;
    this.ops++;
    if (!found) this.notFound++;
    this.histogram.recordValue(Math.max(1, Math.round(micros)));
  }

  failed(error: unknown, counted = this.recording): void {
    this.firstError ??= error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    if (counted) this.errors++;
  }

  result(seconds: number): LoadResult {
    const h = this.histogram;
    const ms = (us: number) => round(us / 1000);
    return {
      ops: this.ops,
      opsPerSec: round(this.ops / seconds, 1),
      errors: this.errors,
      notFound: this.notFound,
      ...(this.firstError !== undefined ? { firstError: this.firstError } : {}),
      latencyMs: h.totalCount === 0 ? { p50: 0, p99: 0, 'p99.9': 0, max: 0 } : { p50: ms(h.getValueAtPercentile(50)), p99: ms(h.getValueAtPercentile(99)), 'p99.9': ms(h.getValueAtPercentile(99.9)), max: ms(h.maxValue) },
    };
  }
}

/** One request; `counted` decides whether it is measured, else whether the recorder records when it ends. */
async function issue(o: LoadOptions, rec: Recorder, startedMs: number, counted?: boolean): Promise<boolean> {
  const op = o.next();
  try {
    const found = op.read ? await o.target.get(op.key, o.consistency) : (await o.target.put(op.key, o.value, o.consistency), true);
    rec.done((performance.now() - startedMs) * 1000, found, counted ?? rec.recording);
    return true;
  } catch (error) {
    rec.failed(error, counted ?? rec.recording);
    return false;
  }
}

/** `concurrency` requests in flight at all times: each answer starts the next request, as `chorus bench` does. */
export async function closedLoop(o: LoadOptions & { concurrency: number }): Promise<LoadResult> {
  const rec = new Recorder();
  let stop = false;
  const worker = async () => {
    while (!stop) {
      // A failing target answers at once; let timers and I/O run.
      if (!(await issue(o, rec, performance.now()))) await new Promise((r) => setImmediate(r));
    }
  };
  const workers = Array.from({ length: o.concurrency }, worker);
  await sleep(o.warmupSeconds * 1000);
  rec.recording = true;
  const measured = performance.now();
  await sleep(o.seconds * 1000);
  stop = true;
  const seconds = (performance.now() - measured) / 1000;
  rec.recording = false;
  await Promise.all(workers);
  return rec.result(seconds);
}

/**
 * Requests at a fixed rate whatever the answers do, each timed from the
 * moment it was due rather than from when it left, so a stall counts for
 * every request it delayed (no coordinated omission). At most `maxWaiting`
 * are outstanding; beyond, due requests are counted as shed, not sent.
 */
export async function openLoop(o: LoadOptions & { rate: number; maxWaiting?: number }): Promise<LoadResult & { shed: number }> {
  const rec = new Recorder();
  const maxWaiting = o.maxWaiting ?? 50_000;
  let outstanding = 0;
  let shed = 0;
  const begun = performance.now();
  const warmupEnd = begun + o.warmupSeconds * 1000;
  const end = warmupEnd + o.seconds * 1000;
  let issued = 0;
  // Slots, not a Set: a Set of short-lived promises has the scavenger promote them (see IdTable).
  const inFlight = new IdTable<Promise<void>>();
  while (performance.now() < end) {
    const now = performance.now();
    const due = Math.floor(((now - begun) / 1000) * o.rate);
    for (; issued < due; issued++) {
      const dueAt = begun + (issued / o.rate) * 1000;
      if (outstanding >= maxWaiting) {
        if (dueAt >= warmupEnd) shed++;
        continue;
      }
      outstanding++;
      const slot = issued;
      inFlight.set(
        slot,
        issue(o, rec, dueAt, dueAt >= warmupEnd && dueAt < end).then(() => {
          outstanding--;
          inFlight.delete(slot);
        }),
      );
    }
    await sleep(1);
  }
  await Promise.all([...inFlight.entries()].map(([, p]) => p));
  return { ...rec.result(o.seconds), shed };
}
