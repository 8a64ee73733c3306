import type { Side, WorkloadReport } from './workloads.js';

const num = (x: number) => Math.round(x).toLocaleString('en-US');
const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

/** The figure a workload compares: ops/s, or latency for the open loop and the serial one. */
function figure(r: WorkloadReport, side: Side | undefined): string {
  if (!side) return '—';
  if (r.workload === 'open-loop') return `p50 ${ms(side.latencyMs.p50)} p99 ${ms(side.latencyMs.p99)} p99.9 ${ms(side.latencyMs['p99.9'])} ms`;
  if (r.workload === 'serial') return `p50 ${ms(side.latencyMs.p50)} ms`;
  return `${num(side.opsPerSec)}/s`;
}

/**
 * Nodes' CPU shares (one core = 100) and RSS at the end (and at its peak), e.g. `45/38/40 % 120/118/119 (peak 130/125/122) MiB`,
 * the share of their CPU that went to GC pauses (Chorus nodes), the bench's CPU, and
 * each node's share of the requests it was sent to coordinate, in port order (the nodes' order).
 */
function usage(side: Side | undefined): string {
  if (!side) return '—';
  const nodes = side.processes.filter((p) => p.name !== 'bench');
  const bench = side.processes.find((p) => p.name === 'bench');
  const port = (host: string) => Number(host.slice(host.lastIndexOf(':') + 1));
  const coordinated = side.coordinated
    ? ` coord ${Object.entries(side.coordinated)
        .sort(([a], [b]) => port(a) - port(b))
        .map(([, share]) => Math.round(share * 100))
        .join('/')} %`
    : '';
  const peak = nodes.every((p) => p.peakRssMiB !== undefined) ? ` (peak ${nodes.map((p) => p.peakRssMiB).join('/')}${nodes.every((p) => p.peakAnonMiB !== undefined) ? `, anonymous ${nodes.map((p) => p.peakAnonMiB).join('/')}` : ''})` : '';
  const gc = nodes.every((p) => p.gcShare !== undefined) ? ` GC ${nodes.map((p) => Math.round(p.gcShare! * 100)).join('/')} %` : '';
  const heap = nodes.every((p) => p.heapUsedMiB !== undefined) ? ` heap ${nodes.map((p) => p.heapUsedMiB).join('/')} MiB` : '';
  const cache = nodes.every((p) => p.rowCacheMiB !== undefined) ? ` (row cache ${nodes.map((p) => p.rowCacheMiB).join('/')})` : '';
  return `${nodes.map((p) => Math.round(p.cpu * 100)).join('/')} % ${nodes.map((p) => p.rssMiB).join('/')}${peak} MiB${gc}${heap}${cache}${bench ? ` bench ${Math.round(bench.cpu * 100)} %` : ''}${coordinated}`;
}

const COLUMNS = ['workload', 'chorus', 'ideal', 'ratio', 'other', 'chorus: nodes CPU, RSS, GC share, heap, row cache, bench CPU, coordinators', 'ideal: same'];

export function tableRow(r: WorkloadReport): string[] {
  const errors = (s: Side | undefined) => (!s ? '' : (s.errors > 0 ? ` (${s.errors} errors)` : '') + (s.shed ? ` (${s.shed} shed)` : ''));
  const other = r.other ? `${r.other.chorus}${r.other.ideal !== undefined ? ` (ideal ${r.other.ideal})` : ''} ${r.other.label}` : '';
  const ws = r.wsRoundTripMs ? ` ws p50 ${ms(r.wsRoundTripMs.p50)} ms` : '';
  return [r.workload, figure(r, r.chorus) + errors(r.chorus), figure(r, r.ideal) + errors(r.ideal), `${r.ratio}`, other + ws, usage(r.chorus), usage(r.ideal)];
}

/** A Markdown table, readable as it is in a terminal too. */
export function formatTable(reports: WorkloadReport[]): string {
  const rows = [COLUMNS, ...reports.map(tableRow)];
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}
