import { type Env, type LinkState, type NodeId, type Transport, nodeId, realEnv } from '@chorus/core';

export const env = (name = 'n1'): Env => realEnv(nodeId(name));

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

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
