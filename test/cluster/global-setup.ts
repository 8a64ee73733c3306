import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { killNodesUnder, waitGone } from './reaper.mjs';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Every directory a test of this run starts processes in lies under it, so the end of the run finds them all. */
    chorusTestRoot: string;
    /** The runner's pid: the nodes a test starts stop by themselves once it is gone. */
    chorusRunnerPid: number;
  }
}

const REAPER = join(dirname(fileURLToPath(import.meta.url)), 'reaper.mjs');

function removeRoot(root: string): void {
  try {
    rmSync(root, { recursive: true, force: true, maxRetries: 5 });
  } catch (error) {
    console.warn(`cluster tests: could not remove ${root}: ${(error as Error).message}`);
  }
}

/**
 * Nodes run detached, so nothing ties them to the test run: whatever the tests did, everything under the
 * run's root is killed when the run ends, however it ends.
 */
export default function setup(project: TestProject): () => Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'chorus-tests-'));
  project.provide('chorusTestRoot', root);
  project.provide('chorusRunnerPid', process.pid);
  // A runner killed with SIGKILL runs neither the teardown nor 'exit' handlers; this watcher outlives it.
  spawn(process.execPath, [REAPER, String(process.pid), root], { detached: true, stdio: 'ignore' }).unref();
  // vitest answers SIGINT and SIGTERM with process.exit, which skips the teardown but runs 'exit' handlers.
  const onExit = () => {
    killNodesUnder(root);
    removeRoot(root);
  };
  process.on('exit', onExit);
  return async () => {
    process.off('exit', onExit);
    const leftovers = killNodesUnder(root);
    if (leftovers.length > 0) console.warn(`cluster tests: killed ${leftovers.length} node process(es) left running: ${leftovers.join(' ')}`);
    await waitGone(leftovers, root, 10_000);
    removeRoot(root);
  };
}
