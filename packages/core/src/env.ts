import type { NodeId } from './ids.js';

/**
 * Time as the cluster logic sees it. Production reads the system clock; the
 * simulator a virtual one that jumps from event to event.
 */
export interface Clock {
  /** Wall-clock time in microseconds since the Unix epoch: the timestamp of writes. */
  nowMicros(): number;
  /** Monotonic milliseconds from an arbitrary origin: timeouts and intervals. */
  monotonicMs(): number;
}

export interface Timer {
  cancel(): void;
}

/**
 * Where deferred work runs. Every callback an actor defers goes through here,
 * so the simulator can order all of them from one seed.
 */
export interface Scheduler {
  /** Run `fn` once after `delayMs` milliseconds. */
  setTimer(delayMs: number, fn: () => void): Timer;
  /**
   * Run `fn` soon, after the current turn. In production what a deferred
   * callback defers runs in the same pass, before the next poll for I/O, up
   * to a bound.
   */
  defer(fn: () => void): void;
  /**
   * Run `fn`, a socket's flush, after the work deferred so far. In
   * production it runs once the pass has no deferred callback left, or
   * before the next one once it has waited a bound (0.05 ms): what a lone
   * request starts on this node (a write handed to the store's thread) is
   * under way before its frames wake other processes, which on a busy
   * machine take the cores that work needs, while under load frames do not
   * wait behind the next turns.
   */
  deferIo(fn: () => void): void;
  /**
   * Tells the scheduler that work is in flight outside its queue (an awaited
   * storage call, an async actor turn). The simulator drains such work before
   * it advances virtual time; production returns the promise untouched.
   */
  track<T>(work: Promise<T>): Promise<T>;
}

export interface Random {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** `n` uniform bytes. */
  bytes(n: number): Uint8Array;
  /** A fresh random UUID v4 string built from this source. */
  uuid(): string;
}

/** The subset of pino's API the cluster logic uses, so tests can pass a silent or recording logger. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: object): Logger;
}

/** Everything an actor needs from the outside world. */
export interface Env {
  readonly node: NodeId;
  readonly clock: Clock;
  readonly scheduler: Scheduler;
  readonly random: Random;
  readonly logger: Logger;
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};

/** Formats 16 random bytes as a version-4 UUID. */
export function uuidFromBytes(b: Uint8Array): string {
  if (b.length < 16) throw new RangeError('uuid needs 16 bytes');
  const bytes = Uint8Array.from(b.subarray(0, 16));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
