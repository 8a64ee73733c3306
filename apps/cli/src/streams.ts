import { type Command, Option } from 'commander';
import { DEFAULT_HOST, getJson } from './http.js';
import { formatBytes, formatSeconds } from './format.js';

/** One range movement of `GET /v1/streams`, as the node's streaming reports it. */
export interface StreamView {
  id: string;
  kind: string;
  state: string;
  sources: string[];
  targets: string[];
  keyspaces: string[];
  rangesTotal: number;
  rangesDone: number;
  rowsStreamed: number;
  bytesStreamed: number;
  percent: number;
  elapsedMs: number;
  error?: string;
}

/** `chorus streams`: one line per movement the asked node runs or ran lately. */
export function formatStreams(streams: StreamView[]): string {
  if (streams.length === 0) return 'no range movements';
  const rows = [['Id', 'Kind', 'State', 'Done', 'Ranges', 'Rows', 'Bytes', 'Rate', 'Elapsed', 'From', 'To']];
  for (const s of streams) {
    const seconds = s.elapsedMs / 1000;
    rows.push([
      s.id,
      s.kind,
      s.state,
      `${s.percent.toFixed(1)}%`,
      `${s.rangesDone}/${s.rangesTotal}`,
      String(s.rowsStreamed),
      formatBytes(s.bytesStreamed),
      seconds > 0 ? `${formatBytes(Math.round(s.bytesStreamed / seconds))}/s` : '-',
      formatSeconds(seconds),
      s.sources.join(','),
      s.targets.join(','),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
  for (const s of streams) if (s.error) lines.push(`${s.id}: ${s.error.replace(/\s+/g, ' ')}`);
  return lines.join('\n');
}

export function registerStreams(program: Command): void {
  program
    .command('streams')
    .description('range movements (bootstrap) the asked node runs or ran lately: ranges, rows and bytes done, a percentage')
    .addOption(new Option('--host <host:port>', 'node to ask').default(DEFAULT_HOST))
    .option('--json', 'one JSON document')
    .action(async (o: { host: string; json?: boolean }) => {
      const answer = await getJson<{ streams: StreamView[] }>(o.host, '/v1/streams');
      process.stdout.write(`${o.json ? JSON.stringify(answer, null, 2) : formatStreams(answer.streams)}\n`);
    });
}
