#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { runScenario, scenarios } from '@chorus/sim';
import { runSwarmSeed } from './scenario.js';
import { formatResult } from './format.js';

// `pnpm sim`: the simulator's own scenarios, and `swarm`, which needs whole nodes and so lives here, above the node.
const names = ['swarm', ...Object.keys(scenarios)];
const usage = `usage: pnpm sim --scenario ${names.join('|')} [--seed N] [--trace] [--ops N]`;

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { scenario: { type: 'string', default: 'demo' }, seed: { type: 'string', default: '42' }, trace: { type: 'boolean' }, ops: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
  if (values.scenario !== 'swarm') {
    if (values.trace) throw new Error('--trace is for --scenario swarm');
    const result = await runScenario(values.scenario!, seed);
    console.log(`scenario ${result.scenario} seed ${result.seed}`);
    for (const [name, value] of Object.entries(result.figures)) console.log(`  ${name.padEnd(18)} ${value}`);
    console.log(`trace ${result.traceHash}`);
    return 0;
  }
  const ops = values.ops === undefined ? undefined : Number(values.ops);
  if (ops !== undefined && !(Number.isSafeInteger(ops) && ops > 0)) throw new Error(`--ops must be a positive integer, got ${values.ops}`);
  const trace = values.trace ? (line: string) => void process.stdout.write(`${line}\n`) : undefined;
  const result = await runSwarmSeed(seed, { ...(ops === undefined ? {} : { ops }), ...(trace ? { trace } : {}) });
  console.log(formatResult(result, true));
  return result.violations.length === 0 ? 0 : 1;
}

main().then(
  (code) => (process.exitCode = code),
  (error: unknown) => {
    console.error(`sim: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
