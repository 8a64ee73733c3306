import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = fileURLToPath(new URL('../src/', import.meta.url));

/** Packages a module and the modules it imports at load (not `import type`, not `await import(…)`) bring in. */
function loadedPackages(file: string, seen = new Set<string>(), packages = new Set<string>()): Set<string> {
  if (seen.has(file)) return packages;
  seen.add(file);
  for (const [, specifier] of readFileSync(`${src}${file}`, 'utf8').matchAll(/^import (?!type )[^'"]*from '([^']+)';/gm)) {
    if (specifier!.startsWith('./')) loadedPackages(specifier!.slice(2).replace(/\.js$/, '.ts'), seen, packages);
    else packages.add(specifier!);
  }
  return packages;
}

describe('a node process', () => {
  // Every node runs this program (`chorus node start`): what one command alone needs is imported when that command runs.
  // HdrHistogram, for one, formats numbers through Intl as it loads, which pages ICU's data into the process.
  it('loads none of the libraries only bench, repair --wait or cluster start --tls need', () => {
    const packages = loadedPackages('main.ts');
    expect(packages).toContain('commander');
    for (const heavy of ['@chorus/client', 'hdr-histogram-js', 'cli-progress', 'node-forge']) expect(packages).not.toContain(heavy);
  });
});
