#!/usr/bin/env node
// Prints how evenly replicated ownership is spread as a cluster grows, for
// the balanced allocator and for random tokens. Seeded, so every run prints
// the same table.
import { SeededRandom } from '@chorus/core';
import { simulateGrowth } from './simulate.js';

const SIZES = [3, 6, 12, 24, 48];
const NUM_TOKENS = 16;
const RF = 3;
const TARGET = 1.1;
const SEED = 20240611;

const started = performance.now();
const balanced = simulateGrowth(Math.max(...SIZES), NUM_TOKENS, RF, 'balanced', new SeededRandom(SEED));
const elapsedMs = performance.now() - started;
const random = simulateGrowth(Math.max(...SIZES), NUM_TOKENS, RF, 'random', new SeededRandom(SEED));

const ratioAt = (steps: typeof balanced, n: number): number => steps[n - 1]!.ratio;
const cell = (s: string, width: number): string => s.padStart(width);
console.log(`replicated ownership max/min, SimpleStrategy rf ${RF}, ${NUM_TOKENS} tokens per node, nodes added one by one (seed ${SEED})`);
console.log(`${cell('nodes', 5)}  ${cell('balanced', 9)}  ${cell('random', 9)}`);
let met = true;
for (const n of SIZES) {
  const b = ratioAt(balanced, n);
  if (!(b <= TARGET)) met = false;
  console.log(`${cell(String(n), 5)}  ${cell(b.toFixed(3), 9)}  ${cell(ratioAt(random, n).toFixed(3), 9)}`);
}
console.log(`balanced allocation of ${Math.max(...SIZES)} nodes took ${elapsedMs.toFixed(0)} ms`);
console.log(met ? `target met: balanced ratio <= ${TARGET.toFixed(2)} at every size` : `TARGET MISSED: balanced ratio above ${TARGET.toFixed(2)}`);
process.exitCode = met ? 0 : 1;
