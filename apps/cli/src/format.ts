import type { HintsEntry, RingEntry, StatusEntry } from '@chorus/node';

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
      const row = [n.state, n.name, n.address, formatBytes(n.load), String(n.tokens), n.owns === null ? '?' : `${(n.owns * 100).toFixed(1)}%`, n.hostId, n.rack];
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
  const s = Math.max(0, Math.floor((nowMicros - micros) / 1_000_000));
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
