import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { MeasuredProfiles } from '../src/profiles.js';

const PRELOAD = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'profile-on-signal.js');

describe('CPU profiles of the measured phases (--cpu-prof)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'chorus-bench-profiles-'));
  let child: ChildProcess | undefined;

  afterEach(() => {
    child?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('profiles a process between two signals and names the profile after the phase', { timeout: 30_000 }, async () => {
    // A busy process with the bench's preload: it says so once the preload has installed its signal handler.
    child = spawn(process.execPath, ['--import', PRELOAD, '-e', 'console.log("ready"); setInterval(() => { for (let i = 0; i < 1e5; i++) Math.sqrt(i); }, 5);'], {
      env: { ...process.env, CHORUS_BENCH_PROFILE_DIR: dir },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child!.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
      child!.on('exit', (code) => reject(new Error(`the profiled process exited (${code})`)));
    });
    const profiles = new MeasuredProfiles(dir);
    const nodes = [{ name: 'n1', pid: child.pid! }];
    for (const phase of ['write-quorum-1024 chorus', 'read-quorum-hot chorus']) {
      profiles.start(nodes);
      await new Promise((resolve) => setTimeout(resolve, 300));
      await profiles.stop(nodes, phase);
    }
    expect(readdirSync(dir).sort()).toEqual(['01-write-quorum-1024-chorus.n1.cpuprofile', '02-read-quorum-hot-chorus.n1.cpuprofile']);
    const profile = JSON.parse(readFileSync(join(dir, '02-read-quorum-hot-chorus.n1.cpuprofile'), 'utf8')) as { nodes: unknown[]; samples: number[] };
    expect(profile.nodes.length).toBeGreaterThan(0);
    expect(profile.samples.length).toBeGreaterThan(0);
  });
});
