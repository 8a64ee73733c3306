import type { RingEntry, StatusEntry } from '@chorus/node';

/** One node of `GET /v1/status`; older nodes may omit the newer fields. */
export type StatusNode = Pick<StatusEntry, 'name' | 'address' | 'hostId' | 'state' | 'dc' | 'rack' | 'tokens' | 'owns' | 'load'> & Partial<StatusEntry>;
export type { RingEntry };

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
    const rows = [['--', 'Name', 'Address', 'Load', 'Tokens', 'Owns', 'Host ID', 'Rack']];
    for (const n of members.sort((a, b) => a.address.localeCompare(b.address, undefined, { numeric: true }))) {
      rows.push([n.state, n.name, n.address, formatBytes(n.load), String(n.tokens), n.owns === null ? '?' : `${(n.owns * 100).toFixed(1)}%`, n.hostId, n.rack]);
    }
    blocks.push([`Datacenter: ${dc}`, '='.repeat(12 + dc.length), 'Status=Up/Down', '|/ State=Normal/Leaving/Joining/Moving', table(rows)].join('\n'));
  }
  return blocks.join('\n\n');
}

export function formatRing(entries: RingEntry[]): string {
  return table([['Address', 'Name', 'DC', 'Rack', 'State', 'Token'], ...entries.map((e) => [e.address, e.name, e.dc, e.rack, e.state, e.token])]);
}
