import { type HostId, nodeId } from '@chorus/core';
import { describe, expect, it } from 'vitest';
import type { ChorusNode, NodeSettings } from '../src/index.js';
import { simCluster } from './sim-cluster.js';

const NAMES = ['n1', 'n2', 'n3'];

async function cluster(seed: number, extra: Partial<NodeSettings> = {}, names: readonly string[] = NAMES) {
  const { sim, nodes, node, during, settle, allUp } = await simCluster(seed, names, { settings: extra, hints: true });
  const stateSeenBy = async (observer: string, target: string) => (await node(observer).status()).nodes.find((e) => e.name === target)?.state;
  await settle('all UN', allUp);
  await during(node('n1').putKeyspace('app', { class: 'SimpleStrategy', rf: 3 }));
  await settle('schema everywhere', async () => (await Promise.all(names.map((n) => node(n).keyspaces()))).every((k) => k.keyspaces.some((x) => x.name === 'app')));
  const crash = (name: string) => {
    sim.crash(name);
    nodes.delete(name);
  };
  const restart = async (name: string) => {
    await sim.restart(name);
    await settle(`${name} restarted`, () => nodes.has(name));
  };
  const pending = (observer: string, hostId: HostId) => node(observer).hintedHandoff!.targets().find((t) => t.hostId === hostId)?.hints ?? 0;
  return { sim, nodes, node, during, settle, crash, restart, stateSeenBy, allUp, pending };
}

type Cell = Awaited<ReturnType<ChorusNode['coordinator']['local']>>;
const text = (cell: Cell) => (cell === undefined || 'tombstone' in cell ? undefined : new TextDecoder().decode(cell.value));

describe('hinted handoff in the simulator', () => {
  it('seed 21: writes a node missed while down reach it after its restart, with their own timestamps and expiry, and the hints drain', async () => {
    const c = await cluster(21);
    const n3HostId = c.node('n3').hostId;
    c.crash('n3');
    await c.settle('n3 DN on n1 and n2', async () => (await c.stateSeenBy('n1', 'n3')) === 'DN' && (await c.stateSeenBy('n2', 'n3')) === 'DN');

    // A history of what the cluster acknowledged: the last acknowledged write of each key is what every replica must hold.
    const acknowledged = new Map<string, { value: string | undefined; timestampMicros: number; expiresAtMicros?: number }>();
    const writes: Array<Promise<void>> = [];
    for (let i = 0; i < 150; i++) {
      const key = `k${i}`;
      const via = c.node(i % 2 === 0 ? 'n1' : 'n2');
      writes.push(
        via.coordinator.put('app', key, undefined, `v${i}`, { consistency: 'QUORUM' }).then((r) => {
          acknowledged.set(key, { value: `v${i}`, timestampMicros: r.timestampMicros });
        }),
      );
    }
    await c.during(Promise.all(writes));
    // Overwrites, deletes and a value with a short TTL, all while n3 is down.
    for (let i = 0; i < 20; i++) {
      const key = `k${i}`;
      if (i % 2 === 0) {
        const r = await c.during(c.node('n2').coordinator.put('app', key, undefined, `w${i}`, { consistency: 'QUORUM' }));
        acknowledged.set(key, { value: `w${i}`, timestampMicros: r.timestampMicros });
      } else {
        const r = await c.during(c.node('n1').coordinator.del('app', key, undefined, { consistency: 'QUORUM' }));
        acknowledged.set(key, { value: undefined, timestampMicros: r.timestampMicros });
      }
    }
    const ttl = await c.during(c.node('n1').coordinator.put('app', 'short-lived', undefined, 'soon gone', { consistency: 'QUORUM', ttlSeconds: 5 }));
    const ttlCell = await c.during(c.node('n1').coordinator.local('app', 'short-lived'));
    expect(ttlCell && 'expiresAtMicros' in ttlCell && ttlCell.expiresAtMicros).toBeGreaterThan(0);
    acknowledged.set('short-lived', { value: 'soon gone', timestampMicros: ttl.timestampMicros, expiresAtMicros: (ttlCell as { expiresAtMicros: number }).expiresAtMicros });

    const pendingBefore = c.pending('n1', n3HostId) + c.pending('n2', n3HostId);
    expect(pendingBefore).toBe(150 + 20 + 1);
    const view = await c.during(c.node('n1').hints());
    expect(view.targets).toEqual([expect.objectContaining({ hostId: n3HostId, name: 'n3', hints: c.pending('n1', n3HostId), needsRepair: false })]);
    expect(view.targets[0]!.oldestMicros).toBeGreaterThan(0);

    // Long enough for the TTL to pass before the hint is replayed: it must arrive already expired.
    await c.sim.runFor(6_000);
    await c.restart('n3');
    await c.settle('hints drained', () => c.pending('n1', n3HostId) === 0 && c.pending('n2', n3HostId) === 0);
    expect(c.node('n1').hintStats()!.delivered + c.node('n2').hintStats()!.delivered).toBe(pendingBefore);

    for (const [key, expected] of acknowledged) {
      for (const name of NAMES) {
        const cell = await c.during(c.node(name).coordinator.local('app', key));
        expect(cell?.timestampMicros, `seed 21: ${key} on ${name}`).toBe(expected.timestampMicros);
        expect(text(cell), `seed 21: ${key} on ${name}`).toBe(expected.value);
        if (expected.expiresAtMicros !== undefined) expect((cell as { expiresAtMicros?: number }).expiresAtMicros).toBe(expected.expiresAtMicros);
      }
    }
    expect(await c.during(c.node('n3').coordinator.get('app', 'short-lived', undefined, { consistency: 'ONE' }))).toBeUndefined();

    // Replaying a hint twice changes nothing: the original timestamps decide.
    const before = await c.during(c.node('n3').coordinator.local('app', 'k40'));
    await c.during(c.node('n1').coordinator.put('app', 'k40', undefined, 'stale', { consistency: 'ONE', timestampMicros: before!.timestampMicros - 1 }));
    expect(text(await c.during(c.node('n3').coordinator.local('app', 'k40')))).toBe('v40');
  });

  it('seed 22: the window runs from the oldest undelivered hint: neither a flapping target nor a coordinator restart resets it', async () => {
    const c = await cluster(22, { maxHintWindowMs: 60_000 });
    const n3HostId = c.node('n3').hostId;
    // n1 cannot reach n3 at all, while n2 can: hints from n1 stay undelivered however often n3 comes and goes.
    c.sim.network.partition([nodeId('n1')], [nodeId('n3')]);
    c.crash('n3');
    await c.settle('n3 DN on n1', async () => (await c.stateSeenBy('n1', 'n3')) === 'DN');
    const start = c.sim.now;
    let i = 0;
    // The hint is stored just after the write is answered.
    const write = async () => {
      await c.during(c.node('n1').coordinator.put('app', `f${i++}`, undefined, 'v', { consistency: 'ONE' }));
      await c.sim.runFor(100);
    };
    await write();
    expect(c.pending('n1', n3HostId)).toBe(1);
    let flaps = 0;
    let coordinatorRestarted = false;
    while (c.sim.now - start < 50_000) {
      await c.sim.runFor(5_000);
      await write();
      if (flaps < 3 && c.sim.now - start > 10_000 * (flaps + 1)) {
        // n3 comes back (n2 sees it, and tells n1 through gossip) and dies again.
        await c.restart('n3');
        await c.settle('n3 UP on n1 through gossip', async () => (await c.stateSeenBy('n1', 'n3')) === 'UN');
        await c.sim.runFor(2_000);
        c.crash('n3');
        flaps++;
      }
      if (!coordinatorRestarted && c.sim.now - start > 25_000) {
        c.crash('n1');
        await c.restart('n1');
        coordinatorRestarted = true;
      }
    }
    expect(flaps).toBe(3);
    expect(coordinatorRestarted).toBe(true);
    // n1 saw n3 up and tried to replay, and failed: the partition stands between them.
    expect(c.node('n1').hintStats()!.deliveryFailures).toBeGreaterThan(0);
    const stored = c.pending('n1', n3HostId);
    expect(stored).toBeGreaterThan(5);
    expect(c.node('n1').hintedHandoff!.needsRepair(n3HostId)).toBe(false);

    await c.sim.runFor(c.sim.now - start > 61_000 ? 0 : 61_000 - (c.sim.now - start));
    await write();
    await write();
    expect(c.pending('n1', n3HostId), 'seed 22: no hint stored past the window').toBe(stored);
    expect(c.node('n1').hintedHandoff!.needsRepair(n3HostId)).toBe(true);
    expect(c.node('n1').hintStats()!.dropped.window).toBe(2);
    expect((await c.during(c.node('n1').status())).nodes.find((e) => e.name === 'n3')?.needsRepair).toBe(true);
    expect((await c.during(c.node('n2').status())).nodes.find((e) => e.name === 'n3')?.needsRepair).toBe(false);

    // Healed and back: the stored hints are delivered; the mark stays, for the writes refused are still missing.
    c.sim.network.heal();
    await c.restart('n3');
    await c.settle('n1 hints drained', () => c.pending('n1', n3HostId) === 0);
    expect(c.node('n1').hintedHandoff!.needsRepair(n3HostId)).toBe(true);
    expect(await c.during(c.node('n3').coordinator.local('app', 'f0'))).toBeDefined();
    expect(await c.during(c.node('n3').coordinator.local('app', `f${i - 1}`))).toBeUndefined();
  });

  it('seed 23: a hint older than gc grace is dropped, never delivered', async () => {
    const c = await cluster(23, { gcGraceSeconds: 30 });
    const n3HostId = c.node('n3').hostId;
    c.crash('n3');
    await c.settle('n3 DN on n1', async () => (await c.stateSeenBy('n1', 'n3')) === 'DN');
    for (let i = 0; i < 10; i++) await c.during(c.node('n1').coordinator.put('app', `g${i}`, undefined, 'v', { consistency: 'QUORUM' }));
    expect(c.pending('n1', n3HostId)).toBe(10);
    await c.sim.runFor(31_000);
    await c.restart('n3');
    await c.settle('expired hints gone', () => c.pending('n1', n3HostId) === 0);
    expect(c.node('n1').hintStats()).toMatchObject({ delivered: 0, dropped: expect.objectContaining({ expired: 10 }) });
    for (let i = 0; i < 10; i++) expect(await c.during(c.node('n3').coordinator.local('app', `g${i}`))).toBeUndefined();
  });

  it('seed 24: a write at ANY through the only live replica reaches the others by hints', async () => {
    const c = await cluster(24);
    c.crash('n2');
    c.crash('n3');
    await c.settle('n2 and n3 DN on n1', async () => (await c.stateSeenBy('n1', 'n2')) === 'DN' && (await c.stateSeenBy('n1', 'n3')) === 'DN');
    // n1 is a replica of everything at rf 3 of 3; QUORUM needs two.
    await expect(c.during(c.node('n1').coordinator.put('app', 'a', undefined, 'v', { consistency: 'QUORUM' }))).rejects.toMatchObject({ name: 'Unavailable' });
    const r = await c.during(c.node('n1').coordinator.put('app', 'a', undefined, 'v', { consistency: 'ANY' }));
    expect(r.timestampMicros).toBeGreaterThan(0);
    await c.restart('n2');
    await c.restart('n3');
    await c.settle('hints drained', () => (c.node('n1').hintedHandoff!.targets().every((t) => t.hints === 0)));
    for (const name of ['n2', 'n3']) expect((await c.during(c.node(name).coordinator.local('app', 'a')))?.timestampMicros).toBe(r.timestampMicros);
  });
});

const FOUR = ['n1', 'n2', 'n3', 'n4'];

describe('hint hand-off in the simulator (what decommission calls)', () => {
  type Acknowledged = Map<string, { value: string | undefined; timestampMicros: number }>;

  /** Writes through n1 while n4 is down, so n1 holds hints for n4: values, overwrites and deletes. */
  async function hintedWrites(c: Awaited<ReturnType<typeof cluster>>, keys: number, prefix = 'h'): Promise<Acknowledged> {
    const acknowledged: Acknowledged = new Map();
    const writes: Array<Promise<void>> = [];
    for (let i = 0; i < keys; i++) {
      const key = `${prefix}${i}`;
      writes.push(c.node('n1').coordinator.put('app', key, undefined, `v${i}`, { consistency: 'QUORUM' }).then((r) => void acknowledged.set(key, { value: `v${i}`, timestampMicros: r.timestampMicros })));
    }
    await c.during(Promise.all(writes));
    for (let i = 0; i < keys; i += 7) {
      const key = `${prefix}${i}`;
      const r = i % 2 === 0 ? await c.during(c.node('n1').coordinator.put('app', key, undefined, `w${i}`, { consistency: 'QUORUM' })) : await c.during(c.node('n1').coordinator.del('app', key, undefined, { consistency: 'QUORUM' }));
      acknowledged.set(key, { value: i % 2 === 0 ? `w${i}` : undefined, timestampMicros: r.timestampMicros });
    }
    // A hint is stored just after its write is answered.
    await c.sim.runFor(500);
    return acknowledged;
  }

  /** Every key is held by exactly rf = 3 nodes, each with the version the cluster acknowledged last, and by no other node in any version. */
  async function expectConverged(c: Awaited<ReturnType<typeof cluster>>, seed: number, acknowledged: Acknowledged): Promise<void> {
    for (const [key, expected] of acknowledged) {
      let copies = 0;
      for (const name of FOUR) {
        const cell = await c.during(c.node(name).coordinator.local('app', key));
        if (cell === undefined) continue;
        expect(cell.timestampMicros, `seed ${seed}: ${key} on ${name}`).toBe(expected.timestampMicros);
        expect(text(cell), `seed ${seed}: ${key} on ${name}`).toBe(expected.value);
        copies++;
      }
      expect(copies, `seed ${seed}: replicas holding ${key}`).toBe(3);
    }
  }

  it('seed 25: n1 hands its hints for n4 to n2, which keeps their ages and delivers them when n4 is back', async () => {
    const c = await cluster(25, {}, FOUR);
    const n4HostId = c.node('n4').hostId;
    c.crash('n4');
    await c.settle('n4 DN on n1 and n2', async () => (await c.stateSeenBy('n1', 'n4')) === 'DN' && (await c.stateSeenBy('n2', 'n4')) === 'DN');
    const acknowledged = await hintedWrites(c, 200);
    const before = c.node('n1').hintedHandoff!.targets();
    expect(before).toEqual([expect.objectContaining({ hostId: n4HostId, needsRepair: false })]);
    expect(before[0]!.hints).toBeGreaterThan(100);
    expect(c.node('n2').hintedHandoff!.targets()).toEqual([]);

    // Later than the writes: the hints must arrive with the ages they already have.
    await c.sim.runFor(5_000);
    const result = await c.during(c.node('n1').hintedHandoff!.handOff(nodeId('n2')));
    expect(result).toEqual({ to: nodeId('n2'), handedOff: before[0]!.hints, bytes: before[0]!.bytes, delivered: 0, dropped: 0 });
    expect(c.node('n1').hintedHandoff!.targets()).toEqual([]);
    expect(c.node('n2').hintedHandoff!.targets()).toEqual(before);
    expect((await c.during(c.node('n2').hints())).targets).toEqual([expect.objectContaining({ hostId: n4HostId, name: 'n4', hints: before[0]!.hints, oldestMicros: before[0]!.oldestMicros })]);

    await c.restart('n4');
    await c.settle('n2 delivered the hints', () => c.pending('n2', n4HostId) === 0);
    expect(c.node('n2').hintStats()!.delivered).toBe(before[0]!.hints);
    expect(c.node('n1').hintStats()!.delivered).toBe(0);
    await expectConverged(c, 25, acknowledged);
  });

  it('seed 26: the receiver crashes mid-hand-off; the sender keeps what was not acknowledged, a second call finishes, and no hint is lost', async () => {
    // Slow enough (8 KiB/s) that the hand-off spans several batches of 128 hints.
    const c = await cluster(26, { hintedHandoffThrottleKiBps: 8 }, FOUR);
    const n4HostId = c.node('n4').hostId;
    c.crash('n4');
    await c.settle('n4 DN on n1 and n2', async () => (await c.stateSeenBy('n1', 'n4')) === 'DN' && (await c.stateSeenBy('n2', 'n4')) === 'DN');
    const acknowledged = await hintedWrites(c, 600);
    const total = c.pending('n1', n4HostId);
    expect(total).toBeGreaterThan(3 * 128);

    const first = c.node('n1').hintedHandoff!.handOff(nodeId('n2'));
    first.catch(() => {});
    // Once n2 stored its second batch, it crashes: the first was acknowledged, the second's acknowledgement may not have reached n1.
    await c.sim.run({ stopWhen: () => c.pending('n2', n4HostId) >= 2 * 128, untilMs: c.sim.now + 60_000 });
    expect(c.pending('n2', n4HostId)).toBe(2 * 128);
    c.crash('n2');
    const failure = await c.during(first).then(
      () => undefined,
      (error: unknown) => error as { name: string; fields: { moved: number; remaining: number } },
    );
    expect(failure).toMatchObject({ name: 'HintHandOffFailed' });
    const moved = failure!.fields.moved;
    expect(moved).toBeGreaterThanOrEqual(128);
    expect(moved).toBeLessThanOrEqual(2 * 128);
    expect(failure!.fields.remaining).toBe(total - moved);
    expect(c.pending('n1', n4HostId), 'seed 26: n1 keeps every hint n2 did not acknowledge').toBe(total - moved);

    await c.restart('n2');
    // What n2 stored before it crashed is still there, acknowledged or not.
    expect(c.pending('n2', n4HostId)).toBeGreaterThanOrEqual(moved);
    const storedBefore = c.pending('n2', n4HostId);
    await c.settle('n2 UN on n1', async () => (await c.stateSeenBy('n1', 'n2')) === 'UN');
    const second = await c.during(c.node('n1').hintedHandoff!.handOff(nodeId('n2')));
    expect(second.handedOff).toBe(total - moved);
    expect(c.node('n1').hintedHandoff!.targets()).toEqual([]);
    // At most the one unacknowledged batch arrives twice; replaying it twice changes nothing.
    expect(c.pending('n2', n4HostId)).toBe(storedBefore + total - moved);
    expect(c.pending('n2', n4HostId)).toBeGreaterThanOrEqual(total);
    expect(c.pending('n2', n4HostId)).toBeLessThanOrEqual(total + 128);

    await c.restart('n4');
    await c.settle('n2 delivered the hints', () => c.pending('n2', n4HostId) === 0);
    expect(c.node('n2').hintStats()!.delivered).toBeGreaterThanOrEqual(total);
    await expectConverged(c, 26, acknowledged);
  });

  it('seed 27: gc grace keeps counting from when a hint was first written, not from its hand-off', async () => {
    const c = await cluster(27, { gcGraceSeconds: 30 }, FOUR);
    const n4HostId = c.node('n4').hostId;
    c.crash('n4');
    await c.settle('n4 DN on n1', async () => (await c.stateSeenBy('n1', 'n4')) === 'DN');
    await hintedWrites(c, 20, 'g');
    const hinted = c.pending('n1', n4HostId);
    expect(hinted).toBeGreaterThan(0);
    await c.sim.runFor(20_000);
    expect((await c.during(c.node('n1').hintedHandoff!.handOff(nodeId('n2')))).handedOff).toBe(hinted);
    // 35 s after the writes, 15 s after the hand-off: past gc grace, so never delivered.
    await c.sim.runFor(15_000);
    await c.restart('n4');
    await c.settle('expired hints gone from n2', () => c.pending('n2', n4HostId) === 0);
    expect(c.node('n2').hintStats()).toMatchObject({ delivered: 0, dropped: expect.objectContaining({ expired: hinted }) });
    for (let i = 0; i < 20; i++) expect(await c.during(c.node('n4').coordinator.local('app', `g${i}`))).toBeUndefined();
  });
});
