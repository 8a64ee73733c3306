import { ActorSystem, type ReplyTo } from '@chorus/actors';
import { type HostId, type MembershipView, type NodeId, hostId, nodeId } from '@chorus/core';
import type { Mutation } from '@chorus/model';
import { HybridLogicalClock, type ReplicaMsg } from '@chorus/replica';
import { Simulation } from '@chorus/sim';
import { wireCodec } from '@chorus/wire';
import { describe, expect, it } from 'vitest';
import { HINTS_ACTOR, type HintsHandle, startHints } from '../src/index.js';
import { HOST_A, memoryDb, write } from './helpers.js';

const A = nodeId('a');
const B = nodeId('b');
/** The target every test hints: down throughout. */
const C = nodeId('c');
const HOST_OF_A = hostId('aaaaaaaa-0000-4000-8000-00000000000a');
const HOST_OF_B = hostId('bbbbbbbb-0000-4000-8000-00000000000b');

/**
 * Two nodes with hints on a simulated network, `a` and `b`, both up; `c`
 * (host id HOST_A) is down. `b` has a replica actor that records what it is
 * asked to apply. Replay is left to `handOff` alone: no dispatch runs.
 */
async function pair(seed: number, throttleKiBps = 0) {
  const sim = new Simulation({ seed, network: { latencyMs: 2, jitterMs: 2 } });
  const hostIds = new Map<NodeId, HostId>([[A, HOST_OF_A], [B, HOST_OF_B], [C, HOST_A]]);
  const membership: MembershipView = {
    isAlive: (n) => n === A || n === B,
    locationOf: () => undefined,
    liveNodes: () => [A, B],
    hostIdOf: (n) => hostIds.get(n),
  };
  const nodes = new Map<string, { system: ActorSystem; hints: HintsHandle }>();
  const applied: Mutation[] = [];
  for (const name of ['a', 'b']) {
    await sim.addNode(name, async ({ env, transport }) => {
      const system = new ActorSystem({ env, transport, codec: wireCodec() });
      if (name === 'b') {
        system.spawn<ReplicaMsg>('replica', () => ({
          receive(msg, ctx) {
            if (msg.type !== 'replica.mutate') return;
            applied.push(msg.mutation);
            ctx.reply(msg.replyTo, { type: 'replica.mutated', hlc: msg.hlc, wallMicros: env.clock.nowMicros() });
          },
        }));
      }
      const hlc = new HybridLogicalClock(() => env.clock.nowMicros());
      const hints = await startHints(system, { env, db: memoryDb(), membership, events: { subscribe: () => () => {} }, hlc, throttleKiBps, dispatchIntervalMs: 1e9 });
      nodes.set(name, { system, hints });
    });
  }
  const during = async <T>(promise: Promise<T>): Promise<T> => {
    let done = false;
    const settled = promise.finally(() => (done = true));
    settled.catch(() => {});
    await sim.run({ stopWhen: () => done, untilMs: sim.now + 600_000 });
    return settled;
  };
  return { sim, a: nodes.get('a')!, b: nodes.get('b')!, applied, during };
}

describe('hint hand-off', () => {
  it('moves every hint to the other node in bounded batches, with the ages it had, paced by the throttle, and applies those addressed to that node', async () => {
    const { sim, a, b, applied, during } = await pair(31, 4);
    for (let i = 0; i < 300; i++) {
      expect(await during(a.hints.offer(C, write(`c${i}`, `v${i}`, 1_000 + i)))).toBe(true);
      if (i % 100 === 0) await sim.runFor(1_000);
    }
    for (let i = 0; i < 5; i++) expect(await during(a.hints.offer(B, write(`b${i}`, `w${i}`, 2_000 + i)))).toBe(true);
    const [forC, forB] = [a.hints.targets().find((t) => t.hostId === HOST_A)!, a.hints.targets().find((t) => t.hostId === HOST_OF_B)!];
    expect([forC.hints, forB.hints]).toEqual([300, 5]);

    const startedMs = sim.now;
    const result = await during(a.hints.handOff(B));
    expect(result).toEqual({ to: B, handedOff: 300, bytes: forC.bytes, delivered: 5, dropped: 0 });
    expect(a.hints.targets()).toEqual([]);
    // Same target, same count and bytes, and the same oldest hint: the window and gc grace keep counting from when each hint was written.
    expect(b.hints.targets()).toEqual([forC]);
    expect(applied.map((m) => (m as { cell: { timestampMicros: number } }).cell.timestampMicros).sort()).toEqual([2_000, 2_001, 2_002, 2_003, 2_004]);
    expect(a.hints.stats()).toMatchObject({ handedOff: 300, delivered: 5, pendingHints: 0 });
    expect(b.hints.stats()).toMatchObject({ received: 300, pendingHints: 300 });
    // hinted_handoff_throttle (4 KiB/s, one second of it in the bucket at the start) paced the whole move.
    const bytesSent = forC.bytes + forB.bytes;
    expect(sim.now - startedMs).toBeGreaterThanOrEqual(((bytesSent - 4 * 1024) / (4 * 1024)) * 1000);

    // Nothing left: a second call moves nothing.
    expect(await during(a.hints.handOff(B))).toEqual({ to: B, handedOff: 0, bytes: 0, delivered: 0, dropped: 0 });
    // A leaving node stores no new hint: it would leave with the node, so a write at ANY must not count it (swarm seed 874).
    expect(await during(a.hints.offer(C, write('late', 'v', 3_000)))).toBe(false);
    expect(a.hints.targets()).toEqual([]);
    expect(a.hints.stats().dropped.leaving).toBe(1);
  });

  it('fails at once, moving nothing, towards a node that is down, unknown, or itself', async () => {
    const { a, during } = await pair(32);
    for (let i = 0; i < 3; i++) await during(a.hints.offer(C, write(`c${i}`, 'v', i)));
    for (const to of [C, nodeId('z'), A]) {
      await expect(during(a.hints.handOff(to))).rejects.toMatchObject({ name: 'HintHandOffFailed', fields: { to, moved: 0, remaining: 3 } });
    }
    expect(a.hints.targets().map((t) => t.hints)).toEqual([3]);
  });

  it('refuses, storing nothing, a hand-off carrying hints addressed to the receiving node itself', async () => {
    const { a, b, during } = await pair(33);
    type Stored = { type: 'hints.stored'; stored: number };
    const hint = (targetHostId: HostId, targetNode: NodeId) => ({ targetHostId, targetNode, createdAtMicros: 1, mutation: write('k', 'v', 1) });
    const ask = (hints: Array<ReturnType<typeof hint>>) =>
      a.system.ref<{ type: 'hints.handoff'; hints: unknown[]; replyTo: ReplyTo<Stored> }>({ node: B, name: HINTS_ACTOR }).ask<Stored>((replyTo) => ({ type: 'hints.handoff', hints, replyTo }), 10_000);
    await expect(during(ask([hint(HOST_A, C), hint(HOST_OF_B, B)]))).rejects.toMatchObject({ name: 'HintHandOffRefused' });
    expect(b.hints.targets()).toEqual([]);
    expect(await during(ask([hint(HOST_A, C)]))).toEqual({ type: 'hints.stored', stored: 1 });
    expect(b.hints.targets().map((t) => [t.hostId, t.hints, t.oldestMicros])).toEqual([[HOST_A, 1, 1]]);
  });
});
