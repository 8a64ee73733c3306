import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { inject } from 'vitest';
import WebSocket from 'ws';
import { isAlive, killNodesUnder, waitGone } from './reaper.mjs';
import { TIME_SCALE, scaled } from './scale.js';

export { TIME_SCALE, scaled };

const run = promisify(execFile);

/** An open client-protocol WebSocket to a node; later socket errors are left to its close. */
export async function openClientSocket(address: string): Promise<WebSocket> {
  const ws = new WebSocket(`ws://${address}/client`, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.on('error', () => undefined);
  return ws;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../../apps/cli/dist/main.js');

/** The global setup's root, which the end of the run sweeps; without the global setup, a root of this process's own. */
const ROOT: string = inject('chorusTestRoot') ?? mkdtempSync(join(tmpdir(), 'chorus-tests-'));

/**
 * Every chorus process a test starts gets this environment. The nodes it starts stop by themselves once
 * this test process or the runner is gone (CHORUS_STOP_WITH_PIDS, read by the node), so even a runner
 * killed with SIGKILL leaves nothing behind.
 */
const RUNNER: number = inject('chorusRunnerPid') ?? process.ppid;
const ENV = { ...process.env, CHORUS_STOP_WITH_PIDS: [process.pid, RUNNER].join(',') };

/** Seconds `cluster start` waits for every node UN, and then again for keyspace default everywhere. */
const START_TIMEOUT_S = Math.ceil(scaled(60_000) / 1000);
const START_CALL_MS = 2 * START_TIMEOUT_S * 1000 + scaled(30_000);

/** What the harness has running; one per process, however many test files import it. */
interface Registry {
  live: Set<TestCluster>;
  destroyed: Set<string>;
  /** chorus commands under way, with the cluster directory they act on. */
  calls: Map<ChildProcess, string | undefined>;
  children: Set<ChildProcess>;
}
const REGISTRY = Symbol.for('chorus.test.harness');
const registry: Registry = ((globalThis as Record<symbol, Registry | undefined>)[REGISTRY] ??= (() => {
  const r: Registry = { live: new Set(), destroyed: new Set(), calls: new Map(), children: new Set() };
  // Synchronous, as 'exit' handlers must be: a test file that ends without its afterAll (a crash, a timeout) still takes its nodes along.
  process.on('exit', () => {
    for (const child of [...r.calls.keys(), ...r.children]) child.kill('SIGKILL');
    for (const cluster of r.live) killNodesUnder(cluster.dir);
  });
  // A worker whose runner was killed would go on running its tests, and starting clusters, for nobody.
  if (RUNNER !== process.pid) {
    setInterval(() => {
      if (!isAlive(RUNNER)) process.exit(1);
    }, 500).unref();
  }
  return r;
})());

/** A fresh directory under the run's root, so the end of the run finds any process started in it. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(ROOT, prefix));
}

export interface StatusNode {
  name: string;
  address: string;
  hostId: string;
  state: string;
  status?: string;
  generation?: number;
}

/**
 * `cluster` commands must name their directory and `cluster start` its ports, so that nothing can fall
 * back to the defaults (.chorus/cluster, ports 7100…) a developer may be running; a destroyed cluster
 * is never started again, whatever a test body that ran past its timeout asks.
 */
function checkedClusterArgs(args: string[]): { args: string[]; dir?: string } {
  if (args[0] !== 'cluster') return { args };
  const at = args.indexOf('--dir');
  const given = at >= 0 ? args[at + 1] : undefined;
  if (!given) throw new Error(`chorus ${args.join(' ')}: tests always pass --dir`);
  const dir = resolve(given);
  if (args[1] !== 'start') return { args, dir };
  if (registry.destroyed.has(dir)) throw new Error(`chorus ${args.join(' ')}: the cluster in ${dir} was destroyed`);
  const extra: string[] = [];
  if (!args.includes('--base-port')) {
    const owner = [...registry.live].find((c) => c.dir === dir && c.basePort > 0);
    if (!owner) throw new Error(`chorus ${args.join(' ')}: tests always pass --base-port`);
    extra.push('--base-port', String(owner.basePort));
  }
  if (!args.includes('--timeout')) extra.push('--timeout', String(START_TIMEOUT_S));
  return { args: [...args, ...extra], dir };
}

/** Runs the chorus command as a user would; rejects with its stderr line on a non-zero exit. */
export async function chorus(args: string[], timeoutMs?: number): Promise<string> {
  const checked = checkedClusterArgs(args);
  const timeout = timeoutMs ?? (args[0] === 'cluster' && args[1] === 'start' ? START_CALL_MS : scaled(90_000));
  const call = run(process.execPath, [CLI, ...checked.args], { timeout, env: ENV, maxBuffer: 64 * 1024 * 1024 });
  registry.calls.set(call.child, checked.dir);
  try {
    const { stdout } = await call;
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`chorus ${checked.args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
  } finally {
    registry.calls.delete(call.child);
  }
}

/**
 * Starts `chorus …` as a child process the harness kills when this test process exits, whatever the test
 * did; with `pidFile` (in a directory from `tempDir`) the end of the run finds it too.
 */
export function spawnChorus(args: string[], options: { pidFile?: string; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const { pidFile, env } = options;
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...ENV, ...env } });
  if (pidFile && child.pid !== undefined) writeFileSync(pidFile, `${child.pid}\n`);
  registry.children.add(child);
  child.once('exit', () => registry.children.delete(child));
  return child;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

/**
 * Linux gives outgoing connections ports from this one up, peers' connections to each other included;
 * a test node's listening port below it cannot be taken by one of those between the check and the listen.
 */
function ephemeralPortsFrom(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 0) return low;
  } catch {}
  return 32_768;
}
const PORTS_FROM = 10_000;
const PORTS_TO = ephemeralPortsFrom() > PORTS_FROM + 5_000 ? Math.min(30_000, ephemeralPortsFrom()) : 30_000;

/** A base port with `count` free ports after it, away from the defaults a developer may be running and from the ephemeral range. */
export async function freeBasePort(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = PORTS_FROM + Math.floor(Math.random() * (PORTS_TO - PORTS_FROM - count));
    const free = await Promise.all(Array.from({ length: count }, (_, i) => portFree(base + i)));
    if (free.every(Boolean)) return base;
  }
  throw new Error('no free ports');
}

/** A cluster in its own temporary directory; `destroy` kills every node and removes the directory. */
export class TestCluster {
  readonly dir = tempDir('cluster-');
  basePort = 0;
  nodes = 0;
  private destroyed = false;

  constructor() {
    registry.live.add(this);
  }

  async start(nodes: number, extra: string[] = []): Promise<void> {
    if (this.destroyed) throw new Error(`the cluster in ${this.dir} was destroyed`);
    this.nodes = nodes;
    for (let attempt = 1; ; attempt++) {
      this.basePort = await freeBasePort(nodes + 1);
      try {
        await chorus(['cluster', 'start', '--nodes', String(nodes), '--dir', this.dir, '--base-port', String(this.basePort), '--json', ...extra]);
        return;
      } catch (error) {
        // Something else may bind one of the ports between the check and the node's listen: start afresh elsewhere.
        if (attempt >= 5 || this.destroyed || !/port \d+ on \S+ is in use/.test((error as Error).message)) throw error;
        console.log(`cluster start: a port near ${this.basePort} was taken; retrying on other ports`);
        await chorus(['cluster', 'stop', '--dir', this.dir]).catch(() => {});
        await waitGone(killNodesUnder(this.dir), this.dir, scaled(10_000));
        rmSync(this.dir, { recursive: true, force: true });
        mkdirSync(this.dir);
      }
    }
  }

  /** `cluster start` on the existing directory: restarts the nodes that are not running, and waits until every node sees every other UN. */
  async restart(): Promise<void> {
    await chorus(['cluster', 'start', '--dir', this.dir, '--nodes', String(this.nodes), '--base-port', String(this.basePort), '--json']);
  }

  /** SIGKILL, through `chorus cluster kill`. */
  async kill(name: string): Promise<void> {
    await chorus(['cluster', 'kill', name, '--dir', this.dir]);
  }

  /** SIGTERM and wait for the exit, through `chorus cluster stop`. */
  async stop(name: string): Promise<void> {
    await chorus(['cluster', 'stop', name, '--dir', this.dir]);
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
    const response = await fetch(`http://${this.address(name)}/v1/status`, { signal: AbortSignal.timeout(scaled(5_000)) });
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
      await sleep(250);
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}`);
  }

  /** Waits until each of `observers` sees every node of its view UN. */
  async waitForAllUp(observers: readonly string[], timeoutMs = scaled(60_000)): Promise<number> {
    return this.waitFor(
      'every node UN everywhere',
      async () => {
        for (const observer of observers) if (!(await this.status(observer)).every((n) => n.state === 'UN')) return false;
        return true;
      },
      timeoutMs,
    );
  }

  /**
   * Polls `check` for `forMs` and throws at the first answer that is false. A check that throws (a status
   * request timing out on a busy machine) observes nothing, but at least one answer must come.
   */
  async holds(what: string, check: () => Promise<boolean>, forMs: number): Promise<void> {
    const until = Date.now() + forMs;
    let answers = 0;
    let lastError = '';
    do {
      try {
        if (!(await check())) throw new Error(`${what} stopped holding`);
        answers++;
      } catch (error) {
        if ((error as Error).message.endsWith('stopped holding')) throw error;
        lastError = (error as Error).message;
      }
      await sleep(250);
    } while (Date.now() < until);
    if (answers === 0) throw new Error(`could not observe whether ${what} for ${forMs} ms (last error: ${lastError})`);
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    registry.destroyed.add(this.dir);
    // A test body that ran past its timeout may be in the middle of a `cluster start` here.
    for (const [child, dir] of registry.calls) if (dir === this.dir) child.kill('SIGKILL');
    if (existsSync(join(this.dir, 'cluster.json'))) await chorus(['cluster', 'stop', '--dir', this.dir], scaled(60_000)).catch((error: Error) => console.warn(error.message));
    const left = killNodesUnder(this.dir);
    if (!(await waitGone(left, this.dir, scaled(10_000)))) console.warn(`cluster in ${this.dir}: pids ${left.join(' ')} still running after SIGKILL`);
    registry.live.delete(this);
    rmSync(this.dir, { recursive: true, force: true, maxRetries: 5 });
  }
}

export async function stateOf(cluster: TestCluster, observer: string, target: string): Promise<StatusNode | undefined> {
  return (await cluster.status(observer)).find((n) => n.name === target);
}
