import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type ChorusClient, type ClientStats, connect } from '@chorus/client';
import hdr from 'hdr-histogram-js';
import { CliError, clientAccess } from './http.js';

type Histogram = ReturnType<typeof hdr.build>;
export type Workload = 'write' | 'read' | 'mixed';
export type Distribution = 'uniform' | 'zipfian';

export interface BenchOptions {
  workload: Workload;
  readRatio: number;
  consistency: string;
  keys: number;
  distribution: Distribution;
  valueSize: number;
  concurrency: number;
  /** Seconds of measurement, after the warm-up; ignored when `ops` is set. */
  duration: number;
  ops: number | undefined;
  warmup: number;
  keyspace: string;
  hosts: string[];
  connections: number;
  preload: boolean;
  json: boolean;
}

export interface LatencySummary {
  p50: number;
  p95: number;
  p99: number;
  'p99.9': number;
  max: number;
  mean: number;
}

export interface OpReport {
  ops: number;
  opsPerSec: number;
  latencyMs: LatencySummary;
}

/** The document `chorus bench --json` prints. */
export interface BenchReport {
  workload: Workload;
  readRatio: number;
  consistency: string;
  keyspace: string;
  keys: number;
  distribution: Distribution;
  valueSize: number;
  concurrency: number;
  hosts: string[];
  warmupSec: number;
  durationSec: number;
  ops: number;
  opsPerSec: number;
  errorCount: number;
  errors: Record<string, number>;
  latencyMs: LatencySummary;
  reads?: OpReport & { notFound: number };
  writes?: OpReport;
  preload?: { keys: number; seconds: number; errors: number };
  client: Pick<ClientStats, 'tokenAware' | 'nonReplica' | 'retries' | 'timeouts'>;
}

const newHistogram = (): Histogram =>
  // The pure-JS histogram: no WebAssembly to initialise; microseconds from 1 µs to 10 minutes at 3 significant digits.
  hdr.build({ useWebAssembly: false, lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3, autoResize: true });

const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;

function summary(h: Histogram): LatencySummary {
  if (h.totalCount === 0) return { p50: 0, p95: 0, p99: 0, 'p99.9': 0, max: 0, mean: 0 };
  const ms = (us: number) => round(us / 1000);
  return {
    p50: ms(h.getValueAtPercentile(50)),
    p95: ms(h.getValueAtPercentile(95)),
    p99: ms(h.getValueAtPercentile(99)),
    'p99.9': ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
    mean: ms(h.mean),
  };
}

/**
 * YCSB's scrambled Zipfian generator (Gray et al., "Quickly generating
 * billion-record synthetic databases", constant 0.99): item i has
 * probability ∝ 1/(i+1)^θ, and the popular items are scattered over the key
 * space by a hash so they do not sit on one replica set.
 */
export class ZipfianGenerator {
  private readonly alpha: number;
  private readonly zetan: number;
  private readonly eta: number;
  private readonly half: number;

  constructor(
    private readonly n: number,
    private readonly theta = 0.99,
    private readonly random: () => number = Math.random,
  ) {
    let zetan = 0;
    for (let i = 1; i <= n; i++) zetan += 1 / i ** theta;
    const zeta2 = 1 + 1 / 2 ** theta;
    this.zetan = zetan;
    this.alpha = 1 / (1 - theta);
    this.eta = (1 - (2 / n) ** (1 - theta)) / (1 - zeta2 / zetan);
    this.half = 0.5 ** theta;
  }

  /** The rank drawn: 0 is the most popular. */
  rank(): number {
    const u = this.random();
    const uz = u * this.zetan;
    if (uz < 1) return 0;
    if (uz < 1 + this.half) return Math.min(1, this.n - 1);
    return Math.min(this.n - 1, Math.floor(this.n * (this.eta * u - this.eta + 1) ** this.alpha));
  }

  /** A key index in [0, n), the rank scattered by FNV-1a. */
  next(): number {
    let h = 0x811c9dc5;
    let x = this.rank();
    for (let i = 0; i < 4; i++) {
      h ^= x & 0xff;
      h = Math.imul(h, 0x01000193) >>> 0;
      x >>>= 8;
    }
    return h % this.n;
  }
}

const keyOf = (i: number) => `bench:${i}`;
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

class Recorder {
  readonly reads = newHistogram();
  readonly writes = newHistogram();
  /** This second's latencies, for the progress line. */
  readonly interval = newHistogram();
  readonly errors = new Map<string, number>();
  readOps = 0;
  writeOps = 0;
  notFound = 0;
  intervalOps = 0;
  intervalErrors = 0;
  recording = false;

  record(kind: 'read' | 'write', micros: number): void {
    this.intervalOps++;
    this.interval.recordValue(Math.max(1, Math.round(micros)));
    if (!this.recording) return;
    if (kind === 'read') {
      this.readOps++;
      this.reads.recordValue(Math.max(1, Math.round(micros)));
    } else {
      this.writeOps++;
      this.writes.recordValue(Math.max(1, Math.round(micros)));
    }
  }

  error(error: unknown): void {
    this.intervalErrors++;
    if (!this.recording) return;
    const name = error instanceof Error ? error.name : 'Error';
    this.errors.set(name, (this.errors.get(name) ?? 0) + 1);
  }
}

/** Writes every key the read workload will read, `concurrency` at a time. */
async function preload(client: ChorusClient, o: BenchOptions, value: Uint8Array, progress: (line: string) => void): Promise<{ keys: number; seconds: number; errors: number }> {
  const started = performance.now();
  let next = 0;
  let errors = 0;
  let lastReport = started;
  const worker = async () => {
    while (next < o.keys) {
      const i = next++;
      try {
        await client.put(o.keyspace, keyOf(i), value, { consistency: o.consistency });
      } catch {
        errors++;
        await tick();
      }
      const now = performance.now();
      if (now - lastReport >= 1000) {
        lastReport = now;
        progress(`preload ${next}/${o.keys} keys`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, o.keys) }, worker));
  return { keys: o.keys, seconds: round((performance.now() - started) / 1000, 2), errors };
}

/** Runs the benchmark and returns its report; progress lines go to `progress`. */
export async function runBench(o: BenchOptions, progress: (line: string, final?: boolean) => void = () => {}): Promise<BenchReport> {
  const client = connect(o.hosts, { connectionsPerHost: o.connections, maxInFlightPerConnection: Math.max(1024, o.concurrency), ...clientAccess() });
  try {
    try {
      await client.ready();
    } catch (error) {
      throw new CliError(`cannot reach the cluster at ${o.hosts.join(',')}: ${(error as Error).message}`);
    }
    const replication = (await client.ring()).keyspaces.find((k) => k.name === o.keyspace);
    if (!replication) throw new CliError(`keyspace ${o.keyspace} does not exist (chorus keyspace create ${o.keyspace} --rf 3)`);

    const value = randomBytes(o.valueSize);
    const reads = o.workload === 'read' ? 1 : o.workload === 'write' ? 0 : o.readRatio;
    let preloadReport: BenchReport['preload'];
    if (reads > 0 && o.preload) preloadReport = await preload(client, o, value, (line) => progress(line));

    const zipf = o.distribution === 'zipfian' ? new ZipfianGenerator(o.keys) : undefined;
    const nextKey = zipf ? () => zipf.next() : () => Math.floor(Math.random() * o.keys);
    const rec = new Recorder();
    let before = client.stats();
    let stop = false;
    let issued = 0;
    const limit = o.ops;

    const worker = async () => {
      const mine = Buffer.from(value);
      while (!stop) {
        if (rec.recording && limit !== undefined) {
          if (issued >= limit) break;
          issued++;
        }
        const key = keyOf(nextKey());
        const isRead = reads > 0 && (reads >= 1 || Math.random() < reads);
        const started = performance.now();
        try {
          if (isRead) {
            const found = await client.get(o.keyspace, key, { consistency: o.consistency });
            if (!found && rec.recording) rec.notFound++;
          } else {
            if (mine.length >= 8) mine.writeDoubleLE(started, 0);
            await client.put(o.keyspace, key, mine, { consistency: o.consistency });
          }
          rec.record(isRead ? 'read' : 'write', (performance.now() - started) * 1000);
        } catch (error) {
          rec.error(error);
          // A failing cluster answers at once; let timers and I/O run.
          await tick();
        }
      }
    };

    const begun = performance.now();
    let measureStart = begun;
    rec.recording = o.warmup <= 0;
    const workers = Array.from({ length: o.concurrency }, worker);
    let last = begun;
    const reporter = setInterval(() => {
      const now = performance.now();
      const elapsed = (now - begun) / 1000;
      const rate = rec.intervalOps / ((now - last) / 1000);
      const p = (q: number) => (rec.interval.totalCount ? (rec.interval.getValueAtPercentile(q) / 1000).toFixed(2) : '-');
      const phase = rec.recording ? '' : ' (warm-up)';
      progress(
        `${elapsed.toFixed(0).padStart(4)} s${phase}  ${Math.round(rate).toLocaleString('en-US').padStart(8)} ops/s  p50 ${p(50)} ms  p99 ${p(99)} ms  max ${rec.interval.totalCount ? (rec.interval.maxValue / 1000).toFixed(1) : '-'} ms  errors ${rec.intervalErrors}`,
      );
      rec.interval.reset();
      rec.intervalOps = 0;
      rec.intervalErrors = 0;
      last = now;
    }, 1000);

    try {
      if (o.warmup > 0) {
        await sleep(o.warmup * 1000);
        rec.recording = true;
      }
      measureStart = performance.now();
      before = client.stats();
      if (limit === undefined) {
        await sleep(o.duration * 1000);
        stop = true;
      }
      await Promise.all(workers);
      stop = true;
    } finally {
      clearInterval(reporter);
      stop = true;
    }
    const seconds = (performance.now() - measureStart) / 1000;
    progress('', true);

    const all = newHistogram();
    all.add(rec.reads);
    all.add(rec.writes);
    const ops = rec.readOps + rec.writeOps;
    const after = client.stats();
    const errorCount = [...rec.errors.values()].reduce((a, b) => a + b, 0);
    const opReport = (n: number, h: Histogram): OpReport => ({ ops: n, opsPerSec: round(n / seconds, 1), latencyMs: summary(h) });
    return {
      workload: o.workload,
      readRatio: reads,
      consistency: o.consistency,
      keyspace: o.keyspace,
      keys: o.keys,
      distribution: o.distribution,
      valueSize: o.valueSize,
      concurrency: o.concurrency,
      hosts: o.hosts,
      warmupSec: o.warmup,
      durationSec: round(seconds, 2),
      ops,
      opsPerSec: round(ops / seconds, 1),
      errorCount,
      errors: Object.fromEntries(rec.errors),
      latencyMs: summary(all),
      ...(reads > 0 ? { reads: { ...opReport(rec.readOps, rec.reads), notFound: rec.notFound } } : {}),
      ...(reads < 1 ? { writes: opReport(rec.writeOps, rec.writes) } : {}),
      ...(preloadReport ? { preload: preloadReport } : {}),
      client: {
        tokenAware: after.tokenAware - before.tokenAware,
        nonReplica: after.nonReplica - before.nonReplica,
        retries: after.retries - before.retries,
        timeouts: after.timeouts - before.timeouts,
      },
    };
  } finally {
    await client.close();
  }
}

const fmt = (s: LatencySummary) => `p50 ${s.p50}  p95 ${s.p95}  p99 ${s.p99}  p99.9 ${s['p99.9']}  max ${s.max}  (mean ${s.mean})`;

/** The human-readable report. */
export function formatBench(r: BenchReport): string {
  const lines = [
    `workload     ${r.workload}${r.workload === 'mixed' ? ` (read ratio ${r.readRatio})` : ''}, consistency ${r.consistency}, keyspace ${r.keyspace}`,
    `keys         ${r.keys} ${r.distribution}, ${r.valueSize}-byte values, concurrency ${r.concurrency}, hosts ${r.hosts.join(',')}`,
    ...(r.preload ? [`preload      ${r.preload.keys} keys in ${r.preload.seconds} s${r.preload.errors ? `, ${r.preload.errors} errors` : ''}`] : []),
    `duration     ${r.durationSec} s${r.warmupSec ? ` after ${r.warmupSec} s of warm-up` : ''}`,
    `ops          ${r.ops}`,
    `throughput   ${r.opsPerSec} ops/s`,
    `errors       ${r.errorCount}${r.errorCount ? ` (${Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}`,
    `latency ms   ${fmt(r.latencyMs)}`,
  ];
  if (r.reads && r.writes) {
    lines.push(`  reads      ${r.reads.ops} ops, ${r.reads.opsPerSec} ops/s, ${fmt(r.reads.latencyMs)}`);
    lines.push(`  writes     ${r.writes.ops} ops, ${r.writes.opsPerSec} ops/s, ${fmt(r.writes.latencyMs)}`);
  }
  if (r.reads?.notFound) lines.push(`not found    ${r.reads.notFound} reads (run a write workload first, or drop --no-preload)`);
  lines.push(`routing      ${r.client.tokenAware} to a replica, ${r.client.nonReplica} elsewhere, ${r.client.retries} retried`);
  return lines.join('\n');
}
