import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { SwarmResult } from './scenario.js';

export interface SwarmRunOptions {
  /** Seeds to run (default 100). */
  runs: number;
  /** The first seed (default 1); seeds run in order from it. */
  fromSeed: number;
  /** Stop handing out seeds after this many minutes of wall time (the runs under way finish). */
  minutes?: number;
  /** Worker threads (default: the cores, at most 4). */
  workers?: number;
  /** Client operations per seed. */
  ops?: number;
  /** One call per finished seed, in the order they finish. */
  onResult?(result: SwarmResult): void;
}

export interface SwarmSummary {
  runs: number;
  events: number;
  virtualMs: number;
  wallMs: number;
  failures: SwarmResult[];
  /** How often each kind of fault fired, over every run. */
  faults: Record<string, number>;
}

export function replayCommand(seed: number): string {
  return `pnpm sim --scenario swarm --seed ${seed} --trace`;
}

/** Runs seeds in worker threads, each seed a whole simulated cluster from start to checks. */
export async function runSwarm(options: SwarmRunOptions): Promise<SwarmSummary> {
  const started = Date.now();
  const deadline = options.minutes === undefined ? Infinity : started + options.minutes * 60_000;
  const workers = Math.max(1, Math.min(options.workers ?? Math.min(4, availableParallelism()), options.runs));
  const summary: SwarmSummary = { runs: 0, events: 0, virtualMs: 0, wallMs: 0, failures: [], faults: {} };
  let next = options.fromSeed;
  const end = options.fromSeed + options.runs;
  const take = (): number | undefined => (next < end && Date.now() < deadline ? next++ : undefined);
  await Promise.all(
    Array.from({ length: workers }, () => {
      const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: { ops: options.ops } });
      return new Promise<void>((resolve, reject) => {
        const feed = () => {
          const seed = take();
          if (seed === undefined) void worker.terminate().then(() => resolve());
          else worker.postMessage(seed);
        };
        worker.on('message', (result: SwarmResult) => {
          summary.runs++;
          summary.events += result.events;
          summary.virtualMs += result.virtualMs;
          for (const [kind, n] of Object.entries(result.faults)) summary.faults[kind] = (summary.faults[kind] ?? 0) + n;
          if (result.violations.length > 0) summary.failures.push(result);
          options.onResult?.(result);
          feed();
        });
        worker.on('error', reject);
        feed();
      });
    }),
  );
  summary.wallMs = Date.now() - started;
  summary.failures.sort((a, b) => a.seed - b.seed);
  return summary;
}
