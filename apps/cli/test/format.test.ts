import { describe, expect, it } from 'vitest';
import { formatBytes, formatHints, formatStatus } from '../src/format.js';
import { errorLine } from '../src/http.js';

describe('chorus output', () => {
  it('prints status like nodetool: a block per datacenter, state first', () => {
    const text = formatStatus([
      { name: 'n2', address: '127.0.0.1:7101', hostId: 'b', state: 'DN', dc: 'dc1', rack: 'r1', tokens: 16, owns: 0.5, load: 2048 },
      { name: 'n1', address: '127.0.0.1:7100', hostId: 'a', state: 'UN', dc: 'dc1', rack: 'r1', tokens: 16, owns: 0.5, load: 10 },
      { name: 'n3', address: '127.0.0.1:7102', hostId: 'c', state: 'UJ', dc: 'dc2', rack: 'r1', tokens: 16, owns: null, load: 0 },
    ]);
    expect(text).toContain('Datacenter: dc1');
    expect(text).toContain('Datacenter: dc2');
    const lines = text.split('\n');
    const n1 = lines.findIndex((l) => l.startsWith('UN  n1'));
    const n2 = lines.findIndex((l) => l.startsWith('DN  n2'));
    expect(n1).toBeGreaterThan(0);
    expect(n2).toBeGreaterThan(n1);
    expect(lines[n2]).toContain('2.00 KiB');
    expect(lines[n2]).toContain('50.0%');
    expect(lines.find((l) => l.startsWith('UJ'))).toContain('?');
  });

  it('marks a node that needs a repair in a last column, and only then adds it', () => {
    const nodes = [
      { name: 'n1', address: '127.0.0.1:7100', hostId: 'a', state: 'UN', dc: 'dc1', rack: 'r1', tokens: 16, owns: 0.5, load: 10, needsRepair: false },
      { name: 'n2', address: '127.0.0.1:7101', hostId: 'b', state: 'DN', dc: 'dc1', rack: 'r1', tokens: 16, owns: 0.5, load: 10, needsRepair: true },
    ];
    const marked = formatStatus(nodes).split('\n');
    expect(marked.find((l) => l.startsWith('--'))).toMatch(/Rack\s+Notes$/);
    expect(marked.find((l) => l.startsWith('DN  n2'))).toMatch(/needs repair$/);
    expect(marked.find((l) => l.startsWith('UN  n1'))).not.toMatch(/needs repair/);
    expect(formatStatus(nodes.map((n) => ({ ...n, needsRepair: false })))).not.toContain('Notes');
  });

  it('notes a node whose clock is past clock_skew_warn from the asked node, with the offset, and whether its timestamps are refused', () => {
    const base = { dc: 'dc1', rack: 'r1', tokens: 16, owns: 0.5, load: 10, needsRepair: false };
    const lines = formatStatus([
      { ...base, name: 'n1', address: '127.0.0.1:7100', hostId: 'a', state: 'UN' },
      { ...base, name: 'n2', address: '127.0.0.1:7101', hostId: 'b', state: 'UN', clockSkewMs: 35, clockSkewed: true, clockSkewRefused: false },
      { ...base, name: 'n3', address: '127.0.0.1:7102', hostId: 'c', state: 'UN', clockSkewMs: -1800, clockSkewed: true, clockSkewRefused: true, needsRepair: true },
      { ...base, name: 'n4', address: '127.0.0.1:7103', hostId: 'd', state: 'UN', clockSkewMs: 3, clockSkewed: false, clockSkewRefused: false },
    ]).split('\n');
    expect(lines.find((l) => l.startsWith('--'))).toMatch(/Rack\s+Notes$/);
    expect(lines.find((l) => l.startsWith('UN  n2'))).toMatch(/clock \+35 ms$/);
    expect(lines.find((l) => l.startsWith('UN  n3'))).toMatch(/needs repair, clock -1800 ms \(refused\)$/);
    expect(lines.find((l) => l.startsWith('UN  n4'))).toMatch(/ r1$/);
  });

  it('prints hints per target with the age of the oldest', () => {
    const now = 1_700_000_000_000_000;
    const text = formatHints([{ hostId: 'b', name: 'n2', address: '127.0.0.1:7101', hints: 1200, bytes: 3 * 1024 * 1024, oldestMicros: now - 3_725_000_000, needsRepair: true }], now);
    const line = text.split('\n')[1]!;
    expect(line).toMatch(/^n2\s+127\.0\.0\.1:7101\s+b\s+1200\s+3\.00 MiB\s+1h02m\s+yes$/);
    expect(formatHints([], now)).toBe('no hints pending');
  });

  it('formats sizes and turns a JSON error answer into one line with its numbers', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(5 * 1024 * 1024)).toBe('5.00 MiB');
    const body = Buffer.from(JSON.stringify({ error: 'Unavailable', message: 'not enough replicas', consistency: 'QUORUM', required: 2, alive: 1 }));
    const line = errorLine({ status: 503, headers: new Headers(), body, json: () => JSON.parse(body.toString()) });
    expect(line).toBe('Unavailable: not enough replicas (consistency=QUORUM required=2 alive=1)');
  });
});
