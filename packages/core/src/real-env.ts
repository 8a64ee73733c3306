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
    defer: deferQueue(),
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

/**
 * Most deferred callbacks one check phase runs: past it, the rest waits for
 * the next turn of the event loop, after the I/O that came meanwhile.
 */
const MAX_DEFERRED_PER_DRAIN = 1024;

/**
 * `defer` on one `setImmediate` per check phase that also runs what the
 * callbacks defer in turn. A request handed from actor to actor (client
 * connection, coordinator, replica, storage, peer link) otherwise took a whole
 * turn of the event loop per hop (timers, an epoll, the check phase). Promise
 * jobs a callback queues run after the pass, not between its callbacks.
 */
function deferQueue(): (fn: () => void) => void {
  let queue: Array<(() => void) | undefined> = [];
  let next = 0;
  let scheduled = false;
  const drain = (): void => {
    const last = next + MAX_DEFERRED_PER_DRAIN;
    try {
      while (next < queue.length && next < last) {
        const fn = queue[next];
        queue[next++] = undefined;
        fn!();
      }
    } finally {
      if (next < queue.length) {
        queue = queue.slice(next);
        next = 0;
        setImmediate(drain);
      } else {
        scheduled = false;
        queue = [];
        next = 0;
      }
    }
  };
  return (fn) => {
    queue.push(fn);
    if (!scheduled) {
      scheduled = true;
      setImmediate(drain);
    }
  };
}
