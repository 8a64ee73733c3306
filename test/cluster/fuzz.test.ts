import { execFile } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, scaled } from './harness.js';

const FUZZ = resolve(dirname(fileURLToPath(import.meta.url)), '../../apps/cli/dist/fuzz.js');
const run = promisify(execFile);

describe('pnpm fuzz against a live node', () => {
  const cluster = new TestCluster();
  beforeAll(() => cluster.start(1));
  afterAll(() => cluster.destroy());

  it('sends a few thousand mutated peer frames, handshakes, client requests and HTTP requests: the node logs no error and does not crash', async () => {
    const { stdout, stderr } = await run(process.execPath, [FUZZ, '--frames', '3000', '--seed', '11', '--host', cluster.address('n1'), '--dir', cluster.dir], { timeout: scaled(180_000) }).catch(
      (error: { stdout?: string; stderr?: string; message: string }) => {
        // Exit 1 is a finding: its report is on stdout, its errors on stderr.
        if (error.stdout) return { stdout: error.stdout, stderr: error.stderr ?? '' };
        throw error;
      },
    );
    const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as { frames: number; sent: Record<string, number>; nodeErrors: number; nodeFatal: number; crashes: number; errorSamples: string[] };
    console.log(stderr.trim().split('\n').slice(-4).join('\n'));
    expect(report.frames).toBeGreaterThanOrEqual(3000);
    for (const part of ['peer', 'handshake', 'client', 'http']) expect(report.sent[part], part).toBeGreaterThan(0);
    expect(report.errorSamples).toEqual([]);
    expect(report.nodeErrors).toBe(0);
    expect(report.nodeFatal).toBe(0);
    expect(report.crashes).toBe(0);
    // Fuzzed gossip may have added made-up members; the node itself still serves.
    expect((await cluster.status('n1')).find((n) => n.name === 'n1')?.state).toBe('UN');
  });
});
