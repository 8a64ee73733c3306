import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type Env, type Logger, type Random, type Scheduler, silentLogger } from './env.js';
import type { NodeId } from './ids.js';

/**
 * The production environment: the system clock, Node's timers and a
 * cryptographic random source. The only place outside apps/ that may touch them.
 */
export function realEnv(node: NodeId, logger: Logger = silentLogger): Env {
  const origin = performance.timeOrigin;
  const scheduler: Scheduler = {
    setTimer(delayMs, fn) {
      const handle = setTimeout(fn, Math.max(0, delayMs));
      return { cancel: () => clearTimeout(handle) };
    },
    defer(fn) {
      setImmediate(fn);
    },
    track: (work) => work,
  };
  const random: Random = {
    next: () => Math.random(),
    int: (n) => Math.floor(Math.random() * n),
    bytes: (n) => new Uint8Array(randomBytes(n)),
    uuid: () => randomUUID(),
  };
  return {
    node,
    clock: {
      // performance.now() is monotonic; anchoring it to timeOrigin gives microseconds that never step back within a process.
      nowMicros: () => Math.floor((origin + performance.now()) * 1000),
      monotonicMs: () => performance.now(),
    },
    scheduler,
    random,
    logger,
  };
}
