import { parentPort, workerData } from 'node:worker_threads';
import { runSwarmSeed } from './scenario.js';

// One seed at a time: the main thread sends a seed, this thread answers with its result.
const ops = (workerData as { ops?: number } | undefined)?.ops;
let current: ((reason: unknown) => void) | undefined;
// A rejection nobody handled inside a node belongs to the seed that caused it.
process.on('unhandledRejection', (reason) => current?.(reason));
parentPort!.on('message', (seed: number) => {
  const stray: unknown[] = [];
  current = (reason) => stray.push(reason);
  void runSwarmSeed(seed, ops === undefined ? {} : { ops }).then((result) => {
    for (const reason of stray) result.violations.push({ checker: 'scenario-error', message: `unhandled rejection: ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}` });
    current = undefined;
    parentPort!.postMessage(result);
  });
});
