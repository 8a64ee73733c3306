import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startCluster, stopCluster } from '@chorus/cli';
import { type IdealCluster, startIdealCluster } from './ideal-cluster.js';
import { freePorts } from './ports.js';
import { MeasuredProfiles } from './profiles.js';
import { formatTable } from './report.js';
import { type Target, chorusTarget, echoTarget, idealTarget } from './targets.js';
import { ON_REQUEST, type RunContext, prime, type System, WORKLOADS, type WorkloadName, type WorkloadReport, newSystem, runWorkload } from './workloads.js';

const USAGE = `pnpm bench:cluster [--seconds S] [--warmup S] [--prime S] [--only w1,w2] [--no-ideal] [--ideal-plain-keys] [--json FILE] [--cpu-prof DIR] [--dir DIR] [--keep]

Starts a 3-node Chorus cluster (rf 3) and a 3-process ideal pipeline on 127.0.0.1, runs each
workload on both with the same load generator and 100-byte values, and prints Chorus's figure,
the ideal's, their ratio, and each node's CPU share, RSS (at the end and at its peak) and GC share.

  --seconds S     measured seconds per workload and system (default 10)
  --warmup S      seconds of load before each measurement (default 2)
  --prime S       seconds of mixed load on each system after it starts, before its first workload (default 20)
  --only LIST     comma-separated workloads among: ${WORKLOADS.join(', ')}
                  (${[...ON_REQUEST].join(', ')} only when named here)
  --no-ideal      Chorus alone, without the ideal pipeline (no ratios): for long runs
  --ideal-plain-keys
                  the ideal stores rows under the client's keys rather than in token order
                  (the load's numbered keys then land in order: a store on a ring gets no such help)
  --json FILE     one JSON line per workload to FILE (default: after the table, on stdout)
  --cpu-prof DIR  a CPU profile of each Chorus node over each measured phase, written into DIR
  --dir DIR       where the clusters keep their data (default: a new temporary directory, removed at the end)
  --keep          keep the data directory
`;

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    prime: { type: 'string', default: '20' },
    only: { type: 'string' },
    json: { type: 'string' },
    'cpu-prof': { type: 'string' },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false },
    'no-ideal': { type: 'boolean', default: false },
    'ideal-plain-keys': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const fail = (message: string): never => {
  process.stderr.write(`bench:cluster: ${message}\n`);
  process.exit(2);
};
const seconds = Number(values.seconds);
const warmupSeconds = Number(values.warmup);
if (!(seconds > 0)) fail(`--seconds must be a positive number, got ${JSON.stringify(values.seconds)}`);
if (!(warmupSeconds >= 0)) fail(`--warmup must be a number ≥ 0, got ${JSON.stringify(values.warmup)}`);
const primeSeconds = Number(values.prime);
if (!(primeSeconds >= 0)) fail(`--prime must be a number ≥ 0, got ${JSON.stringify(values.prime)}`);
const only = values.only?.split(',').map((w) => w.trim()).filter(Boolean);
for (const w of only ?? []) if (!(WORKLOADS as readonly string[]).includes(w)) fail(`unknown workload ${JSON.stringify(w)}; known: ${WORKLOADS.join(', ')}`);
const chosen = WORKLOADS.filter((w) => (only ? only.includes(w) : !ON_REQUEST.has(w)));
const withIdeal = !values['no-ideal'];

const root = values.dir ? resolve(values.dir) : mkdtempSync(join(tmpdir(), 'chorus-bench-'));
mkdirSync(root, { recursive: true });
const cpuProfDir = values['cpu-prof'] ? resolve(values['cpu-prof']) : undefined;
const profiles = cpuProfDir ? new MeasuredProfiles(cpuProfDir) : undefined;
if (cpuProfDir) {
  mkdirSync(cpuProfDir, { recursive: true });
  // The nodes inherit this process's environment, which tells their profiler where to write.
  process.env.CHORUS_BENCH_PROFILE_DIR = cpuProfDir;
}
const jsonFile = values.json ? resolve(values.json) : undefined;
if (jsonFile) writeFileSync(jsonFile, '');
const progress = (line: string) => process.stderr.write(`${line}\n`);
// Nodes stop by themselves when this process goes, however it goes.
process.env.CHORUS_STOP_WITH_PIDS = String(process.pid);

interface Pair {
  chorus: System;
  ideal?: System;
  idealHosts: string[];
  stop(): Promise<void>;
}

/** A Chorus cluster and an ideal pipeline side by side, with a client for each. */
async function startPair(label: string, durable: boolean): Promise<Pair> {
  const chorusDir = join(root, `chorus-${label}`);
  const ports = await freePorts(3);
  const set = durable ? ['commit_sync=batch'] : [];
  progress(`starting a 3-node Chorus cluster (${label}) on ports ${ports[0]}–${ports[2]}, data in ${chorusDir}`);
  const nodeArgs = cpuProfDir ? ['--import', fileURLToPath(new URL('./profile-on-signal.js', import.meta.url))] : [];
  await startCluster({ nodes: 3, dir: chorusDir, basePort: ports[0]!, rf: 3, set, timeoutMs: 120_000, nodeArgs });
  const hosts = ports.map((p) => `127.0.0.1:${p}`);
  const chorusProcesses = ['n1', 'n2', 'n3'].map((name, i) => ({ name, pid: Number(readFileSync(join(chorusDir, `${name}.pid`), 'utf8').trim()), metrics: hosts[i]! }));
  let ideal: IdealCluster | undefined;
  let targets: Target[] = [];
  try {
    targets = [await chorusTarget(hosts, 1024)];
    if (withIdeal) {
      const idealPorts = await freePorts(3);
      progress(`starting the ideal pipeline (${label}) on ports ${idealPorts[0]}–${idealPorts[2]}`);
      ideal = await startIdealCluster({ ports: idealPorts, dir: join(root, `ideal-${label}`), durable, plainKeys: values['ideal-plain-keys'] });
      targets.push(await idealTarget(ideal.hosts));
    }
  } catch (error) {
    await ideal?.stop();
    await stopCluster(chorusDir, undefined);
    throw error;
  }
  const idealCluster = ideal;
  if (primeSeconds > 0) {
    progress(`priming each system with ${primeSeconds} s of mixed load`);
    for (const t of targets) await prime(t, primeSeconds, value);
  }
  return {
    chorus: newSystem(targets[0]!, chorusProcesses),
    ...(idealCluster ? { ideal: newSystem(targets[1]!, idealCluster.processes) } : {}),
    idealHosts: idealCluster?.hosts ?? [],
    async stop() {
      for (const t of targets) await t.close();
      await idealCluster?.stop();
      progress(`stopping the Chorus cluster (${label})`);
      await stopCluster(chorusDir, undefined);
    },
  };
}

const reports: WorkloadReport[] = [];
const done = new Map<WorkloadName, WorkloadReport>();
const value = new Uint8Array(randomBytes(100));

async function runAll(pair: Pair, workloads: WorkloadName[], echo: Target | undefined): Promise<void> {
  const ctx: RunContext = { chorus: pair.chorus, ...(pair.ideal ? { ideal: pair.ideal } : {}), seconds, warmupSeconds, value, done, progress, ...(echo ? { echo } : {}), ...(profiles ? { profiles } : {}) };
  for (const w of workloads) {
    const report = await runWorkload(w, ctx);
    reports.push(report);
    const line = JSON.stringify({ ...report, at: new Date().toISOString() });
    if (jsonFile) appendFileSync(jsonFile, `${line}\n`);
    process.stderr.write(`${formatTable([report]).split('\n').slice(2).join('\n')}\n`);
  }
}

let exitCode = 0;
try {
  const periodic = chosen.filter((w) => w !== 'durable');
  // The open loop runs at half the ideal peak: measure that peak first when the run does not include it.
  if (withIdeal && periodic.includes('open-loop') && !periodic.includes('write-quorum-1024')) periodic.unshift('write-quorum-1024');
  if (periodic.length > 0) {
    const pair = await startPair('periodic', false);
    try {
      const echo = periodic.includes('serial') && pair.idealHosts.length > 0 ? await echoTarget(pair.idealHosts[0]!) : undefined;
      await runAll(pair, periodic, echo);
      await echo?.close();
    } finally {
      await pair.stop();
    }
  }
  if (chosen.includes('durable')) {
    const pair = await startPair('durable', true);
    try {
      await runAll(pair, ['durable'], undefined);
    } finally {
      await pair.stop();
    }
  }
} catch (error) {
  process.stderr.write(`bench:cluster: ${(error as Error).stack ?? error}\n`);
  exitCode = 1;
} finally {
  if (!values.keep) rmSync(root, { recursive: true, force: true });
  else progress(`data kept in ${root}`);
}

if (reports.length > 0) {
  process.stdout.write(`\n${formatTable(reports)}\n`);
  process.stdout.write(`\nratio: Chorus over the ideal (throughput; p99 for open-loop, p50 for serial). CPU: share of one core per node over the measured seconds; RSS at the end and (peak) its highest sample from the workload's first prepared key on, with the highest of its anonymous part (RssAnon: the RSS less mapped files, the node binary and LevelDB's tables); GC: seconds of GC pauses over CPU seconds of each node in the measured seconds. ${seconds} s measured per workload and system after ${warmupSeconds} s of warm-up.\n`);
  if (!jsonFile) process.stdout.write(`\n${reports.map((r) => JSON.stringify(r)).join('\n')}\n`);
  if (cpuProfDir) process.stdout.write(`\nCPU profiles of the Chorus nodes over each measured phase: ${cpuProfDir}\n`);
}
process.exit(exitCode);
