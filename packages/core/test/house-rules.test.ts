// The design's dependency rules, as `pnpm lint` checks them: each case builds a
// throwaway package and runs the checker on it.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const CHECKER = fileURLToPath(new URL('../../../.ci/house-rules.mjs', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'house-rules-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let count = 0;
/** A package named `name` declaring `deps`, whose src/x.ts holds `source`. */
function fakePackage(name: string, deps: string[], source: string): string {
  const dir = join(scratch, `p${count++}`);
  mkdirSync(join(dir, 'src'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, dependencies: Object.fromEntries(deps.map((d) => [d, 'workspace:*'])) }));
  writeFileSync(join(dir, 'src', 'x.ts'), source);
  return dir;
}

function lint(dir: string, ...flags: string[]): { status: number | null; stderr: string } {
  const run = spawnSync(process.execPath, [CHECKER, dir, ...flags], { encoding: 'utf8' });
  return { status: run.status, stderr: run.stderr };
}

const importing = (...deps: string[]) => deps.map((d, i) => `import { x${i} } from '${d}';`).join('\n') + '\n';

describe('house rules', () => {
  it('passes a package that imports what it declares, down the layers', () => {
    expect(lint(fakePackage('@chorus/replica', ['@chorus/core', '@chorus/storage'], importing('@chorus/core', '@chorus/storage')))).toEqual({ status: 0, stderr: '' });
    // The coordinator sits above the features: it may use the pure read-repair resolution.
    expect(lint(fakePackage('@chorus/coordinator', ['@chorus/read-repair'], importing('@chorus/read-repair'))).status).toBe(0);
  });

  it('fails a feature package that imports another feature package', () => {
    const result = lint(fakePackage('@chorus/read-repair', ['@chorus/hints'], importing('@chorus/hints')));
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('src/x.ts:1: feature package @chorus/read-repair imports feature package @chorus/hints');
  });

  it('fails the model importing a feature, or anything but core', () => {
    const gossip = lint(fakePackage('@chorus/model', ['@chorus/gossip'], importing('@chorus/gossip')));
    expect(gossip.status).not.toBe(0);
    expect(gossip.stderr).toContain('@chorus/model imports feature package @chorus/gossip');
    expect(gossip.stderr).toContain('the model imports nothing but @chorus/core');
    const ring = lint(fakePackage('@chorus/model', ['@chorus/ring'], importing('@chorus/ring')));
    expect(ring.status).not.toBe(0);
    expect(ring.stderr).toContain('@chorus/model imports @chorus/ring; the model imports nothing but @chorus/core');
  });

  it('fails replica or schema importing a feature', () => {
    for (const name of ['@chorus/replica', '@chorus/schema']) {
      const result = lint(fakePackage(name, ['@chorus/gossip'], `export { membership } from '@chorus/gossip';\n`));
      expect(result.status).not.toBe(0);
      expect(result.stderr).toContain(`${name} imports feature package @chorus/gossip`);
    }
  });

  it('fails an import up the layers, even when declared', () => {
    const result = lint(fakePackage('@chorus/storage', ['@chorus/core', '@chorus/coordinator'], importing('@chorus/core', '@chorus/coordinator')));
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('src/x.ts:2: @chorus/storage (layer 2) imports @chorus/coordinator (layer 5); imports point down the layers');
    expect(result.stderr).not.toContain('x.ts:1');
  });

  it('fails an import the package does not declare, and a package missing from the layer table', () => {
    const undeclared = lint(fakePackage('@chorus/ring', [], importing('@chorus/core')));
    expect(undeclared.status).not.toBe(0);
    expect(undeclared.stderr).toContain('imports @chorus/core, which package.json does not declare');
    const unknown = lint(fakePackage('@chorus/mystery', ['@chorus/core'], importing('@chorus/core')));
    expect(unknown.status).not.toBe(0);
    expect(unknown.stderr).toContain('@chorus/mystery has no layer');
  });

  it('fails globals of time and randomness in cluster logic, where the Env should supply them', () => {
    const dir = fakePackage('@chorus/ring', [], 'export const now = () => Date.now();\nexport const ok = () => Math.random(); // house-rules-allow\n');
    expect(lint(dir).status).toBe(0); // outside packages/ the clock rule does not apply…
    const result = lint(dir, '--as-package'); // …unless asked
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('src/x.ts:1: \\bDate\\.now\\( in cluster logic; take it from the Env');
    expect(result.stderr).not.toContain('x.ts:2');
  });
});
