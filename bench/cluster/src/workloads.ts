import { type LoadResult, type NextOp, closedLoop, openLoop } from './load.js';
import { type NodeReadings, type ProcessUsage, type Watched, nodeReadings, samplePeakRss, watch } from './procs.js';
import type { MeasuredProfiles } from './profiles.js';
import type { Target } from './targets.js';

/** Every workload, in the order a full run takes them; `--only` picks some. */
export const WORKLOADS = [
  'write-quorum-128',
  'write-quorum-1024',
  'read-quorum-hot',
  'read-quorum-cold',
  'write-one',
  'write-all',
  'read-all',
  'mix',
  'open-loop',
  'serial',
  'durable',
  'mix-long',
] as const;
export type WorkloadName = (typeof WORKLOADS)[number];
/** Workloads a full run leaves out: they run only when `--only` names them. */
export const ON_REQUEST: ReadonlySet<WorkloadName> = new Set(['mix-long']);

export const DESCRIPTIONS: Record<WorkloadName, string> = {
  'write-quorum-128': 'QUORUM writes of new keys, 128 in flight',
  'write-quorum-1024': 'QUORUM writes of new keys, 1024 in flight',
  'read-quorum-hot': 'QUORUM reads of 10,000 keys written and read before, 1024 in flight',
  'read-quorum-cold': 'QUORUM reads of keys written earlier and never read, 1024 in flight',
  'write-one': 'ONE writes, 1024 in flight (other: × QUORUM writes at 1024, run right before and after)',
  'write-all': 'ALL writes, 1024 in flight (other: × QUORUM writes at 1024, run right before and after)',
  'read-all': 'ALL reads of keys written earlier and never read, 1024 in flight (other: × cold QUORUM reads, run right before and after)',
  mix: '50 % QUORUM reads of keys written earlier and never read, 50 % QUORUM writes, 256 in flight',
  'open-loop': 'QUORUM writes at a fixed rate, half the ideal peak (ratios: p99, and p99.9 in other)',
  serial: 'one QUORUM write at a time, p50 (other: × a bare ws round trip)',
  durable: 'QUORUM writes, 1024 in flight, each batch fsynced (other: × periodic mode)',
  'mix-long': '50 % QUORUM reads, 50 % QUORUM overwrites, of 200,000 keys chosen at random, 256 in flight (for long runs: memory stays flat)',
};

/** A system under load: Chorus or the ideal pipeline, with the keys it holds so far. */
export interface System {
  target: Target;
  processes: Watched[];
  /** Keys `w:0` … `w:<written-1>` exist. */
  written: number;
  /** The 10,000 `h:` keys are written and have been read once. */
  hot: boolean;
  /**
   * The keys cold reads take, in a permutation: `w:<start>` … `w:<start+size-1>`, read up to `cursor`. Each
   * workload that reads cold keys takes a new pool of keys written after the last one, so none has been read.
   */
  cold: { start: number; size: number; cursor: number };
}

export function newSystem(target: Target, processes: Watched[]): System {
  return { target, processes, written: 0, hot: false, cold: { start: 0, size: 0, cursor: 0 } };
}

export interface Side extends LoadResult {
  /** Each process's CPU share and RSS at the end of the workload: the nodes, then the bench process itself. */
  processes: ProcessUsage[];
  /** Each node's share of the requests the client sent it to coordinate, over the measured seconds (0–1). */
  coordinated?: Record<string, number>;
}

/** One line of the report. */
export interface WorkloadReport {
  workload: WorkloadName;
  description: string;
  consistency: string;
  concurrency?: number;
  rate?: number;
  seconds: number;
  chorus: Side;
  /** Absent when the run leaves the ideal pipeline out (`--no-ideal`). */
  ideal?: Side;
  /** Chorus's figure over the ideal's: throughput for closed loops, p99 for the open loop, p50 for serial; 0 without the ideal. */
  ratio: number;
  /** The second ratio a target names, as the description says. */
  other?: { label: string; chorus: number; ideal?: number };
  /** The workload `other` compares with, run right before and right after this one: the mean of its two runs. */
  reference?: { workload: WorkloadName; chorusOpsPerSec: number; idealOpsPerSec?: number };
  /** The bare ws round trip of the serial workload. */
  wsRoundTripMs?: { p50: number; p99: number };
}

export interface RunContext {
  chorus: System;
  /** Absent with `--no-ideal`: Chorus alone, for long runs. */
  ideal?: System;
  seconds: number;
  warmupSeconds: number;
  value: Uint8Array;
  /** Reports of workloads run before, for the ratios that compare with them. */
  done: Map<WorkloadName, WorkloadReport>;
  progress(line: string): void;
  /** Serial only: a bare ws round trip to an ideal node. */
  echo?: Target;
  /** With `--cpu-prof`: profiles the Chorus nodes over each measured phase. */
  profiles?: MeasuredProfiles;
}

const HOT_KEYS = 10_000;
/** The keys mix-long reads and overwrites: `w:0` … `w:199999`, written first. */
const MIX_KEYS = 200_000;
/**
 * Cold reads a second a pool of cold keys has room for, for each second of warm-up and measure: more than
 * Chorus reads (about 40,000 a second), so that each key is read once and never meets a row cache. The ideal
 * pipeline reads faster and goes through its pool more than once: with no row cache, that changes nothing for
 * it but LevelDB's own block cache.
 */
const COLD_READS_PER_SECOND = 50_000;
/** A prime: stepping by it modulo the key count visits every written key once before any comes back. */
const STRIDE = 1_000_003;

const writeNew = (s: System): NextOp => () => ({ read: false, key: `w:${s.written++}` });

function coldRead(s: System): NextOp {
  const pool = s.cold;
  return () => ({ read: true, key: `w:${pool.start + ((pool.cursor++ * STRIDE) % pool.size)}` });
}

/** A new pool of keys not read yet for the cold reads, written first if the write workloads left too few. */
async function newColdPool(s: System, ctx: RunContext): Promise<void> {
  const start = s.cold.start + s.cold.size;
  await ensureWritten(s, start + COLD_READS_PER_SECOND * (ctx.warmupSeconds + ctx.seconds), ctx.value);
  s.cold = { start, size: s.written - start, cursor: 0 };
}

/** Untimed writes of `w:` keys until there are `count`, for the reads that need them. */
async function ensureWritten(s: System, count: number, value: Uint8Array): Promise<void> {
  let failures = 0;
  const worker = async () => {
    while (s.written < count) {
      const key = `w:${s.written++}`;
      await s.target.put(key, value, 'QUORUM').catch(() => failures++);
    }
  };
  await Promise.all(Array.from({ length: 512 }, worker));
  if (failures > 0) throw new Error(`${failures} of the preload writes failed`);
}

/** Writes the hot keys at ALL and reads each once at ALL, so every replica holds and has read them. */
async function ensureHot(s: System, value: Uint8Array): Promise<void> {
  if (s.hot) return;
  let next = 0;
  const worker = (read: boolean) => async () => {
    for (let i = next++; i < HOT_KEYS; i = next++) {
      if (read) await s.target.get(`h:${i}`, 'ALL');
      else await s.target.put(`h:${i}`, value, 'ALL');
    }
  };
  await Promise.all(Array.from({ length: 512 }, worker(false)));
  next = 0;
  await Promise.all(Array.from({ length: 512 }, worker(true)));
  s.hot = true;
}

/**
 * Load that runs on each system once, after it starts and before its first workload: 50 % QUORUM writes of
 * `p:` keys and 50 % QUORUM reads of them, 512 in flight. A process fresh from its start spends a large share of
 * its CPU compiling (the profile of a node in the first seconds of load put 14 % of it in V8's optimizing
 * compiler, 3.5 % after 25 s more), and whichever workload ran first paid for it. The keys are apart from the
 * `w:` and `h:` keys the workloads write and read, so no cold pool meets one in a row cache.
 */
export async function prime(target: Target, seconds: number, value: Uint8Array): Promise<void> {
  if (seconds <= 0) return;
  let written = 0;
  let turn = 0;
  const next: NextOp = () => (turn++ % 2 === 0 || written === 0 ? { read: false, key: `p:${written++}` } : { read: true, key: `p:${Math.floor(Math.random() * written)}` });
  await closedLoop({ target, next, consistency: 'QUORUM', value, seconds, warmupSeconds: 0, concurrency: 512 });
}

interface Spec {
  consistency: string;
  concurrency?: number;
  /** Open loop: requests per second, from the reports so far. */
  rate?: (ctx: RunContext) => number;
  prepare?: (s: System, ctx: RunContext) => Promise<void>;
  next: (s: System) => NextOp;
}

const SPECS: Record<WorkloadName, Spec> = {
  'write-quorum-128': { consistency: 'QUORUM', concurrency: 128, next: writeNew },
  'write-quorum-1024': { consistency: 'QUORUM', concurrency: 1024, next: writeNew },
  'read-quorum-hot': {
    consistency: 'QUORUM',
    concurrency: 1024,
    prepare: (s, ctx) => ensureHot(s, ctx.value),
    next: () => () => ({ read: true, key: `h:${Math.floor(Math.random() * HOT_KEYS)}` }),
  },
  'read-quorum-cold': { consistency: 'QUORUM', concurrency: 1024, prepare: newColdPool, next: coldRead },
  'write-one': { consistency: 'ONE', concurrency: 1024, next: writeNew },
  'write-all': { consistency: 'ALL', concurrency: 1024, next: writeNew },
  'read-all': { consistency: 'ALL', concurrency: 1024, prepare: newColdPool, next: coldRead },
  mix: {
    consistency: 'QUORUM',
    concurrency: 256,
    prepare: newColdPool,
    next: (s) => {
      const read = coldRead(s);
      const write = writeNew(s);
      return () => (Math.random() < 0.5 ? read() : write());
    },
  },
  'open-loop': {
    consistency: 'QUORUM',
    rate: (ctx) => {
      const peak = ctx.done.get('write-quorum-1024')?.ideal?.opsPerSec;
      if (peak === undefined) throw new Error('open-loop takes half the ideal peak of write-quorum-1024: run that workload first, with the ideal');
      return Math.max(1, Math.round(peak / 2));
    },
    next: writeNew,
  },
  serial: { consistency: 'QUORUM', concurrency: 1, next: writeNew },
  durable: { consistency: 'QUORUM', concurrency: 1024, next: writeNew },
  'mix-long': {
    consistency: 'QUORUM',
    concurrency: 256,
    prepare: (s, ctx) => ensureWritten(s, MIX_KEYS, ctx.value),
    next: () => () => ({ read: Math.random() < 0.5, key: `w:${Math.floor(Math.random() * MIX_KEYS)}` }),
  },
};

async function measure(s: System, spec: Spec, ctx: RunContext, rate: number | undefined, label: string): Promise<Side> {
  const processes = [...s.processes, { name: 'bench', pid: process.pid }];
  // From the first key prepared: memory that grows while keys are loaded counts as much as under the measured load.
  const peaks = samplePeakRss(processes);
  let peakRss: { rss: number[]; anon: number[] } = { rss: [], anon: [] };
  try {
    if (spec.prepare) {
      ctx.progress(`${label}: preparing keys`);
      await spec.prepare(s, ctx);
    }
    ctx.progress(`${label}: ${ctx.warmupSeconds} s warm-up, ${ctx.seconds} s measured`);
    const options = { target: s.target, next: spec.next(s), consistency: spec.consistency, value: ctx.value, seconds: ctx.seconds, warmupSeconds: ctx.warmupSeconds };
    // CPU counts from the start of the measured part: the warm-up runs first, inside the loop, so the window is the load's own.
    let usage: (() => ProcessUsage[]) | undefined;
    let sentBefore: Record<string, number> = {};
    let gcBefore: Promise<Array<NodeReadings | undefined>> = Promise.resolve([]);
    const gcNow = () => Promise.all(processes.map((p) => (p.metrics ? nodeReadings(p.metrics) : undefined)));
    // Only the Chorus nodes run the profiler.
    const profiled = ctx.profiles !== undefined && s === ctx.chorus ? s.processes : [];
    const startWatch = () => {
      sentBefore = s.target.sentPerHost?.() ?? {};
      gcBefore = gcNow();
      ctx.profiles?.start(profiled);
      return (usage = watch(processes));
    };
    const timer = setTimeout(startWatch, ctx.warmupSeconds * 1000);
    try {
      const result = rate !== undefined ? await openLoop({ ...options, rate }) : await closedLoop({ ...options, concurrency: spec.concurrency ?? 1 });
      const measured = (usage ?? startWatch())();
      const [before, after] = [await gcBefore, await gcNow()];
      await ctx.profiles?.stop(profiled, label);
      peakRss = peaks.stop();
      const sent = Object.entries(s.target.sentPerHost?.() ?? {}).map(([host, n]) => [host, n - (sentBefore[host] ?? 0)] as const);
      const total = sent.reduce((a, [, n]) => a + n, 0);
      const coordinated = total > 0 ? Object.fromEntries(sent.map(([host, n]) => [host, Math.round((n / total) * 1000) / 1000])) : undefined;
      const withMemory = measured.map((usage, i) => {
        const [b, a] = [before[i], after[i]];
        const gcShare = a && b && a.cpu > b.cpu ? Math.round(((a.gc - b.gc) / (a.cpu - b.cpu)) * 1000) / 1000 : undefined;
        const memory = { ...(a?.heapUsedMiB !== undefined ? { heapUsedMiB: a.heapUsedMiB } : {}), ...(a?.rowCacheMiB !== undefined ? { rowCacheMiB: a.rowCacheMiB } : {}) };
        return { ...usage, peakRssMiB: Math.max(peakRss.rss[i] ?? 0, usage.rssMiB), peakAnonMiB: peakRss.anon[i] ?? 0, ...(gcShare !== undefined ? { gcShare } : {}), ...memory };
      });
      return { ...result, processes: withMemory, ...(coordinated ? { coordinated } : {}) };
    } finally {
      clearTimeout(timer);
    }
  } finally {
    peaks.stop();
  }
}

const ratioOf = (a: number, b: number) => (b > 0 ? Math.round((a / b) * 1000) / 1000 : 0);

/**
 * Workloads whose second ratio compares them with another workload. The other one runs right before and right
 * after, on the same system, and the ratio takes the mean of the two: a workload run later meets a fuller store
 * (LevelDB's compactions count in the nodes' CPU) and a different moment of a shared machine, and comparing
 * with a measurement taken minutes earlier would weigh that rather than the consistency level.
 */
const REFERENCES: Partial<Record<WorkloadName, { workload: WorkloadName; label: string }>> = {
  'write-one': { workload: 'write-quorum-1024', label: '× QUORUM writes' },
  'write-all': { workload: 'write-quorum-1024', label: '× QUORUM writes' },
  'read-all': { workload: 'read-quorum-cold', label: '× QUORUM reads' },
};

/** One system's run of a workload, between two runs of its reference workload when it has one. */
async function measureBracketed(s: System, name: WorkloadName, ctx: RunContext, rate: number | undefined, label: string): Promise<{ side: Side; referenceOpsPerSec?: number }> {
  const reference = REFERENCES[name];
  if (!reference) return { side: await measure(s, SPECS[name], ctx, rate, label) };
  const again = () => measure(s, SPECS[reference.workload], ctx, undefined, `${label}, reference ${reference.workload}`);
  const before = await again();
  const side = await measure(s, SPECS[name], ctx, rate, label);
  const after = await again();
  return { side, referenceOpsPerSec: (before.opsPerSec + after.opsPerSec) / 2 };
}

/** Runs one workload on Chorus, then on the ideal pipeline, and reports both. */
export async function runWorkload(name: WorkloadName, ctx: RunContext): Promise<WorkloadReport> {
  const spec = SPECS[name];
  const rate = spec.rate?.(ctx);
  const chorusRun = await measureBracketed(ctx.chorus, name, ctx, rate, `${name} chorus`);
  const idealRun = ctx.ideal ? await measureBracketed(ctx.ideal, name, ctx, rate, `${name} ideal`) : undefined;
  const chorus = chorusRun.side;
  const ideal = idealRun?.side;
  const report: WorkloadReport = {
    workload: name,
    description: DESCRIPTIONS[name],
    consistency: spec.consistency,
    ...(spec.concurrency !== undefined ? { concurrency: spec.concurrency } : {}),
    ...(rate !== undefined ? { rate } : {}),
    seconds: ctx.seconds,
    chorus,
    ...(ideal ? { ideal } : {}),
    ratio: ideal ? ratioOf(chorus.opsPerSec, ideal.opsPerSec) : 0,
  };
  const reference = REFERENCES[name];
  if (reference && chorusRun.referenceOpsPerSec !== undefined) {
    const idealReference = idealRun?.referenceOpsPerSec;
    report.reference = { workload: reference.workload, chorusOpsPerSec: Math.round(chorusRun.referenceOpsPerSec), ...(idealReference !== undefined ? { idealOpsPerSec: Math.round(idealReference) } : {}) };
    report.other = {
      label: reference.label,
      chorus: ratioOf(chorus.opsPerSec, chorusRun.referenceOpsPerSec),
      ...(ideal && idealReference !== undefined ? { ideal: ratioOf(ideal.opsPerSec, idealReference) } : {}),
    };
  }
  // Without the ideal, a ratio against it means nothing: the ideal's side of the `other` figures is left out too.
  const idealRatio = (a: Side | undefined, b: Side | undefined, pick: (side: Side) => number) => (a && b ? { ideal: ratioOf(pick(a), pick(b)) } : {});
  const quorumWrites = ctx.done.get('write-quorum-1024');
  switch (name) {
    case 'durable':
      if (quorumWrites) report.other = { label: '× periodic', chorus: ratioOf(chorus.opsPerSec, quorumWrites.chorus.opsPerSec), ...idealRatio(ideal, quorumWrites.ideal, (x) => x.opsPerSec) };
      break;
    case 'open-loop':
      if (!ideal) break;
      report.ratio = ratioOf(chorus.latencyMs.p99, ideal.latencyMs.p99);
      report.other = { label: 'p99.9 × ideal', chorus: ratioOf(chorus.latencyMs['p99.9'], ideal.latencyMs['p99.9']) };
      break;
    case 'serial': {
      report.ratio = ideal ? ratioOf(chorus.latencyMs.p50, ideal.latencyMs.p50) : 0;
      if (ctx.echo) {
        ctx.progress('serial: bare ws round trips');
        const echo = await closedLoop({ target: ctx.echo, next: () => ({ read: false, key: 'echo' }), consistency: 'QUORUM', value: ctx.value, seconds: ctx.seconds, warmupSeconds: ctx.warmupSeconds, concurrency: 1 });
        report.wsRoundTripMs = { p50: echo.latencyMs.p50, p99: echo.latencyMs.p99 };
        report.other = { label: '× ws round trip', chorus: ratioOf(chorus.latencyMs.p50, echo.latencyMs.p50), ...(ideal ? { ideal: ratioOf(ideal.latencyMs.p50, echo.latencyMs.p50) } : {}) };
      }
      break;
    }
    default:
      break;
  }
  ctx.done.set(name, report);
  return report;
}
