import { ActorSystem } from '@chorus/actors';
import { type HostId, type MembershipEvent, type MembershipListener, type MembershipView, type NodeId, hostId, nodeId, realEnv } from '@chorus/core';
import { HybridLogicalClock } from '@chorus/replica';
import { afterEach, describe, expect, it } from 'vitest';
import { type HintsHandle, type HintsOptions, startHints } from '../src/index.js';
import { HOST_A, HOST_B, NODE_A, NODE_B, memoryDb, write } from './helpers.js';

/** Membership that the test sets by hand: every target is down, with the host ids given. */
function fakeMembership(hostIds: Map<NodeId, HostId>) {
  const listeners: MembershipListener[] = [];
  const view: MembershipView = {
    isAlive: () => false,
    locationOf: () => undefined,
    liveNodes: () => [],
    hostIdOf: (n) => hostIds.get(n),
  };
  return {
    view,
    events: {
      subscribe(listener: MembershipListener) {
        listeners.push(listener);
        listener({ kind: 'snapshot', view });
        return () => void listeners.splice(listeners.indexOf(listener), 1);
      },
    },
    emit(event: MembershipEvent) {
      for (const l of listeners) l(event);
    },
  };
}

async function until(what: string, check: () => boolean, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('the hints service', () => {
  const running: Array<{ hints: HintsHandle; system: ActorSystem }> = [];
  afterEach(async () => {
    for (const { hints, system } of running.splice(0)) {
      await hints.stop();
      await system.shutdown();
    }
  });

  async function start(membership: ReturnType<typeof fakeMembership>, extra: Partial<HintsOptions> = {}) {
    const env = realEnv(nodeId('10.0.0.9:7000'));
    const system = new ActorSystem({ env });
    const hints = await startHints(system, { env, db: memoryDb(), membership: membership.view, events: membership.events, hlc: new HybridLogicalClock(() => env.clock.nowMicros()), ...extra });
    running.push({ hints, system });
    return hints;
  }

  it('drops the hints of a host id that was removed, or replaced at the same address, and no other', async () => {
    const ids = new Map<NodeId, HostId>([[NODE_A, HOST_A], [NODE_B, HOST_B]]);
    const m = fakeMembership(ids);
    const hints = await start(m);
    for (let i = 0; i < 3; i++) {
      expect(await hints.offer(NODE_A, write(`a${i}`, 'v', i))).toBe(true);
      expect(await hints.offer(NODE_B, write(`b${i}`, 'v', i))).toBe(true);
    }
    expect(hints.targets().map((t) => [t.hostId, t.hints])).toEqual([[HOST_A, 3], [HOST_B, 3]]);

    m.emit({ kind: 'removed', node: NODE_A, view: m.view });
    await until('host A dropped', () => hints.targets().every((t) => t.hostId !== HOST_A));
    expect(hints.stats().dropped.removed).toBe(3);

    // NODE_B comes back as a new node (a replacement) at the same address: its predecessor's hints must not reach it.
    const replacement = hostId('cccccccc-0000-4000-8000-000000000003');
    ids.set(NODE_B, replacement);
    m.emit({ kind: 'changed', node: NODE_B, key: 'HOST_ID', oldValue: HOST_B, newValue: replacement, view: m.view });
    await until('host B dropped', () => hints.targets().length === 0);
    expect(hints.stats()).toMatchObject({ stored: 6, delivered: 0, pendingHints: 0, dropped: expect.objectContaining({ removed: 6 }) });
  });

  it('stores no hint for a host id that left or was removed before the hint came (a write still open when it left), so none waits forever (swarm seed 36)', async () => {
    const m = fakeMembership(new Map<NodeId, HostId>([[NODE_A, HOST_A], [NODE_B, HOST_B]]));
    const hints = await start(m);
    m.emit({ kind: 'left', node: NODE_A, view: m.view });
    m.emit({ kind: 'removed', node: NODE_B, view: m.view });
    expect(await hints.offer(NODE_A, write('a', 'v', 1))).toBe(false);
    expect(await hints.offer(NODE_B, write('b', 'v', 1))).toBe(false);
    expect(hints.targets()).toEqual([]);
    expect(hints.stats()).toMatchObject({ stored: 0, pendingHints: 0, dropped: expect.objectContaining({ removed: 2 }) });
  });

  it('drops, within a dispatch interval, the hints it holds for a host id gone before it started: no event will say so again (swarm seed 19)', async () => {
    const gone = new Set<HostId>();
    const m = fakeMembership(new Map<NodeId, HostId>([[NODE_A, HOST_A], [NODE_B, HOST_B]]));
    const hints = await start(m, { isGone: (id) => gone.has(id), dispatchIntervalMs: 20 });
    expect(await hints.offer(NODE_A, write('a', 'v', 1))).toBe(true);
    expect(await hints.offer(NODE_B, write('b', 'v', 1))).toBe(true);
    gone.add(HOST_A);
    await until('host A dropped', () => hints.targets().every((t) => t.hostId !== HOST_A));
    expect(hints.targets().map((t) => [t.hostId, t.hints])).toEqual([[HOST_B, 1]]);
    expect(await hints.offer(NODE_A, write('a', 'v', 2))).toBe(false);
  });

  it('refuses what it cannot address or must not store, and counts why', async () => {
    const m = fakeMembership(new Map([[NODE_A, HOST_A]]));
    const hints = await start(m);
    expect(await hints.offer(nodeId('10.0.0.7:7000'), write('k', 'v', 1))).toBe(false);
    expect(await hints.offer(nodeId('10.0.0.9:7000'), write('k', 'v', 1))).toBe(false);
    expect(hints.stats().dropped.unknown).toBe(1);
    const off = await start(m, { enabled: false });
    expect(off.enabled).toBe(false);
    expect(await off.offer(NODE_A, write('k', 'v', 1))).toBe(false);
    expect(off.targets()).toEqual([]);
  });

  it('purges hints past gc grace while their target stays down', async () => {
    const m = fakeMembership(new Map([[NODE_A, HOST_A]]));
    const hints = await start(m, { gcGraceSecondsOf: (ks) => (ks === 'short' ? 0 : 864_000), dispatchIntervalMs: 20 });
    for (let i = 0; i < 5; i++) expect(await hints.offer(NODE_A, write(`s${i}`, 'v', i, { keyspace: 'short' }))).toBe(true);
    await until('expired hints purged', () => hints.targets().length === 0);
    expect(hints.stats().dropped.expired).toBe(5);
    // A keyspace with a long grace keeps its hints.
    expect(await hints.offer(NODE_A, write('l', 'v', 1, { keyspace: 'long' }))).toBe(true);
    hints.dispatch();
    await new Promise((r) => setTimeout(r, 100));
    expect(hints.targets().map((t) => t.hints)).toEqual([1]);
  });

  it('drops hints written before a repair of their range let tombstones go (repair-based tombstone GC)', async () => {
    const m = fakeMembership(new Map([[NODE_A, HOST_A]]));
    let repairedAt = -Infinity;
    const hints = await start(m, { purgeHorizon: (ks) => (ks === 'repaired' ? repairedAt : -Infinity), dispatchIntervalMs: 20 });
    for (let i = 0; i < 3; i++) expect(await hints.offer(NODE_A, write(`r${i}`, 'v', i, { keyspace: 'repaired' }))).toBe(true);
    expect(await hints.offer(NODE_A, write('o', 'v', 1, { keyspace: 'other' }))).toBe(true);
    hints.dispatch();
    await new Promise((r) => setTimeout(r, 100));
    expect(hints.targets().map((t) => t.hints)).toEqual([4]);
    // A repair of the range finished: a tombstone these hints should meet may be purged everywhere now.
    repairedAt = Number.MAX_SAFE_INTEGER;
    await until('hints before the repair dropped', () => hints.targets()[0]?.hints === 1);
    expect(hints.stats().dropped.expired).toBe(3);
  });
});
