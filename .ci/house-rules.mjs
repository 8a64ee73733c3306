#!/usr/bin/env node
// Checks the house rules of the design that the compiler cannot:
// - cluster logic takes time, timers and randomness from its Env, never from globals;
// - feature packages (layer 3) do not import each other;
// - a package imports only workspace packages it declares.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const root = resolve(process.argv[2] ?? '.');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const declared = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.devDependencies ?? {})]);
const FEATURES = new Set(['@chorus/gossip', '@chorus/read-repair', '@chorus/hints', '@chorus/anti-entropy']);
// Only the places that build the real environment, benchmarks and command-line entry points may touch the real clock.
const ENV_ALLOWED = /(^|\/)(real-env|bench|cli|ownership)[^/]*\.ts$|^apps\//;
const FORBIDDEN = [/\bDate\.now\(/, /\bnew Date\(\)/, /\bsetTimeout\(/, /\bsetInterval\(/, /\bsetImmediate\(/, /\bMath\.random\(/, /\bperformance\.now\(/, /\bprocess\.hrtime/];

const problems = [];
function walk(dir) {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) walk(path);
    else if (path.endsWith('.ts')) check(path);
  }
}
function check(path) {
  const rel = relative(root, path);
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  const isPackage = relative(resolve(root, '../..'), root).startsWith('packages/');
  lines.forEach((line, i) => {
    if (line.includes('house-rules-allow')) return;
    const code = line.replace(/\/\/.*$/, '');
    if (isPackage && !ENV_ALLOWED.test(rel)) {
      for (const re of FORBIDDEN) if (re.test(code)) problems.push(`${rel}:${i + 1}: ${re.source} in cluster logic; take it from the Env`);
    }
    const m = code.match(/from\s+['"](@chorus\/[a-z-]+)/);
    if (m) {
      const dep = m[1];
      if (!declared.has(dep) && dep !== pkg.name) problems.push(`${rel}:${i + 1}: imports ${dep}, which package.json does not declare`);
      if (FEATURES.has(pkg.name) && FEATURES.has(dep) && dep !== pkg.name) problems.push(`${rel}:${i + 1}: feature package ${pkg.name} imports feature package ${dep}`);
    }
  });
}
const src = join(root, 'src');
if (existsSync(src)) walk(src);
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
