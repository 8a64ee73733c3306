import { type KeyspaceDef } from '@chorus/ring';
import { describe, expect, it } from 'vitest';
import { startCluster } from './helpers.js';

const ks: KeyspaceDef = { name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } };

describe('a coordinator process that restarts', () => {
  it('seed 610: a replica\'s late acknowledgement of a write of the previous run does not acknowledge a write of the new one', async () => {
    const seed = 610;
    const c = await startCluster({ seed, nodes: ['n1', 'n2', 'n3'].map((name) => ({ name })), keyspaces: [ks], coordinator: { writeTimeoutMs: 10_000 } });
    // n3 is down: a QUORUM write needs both n1 and n2.
    c.sim.crash('n3');
    // Messages from n1 to n2 take 3 s; n2's answers come back at once.
    c.sim.network.setLink(c.handle('n1').ref.address.node, c.handle('n2').ref.address.node, { latencyMs: 3_000 });
    void c.handle('n1').put('app', 'x', undefined, 'old run', { consistency: 'QUORUM' }).catch(() => {});
    await c.sim.runFor(500);
    c.sim.crash('n1');
    await c.sim.runFor(500);
    await c.sim.restart('n1');
    // The new run's first write asks n2 under the same number its previous run's first write did.
    let outcome: { ok: boolean; error?: Error & { fields?: Record<string, unknown> }; at: number } | undefined;
    c.handle('n1')
      .put('app', 'y', undefined, 'new run', { consistency: 'QUORUM' })
      .then(
        () => (outcome = { ok: true, at: c.sim.now }),
        (error: Error) => (outcome = { ok: false, error, at: c.sim.now }),
      );
    // n2 applies x at about 3 s and acknowledges it to n1; y would reach n2 at about 4 s, but n2 crashes before.
    c.sim.at(3_500, 'crash n2', () => c.sim.crash('n2'));
    await c.sim.run({ stopWhen: () => outcome !== undefined, untilMs: 20_000 });
    // Only n1 holds y: a QUORUM success would be a lie.
    expect(outcome, `seed ${seed}`).toMatchObject({ ok: false, error: { name: 'WriteTimeout', fields: { received: 1 } } });
    expect(c.systems.get('n1')!.stats().staleReplies, `seed ${seed}`).toBe(1);
  });
});
