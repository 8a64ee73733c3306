import type { HintsEntry, RingEntry, StatusEntry } from '@chorus/node';
import type { RepairJobStatus } from '@chorus/server';

/** One node of `GET /v1/status`; older nodes may omit the newer fields. */
export type StatusNode = Pick<StatusEntry, 'name' | 'address' | 'hostId' | 'state' | 'dc' | 'rack' | 'tokens' | 'owns' | 'load'> & Partial<StatusEntry>;
export type { RingEntry, HintsEntry };

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(2)} ${units[unit]}`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** The `nodetool status` layout: one block per datacenter. */
export function formatStatus(nodes: StatusNode[]): string {
  const byDc = new Map<string, StatusNode[]>();
  for (const n of nodes) byDc.set(n.dc, [...(byDc.get(n.dc) ?? []), n]);
  const blocks: string[] = [];
  for (const [dc, members] of [...byDc].sort(([a], [b]) => a.localeCompare(b))) {
    // A last column only when there is something to note (a node needs a repair, or its clock is off), so the usual layout stays nodetool's.
    const notes = members.some((n) => notesOf(n) !== '');
    const rows = [['--', 'Name', 'Address', 'Load', 'Tokens', 'Owns', 'Host ID', 'Rack', ...(notes ? ['Notes'] : [])]];
    for (const n of members.sort((a, b) => a.address.localeCompare(b.address, undefined, { numeric: true }))) {
      // A joining or leaving node shows how far its streaming is: UJ 42%.
      const state = n.streaming === undefined ? n.state : `${n.state} ${Math.floor(n.streaming)}%`;
      const row = [state, n.name, n.address, formatBytes(n.load), String(n.tokens), n.owns === null ? '?' : `${(n.owns * 100).toFixed(1)}%`, n.hostId, n.rack];
      if (notes) row.push(notesOf(n));
      rows.push(row);
    }
    blocks.push([`Datacenter: ${dc}`, '='.repeat(12 + dc.length), 'Status=Up/Down', '|/ State=Normal/Leaving/Joining/Moving', table(rows)].join('\n'));
  }
  return blocks.join('\n\n');
}

/** The asked node refused hints for it; its clock is off from the asked node's by more than clock_skew_warn (refused: past max_clock_skew). */
function notesOf(n: StatusNode): string {
  const notes: string[] = [];
  if (n.needsRepair === true) notes.push('needs repair');
  if (n.clockSkewed === true && n.clockSkewMs !== undefined) notes.push(`clock ${n.clockSkewMs >= 0 ? '+' : ''}${n.clockSkewMs} ms${n.clockSkewRefused === true ? ' (refused)' : ''}`);
  return notes.join(', ');
}

export function formatRing(entries: RingEntry[]): string {
  return table([['Address', 'Name', 'DC', 'Rack', 'State', 'Token'], ...entries.map((e) => [e.address, e.name, e.dc, e.rack, e.state, e.token])]);
}

/** Age of a microsecond timestamp, as `3h12m`, `4m05s` or `12s`. */
export function formatAge(micros: number, nowMicros: number): string {
  return formatSeconds((nowMicros - micros) / 1_000_000);
}

/** A duration as `3h12m`, `4m05s` or `12s`. */
export function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/** `chorus hints`: one line per target the asked node holds hints for (or refused hints for). */
export function formatHints(targets: HintsEntry[], nowMicros: number): string {
  if (targets.length === 0) return 'no hints pending';
  const rows = [['Name', 'Address', 'Host ID', 'Hints', 'Bytes', 'Oldest', 'Needs repair']];
  for (const t of targets) {
    rows.push([t.name, t.address, t.hostId, String(t.hints), formatBytes(t.bytes), t.oldestMicros === null ? '-' : formatAge(t.oldestMicros, nowMicros), t.needsRepair ? 'yes' : 'no']);
  }
  return table(rows);
}

/** Ranges a job has finished with, repaired or failed. */
const finishedRanges = (job: RepairJobStatus) => job.rangesDone + job.rangesFailed;
/** Node-supplied text on one line. */
const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim();

/** Seconds a running job still needs at the pace of the ranges finished so far; undefined before the first. */
export function repairEtaSeconds(job: RepairJobStatus): number | undefined {
  if (job.state !== 'running') return 0;
  const finished = finishedRanges(job);
  if (finished === 0) return undefined;
  return Math.round(((job.elapsedMs / finished) * Math.max(0, job.rangesTotal - finished)) / 1000);
}

/** A running job in one line, for `--wait` when stderr is not a terminal. */
export function repairProgressLine(job: RepairJobStatus): string {
  const eta = repairEtaSeconds(job);
  return `repair ${job.id}: ${finishedRanges(job)}/${job.rangesTotal} ranges${job.rangesFailed ? ` (${job.rangesFailed} failed)` : ''}, ${job.rowsStreamed} rows streamed (${formatBytes(job.bytesStreamed)})${eta === undefined ? '' : `, ETA ${formatSeconds(eta)}`}`;
}

/** How a job ended, in one line: a summary when done, the reason and the first failed ranges when not. */
export function repairOutcome(job: RepairJobStatus): string {
  const ranges = `${finishedRanges(job)}/${job.rangesTotal} ranges`;
  if (job.state === 'done') return `repair ${job.id} done: ${ranges}, ${job.rowsCompared} rows compared, ${job.rowsStreamed} rows streamed (${formatBytes(job.bytesStreamed)}) in ${formatSeconds(job.elapsedMs / 1000)}`;
  if (job.state === 'cancelled') return `repair ${job.id} cancelled after ${ranges}`;
  if (job.state === 'running') return repairProgressLine(job);
  const failures = job.failures ?? [];
  const shown = failures.slice(0, 3).map((f) => `; ${f.keyspace} (${f.start},${f.end}]: ${oneLine(f.reason)}`).join('');
  const more = failures.length > 3 ? `; and ${failures.length - 3} more` : '';
  return `repair ${job.id} failed: ${oneLine(job.error ?? `${job.rangesFailed} of ${job.rangesTotal} ranges failed`)}${shown}${more}`;
}

/** `chorus repair status`: the jobs the node runs or keeps, newest first. */
export function formatRepairJobs(jobs: RepairJobStatus[]): string {
  if (jobs.length === 0) return 'no repair jobs';
  const rows = [['ID', 'State', 'Keyspaces', 'Ranges', 'Failed', 'Compared', 'Streamed', 'Bytes', 'Elapsed']];
  for (const j of jobs) {
    rows.push([j.id, j.state, j.keyspaces.join(','), `${finishedRanges(j)}/${j.rangesTotal}`, String(j.rangesFailed), String(j.rowsCompared), String(j.rowsStreamed), formatBytes(j.bytesStreamed), formatSeconds(j.elapsedMs / 1000)]);
  }
  return table(rows);
}

/** `chorus repair status JOB`: one job, field by field, with every failed range. */
export function formatRepairJob(job: RepairJobStatus): string {
  const line = (label: string, value: string) => `${`${label}:`.padEnd(16)}${value}`;
  const lines = [
    line('id', job.id),
    line('state', job.state),
    line('keyspaces', job.keyspaces.join(', ') || '-'),
    line('ranges', `${finishedRanges(job)}/${job.rangesTotal}${job.rangesFailed ? ` (${job.rangesFailed} failed)` : ''}`),
    line('rows compared', String(job.rowsCompared)),
    line('rows streamed', String(job.rowsStreamed)),
    line('bytes streamed', formatBytes(job.bytesStreamed)),
    line('elapsed', formatSeconds(job.elapsedMs / 1000)),
    line('started', new Date(job.startedAtMicros / 1000).toISOString()),
  ];
  if (job.error !== undefined) lines.push(line('error', oneLine(job.error)));
  if (job.failures?.length) lines.push('failed ranges:', ...job.failures.map((f) => `  ${f.keyspace} (${f.start},${f.end}]: ${oneLine(f.reason)}`));
  return lines.join('\n');
}
