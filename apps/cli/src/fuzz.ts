#!/usr/bin/env node
/**
 * `pnpm fuzz --frames N --seed S [--host H]`: feeds a live node mutated and
 * random peer frames (over a connection that passed the handshake with the
 * cluster secret), stranger handshakes, client-protocol messages and HTTP
 * requests, then prints how many were sent, the ERROR and FATAL lines the
 * node logged, and crashes (the node process exiting), which must be 0.
 * Without --host it starts a one-node cluster of its own. Exits 1 when the
 * node crashed or logged an error.
 */
import { Command } from 'commander';
import { runFuzz } from './fuzz-run.js';

const o = new Command('fuzz')
  .requiredOption('--frames <n>', 'inputs to send (peer frames, handshake messages, client requests, HTTP requests)', (v) => Number(v))
  .option('--seed <n>', 'seed of the inputs: the same seed sends the same inputs', (v) => Number(v), 1)
  .option('--host <host:port>', 'a live node to fuzz (default: start one)')
  .option('--dir <dir>', "the node's cluster directory, for its secret, log and pid", '.chorus/cluster')
  .option('--secret <secret>', 'the cluster secret, when the directory does not hold it')
  .option('--cluster-name <name>', 'the cluster name', 'chorus')
  .option('--base-port <port>', 'port of the node the fuzzer starts', (v) => Number(v), 7450)
  .option('--keep', 'leave the node the fuzzer started running, with its directory')
  .parse()
  .opts<{ frames: number; seed: number; host?: string; dir: string; secret?: string; clusterName: string; basePort: number; keep?: boolean }>();

const log = (line: string) => process.stderr.write(`${line}\n`);
try {
  const report = await runFuzz({ ...o, log });
  log(
    `frames sent ${report.frames} (peer ${report.sent.peer}, handshake ${report.sent.handshake}, client ${report.sent.client}, http ${report.sent.http}, raw ${report.sent.rawHttp}) in ${(report.elapsedMs / 1000).toFixed(1)} s (${report.framesPerSec}/s)`,
  );
  log(`node errors logged ${report.nodeErrors ?? 'unknown (no log)'}, fatal ${report.nodeFatal ?? 'unknown'}, crashes ${report.crashes}`);
  for (const sample of report.errorSamples) log(`  error: ${sample}`);
  log(`inputs sha256 ${report.inputsSha256}`);
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exitCode = report.crashes > 0 || (report.nodeErrors ?? 0) > 0 || (report.nodeFatal ?? 0) > 0 ? 1 : 0;
} catch (error) {
  log(`fuzz: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 2;
}
