// Finding and killing the node processes of a test run by their pid files, shared by the harness and the
// global setup; run as a script, the watcher that cleans up after a runner killed too hard to do it itself.
// Plain JavaScript so that Node runs it directly, outside vitest.
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HAS_PROC = existsSync('/proc/self/cmdline');

/** Whether `pid` is a live process: one we may not signal is, a zombie (dead, not yet reaped) is not. */
export function isAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return error.code === 'EPERM';
  }
  if (!HAS_PROC) return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Whether `pid` is still a process started with `dir` in its command line. A pid file outlives a node that
 * died on its own, and the pid may since name something else; a zombie's command line is empty, so a killed
 * node nobody has reaped yet counts as gone.
 */
export function runsIn(pid, dir) {
  if (!HAS_PROC) return isAlive(pid);
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return false;
  }
}

/** Pids named by the `*.pid` files in `dir` and the directories below it (two levels), still running there. */
export function nodePidsUnder(dir) {
  const pids = [];
  const walk = (at, depth) => {
    let entries;
    try {
      entries = readdirSync(at, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(at, entry.name);
      if (entry.isDirectory() && depth > 0) walk(path, depth - 1);
      else if (entry.isFile() && entry.name.endsWith('.pid')) {
        let pid = NaN;
        try {
          pid = Number(readFileSync(path, 'utf8').trim());
        } catch {}
        if (Number.isInteger(pid) && pid > 0 && runsIn(pid, dir)) pids.push(pid);
      }
    }
  };
  walk(dir, 2);
  return pids;
}

/** SIGKILLs every node under `dir` (SIGSTOPped ones too) and returns their pids; synchronous, so it works in an 'exit' handler. */
export function killNodesUnder(dir) {
  const pids = nodePidsUnder(dir);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  return pids;
}

/** Resolves true once none of `pids` runs in `dir` any more, false after `timeoutMs`. */
export async function waitGone(pids, dir, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (pids.some((pid) => runsIn(pid, dir))) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

// node reaper.mjs <runner pid> <root>: exits once <root> is gone (the run cleaned up); if the runner dies
// first, kills every node under <root> and removes it.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const runner = Number(process.argv[2]);
  const root = process.argv[3];
  if (!Number.isInteger(runner) || runner <= 0 || !root) {
    process.stderr.write('usage: reaper.mjs <runner pid> <root directory>\n');
    process.exit(2);
  }
  const timer = setInterval(async () => {
    if (!existsSync(root)) {
      clearInterval(timer);
      return;
    }
    if (isAlive(runner)) return;
    clearInterval(timer);
    // A worker the runner left behind may still be writing pid files for a moment: sweep a few times.
    for (let round = 0; round < 5; round++) {
      killNodesUnder(root);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    rmSync(root, { recursive: true, force: true });
  }, 500);
}
