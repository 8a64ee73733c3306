import type { Transport } from '@chorus/core';
import { wireCodec } from '@chorus/wire';
import { describe, expect, it } from 'vitest';
import type { ChorusNode } from '../src/index.js';
import { simCluster } from './sim-cluster.js';

const TIME_SCALE = Math.max(1, Number(process.env.CHORUS_TEST_TIME_SCALE ?? 1) || 1);
const NAMES = ['n1', 'n2', 'n3', 'n4', 'n5'];
const SKEW_MICROS = 800_000;
const WRITES = 150;
const START_MICROS = 1_767_225_600_000_000;

/**
 * The nodes as they were before message clocks: every peer frame loses its
 * clock stamp on arrival, so a node's clock moves only on replica traffic
 * (whose messages carry the sender's reading in their own fields). Exists
 * for the comparison below only.
 */
function withoutMessageClocks(_name: string, t: Transport): Transport {
  const codec = wireCodec();
  const strip = (frame: Uint8Array): Uint8Array => {
    let envelope;
    try {
      envelope = codec.decode(frame);
    } catch {
      return frame; // the node's own codec rejects it, as it would have
    }
    if (envelope.c === undefined) return frame;
    const { c: _stamp, ...unstamped } = envelope;
    return codec.encode(unstamped as typeof envelope);
  };
  return {
    localNode: t.localNode,
    send: (to, frame) => t.send(to, frame),
    onFrame: (handler) => t.onFrame((from, frame) => handler(from, strip(frame))),
    onLinkState: (handler) => t.onLinkState(handler),
    ...(t.penalize ? { penalize: (peer) => t.penalize!(peer) } : {}),
    close: () => t.close(),
  };
}

interface Trial {
  /** Peer frames carry clock stamps (false: the comparison without them). */
  messageClocks: boolean;
  /** Whether the accurate coordinator holds a replica of the register. */
  accurateIsReplica: boolean;
  /** The client's pause after each read, virtual ms (0: back to back). */
  pauseMs: number;
  /** The client carries a session: every write goes with the highest timestamp it has seen (after=). */
  session?: boolean;
}

/**
 * 5 nodes, rf 3, one node's clock 0.8 s ahead (under max_clock_skew, 1 s):
 * one register written alternately through the fast node and an accurate
 * one, each write at QUORUM and read back at QUORUM through a third node. A
 * write through the accurate node is lost when that read returns anything
 * but the value just acknowledged.
 */
async function lostUpdates(seed: number, trial: Trial): Promise<{ lost: number; lostFast: number; fast: string; accurate: string; reader: string }> {
  const { sim, nodes, node, settle, during, allUp } = await simCluster(seed, NAMES, { runLimitMs: 30_000, pollMs: 100, ...(trial.messageClocks ? {} : { transport: withoutMessageClocks }) });
  await settle('all UN', allUp);
  await during(node('n1').putKeyspace('app', { class: 'SimpleStrategy', rf: 3 }));
  await settle('schema everywhere', async () => (await Promise.all([...nodes.values()].map((n) => n.keyspaces()))).every((k) => k.keyspaces.length === 1));
  await during(node('n1').coordinator.put('app', 'register', undefined, 'first', { consistency: 'ALL' }));
  const replicas: string[] = [];
  for (const n of NAMES) if (await during(node(n).coordinator.local('app', 'register'))) replicas.push(n);
  const others = NAMES.filter((n) => !replicas.includes(n));
  const fast = others[0]!;
  const accurate = trial.accurateIsReplica ? replicas[0]! : others[1]!;
  const reader = NAMES.find((n) => n !== fast && n !== accurate)!;
  sim.setClockSkew(fast, SKEW_MICROS);
  // Long enough for gossip to carry the fast clock everywhere, and for round trips to measure it.
  await sim.runFor(3_000);
  let seen = 0;
  let lost = 0;
  let lostFast = 0;
  for (let i = 0; i < WRITES; i++) {
    for (const via of [fast, accurate]) {
      const value = `${via}-${i}`;
      const written = await during(node(via).coordinator.put('app', 'register', undefined, value, { consistency: 'QUORUM', ...(trial.session && seen > 0 ? { afterMicros: seen } : {}) }));
      seen = Math.max(seen, written.timestampMicros);
      const read = await during(node(reader).coordinator.get('app', 'register', undefined, { consistency: 'QUORUM' }));
      if (read) seen = Math.max(seen, read.timestampMicros);
      if ((read ? new TextDecoder().decode(read.value) : undefined) !== value) {
        if (via === accurate) lost++;
        else lostFast++;
      }
      if (trial.pauseMs > 0) await sim.runFor(trial.pauseMs);
    }
  }
  for (const n of nodes.values()) await during(n.stop());
  return { lost, lostFast, fast, accurate, reader };
}

describe('message clocks under 0.8 s of clock skew', () => {
  it(
    'seed 9: a fast node makes writes through an accurate coordinator lose; message clocks save those a peer message ordered, a session the rest',
    async () => {
      const seed = 9;
      const run = (t: Trial) => lostUpdates(seed, t);
      const rows: Array<[string, Awaited<ReturnType<typeof run>>]> = [];
      const trial = async (label: string, t: Trial) => {
        const r = await run(t);
        rows.push([label, r]);
        return r;
      };
      // The coordinator is no replica of the register: nothing of the fast write reaches it except through other traffic.
      const before = await trial('no replica, back to back, without message clocks', { messageClocks: false, accurateIsReplica: false, pauseMs: 0 });
      const backToBack = await trial('no replica, back to back, with message clocks', { messageClocks: true, accurateIsReplica: false, pauseMs: 0 });
      const pausedBefore = await trial('no replica, 300 ms pauses, without message clocks', { messageClocks: false, accurateIsReplica: false, pauseMs: 300 });
      const paused = await trial('no replica, 300 ms pauses, with message clocks', { messageClocks: true, accurateIsReplica: false, pauseMs: 300 });
      const session = await trial('no replica, back to back, with message clocks and a session', { messageClocks: true, accurateIsReplica: false, pauseMs: 0, session: true });
      // A replica coordinator hears the fast write itself (the mutation carries the fast clock), with or without message clocks.
      const replica = await trial('replica, back to back, without message clocks', { messageClocks: false, accurateIsReplica: true, pauseMs: 0 });
      const table = rows.map(([label, r]) => `  ${label}: ${r.lost} of ${WRITES} lost (fast ${r.fast}, accurate ${r.accurate}, reader ${r.reader})`).join('\n');
      console.log(`seed ${seed}: writes through the accurate coordinator lost to one 0.8 s ahead\n${table}`);
      const why = `seed ${seed}\n${table}`;
      // Without message clocks the loss reproduces: every accurate write loses to the fast write before it.
      expect(before.lost, why).toBeGreaterThanOrEqual(WRITES - 5);
      expect(pausedBefore.lost, why).toBeGreaterThanOrEqual(WRITES - 5);
      // With them (seed 9: 147 back to back, 86 with pauses), a write is still lost when no message reached the accurate
      // coordinator, between the fast write and its own, from a node that had heard of the fast write. The hybrid clock
      // orders what messages order; here the client carried the order (the fast node's answer, then a request to the
      // accurate one), which no peer message sees. Back to back, gossip (1 s rounds) almost never lands in that gap;
      // with the client pausing 300 ms it often does. A session closes the rest: the client's highest timestamp goes
      // with its write, and nothing is lost.
      expect(backToBack.lost, why).toBeLessThanOrEqual(before.lost);
      expect(paused.lost, why).toBeLessThanOrEqual(Math.floor(pausedBefore.lost * 0.7));
      expect(session.lost, why).toBe(0);
      expect(replica.lost, why).toBe(0);
      for (const [, r] of rows) expect(r.lostFast, why).toBe(0);
    },
    240_000 * TIME_SCALE,
  );

  it(
    'seed 12: a coordinator that heard the fast node only through gossip and schema traffic stamps its write above that node\'s clock as it last heard it',
    async () => {
      const seed = 12;
      const codec = wireCodec();
      // What n2 told n1: n2's clock reading when it sent its last frame to n1, and the kinds of every message.
      let lastReading = 0;
      const kinds = new Set<string>();
      let n2: ChorusNode | undefined;
      const tap = (name: string, t: Transport): Transport =>
        name !== 'n2'
          ? t
          : {
              localNode: t.localNode,
              send: (to, frame) => {
                if (to === 'n1' && n2) {
                  lastReading = n2.coordinator.clock.peek();
                  const e = codec.decode(frame);
                  const m = e.t === 'msg' ? e.msg : e.t === 'ok' ? e.v : undefined;
                  kinds.add(m && typeof m === 'object' ? String((m as { type?: unknown }).type) : e.t);
                }
                t.send(to, frame);
              },
              onFrame: (handler) => t.onFrame(handler),
              onLinkState: (handler) => t.onLinkState(handler),
              close: () => t.close(),
            };
      const { sim, nodes, node, settle, during, allUp } = await simCluster(seed, ['n1', 'n2', 'n3'], {
        runLimitMs: 30_000,
        pollMs: 100,
        startMicros: START_MICROS,
        transport: tap,
        onStarted: (name, started) => void (name === 'n2' && (n2 = started)),
      });
      await settle('all UN', async () => nodes.size === 3 && (await allUp()));
      sim.setClockSkew('n2', SKEW_MICROS);
      await during(node('n1').putKeyspace('app', { class: 'SimpleStrategy', rf: 1 }));
      await settle('schema everywhere', async () => (await Promise.all([...nodes.values()].map((n) => n.keyspaces()))).every((k) => k.keyspaces.length === 1));
      await sim.runFor(3_000);
      // n1's clock is accurate; n2's runs ahead of it.
      expect(lastReading - (START_MICROS + sim.now * 1000), `seed ${seed}`).toBeGreaterThan(0);
      const written = await during(node('n1').coordinator.put('app', 'k', undefined, 'v', { consistency: 'ONE' }));
      expect([...kinds].filter((k) => k.startsWith('replica.')), `seed ${seed}: n1 heard no replica traffic from n2`).toEqual([]);
      expect(written.timestampMicros, `seed ${seed}: the write is stamped above the last reading n1 heard from n2`).toBeGreaterThan(lastReading);
    },
    60_000 * TIME_SCALE,
  );

  it(
    'seed 14: a node 3 s ahead, past max_clock_skew, cannot drag the other clocks past the bound through its messages',
    async () => {
      const seed = 14;
      const { sim, nodes, node, settle, allUp } = await simCluster(seed, ['n1', 'n2', 'n3'], { runLimitMs: 30_000, pollMs: 100, startMicros: START_MICROS });
      await settle('all UN', async () => nodes.size === 3 && (await allUp()));
      sim.setClockSkew('n2', 3_000_000);
      await sim.runFor(5_000);
      for (const name of ['n1', 'n3']) {
        const n = node(name);
        // The clock stays within max_clock_skew of this node's own wall clock, and the refused stamps are counted.
        expect(n.coordinator.clock.peek() - (START_MICROS + sim.now * 1000), `seed ${seed}: ${name}`).toBeLessThanOrEqual(n.coordinator.clock.maxSkewMicros);
        expect(n.coordinator.stats().refusedPeerTimestamps, `seed ${seed}: ${name}`).toBeGreaterThan(0);
      }
    },
    60_000 * TIME_SCALE,
  );
});
