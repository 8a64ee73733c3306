#!/usr/bin/env node
// Checks the house rules of the design that the compiler cannot:
// - cluster logic takes time, timers and randomness from its Env, never from globals;
// - imports point down the layers of DESIGN.md §2, never up;
// - feature packages (layer 4) do not import each other, and model, replica and schema import none;
// - the model imports nothing but core;
// - a package imports only workspace packages it declares.
//
// Usage: house-rules.mjs [DIR] [--as-package]. DIR (default `.`) is a package directory; the
// package is known by the name in its package.json, so the rules hold for a copy anywhere.
// The clock rule applies to packages/*; `--as-package` applies it to a directory elsewhere.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const asPackage = args.includes('--as-package');
const root = resolve(args.find((a) => !a.startsWith('--')) ?? '.');
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const declared = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.devDependencies ?? {})]);

/** DESIGN.md §2: a package may import packages of its own layer or lower ones, never a higher one. */
const LAYERS = {
  '@chorus/core': 0,
  '@chorus/actors': 1,
  '@chorus/ring': 1,
  '@chorus/model': 1,
  '@chorus/sim': 1,
  '@chorus/transport-compliance': 1,
  '@chorus/history': 1,
  '@chorus/wire': 2,
  '@chorus/storage': 2,
  '@chorus/client-protocol': 2,
  '@chorus/replica': 3,
  '@chorus/schema': 3,
  '@chorus/gossip': 4,
  '@chorus/read-repair': 4,
  '@chorus/hints': 4,
  '@chorus/anti-entropy': 4,
  '@chorus/streaming': 4,
  '@chorus/coordinator': 5,
  '@chorus/node': 6,
  '@chorus/client': 6,
  '@chorus/server': 7,
  '@chorus/cli': 7,
  '@chorus/swarm': 7,
  // Outside the product: measures it, so it may import any layer.
  '@chorus/bench-cluster': 8,
};
/** They meet through core's interfaces and the replica layer, and are wired together in the node. */
const FEATURES = new Set(['@chorus/gossip', '@chorus/read-repair', '@chorus/hints', '@chorus/anti-entropy', '@chorus/streaming']);
/** Below the features: they must work whichever features a node runs. */
const NO_FEATURES = new Set(['@chorus/model', '@chorus/replica', '@chorus/schema']);
/** The pure data model: what it may import, besides itself. */
const MODEL_IMPORTS = new Set(['@chorus/core']);

// Only the places that build the real environment, benchmarks and command-line entry points may touch the real clock.
const ENV_ALLOWED = /(^|\/)(real-env|bench|cli|ownership)[^/]*\.ts$|^apps\//;
const FORBIDDEN = [/\bDate\.now\(/, /\bnew Date\(\)/, /\bsetTimeout\(/, /\bsetInterval\(/, /\bsetImmediate\(/, /\bMath\.random\(/, /\bperformance\.now\(/, /\bprocess\.hrtime/];
const IMPORT = /(?:\bfrom|\bimport)\s*\(?\s*['"](@chorus\/[a-z0-9-]+)/;

const isPackage = asPackage || relative(repoRoot, root).split(/[\\/]/)[0] === 'packages';
const ownLayer = LAYERS[pkg.name];

const problems = [];
function walk(dir) {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) walk(path);
    else if (path.endsWith('.ts')) check(path);
  }
}
function checkImport(dep, where) {
  if (dep === pkg.name) return;
  if (!declared.has(dep)) problems.push(`${where}: imports ${dep}, which package.json does not declare`);
  if (FEATURES.has(pkg.name) && FEATURES.has(dep)) problems.push(`${where}: feature package ${pkg.name} imports feature package ${dep}; features meet through core's interfaces, wired in the node`);
  if (NO_FEATURES.has(pkg.name) && FEATURES.has(dep)) problems.push(`${where}: ${pkg.name} imports feature package ${dep}; it may reach features only through core's interfaces`);
  if (pkg.name === '@chorus/model' && !MODEL_IMPORTS.has(dep)) problems.push(`${where}: @chorus/model imports ${dep}; the model imports nothing but @chorus/core`);
  const depLayer = LAYERS[dep];
  if (depLayer === undefined) problems.push(`${where}: imports ${dep}, which has no layer in .ci/house-rules.mjs (DESIGN.md §2)`);
  else if (ownLayer !== undefined && depLayer > ownLayer) problems.push(`${where}: ${pkg.name} (layer ${ownLayer}) imports ${dep} (layer ${depLayer}); imports point down the layers`);
}
function check(path) {
  const rel = relative(root, path);
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (line.includes('house-rules-allow')) return;
    const code = line.replace(/\/\/.*$/, '');
    if (isPackage && !ENV_ALLOWED.test(rel)) {
      for (const re of FORBIDDEN) if (re.test(code)) problems.push(`${rel}:${i + 1}: ${re.source} in cluster logic; take it from the Env`);
    }
    const m = code.match(IMPORT);
    if (m) checkImport(m[1], `${rel}:${i + 1}`);
  });
}
if (String(pkg.name).startsWith('@chorus/') && ownLayer === undefined) problems.push(`package.json: ${pkg.name} has no layer in .ci/house-rules.mjs (DESIGN.md §2)`);
const src = join(root, 'src');
if (existsSync(src)) walk(src);
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
