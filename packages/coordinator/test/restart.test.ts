import { nodeId } from '@chorus/core';
import { type KeyspaceDef, tokenOf } from '@chorus/ring';
import { describe, expect, it } from 'vitest';
import type { CoordinatorMsg } from '../src/index.js';
import { findKey, settle, startCluster, str } from './helpers.js';

const ks: KeyspaceDef = { name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } };
const NODES = ['n1', 'n2', 'n3', 'n4'].map((name) => ({ name }));

/** A message the coordinator actor's handler chokes on: stands for any bug that makes the runtime restart it. */
const poison = { type: 'answer', id: 0, from: nodeId('nobody'), sentAtMs: 0, outcome: { ok: true, msg: null } } as unknown as CoordinatorMsg;

describe('coordinator actor restart', () => {
  it('seed 600: answers to asks sent before a restart are not counted for new requests; pending callers fail at once', async () => {
    const seed = 600;
    const c = await startCluster({ seed, nodes: NODES, keyspaces: [ks] });
    const n4 = nodeId('n4');
    const a = findKey(c.ring, ks, (r) => !r.includes(n4), 'a');
    const order = c.ring.naturalReplicas(tokenOf(a), ks.replication);
    // Same replicas in the same order, so both reads at ONE ask the same replica.
    const b = findKey(c.ring, ks, (r) => r.join() === order.join(), 'b');
    expect((await settle(c.sim, c.handle('n1').put('app', a, undefined, 'value-a', { consistency: 'ALL' }))).ok).toBe(true);
    expect((await settle(c.sim, c.handle('n1').put('app', b, undefined, 'value-b', { consistency: 'ALL' }))).ok).toBe(true);
    // Answers to n4 take 300 ms, so the first read's answer arrives after the restart.
    for (const r of order) c.sim.network.setLink(r, n4, { latencyMs: 300 });
    const h = c.handle('n4');
    let first: { ok: boolean; error?: Error; at: number } | undefined;
    h.get('app', a, undefined, { consistency: 'ONE' }).then(
      () => (first = { ok: true, at: c.sim.now }),
      (error: Error) => (first = { ok: false, error, at: c.sim.now }),
    );
    await c.sim.runFor(5);
    const crashedAt = c.sim.now;
    h.ref.tell(poison);
    await c.sim.runFor(30);
    expect(c.systems.get('n4')!.stats().restarts, `seed ${seed}`).toBe(1);
    // The caller of the interrupted read heard at once, with a typed error rather than an ask timeout.
    expect(first, `seed ${seed}`).toMatchObject({ ok: false, error: { name: 'ReadTimeout' } });
    expect(first!.at - crashedAt).toBeLessThan(20);
    // A new read started after the restart, while the old answer is still on its way.
    const second = await settle(c.sim, h.get('app', b, undefined, { consistency: 'ONE' }));
    expect(second.ok && str(second.value?.value), `seed ${seed}`).toBe('value-b');
  });

  it('seed 602: a coordinator paused past its ask margin answers WriteTimeout (with its timestamp) and ReadTimeout, not AskTimeout', async () => {
    const seed = 602;
    const c = await startCluster({ seed, nodes: NODES, keyspaces: [ks] });
    const h = c.handle('n1');
    const write = h.put('app', 'k', undefined, 'v', { consistency: 'ALL', timestampMicros: 1_767_225_600_000_000 });
    const read = h.get('app', 'k', undefined, { consistency: 'QUORUM' });
    const slice = h.slice('app', 'k', { consistency: 'QUORUM' });
    // A stop-the-world pause longer than the request deadline plus the ask margin: both fire together on resume.
    c.sim.pause('n1');
    c.sim.at(c.sim.now + 10_000, 'resume n1', () => c.sim.resume('n1'));
    const outcome = (p: Promise<unknown>) => p.then(() => 'answered', (error: Error & { timestampMicros?: number }) => ({ name: error.name, timestampMicros: error.timestampMicros }));
    const all = await settle(c.sim, Promise.all([write, read, slice].map(outcome)));
    expect(all, `seed ${seed}`).toMatchObject({
      ok: true,
      value: [{ name: 'WriteTimeout', timestampMicros: 1_767_225_600_000_000 }, { name: 'ReadTimeout' }, { name: 'ReadTimeout' }],
    });
  });

  it('seed 601: a topology that throws fails the request, not the actor', async () => {
    const seed = 601;
    let broken = false;
    const c = await startCluster({
      seed,
      nodes: NODES,
      keyspaces: [ks],
      topology: (_, base) => ({
        ...base,
        ring: () => {
          if (broken) throw new Error('ring view unavailable');
          return base.ring();
        },
      }),
    });
    const h = c.handle('n4');
    broken = true;
    const ops: Array<() => Promise<unknown>> = [() => h.get('app', 'k'), () => h.slice('app', 'k'), () => h.put('app', 'k', undefined, 'v')];
    for (const op of ops) expect(await settle(c.sim, op()), `seed ${seed}`).toMatchObject({ ok: false, error: { message: 'ring view unavailable' } });
    expect(c.systems.get('n4')!.stats().restarts).toBe(0);
    expect(h.stats().read.failed + h.stats().slice.failed + h.stats().write.failed).toBe(3);
    broken = false;
    expect((await settle(c.sim, h.put('app', 'k', undefined, 'v'))).ok).toBe(true);
  });
});
