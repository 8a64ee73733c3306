import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type Env, type Logger, type Random, type Scheduler, silentLogger } from './env.js';
import type { NodeId } from './ids.js';

/**
 * The production environment: the system clock, Node's timers and a
 * cryptographic random source. The only place outside apps/ that may touch them.
 */
export interface RealEnvOptions {
  /** How long a socket's flush waits for the rest of its pass (default 0.05 ms; see `deferQueue`). */
  maxFlushWaitMs?: number;
}

export function realEnv(node: NodeId, logger: Logger = silentLogger, options: RealEnvOptions = {}): Env {
  const origin = performance.timeOrigin;
  const scheduler: Scheduler = {
    setTimer(delayMs, fn) {
      const handle = setTimeout(fn, Math.max(0, delayMs));
      return { cancel: () => clearTimeout(handle) };
    },
    ...deferQueue(options.maxFlushWaitMs ?? MAX_FLUSH_WAIT_MS),
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
 * How long a flush waits for the rest of its pass: long enough for a lone
 * request's local hand-offs (replica, store, the store's thread), short
 * enough that under load, where one actor's turn takes a batch of hundreds
 * of requests, the frames do not wait behind the next turns and the other
 * processes do not sit idle meanwhile.
 */
const MAX_FLUSH_WAIT_MS = 0.05;

/**
 * `defer` and `deferIo` on one `setImmediate` per check phase that also runs
 * what the callbacks defer in turn. A request handed from actor to actor
 * (client connection, coordinator, replica, storage, peer link) otherwise
 * took a whole turn of the event loop per hop (timers, an epoll, the check
 * phase). Promise jobs a callback queues run after the pass, not between its
 * callbacks. The flushes `deferIo` queues run once no deferred callback is
 * left, or before the next callback once the first of them has waited
 * `maxFlushWaitMs`, and at the end of every pass that stops at the
 * bound, so sockets are never starved.
 */
function deferQueue(maxFlushWaitMs: number): Pick<Scheduler, 'defer' | 'deferIo'> {
  let queue: Array<(() => void) | undefined> = [];
  let next = 0;
  let flushes: Array<() => void> = [];
  let flushBy = 0;
  let scheduled = false;
  const flush = (): void => {
    const due = flushes;
    flushes = [];
    for (let i = 0; i < due.length; i++) {
      try {
        due[i]!();
      } catch (error) {
        flushes = due.slice(i + 1).concat(flushes);
        throw error;
      }
    }
  };
  const drain = (): void => {
    const last = next + MAX_DEFERRED_PER_DRAIN;
    try {
      for (;;) {
        while (next < queue.length && next < last) {
          if (flushes.length > 0 && performance.now() >= flushBy) flush();
          const fn = queue[next];
          queue[next++] = undefined;
          fn!();
        }
        if (flushes.length === 0) break;
        flush();
        if (next >= last) break;
      }
    } finally {
      if (next < queue.length || flushes.length > 0) {
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
  const schedule = (): void => {
    if (!scheduled) {
      scheduled = true;
      setImmediate(drain);
    }
  };
  return {
    defer: (fn) => {
      queue.push(fn);
      schedule();
    },
    deferIo: (fn) => {
      if (flushes.length === 0) flushBy = performance.now() + maxFlushWaitMs;
      flushes.push(fn);
      schedule();
    },
  };
}
