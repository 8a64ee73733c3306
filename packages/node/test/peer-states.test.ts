import { ActorSystem } from '@chorus/actors';
import { type Logger, type NodeId, nodeId, realEnv } from '@chorus/core';
import type { EndpointState } from '@chorus/gossip';
import { tokenOf } from '@chorus/ring';
import { spawnStorage, systemRow, write } from '@chorus/storage';
import { MemoryLevel } from 'memory-level';
import { describe, expect, it } from 'vitest';
import { ringOf } from '../src/index.js';
import { keepPeerStates, loadPeerStates } from '../src/local-state.js';
import { simCluster } from './sim-cluster.js';

const TIME_SCALE = Math.max(1, Number(process.env.CHORUS_TEST_TIME_SCALE ?? 1) || 1);
const NAMES = ['n1', 'n2', 'n3', 'n4'];
const KS = 'app';
const REPLICATION = { class: 'SimpleStrategy' as const, rf: 2 };

describe("peers' ring state across restarts", () => {
  it('seed 262: every peer restarts while n3 is down; n3 stays in every ring, DN, a replica of its ranges, and a node joining then streams only what it owns', async () => {
    const c = await simCluster(262, NAMES, { hints: true });
    await c.settle('all UN', c.allUp);
    await c.during(c.node('n1').putKeyspace(KS, REPLICATION));
    await c.settle('schema everywhere', async () => (await Promise.all(NAMES.map((n) => c.node(n).keyspaces()))).every((k) => k.keyspaces.some((x) => x.name === KS)));
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    await c.during(Promise.all(keys.map((k, i) => c.node(NAMES[i % 4]!).coordinator.put(KS, k, undefined, `${k}-v`, { consistency: 'ALL' }))));
    const n3Tokens = ringOf(c.node('n1').membership()).member(nodeId('n3'))!.tokens;

    c.sim.crash('n3');
    c.nodes.delete('n3');
    const others = ['n1', 'n2', 'n4'];
    const seesN3 = async (n: string, state: string) => (await c.node(n).status()).nodes.find((e) => e.name === 'n3')?.state === state;
    await c.settle('n3 DN everywhere', async () => (await Promise.all(others.map((n) => seesN3(n, 'DN')))).every(Boolean));

    // Every peer of n3 restarts with its disk, all at once (a power cut of the rack, say): none of them hears of n3 again.
    for (const n of others) {
      c.sim.crash(n);
      c.nodes.delete(n);
    }
    await c.sim.runFor(2_000);
    const restartedAt = c.sim.now;
    for (const n of others) await c.sim.restart(n);
    await c.settle('every peer restarted', () => others.every((n) => c.nodes.has(n)));
    if (process.env.CHORUS_VERBOSE) console.log(`seed 262: every peer serving again ${c.sim.now - restartedAt} ms (virtual) after the restarts`);
    await c.settle('the live peers UN everywhere', async () => (await Promise.all(others.map(async (n) => (await c.node(n).status()).nodes.filter((e) => e.state === 'UN').length))).every((u) => u === 3));
    for (const n of others) {
      expect(await c.during(seesN3(n, 'DN')), `${n}: n3 is DN`).toBe(true);
      const ring = ringOf(c.node(n).membership());
      expect(ring.members.map((m) => `${m.node}:${m.status}`), n).toEqual(['n1:normal', 'n2:normal', 'n3:normal', 'n4:normal']);
      expect(ring.member(nodeId('n3'))!.tokens, n).toEqual(n3Tokens);
      // Each range n3 owns still has n3 among its replicas.
      for (const t of n3Tokens) expect(ring.naturalReplicas(t, REPLICATION), `${n}: the replicas of n3's token ${t}`).toContain(nodeId('n3'));
    }

    // n5 bootstraps into the ring with n3 still down: it streams the ranges it gains from the replicas that keep them.
    await c.add('n5', { autoBootstrap: true });
    const everyone = [...others, 'n5'];
    await c.settle(
      'n5 UN everywhere',
      async () => c.nodes.has('n5') && (await Promise.all(everyone.map(async (n) => (await c.node(n).status()).nodes.filter((e) => e.state === 'UN').length))).every((u) => u === 4),
      600_000,
    );
    const ring = ringOf(c.node('n5').membership());
    expect(ring.members.map((m) => `${m.node}:${m.status}`)).toEqual(['n1:normal', 'n2:normal', 'n3:normal', 'n4:normal', 'n5:normal']);
    const problems: string[] = [];
    let mine = 0;
    for (const key of keys) {
      const replica = ring.naturalReplicas(tokenOf(key), REPLICATION).includes(nodeId('n5'));
      const cell = await c.during(c.node('n5').coordinator.local(KS, key));
      if (replica) mine++;
      if (!replica && cell !== undefined) problems.push(`${key}: n5 holds it but is no replica of it`);
      if (replica && cell === undefined) problems.push(`${key}: n5 is a replica of it but did not stream it`);
    }
    expect(problems).toEqual([]);
    expect(mine).toBeGreaterThan(0);
  }, 180_000 * TIME_SCALE);

  it("the peers' record is read back as kept, and checked as a peer's gossip: a malformed entry is skipped with a warning, an unreadable record ignored", async () => {
    const warnings: string[] = [];
    const logger: Logger = { debug() {}, info() {}, warn: (_o, msg) => void warnings.push(msg ?? ''), error() {}, child: () => logger };
    const env = realEnv(nodeId('n1'), logger);
    const system = new ActorSystem({ env });
    const db = new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
    const storage = spawnStorage(system, { db, env });
    try {
      const state = (generation: number): EndpointState => ({ heartbeat: { generation, version: 7 }, app: { STATUS: { value: 'NORMAL', version: 2 }, TOKENS: { value: '-5,5', version: 1 } } });
      const records = new Map<NodeId, EndpointState>();
      const keeper = keepPeerStates(storage, env, records, 2_000);
      for (const n of ['n2', 'n3', 'n4']) keeper.set(nodeId(n), state(100));
      keeper.set(nodeId('n4'), undefined);
      keeper.set(nodeId('n3'), state(101));
      await keeper.flush();
      expect(Object.fromEntries(await loadPeerStates(storage, env))).toEqual({ n2: state(100), n3: state(101) });
      expect(warnings).toEqual([]);

      // What a damaged disk (or a hand-edited one) may hold.
      const row = systemRow('local', 'peer_states');
      const stored = (text: string, at: number) => write(storage.ref, { ...row, cell: { value: new TextEncoder().encode(text), timestampMicros: env.clock.nowMicros() + at } }, 2_000);
      await stored(
        JSON.stringify({
          n2: state(100),
          'not a node id!': state(100),
          n5: { heartbeat: { generation: 1.5, version: 1 }, app: {} },
          n6: { heartbeat: { generation: 1, version: 1 }, app: { NAME: { value: 'x'.repeat(70_000), version: 1 } } },
          n7: { heartbeat: { generation: 1, version: 1 }, app: { NAME: { value: 42, version: 1 } } },
          n8: 'NORMAL',
        }),
        1_000_000,
      );
      expect([...(await loadPeerStates(storage, env)).keys()]).toEqual(['n2']);
      expect(warnings).toEqual(["skipped malformed entries of the record of the peers' ring state"]);
      await stored('{"n2":', 2_000_000);
      expect((await loadPeerStates(storage, env)).size).toBe(0);
      expect(warnings.at(-1)).toBe("the record of the peers' ring state is unreadable; starting without it");
    } finally {
      await storage.close();
      await system.shutdown();
    }
  });
});
