import { spawn } from 'node:child_process';
import { type ConfigSources, type NodeSettings, loadSettings } from './config.js';
import { ConfigError } from './errors.js';
import { heapFlags, runsWithFlags } from './heap.js';

/** What a node process with some settings starts with: its Node flags and its environment. */
export interface NodeProcessLaunch {
  flags: string[];
  env: NodeJS.ProcessEnv;
}

/**
 * What a node process with these settings must start with, for whoever spawns one (`chorus cluster start`).
 * Settings that do not load give no flags and the caller's environment: the node then says why itself.
 */
export function nodeProcessLaunch(sources: ConfigSources, callerEnv: NodeJS.ProcessEnv): NodeProcessLaunch {
  try {
    const settings = loadSettings(sources);
    return { flags: processFlags(settings), env: nodeProcessEnv(settings, callerEnv) };
  } catch (error) {
    if (error instanceof ConfigError) return { flags: [], env: callerEnv };
    throw error;
  }
}

/** The Node flags of a node process: its heap (`max_heap_size`) and V8's thread pool (`gc_threads`). */
export function processFlags(settings: Pick<NodeSettings, 'max_heap_size' | 'gc_threads'>): string[] {
  return [...heapFlags(settings), `--v8-pool-size=${settings.gc_threads}`];
}

/**
 * The environment of a node process: the caller's, and
 * - `MALLOC_ARENA_MAX=2` unless the caller sets it: two malloc arenas, not eight per core, so the memory
 *   LevelDB's and libuv's threads free goes back to the node rather than sitting in arenas of their own (the
 *   cluster bench's mixed load showed 40–60 MiB less RSS a node; ignored by a libc other than glibc);
 * - `UV_THREADPOOL_SIZE` of `io_threads`, over the caller's: libuv reads it once, when its pool first starts,
 *   which is before any of the node's own code runs.
 */
export function nodeProcessEnv(settings: Pick<NodeSettings, 'io_threads'>, callerEnv: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { MALLOC_ARENA_MAX: '2', ...callerEnv, UV_THREADPOOL_SIZE: String(settings.io_threads) };
}

/** Set in the environment of a node process started again with its flags: it never starts a third. */
const RESTARTED = 'CHORUS_HEAP_FLAGS_APPLIED';

/** Whether this process must run the node in a child of its own: it was started without its flags or its I/O pool's size. */
export function needsRestart(flags: string[], settings: Pick<NodeSettings, 'io_threads'>): boolean {
  const started = runsWithFlags(flags, process.execArgv, process.env.NODE_OPTIONS) && process.env.UV_THREADPOOL_SIZE === String(settings.io_threads);
  return !started && process.env[RESTARTED] === undefined;
}

/**
 * A process cannot change its heap limit or its thread pools once it runs, so a node started without its
 * flags or its environment (`chorus node start` in a terminal, a service manager) runs itself once more with
 * them, as a child that shares its terminal; signals sent to this process go to the child, and this one exits
 * as the child does.
 */
export function runAgainWith(flags: string[], settings: Pick<NodeSettings, 'io_threads'>): Promise<never> {
  // The IPC channel only tells the child that this process is gone (see dieWithParent); nothing is sent on it.
  const child = spawn(process.execPath, [...process.execArgv, ...flags, ...process.argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...nodeProcessEnv(settings, process.env), [RESTARTED]: flags.join(' ') },
  });
  const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, forward(signal));
  return new Promise<never>(() => {
    child.once('error', (error) => {
      process.stderr.write(`chorus node: could not start the node process with ${flags.join(' ')}: ${error.message}\n`);
      process.exit(1);
    });
    child.once('exit', (code, signal) => {
      if (signal) {
        // Die as the child did, so whoever waits on this process sees the same end.
        process.removeAllListeners(signal);
        process.kill(process.pid, signal);
      }
      process.exit(code ?? 1);
    });
  });
}

/**
 * In the child `runAgainWith` started: dies at once when its parent is gone. Whoever holds the parent's pid
 * (a pid file, a test, `kill -9` by hand) must be able to stop the node with it; without this, a SIGKILL of
 * the parent, which it cannot forward, would leave the node running on its port and data directory.
 */
export function dieWithParent(): void {
  const channel = process.channel;
  if (process.env[RESTARTED] === undefined || channel === undefined) return;
  process.once('disconnect', () => process.kill(process.pid, 'SIGKILL'));
  // The channel must not keep the node running once it has stopped.
  channel.unref();
}
