import { ActorSystem } from '@chorus/actors';
import { nodeId, realEnv } from '@chorus/core';
import { Simulation } from '@chorus/sim';
import { LOCAL, spawnStorage, write } from '@chorus/storage';
import { MemoryLevel } from 'memory-level';
import { describe, expect, it } from 'vitest';
import { startChorusNode } from '../src/index.js';
import { simCluster, simSettings } from './sim-cluster.js';

const HOUR_MICROS = 3_600_000_000;

describe('gossip generation across restarts', () => {
  it('seed 21: grows on every restart after the clock stepped back an hour, so a cleanly stopped node comes back UN', async () => {
    const seed = 21;
    const { sim, nodes, node, settle, during } = await simCluster(seed, ['n1', 'n2', 'n3'], { runLimitMs: 30_000, pollMs: 100 });
    const seenBy = async (observer: string, target: string) => (await during(node(observer).status())).nodes.find((n) => n.name === target);
    await settle('all UN', async () => nodes.size === 3 && (await node('n1').status()).nodes.filter((n) => n.state === 'UN').length === 3);
    const generations = [(await seenBy('n1', 'n3'))!.generation!];
    sim.setClockSkew('n3', -HOUR_MICROS);
    for (let restart = 1; restart <= 3; restart++) {
      // A clean stop: the peers hear the shutdown and mark n3 down at once; only a larger generation brings it back.
      await during(node('n3').stop());
      sim.crash('n3');
      nodes.delete('n3');
      await settle(`n3 DN (stop ${restart})`, async () => (await seenBy('n1', 'n3'))?.state === 'DN');
      await sim.restart('n3');
      await settle(`n3 UN again (restart ${restart})`, async () => nodes.has('n3') && (await seenBy('n1', 'n3'))?.state === 'UN');
      generations.push((await seenBy('n1', 'n3'))!.generation!);
    }
    for (let i = 1; i < generations.length; i++) expect(generations[i], `seed ${seed}: generations ${generations.join(', ')}`).toBeGreaterThan(generations[i - 1]!);
  });

  it('seed 22: a node whose stored generation cannot be outgrown refuses to start and says why', async () => {
    const db = new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
    // A generation row stored at the largest timestamp there is: no later write of the node can replace it.
    const env = realEnv(nodeId('n1'));
    const system = new ActorSystem({ env });
    const storage = spawnStorage(system, { db, env });
    await write(storage.ref, { ...LOCAL.generation, cell: { value: new TextEncoder().encode('1700000000'), timestampMicros: Number.MAX_SAFE_INTEGER } }, 2_000);
    await storage.close();
    await system.shutdown();
    await db.open();

    const sim = new Simulation({ seed: 22 });
    let outcome: { ok: true } | { ok: false; error: unknown } | undefined;
    await sim.addNode('n1', ({ env: simEnv, transport }) => {
      startChorusNode({ env: simEnv, transport, db, settings: simSettings('n1', { seeds: [] }) }).then(
        (n) => {
          outcome = { ok: true };
          return n.stop();
        },
        (error: unknown) => (outcome = { ok: false, error }),
      );
    });
    await sim.run({ stopWhen: () => outcome !== undefined, untilMs: sim.now + 30_000 });
    expect(outcome).toMatchObject({ ok: false, error: { name: 'GenerationNotIncreasing', fields: { previousGeneration: 1_700_000_000 } } });
    if (outcome?.ok === false) expect((outcome.error as Error).message).toMatch(/generation/);
  });
});
