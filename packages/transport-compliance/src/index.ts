import type { LinkState, NodeId, Transport } from '@chorus/core';
import { describe, expect, it } from 'vitest';

/** What the suite needs from an implementation's test setup. */
export interface TransportHarness {
  /** Transports of `count` nodes that can reach each other. */
  create(count: number): Promise<Transport[]>;
  /** Makes node `index` vanish as a crashed process would. */
  kill(index: number): Promise<void>;
  /** Starts node `index` again and returns its new transport. */
  revive(index: number): Promise<Transport>;
  /** A node id that no one answers for. */
  readonly nobody: NodeId;
  /** Lets the implementation's time pass until `condition` holds; false if `timeoutMs` passed first. */
  until(condition: () => boolean, timeoutMs: number): Promise<boolean>;
  dispose(): Promise<void>;
}

interface Inbox {
  frames: Array<{ from: NodeId; text: string }>;
  links: Array<{ peer: NodeId; state: LinkState }>;
}

function listen(transport: Transport): Inbox {
  const inbox: Inbox = { frames: [], links: [] };
  transport.onFrame((from, frame) => inbox.frames.push({ from, text: new TextDecoder().decode(frame) }));
  transport.onLinkState((peer, state) => inbox.links.push({ peer, state }));
  return inbox;
}

const bytes = (text: string) => new TextEncoder().encode(text);

/**
 * A slow or busy machine sets CHORUS_TEST_TIME_SCALE (e.g. 3) and every deadline of the suite
 * grows by that factor. Waits end as soon as their condition holds, so long deadlines cost nothing.
 */
const TIME_SCALE = Math.max(1, Number(process.env.CHORUS_TEST_TIME_SCALE ?? 1) || 1);
const scaled = (ms: number) => Math.round(ms * TIME_SCALE);
/** What one wait may take. */
const WAIT_MS = scaled(10_000);
/** A test's budget: well above the sum of its waits, so a wait that gives up fails the test with its own assertion. */
const TEST_TIMEOUT_MS = scaled(60_000);

/** The Transport contract of @chorus/core, as tests. Call it from a test file of each implementation. */
export function describeTransportCompliance(name: string, makeHarness: () => TransportHarness): void {
  describe(`Transport compliance: ${name}`, () => {
    const withHarness = (title: string, body: (h: TransportHarness) => Promise<void>) =>
      it(title, { timeout: TEST_TIMEOUT_MS }, async () => {
        const h = makeHarness();
        try {
          await body(h);
        } finally {
          await h.dispose();
        }
      });

    withHarness('delivers a frame to its peer with the sender named', async (h) => {
      const [a, b] = await h.create(2);
      const inbox = listen(b!);
      a!.send(b!.localNode, bytes('hello'));
      expect(await h.until(() => inbox.frames.length === 1, WAIT_MS)).toBe(true);
      expect(inbox.frames[0]).toEqual({ from: a!.localNode, text: 'hello' });
    });

    withHarness('keeps the order of frames on one link', async (h) => {
      const [a, b] = await h.create(2);
      const inbox = listen(b!);
      for (let i = 0; i < 500; i++) a!.send(b!.localNode, bytes(String(i)));
      expect(await h.until(() => inbox.frames.length === 500, WAIT_MS)).toBe(true);
      expect(inbox.frames.map((f) => Number(f.text))).toEqual(Array.from({ length: 500 }, (_, i) => i));
    });

    withHarness('carries traffic both ways between several peers', async (h) => {
      const [a, b, c] = await h.create(3);
      const inboxes = [listen(a!), listen(b!), listen(c!)];
      a!.send(b!.localNode, bytes('a>b'));
      b!.send(c!.localNode, bytes('b>c'));
      c!.send(a!.localNode, bytes('c>a'));
      a!.send(c!.localNode, bytes('a>c'));
      expect(await h.until(() => inboxes.every((i) => i.frames.length >= 1) && inboxes[2]!.frames.length === 2, WAIT_MS)).toBe(true);
      expect(inboxes[0]!.frames).toEqual([{ from: c!.localNode, text: 'c>a' }]);
      expect(inboxes[1]!.frames).toEqual([{ from: a!.localNode, text: 'a>b' }]);
      expect(inboxes[2]!.frames.map((f) => f.text).sort()).toEqual(['a>c', 'b>c']);
    });

    withHarness('delivers a 256 KiB frame intact', async (h) => {
      const [a, b] = await h.create(2);
      let received: Uint8Array | undefined;
      b!.onFrame((_from, frame) => (received = frame));
      const big = new Uint8Array(256 * 1024).map((_, i) => (i * 31) & 0xff);
      a!.send(b!.localNode, big);
      expect(await h.until(() => received !== undefined, WAIT_MS)).toBe(true);
      expect(Buffer.from(received!).equals(Buffer.from(big))).toBe(true);
    });

    withHarness('reports an unreachable peer as down instead of throwing', async (h) => {
      const [a] = await h.create(1);
      const inbox = listen(a!);
      expect(() => a!.send(h.nobody, bytes('anyone?'))).not.toThrow();
      expect(await h.until(() => inbox.links.some((l) => l.peer === h.nobody && l.state === 'down'), WAIT_MS)).toBe(true);
    });

    withHarness('reports a peer down when it dies and up when it is back, and delivers again', async (h) => {
      const [a, b] = await h.create(2);
      const inbox = listen(a!);
      const first = listen(b!);
      a!.send(b!.localNode, bytes('before'));
      expect(await h.until(() => first.frames.length === 1, WAIT_MS)).toBe(true);
      await h.kill(1);
      expect(await h.until(() => (a!.send(b!.localNode, bytes('ping')), inbox.links.some((l) => l.peer === b!.localNode && l.state === 'down')), WAIT_MS)).toBe(true);
      const revived = await h.revive(1);
      const second = listen(revived);
      expect(await h.until(() => (a!.send(b!.localNode, bytes('after')), second.frames.some((f) => f.text === 'after')), WAIT_MS)).toBe(true);
      expect(inbox.links.at(-1)).toEqual({ peer: b!.localNode, state: 'up' });
      const states = inbox.links.filter((l) => l.peer === b!.localNode).map((l) => l.state);
      for (let i = 1; i < states.length; i++) expect(states[i]).not.toBe(states[i - 1]);
    });
  });
}
