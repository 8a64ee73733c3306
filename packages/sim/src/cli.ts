#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { runScenario, scenarios } from './scenarios.js';

const usage = `usage: pnpm sim --scenario ${Object.keys(scenarios).join('|')} [--seed N]`;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { scenario: { type: 'string', default: 'demo' }, seed: { type: 'string', default: '42' }, help: { type: 'boolean' } } });
  if (values.help) {
    console.log(usage);
    return;
  }
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
  const result = await runScenario(values.scenario!, seed);
  console.log(`scenario ${result.scenario} seed ${result.seed}`);
  for (const [name, value] of Object.entries(result.figures)) console.log(`  ${name.padEnd(18)} ${value}`);
  console.log(`trace ${result.traceHash}`);
}

main().catch((error: unknown) => {
  console.error(`sim: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
