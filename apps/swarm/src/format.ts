import type { SwarmResult } from './scenario.js';
import { replayCommand } from './swarm.js';

const hours = (ms: number) => (ms / 3_600_000).toFixed(ms < 360_000 ? 3 : 1);

/** One seed: its verdict, the faults that fired, and per violation the checker that failed; the replay command when it failed. */
export function formatResult(r: SwarmResult, verbose: boolean): string {
  const lines: string[] = [];
  const faults = Object.entries(r.faults).map(([k, n]) => `${k} ${n}`).join(', ');
  lines.push(`seed ${r.seed}: ${r.violations.length === 0 ? 'ok' : `FAILED (${[...new Set(r.violations.map((v) => v.checker))].join(', ')})`}; ${r.nodes} nodes, commit_sync ${r.commitSync}${r.topology ? `, ${r.topology}` : ''}, ${r.events} events, ${(r.virtualMs / 1000).toFixed(1)} s simulated`);
  lines.push(`  faults fired: ${faults}`);
  if (verbose) {
    for (const f of r.faultLog) lines.push(`    ${f}`);
    lines.push(`  ${Object.entries(r.figures).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  }
  const shown = verbose ? r.violations : r.violations.slice(0, 5);
  for (const v of shown) lines.push(`  [${v.checker}] ${v.message.split('\n').slice(0, verbose ? 20 : 3).join('\n    ')}`);
  if (shown.length < r.violations.length) lines.push(`  … ${r.violations.length - shown.length} more`);
  if (r.violations.length > 0) lines.push(`  replay: ${replayCommand(r.seed)}`);
  lines.push(`  trace ${r.traceHash}`);
  return lines.join('\n');
}

export function summaryLine(s: { runs: number; events: number; virtualMs: number; wallMs: number; failures: unknown[] }): string {
  return `swarm: ${s.runs} runs, ${s.events} events, ${hours(s.virtualMs)} simulated hours, ${s.failures.length} failures (${(s.wallMs / 1000).toFixed(0)} s wall)`;
}
