#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { formatResult, summaryLine } from './format.js';
import { replayCommand, runSwarm } from './swarm.js';

const usage = 'usage: pnpm sim:swarm --runs N [--from-seed S] [--minutes M] [--workers W] [--ops N] [--quiet]';

function int(name: string, text: string | undefined, fallback: number | undefined, min = 1): number | undefined {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, got ${text}`);
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { runs: { type: 'string' }, 'from-seed': { type: 'string' }, minutes: { type: 'string' }, workers: { type: 'string' }, ops: { type: 'string' }, quiet: { type: 'boolean' }, help: { type: 'boolean' } },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const minutes = values.minutes === undefined ? undefined : Number(values.minutes);
  if (minutes !== undefined && !(minutes > 0)) throw new Error(`--minutes must be a positive number, got ${values.minutes}`);
  const runs = int('runs', values.runs, minutes === undefined ? 100 : Number.MAX_SAFE_INTEGER / 2)!;
  const fromSeed = int('from-seed', values['from-seed'], 1, 0)!;
  const workers = int('workers', values.workers, undefined);
  const ops = int('ops', values.ops, undefined);
  let done = 0;
  const summary = await runSwarm({
    runs,
    fromSeed,
    ...(minutes === undefined ? {} : { minutes }),
    ...(workers === undefined ? {} : { workers }),
    ...(ops === undefined ? {} : { ops }),
    onResult(result) {
      done++;
      if (result.violations.length > 0) console.log(formatResult(result, false));
      else if (!values.quiet && done % 100 === 0) console.log(`… ${done} runs`);
    },
  });
  const fired = Object.entries(summary.faults).map(([k, n]) => `${k} ${n}`).join(', ');
  console.log(`faults fired: ${fired}`);
  for (const f of summary.failures) console.log(`FAILED seed ${f.seed} [${[...new Set(f.violations.map((v) => v.checker))].join(', ')}]: ${replayCommand(f.seed)}`);
  console.log(summaryLine(summary));
  return summary.failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => (process.exitCode = code),
  (error: unknown) => {
    console.error(`sim:swarm: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
