import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const main = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** Runs the built command; nothing listens on port 1, so bench fails at once with its one-line reason. */
function chorus(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [main, ...args], (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stdout, stderr }));
  });
}

const unreachable = /^chorus: cannot reach the cluster at (\S+): /;

describe('chorus bench', () => {
  it('takes --host as a comma list', async () => {
    const r = await chorus(['bench', '--host', '127.0.0.1:1, 127.0.0.1:2', '--ops', '1', '--json']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]!.match(unreachable)?.[1]).toBe('127.0.0.1:1,127.0.0.1:2');
  });

  it('still takes the deprecated --hosts, with a one-line warning on stderr', async () => {
    const r = await chorus(['bench', '--hosts', '127.0.0.1:1,127.0.0.1:2', '--ops', '1', '--json']);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe('chorus: --hosts is deprecated; use --host (it takes the same comma list)');
    expect(lines[1]!.match(unreachable)?.[1]).toBe('127.0.0.1:1,127.0.0.1:2');
  });

  it('prefers --host when both are given', async () => {
    const r = await chorus(['bench', '--hosts', '127.0.0.1:2', '--host', '127.0.0.1:1', '--ops', '1', '--json']);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toMatch(/--hosts is deprecated/);
    expect(lines[1]!.match(unreachable)?.[1]).toBe('127.0.0.1:1');
  });
});
