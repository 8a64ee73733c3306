#!/usr/bin/env node
/**
 * `pnpm bench:repair`: what a repair costs when little differs. A 3-node
 * cluster (rf 3, hinted handoff off) is loaded with ROWS rows at ALL; one node
 * is stopped while DIFF more rows are written at QUORUM, so its replica
 * misses exactly those; it is restarted and a repair of keyspace `default` is
 * run from another node. Prints the repair's wall time, rows and bytes
 * streamed against the rows that truly differ, then the wall time of a second
 * repair when nothing differs. Figures, not assertions: the machine is shared.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect } from '@chorus/client';
import { Command } from 'commander';
import { startCluster, stopCluster } from './cluster.js';
import { CliError, errorLine, getJson, request } from './http.js';

interface Job {
  id: string;
  state: string;
  rangesTotal: number;
  rowsCompared: number;
  rowsStreamed: number;
  bytesStreamed: number;
  elapsedMs: number;
  error?: string;
}

const o = new Command('bench:repair')
  .option('--rows <n>', 'rows loaded before the divergence', (v) => Number(v), 1_000_000)
  .option('--diff <n>', 'rows one replica misses', (v) => Number(v), 1_000)
  .option('--base-port <port>', 'port of n1', (v) => Number(v), 7400)
  .option('--concurrency <n>', 'writes in flight while loading', (v) => Number(v), 512)
  .option('--keep', 'leave the cluster running and its directory in place')
  .parse()
  .opts<{ rows: number; diff: number; basePort: number; concurrency: number; keep?: boolean }>();

const dir = mkdtempSync(join(tmpdir(), 'chorus-bench-repair-'));
const log = (line: string) => process.stderr.write(`${line}\n`);
const hosts = [0, 1, 2].map((i) => `127.0.0.1:${o.basePort + i}`);
const value = 'v'.repeat(100);

async function load(from: number, to: number, consistency: string): Promise<number> {
  const client = connect(hosts.filter((_, i) => consistency === 'ALL' || i !== 2), { maxInFlightPerConnection: Math.max(1024, o.concurrency) });
  const started = performance.now();
  let next = from;
  const worker = async () => {
    for (let i = next++; i < to; i = next++) await client.put('default', `row-${i}`, value, { consistency });
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  await client.close();
  return (to - from) / ((performance.now() - started) / 1000);
}

async function repair(host: string): Promise<{ job: Job; wallMs: number }> {
  const started = performance.now();
  const answer = await request(host, 'POST', '/v1/repair', { body: JSON.stringify({ keyspace: 'default' }) });
  if (answer.status !== 200) throw new CliError(errorLine(answer));
  const { id } = answer.json<{ id: string }>();
  for (;;) {
    const job = await getJson<Job>(host, `/v1/repair/${id}`);
    if (job.state !== 'running') {
      if (job.state !== 'done') throw new Error(`repair ${id} ended ${job.state}: ${job.error ?? ''}`);
      return { job, wallMs: performance.now() - started };
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

try {
  await startCluster({ nodes: 3, dir, basePort: o.basePort, rf: 3, set: ['hinted_handoff_enabled=false', 'commit_sync=none'], log });
  log(`loading ${o.rows} rows at ALL…`);
  const loadRate = await load(0, o.rows, 'ALL');
  log(`loaded at ${Math.round(loadRate)} rows/s; stopping n3 and writing ${o.diff} rows it misses`);
  await stopCluster(dir, 'n3', log);
  await load(o.rows, o.rows + o.diff, 'QUORUM');
  await startCluster({ dir, log });
  const diverged = await repair(hosts[0]!);
  const converged = await repair(hosts[1]!);
  const figures = {
    bench: 'repair',
    rows: o.rows,
    differing: o.diff,
    loadRowsPerSec: Math.round(loadRate),
    repairWallMs: Math.round(diverged.wallMs),
    ranges: diverged.job.rangesTotal,
    rowsCompared: diverged.job.rowsCompared,
    rowsStreamed: diverged.job.rowsStreamed,
    streamedPerDiffering: Number((diverged.job.rowsStreamed / o.diff).toFixed(3)),
    bytesStreamed: diverged.job.bytesStreamed,
    noDiffRepairWallMs: Math.round(converged.wallMs),
    noDiffRowsStreamed: converged.job.rowsStreamed,
  };
  log(`repair of ${o.rows + o.diff} rows with ${o.diff} missing on one replica: ${figures.repairWallMs} ms, ${figures.rowsStreamed} rows streamed (${figures.streamedPerDiffering}× the rows that differ), ${figures.bytesStreamed} bytes`);
  log(`repair when nothing differs: ${figures.noDiffRepairWallMs} ms, ${figures.noDiffRowsStreamed} rows streamed`);
  process.stdout.write(`${JSON.stringify(figures)}\n`);
} finally {
  if (!o.keep) {
    await stopCluster(dir, undefined, log).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}
