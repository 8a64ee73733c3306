import { type Command, Option } from 'commander';
import type { BenchOptions, Distribution, Workload } from './bench.js';
import { CliError, DEFAULT_HOST } from './http.js';

function positive(name: string, integer = true) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new CliError(`${name} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(value)}`);
    return n;
  };
}

/** `--host`, or the deprecated `--hosts` when it is given and `--host` is not. */
function hostsOf(raw: Record<string, unknown>, command: Command): unknown {
  if (raw.hosts === undefined) return raw.host;
  process.stderr.write('chorus: --hosts is deprecated; use --host (it takes the same comma list)\n');
  return command.getOptionValueSource('host') === 'cli' ? raw.host : raw.hosts;
}

/** `chorus bench`: a closed-loop load generator in the spirit of cassandra-stress and YCSB. */
export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('load generator: N requests in flight through @chorus/client, ops/s and HdrHistogram latency percentiles')
    .option('--workload <w>', 'write | read | mixed (a read workload first writes the keys it reads)', 'write')
    .option('--read-ratio <r>', 'share of reads in the mixed workload, 0–1', '0.5')
    .option('--consistency <cl>', 'consistency level of every request', 'QUORUM')
    .option('--keys <n>', 'number of distinct keys', positive('--keys'), 100_000)
    .option('--distribution <d>', 'uniform | zipfian (YCSB scrambled Zipfian, θ 0.99)', 'uniform')
    .option('--value-size <bytes>', 'bytes per value', positive('--value-size'), 100)
    .option('--concurrency <n>', 'requests in flight', positive('--concurrency'), 64)
    .option('--duration <seconds>', 'measured seconds, after the warm-up', positive('--duration', false), 10)
    .option('--ops <n>', 'measure this many operations instead of a duration', positive('--ops'))
    .option('--warmup <seconds>', 'seconds of load before measuring', '0')
    .option('--keyspace <ks>', 'keyspace', 'default')
    .addOption(new Option('--host <a,b,c>', 'nodes to connect to, comma-separated (the rest are found from the ring)').default(DEFAULT_HOST))
    .addOption(new Option('--hosts <a,b,c>', 'deprecated: use --host').hideHelp())
    .option('--connections <n>', 'connections per node', positive('--connections'), 1)
    .option('--no-preload', 'do not write the keys before a read or mixed workload')
    .option('--json', 'one JSON document on stdout, no progress lines')
    .action(async (raw: Record<string, unknown>, command: Command) => {
      const workload = String(raw.workload);
      if (!['write', 'read', 'mixed'].includes(workload)) throw new CliError(`--workload must be write, read or mixed, got ${JSON.stringify(workload)}`);
      const distribution = String(raw.distribution);
      if (!['uniform', 'zipfian'].includes(distribution)) throw new CliError(`--distribution must be uniform or zipfian, got ${JSON.stringify(distribution)}`);
      const readRatio = Number(raw.readRatio);
      if (!(readRatio >= 0 && readRatio <= 1)) throw new CliError(`--read-ratio must be between 0 and 1, got ${JSON.stringify(raw.readRatio)}`);
      const warmup = Number(raw.warmup);
      if (!(warmup >= 0)) throw new CliError(`--warmup must be a number of seconds ≥ 0, got ${JSON.stringify(raw.warmup)}`);
      const options: BenchOptions = {
        workload: workload as Workload,
        readRatio,
        consistency: String(raw.consistency),
        keys: raw.keys as number,
        distribution: distribution as Distribution,
        valueSize: raw.valueSize as number,
        concurrency: raw.concurrency as number,
        duration: raw.duration as number,
        ops: raw.ops as number | undefined,
        warmup,
        keyspace: String(raw.keyspace),
        hosts: String(hostsOf(raw, command)).split(',').map((h) => h.trim()).filter(Boolean),
        connections: raw.connections as number,
        preload: raw.preload !== false,
        json: raw.json === true,
      };
      const tty = process.stderr.isTTY === true;
      const progress = options.json
        ? () => {}
        : (line: string, final?: boolean) => {
            if (final) {
              if (tty) process.stderr.write('\r\x1b[K');
              return;
            }
            process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
          };
      // The load generator and its client are imported only when a benchmark runs: node processes run this program too.
      const { formatBench, runBench } = await import('./bench.js');
      const report = await runBench(options, progress);
      process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatBench(report)}\n`);
      if (report.ops === 0 && report.errorCount > 0) throw new CliError(`no operation succeeded (${Object.entries(report.errors).map(([k, v]) => `${k} ${v}`).join(', ')})`);
    });
}
