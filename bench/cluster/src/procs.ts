import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/** A process whose CPU and memory the bench reports. */
export interface Watched {
  name: string;
  pid: number;
  /** host:port whose `/metrics` gives the process's GC time and CPU (Chorus nodes); none for the others. */
  metrics?: string;
}

export interface ProcessUsage {
  name: string;
  /** CPU seconds per wall second over the workload: 1 is one core busy all the time. */
  cpu: number;
  /** Resident set at the end of the workload, MiB. */
  rssMiB: number;
  /** Highest resident set sampled (every 250 ms) from the start of the workload, key preparation and warm-up included, MiB. */
  peakRssMiB?: number;
  /**
   * Highest anonymous part of the resident set (RssAnon), sampled with `peakRssMiB`: the process's own memory
   * (heap, stacks, malloc), without file pages mapped in (the node binary, LevelDB's tables), which the kernel
   * shares and can drop.
   */
  peakAnonMiB?: number;
  /** Seconds of GC pauses over CPU seconds of the process in the measured window, from its `/metrics` (0–1). */
  gcShare?: number;
  /** V8 heap in use at the end of the workload, MiB, from its `/metrics`: what of the RSS is the JavaScript heap. */
  heapUsedMiB?: number;
  /** The row cache's own estimate of what it holds at the end of the workload, MiB, from its `/metrics`. */
  rowCacheMiB?: number;
}

// Linux reports utime and stime in clock ticks; USER_HZ is 100 on every architecture Node runs on.
const TICKS_PER_SECOND = 100;

/** User plus system CPU seconds of a process so far, from /proc/<pid>/stat; undefined once it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses; the fields after its last ')' are fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** VmRSS of a process and its anonymous part (RssAnon) in MiB, from /proc/<pid>/status. */
export function residentMiB(pid: number): { rss: number; anon: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
    const anon = /^RssAnon:\s+(\d+) kB/m.exec(status);
    return rss && anon ? { rss: Number(rss[1]) / 1024, anon: Number(anon[1]) / 1024 } : undefined;
  } catch {
    return undefined;
  }
}

/** Starts measuring; the function it returns gives each process's CPU share since, and its RSS now. */
export function watch(processes: Watched[]): () => ProcessUsage[] {
  const started = performance.now();
  const before = processes.map((p) => cpuSeconds(p.pid) ?? 0);
  return () => {
    const wall = (performance.now() - started) / 1000;
    return processes.map((p, i) => ({
      name: p.name,
      cpu: Math.round((((cpuSeconds(p.pid) ?? before[i]!) - before[i]!) / wall) * 100) / 100,
      rssMiB: Math.round(residentMiB(p.pid)?.rss ?? 0),
    }));
  };
}

/** Samples the processes' RSS until stopped; the highest samples of each (all of it, and its anonymous part), MiB, in the processes' order. */
export function samplePeakRss(processes: Watched[], intervalMs = 250): { stop(): { rss: number[]; anon: number[] } } {
  const rss = processes.map(() => 0);
  const anon = processes.map(() => 0);
  const sample = () =>
    processes.forEach((p, i) => {
      const now = residentMiB(p.pid);
      if (now === undefined) return;
      rss[i] = Math.max(rss[i]!, now.rss);
      anon[i] = Math.max(anon[i]!, now.anon);
    });
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { rss: rss.map(Math.round), anon: anon.map(Math.round) };
    },
  };
}

/** GC pause seconds (prom-client's `nodejs_gc_duration_seconds`, every kind) and CPU seconds a Chorus node reports so far. */
export interface NodeReadings {
  gc: number;
  cpu: number;
  heapUsedMiB?: number;
  rowCacheMiB?: number;
}

/** A node's GC and CPU seconds so far, its heap in use and its row cache's size, from its `/metrics`; undefined when it does not answer. */
export async function nodeReadings(host: string): Promise<NodeReadings | undefined> {
  try {
    const text = await (await fetch(`http://${host}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
    const value = (line: string) => Number(line.slice(line.lastIndexOf(' ') + 1));
    const mib = (bytes: number) => Math.round(bytes / (1024 * 1024));
    let gc = 0;
    let cpu: number | undefined;
    const readings: Omit<NodeReadings, 'gc' | 'cpu'> = {};
    for (const line of text.split('\n')) {
      if (/^chorus_nodejs_gc_duration_seconds_sum[{ ]/.test(line)) gc += value(line);
      else if (line.startsWith('chorus_process_cpu_seconds_total ')) cpu = value(line);
      else if (line.startsWith('chorus_nodejs_heap_size_used_bytes ')) readings.heapUsedMiB = mib(value(line));
      else if (line.startsWith('chorus_row_cache_bytes ')) readings.rowCacheMiB = mib(value(line));
    }
    return cpu === undefined ? undefined : { gc, cpu, ...readings };
  } catch {
    return undefined;
  }
}
