import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULTS } from '@chorus/server';
import { nodeProcessEnv } from '@chorus/server/node-process';

/** The built entry of one ideal node; the same path from `src` (tests) and from `dist`. */
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'ideal-main.js');

export interface IdealCluster {
  /** host:port of each node, for the client. */
  hosts: string[];
  processes: Array<{ name: string; pid: number }>;
  stop(): Promise<void>;
}

/** Starts one ideal node per port as a child process; resolves once every node holds its peer links. */
export async function startIdealCluster(o: { ports: number[]; dir: string; durable?: boolean; plainKeys?: boolean; timeoutMs?: number }): Promise<IdealCluster> {
  const children: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
            child.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  };
  try {
    await Promise.all(
      o.ports.map((port, i) => {
        const dir = join(o.dir, `i${i + 1}`);
        mkdirSync(dir, { recursive: true });
        const args = [`--v8-pool-size=${DEFAULTS.gc_threads}`, MAIN, '--port', String(port), '--ports', o.ports.join(','), '--dir', dir, ...(o.durable ? ['--durable'] : []), ...(o.plainKeys ? ['--plain-keys'] : [])];
        // The thread pools and malloc arenas a Chorus node gets by default: the same libraries, tuned alike.
        const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'], env: nodeProcessEnv(DEFAULTS, process.env) });
        children.push(child);
        return new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`ideal node on port ${port} not ready after ${o.timeoutMs ?? 30_000} ms`)), o.timeoutMs ?? 30_000);
          let seen = '';
          child.stdout!.on('data', (chunk: Buffer) => {
            seen += chunk.toString('utf8');
            if (seen.includes('ready\n')) {
              clearTimeout(timer);
              resolve();
            }
          });
          child.once('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`ideal node on port ${port} exited with code ${code}`));
          });
        });
      }),
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    hosts: o.ports.map((p) => `127.0.0.1:${p}`),
    processes: children.map((c, i) => ({ name: `i${i + 1}`, pid: c.pid! })),
    stop,
  };
}
