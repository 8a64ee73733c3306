import { type Env, type LinkState, type NodeId, type Scheduler, type Transport, nodeId, realEnv } from '@chorus/core';

export const env = (name = 'n1'): Env => realEnv(nodeId(name));

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * One knob for every deadline of these tests: a slow or busy machine sets
 * CHORUS_TEST_TIME_SCALE (e.g. 3) and every wait grows by that factor.
 */
export const TIME_SCALE = Math.max(1, Number(process.env.CHORUS_TEST_TIME_SCALE ?? 1) || 1);
export const scaled = (ms: number) => Math.round(ms * TIME_SCALE);
/** How long something that should happen promptly may take; waits end as soon as their condition holds. */
export const WAIT_MS = scaled(10_000);
/** A test's own budget: several waits in a row fit in it. */
export const TEST_TIMEOUT_MS = scaled(60_000);

/** Polls `condition` until it holds; false if `timeoutMs` passed first. */
export async function until(condition: () => boolean, timeoutMs = WAIT_MS): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() >= deadline) return false;
    await sleep(1);
  }
  return true;
}

/** The real environment, with a count of the timers set through it that have neither fired nor been cancelled. */
export function timerCountingEnv(name = 'n1'): { env: Env; liveTimers: () => number } {
  const base = env(name);
  const live = new Set<object>();
  const scheduler: Scheduler = {
    ...base.scheduler,
    setTimer(delayMs, fn) {
      const token = {};
      live.add(token);
      const timer = base.scheduler.setTimer(delayMs, () => {
        live.delete(token);
        fn();
      });
      return {
        cancel: () => {
          live.delete(token);
          timer.cancel();
        },
      };
    },
  };
  return { env: { ...base, scheduler }, liveTimers: () => live.size };
}

/** A promise with its resolver outside, to hold an actor inside a turn. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** Directly wired transports for tests of remote refs; a peer can be marked down. */
export function loopbackTransports(names: string[]): { transports: Transport[]; setDown(a: string, b: string, down: boolean): void; inject(to: string, from: string, frame: Uint8Array): void } {
  const frameHandlers = new Map<string, Array<(from: NodeId, frame: Uint8Array) => void>>();
  const linkHandlers = new Map<string, Array<(peer: NodeId, state: LinkState) => void>>();
  const down = new Set<string>();
  const transports = names.map((name): Transport => {
    frameHandlers.set(name, []);
    linkHandlers.set(name, []);
    return {
      localNode: nodeId(name),
      send(to, frame) {
        const copy = frame.slice();
        setImmediate(() => {
          if (down.has(`${name}>${to}`)) return;
          for (const h of frameHandlers.get(to) ?? []) h(nodeId(name), copy);
        });
      },
      onFrame: (h) => void frameHandlers.get(name)!.push(h),
      onLinkState: (h) => void linkHandlers.get(name)!.push(h),
      close: async () => {},
    };
  });
  return {
    transports,
    setDown(a, b, isDown) {
      for (const [x, y] of [[a, b], [b, a]] as const) {
        if (isDown) down.add(`${x}>${y}`);
        else down.delete(`${x}>${y}`);
        for (const h of linkHandlers.get(x)!) h(nodeId(y), isDown ? 'down' : 'up');
      }
    },
    inject(to, from, frame) {
      for (const h of frameHandlers.get(to)!) h(nodeId(from), frame);
    },
  };
}
