import { ActorSystem, type ReplyTo } from '@chorus/actors';
import { type NodeId, nodeId } from '@chorus/core';
import { describe, expect, it } from 'vitest';
import { SeededRandom, Simulation, runScenario } from '../src/index.js';

describe('determinism', () => {
  it('gives the same trace hash for the same seed and different ones for different seeds', async () => {
    const first = await runScenario('demo', 42);
    const again = await runScenario('demo', 42);
    const other = await runScenario('demo', 43);
    expect(again.traceHash).toBe(first.traceHash);
    expect(again.figures).toEqual({ ...first.figures, wallMs: again.figures.wallMs });
    expect(other.traceHash).not.toBe(first.traceHash);
    // The demo really exercises failures: timeouts, unreachable peers and supervised restarts all happen.
    expect(first.figures.answered).toBeGreaterThan(1_000);
    expect(first.figures.unreachable).toBeGreaterThan(0);
    expect(first.figures.crashed).toBeGreaterThan(0);
    expect(first.figures.restarts).toBeGreaterThan(0);
  });

  it('forks independent random streams by name', () => {
    const a = new SeededRandom(1, 'x');
    const b = new SeededRandom(1, 'x');
    const c = new SeededRandom(1, 'y');
    const draw = (r: SeededRandom) => Array.from({ length: 5 }, () => r.nextUint32());
    expect(draw(a)).toEqual(draw(b));
    expect(draw(new SeededRandom(1, 'x'))).not.toEqual(draw(c));
    const r = new SeededRandom(9);
    for (let i = 0; i < 1000; i++) {
      const v = r.next();
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThan(1);
    }
  });
});

const DAY_MS = 24 * 3_600_000;

describe('virtual time', () => {
  it('jumps to the next event instead of waiting', async () => {
    const sim = new Simulation({ seed: 1 });
    const fired: number[] = [];
    await sim.addNode('n1', ({ env }) => {
      env.scheduler.setTimer(DAY_MS, () => fired.push(env.clock.monotonicMs()));
      env.scheduler.setTimer(1_000, () => fired.push(env.clock.monotonicMs()));
    });
    // A simulator that waited for real would run into the test timeout long before a day passed.
    await sim.run({});
    expect(fired).toEqual([1_000, DAY_MS]);
    expect(sim.now).toBe(DAY_MS);
  });

  it('gives each node its own wall clock, which can be skewed', async () => {
    const sim = new Simulation({ seed: 1, startMicros: 1_000_000 });
    const clocks = new Map<string, () => number>();
    for (const n of ['n1', 'n2']) await sim.addNode(n, ({ env }) => void clocks.set(n, () => env.clock.nowMicros()));
    sim.setClockSkew('n2', 500_000);
    await sim.runFor(10);
    expect(clocks.get('n1')!()).toBe(1_010_000);
    expect(clocks.get('n2')!()).toBe(1_510_000);
  });
});

type Ping = { replyTo: ReplyTo<string> };

async function pingCluster(seed: number, faults = {}) {
  const sim = new Simulation({ seed, network: { latencyMs: 5, ...faults } });
  const systems = new Map<string, ActorSystem>();
  for (const n of ['n1', 'n2', 'n3']) {
    await sim.addNode(n, ({ env, transport }) => {
      const system = new ActorSystem({ env, transport });
      systems.set(n, system);
      system.spawn<Ping>('pong', () => ({ receive: (m, ctx) => ctx.reply(m.replyTo, `pong from ${n}`) }));
    });
  }
  const ask = (from: string, to: string, timeoutMs = 1_000) =>
    systems.get(from)!.ref<Ping>({ node: nodeId(to), name: 'pong' }).ask<string>((replyTo) => ({ replyTo }), timeoutMs);
  return { sim, systems, ask };
}

/** Runs the simulation until the promise settles and returns its outcome. */
async function settle<T>(sim: Simulation, p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  p.then((value) => (outcome = { ok: true, value }), (error: unknown) => (outcome = { ok: false, error }));
  await sim.run({ stopWhen: () => outcome !== undefined, untilMs: sim.now + 60_000 });
  if (!outcome) throw new Error('promise never settled');
  return outcome;
}

describe('faults', () => {
  it('delivers after the link latency', async () => {
    const { sim, ask } = await pingCluster(1);
    const start = sim.now;
    expect(await settle(sim, ask('n1', 'n2'))).toEqual({ ok: true, value: 'pong from n2' });
    expect(sim.now - start).toBeGreaterThanOrEqual(10);
  });

  it('a partition makes asks fail as unreachable on both sides, and healing restores them', async () => {
    const { sim, ask } = await pingCluster(2);
    sim.network.partition([nodeId('n1')], [nodeId('n2'), nodeId('n3')]);
    expect(await settle(sim, ask('n1', 'n2'))).toMatchObject({ ok: false, error: { name: 'NodeUnreachable' } });
    expect(await settle(sim, ask('n3', 'n1'))).toMatchObject({ ok: false, error: { name: 'NodeUnreachable' } });
    expect(await settle(sim, ask('n2', 'n3'))).toMatchObject({ ok: true });
    sim.network.heal();
    await sim.runFor(1);
    expect(await settle(sim, ask('n1', 'n2'))).toMatchObject({ ok: true });
  });

  it('a crash loses the node\'s actors and in-flight messages; a restart brings it back with its disk', async () => {
    const { sim, ask } = await pingCluster(3);
    const inFlight = ask('n1', 'n3', 5_000);
    await sim.runFor(2); // the ping is on the wire
    sim.crash('n3');
    expect(await settle(sim, inFlight)).toMatchObject({ ok: false, error: { name: 'NodeUnreachable' } });
    expect(sim.isUp('n3')).toBe(false);
    await sim.restart('n3');
    await sim.runFor(1); // peers hear that n3's link is up again
    expect(await settle(sim, ask('n1', 'n3'))).toEqual({ ok: true, value: 'pong from n3' });
  });

  it('a paused node answers nothing until it resumes, then answers everything, late; a crash ends the pause', async () => {
    const { sim, ask } = await pingCluster(4);
    const fired: number[] = [];
    await sim.addNode('n4', ({ env }) => void env.scheduler.setTimer(100, () => fired.push(env.clock.monotonicMs())));
    sim.pause('n2');
    sim.pause('n4');
    const start = sim.now;
    const waiting = ask('n1', 'n2', 5_000);
    const late = ask('n3', 'n2', 500);
    sim.at(start + 2_000, 'resume', () => {
      sim.resume('n2');
      sim.resume('n4');
    });
    // The connection stays open: no NodeUnreachable, only silence, and an ask shorter than the pause times out.
    expect(await settle(sim, late)).toMatchObject({ ok: false, error: { name: 'AskTimeout' } });
    expect(await settle(sim, waiting)).toEqual({ ok: true, value: 'pong from n2' });
    expect(sim.now - start).toBeGreaterThanOrEqual(2_000);
    expect(fired).toEqual([start + 2_000]);
    sim.pause('n3');
    sim.crash('n3');
    expect(sim.isPaused('n3')).toBe(false);
  });

  it('hands every trace line to a listener', async () => {
    const lines: string[] = [];
    const sim = new Simulation({ seed: 5, trace: (line) => lines.push(line) });
    await sim.addNode('n1', ({ env }) => void env.scheduler.setTimer(10, () => {}));
    await sim.run({});
    expect(lines).toEqual(['10|n1|timer']);
  });

  it('loses about the configured share of frames, and the asks time out rather than hang', async () => {
    const { sim, ask } = await pingCluster(4, { loss: 0.3 });
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => settle(sim, ask('n1', i % 2 ? 'n2' : 'n3', 100))));
    const failed = results.filter((r) => !r.ok);
    // An ask fails when either its request or its reply is lost: 1 - 0.7² ≈ 51%.
    expect(failed.length).toBeGreaterThan(70);
    expect(failed.length).toBeLessThan(135);
    expect(failed.every((r) => !r.ok && (r.error as Error).name === 'AskTimeout')).toBe(true);
  });

  it('duplicates frames when told to, and reordering breaks FIFO only when enabled', async () => {
    const sim = new Simulation({ seed: 5, network: { latencyMs: 1, jitterMs: 20 } });
    const received: number[] = [];
    let sender!: (i: number) => void;
    await sim.addNode('a', ({ transport }) => void (sender = (i) => transport.send('b' as NodeId, new Uint8Array([i]))));
    await sim.addNode('b', ({ transport }) => transport.onFrame((_f, frame) => void received.push(frame[0]!)));
    for (let i = 0; i < 50; i++) sender(i);
    await sim.runFor(100);
    expect(received).toEqual(Array.from({ length: 50 }, (_, i) => i));

    received.length = 0;
    sim.network.setDefaults({ reorder: 0.5, duplicate: 0.2 });
    for (let i = 0; i < 50; i++) sender(i);
    await sim.runFor(100);
    expect(received.length).toBeGreaterThan(50);
    expect(received).not.toEqual([...received].sort((x, y) => x - y));
    expect(new Set(received).size).toBe(50);
  });
});

// The simulator's speed is a figure printed by `pnpm sim --scenario throughput`, not something a test asserts.
describe('throughput scenario', () => {
  it('a flood between 10 nodes replays the same history for the same seed', async () => {
    const first = await runScenario('throughput', 1, 10_000);
    const again = await runScenario('throughput', 1, 10_000);
    expect(again.traceHash).toBe(first.traceHash);
    expect(again.figures.events).toBe(first.figures.events);
    expect(again.figures.virtualMs).toBe(first.figures.virtualMs);
    expect(first.figures.virtualMs).toBeGreaterThan(0);
  });
});
