import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tokenOf } from '@chorus/ring';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenOrderedKey } from '../src/ideal-node.js';
import {
  type IdealCluster,
  type Target,
  closedLoop,
  cpuSeconds,
  echoTarget,
  formatTable,
  freePorts,
  idealTarget,
  newSystem,
  openLoop,
  runWorkload,
  startIdealCluster,
  watch,
} from '../src/index.js';

// The benchmark's pieces for a second or two on loopback, so they keep working: no figure is asserted.
describe('the cluster benchmark pipeline', () => {
  const dir = mkdtempSync(join(tmpdir(), 'chorus-bench-test-'));
  const value = new Uint8Array(100).fill(7);
  let cluster: IdealCluster;
  let target: Target;

  beforeAll(async () => {
    cluster = await startIdealCluster({ ports: await freePorts(3), dir });
    target = await idealTarget(cluster.hosts);
  });

  afterAll(async () => {
    await target?.close();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('acknowledges QUORUM writes from a closed loop, and reads every key back at QUORUM and ALL', async () => {
    let written = 0;
    const writes = await closedLoop({ target, next: () => ({ read: false, key: `k${written++}` }), consistency: 'QUORUM', value, seconds: 0.5, warmupSeconds: 0.1, concurrency: 16 });
    expect(writes.errors).toBe(0);
    expect(writes.ops).toBeGreaterThan(0);
    expect(writes.latencyMs.p99).toBeGreaterThan(0);

    for (const cl of ['ONE', 'QUORUM', 'ALL']) {
      let read = 0;
      const reads = await closedLoop({ target, next: () => ({ read: true, key: `k${read++ % written}` }), consistency: cl, value, seconds: 0.3, warmupSeconds: 0, concurrency: 8 });
      expect(reads.errors).toBe(0);
      expect(reads.ops).toBeGreaterThan(0);
      expect(reads.notFound).toBe(0);
    }
    expect(await target.get('never-written', 'ALL')).toBe(false);
  });

  it('issues open-loop requests at a rate and times them', async () => {
    let n = 0;
    const result = await openLoop({ target, next: () => ({ read: false, key: `o${n++}` }), consistency: 'ALL', value, seconds: 0.5, warmupSeconds: 0.1, rate: 200 });
    expect(result.errors).toBe(0);
    expect(result.ops).toBeGreaterThan(0);
    expect(result.shed).toBe(0);
  });

  it('measures a bare ws round trip', async () => {
    const echo = await echoTarget(cluster.hosts[0]!);
    try {
      const result = await closedLoop({ target: echo, next: () => ({ read: false, key: 'e' }), consistency: 'QUORUM', value, seconds: 0.3, warmupSeconds: 0, concurrency: 1 });
      expect(result.ops).toBeGreaterThan(0);
    } finally {
      await echo.close();
    }
  });

  it('runs a workload on two systems and reports both, with each process’s CPU and RSS', async () => {
    expect(cpuSeconds(cluster.processes[0]!.pid)).toBeGreaterThan(0);
    const usage = watch(cluster.processes);
    const system = () => newSystem(target, cluster.processes);
    const report = await runWorkload('write-quorum-128', { chorus: system(), ideal: system(), seconds: 0.3, warmupSeconds: 0.1, value, done: new Map(), progress: () => {} });
    expect(report.chorus.ops).toBeGreaterThan(0);
    expect(report.ideal?.ops).toBeGreaterThan(0);
    expect(report.chorus.processes.every((p) => (p.peakRssMiB ?? 0) >= p.rssMiB)).toBe(true);
    // The anonymous part is part of the RSS.
    expect(report.chorus.processes.every((p) => (p.peakAnonMiB ?? 0) > 0 && (p.peakAnonMiB ?? 0) <= (p.peakRssMiB ?? 0))).toBe(true);
    expect(report.ratio).toBeGreaterThan(0);
    expect(report.chorus.processes.map((p) => p.name)).toEqual(['i1', 'i2', 'i3', 'bench']);
    expect(report.chorus.processes.every((p) => p.rssMiB > 0)).toBe(true);
    expect(usage().map((p) => p.name)).toEqual(['i1', 'i2', 'i3']);
    // The ideal client takes the coordinators in turn: every node gets a share.
    expect(Object.keys(report.ideal?.coordinated ?? {}).sort()).toEqual([...cluster.hosts].sort());
    const table = formatTable([report]);
    expect(table).toContain('write-quorum-128');
    expect(JSON.parse(JSON.stringify(report)).workload).toBe('write-quorum-128');
  });
});

describe('where the ideal pipeline stores a row', () => {
  it('in token order, as a ring places rows, by default', () => {
    const keys = Array.from({ length: 500 }, (_, i) => `w:${i}`);
    const byStoredKey = [...keys].sort((a, b) => Buffer.compare(tokenOrderedKey(a), tokenOrderedKey(b)));
    const byToken = [...keys].sort((a, b) => (tokenOf(a) < tokenOf(b) ? -1 : tokenOf(a) > tokenOf(b) ? 1 : 0));
    expect(byStoredKey).toEqual(byToken);
    // Negative and positive tokens both occur, so the sign bit's flip is what orders them.
    expect(byToken.some((k) => tokenOf(k) < 0n) && byToken.some((k) => tokenOf(k) > 0n)).toBe(true);
  });

  it('under the client\'s keys with plainKeys, answering the same reads', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chorus-bench-test-'));
    const cluster = await startIdealCluster({ ports: await freePorts(3), dir, plainKeys: true });
    const target = await idealTarget(cluster.hosts);
    try {
      await target.put('k1', new Uint8Array(100).fill(3), 'ALL');
      expect(await target.get('k1', 'ALL')).toBe(true);
      expect(await target.get('k2', 'QUORUM')).toBe(false);
    } finally {
      await target.close();
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
