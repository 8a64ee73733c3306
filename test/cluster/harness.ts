import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * One knob for every deadline and timeout of the real-process tests: a slow or busy machine
 * sets CHORUS_TEST_TIME_SCALE (e.g. 3) and every wait grows by that factor.
 */
export const TIME_SCALE = Math.max(1, Number(process.env.CHORUS_TEST_TIME_SCALE ?? 1) || 1);
export function scaled(ms: number): number {
  return Math.round(ms * TIME_SCALE);
}
export const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../../apps/cli/dist/main.js');

export interface StatusNode {
  name: string;
  address: string;
  hostId: string;
  state: string;
  generation?: number;
}

/** Runs the chorus command as a user would; rejects with its stderr line on a non-zero exit. */
export async function chorus(args: string[], timeoutMs = 90_000): Promise<string> {
  try {
    const { stdout } = await run(process.execPath, [CLI, ...args], { timeout: timeoutMs });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`chorus ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

/** A base port with `count` free ports after it, away from the defaults a developer may be running. */
export async function freeBasePort(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    const free = await Promise.all(Array.from({ length: count }, (_, i) => portFree(base + i)));
    if (free.every(Boolean)) return base;
  }
  throw new Error('no free ports');
}

/** A cluster in its own temporary directory; `destroy` kills every node and removes the directory. */
export class TestCluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'chorus-cluster-'));
  basePort = 0;

  async start(nodes: number, extra: string[] = []): Promise<void> {
    this.basePort = await freeBasePort(nodes + 1);
    await chorus(['cluster', 'start', '--nodes', String(nodes), '--dir', this.dir, '--base-port', String(this.basePort), '--json', ...extra]);
  }

  address(name: string): string {
    return `127.0.0.1:${this.basePort + Number(name.slice(1)) - 1}`;
  }

  pid(name: string): number {
    return Number(readFileSync(join(this.dir, `${name}.pid`), 'utf8'));
  }

  log(name: string): string {
    return readFileSync(join(this.dir, `${name}.log`), 'utf8');
  }

  async status(name: string): Promise<StatusNode[]> {
    const response = await fetch(`http://${this.address(name)}/v1/status`, { signal: AbortSignal.timeout(5_000) });
    return ((await response.json()) as { nodes: StatusNode[] }).nodes;
  }

  /** Polls until `check` holds, returning the milliseconds it took; throws with the last view after `timeoutMs`. */
  async waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
    const started = Date.now();
    let lastError = '';
    while (Date.now() - started < timeoutMs) {
      try {
        if (await check()) return Date.now() - started;
      } catch (error) {
        lastError = (error as Error).message;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}`);
  }

  async destroy(): Promise<void> {
    await chorus(['cluster', 'stop', '--dir', this.dir], 60_000).catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function stateOf(cluster: TestCluster, observer: string, target: string): Promise<StatusNode | undefined> {
  return (await cluster.status(observer)).find((n) => n.name === target);
}
