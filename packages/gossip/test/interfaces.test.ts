import { type MembershipEvent as CoreMembershipEvent, type MembershipView, type SchemaMismatch, hostId } from '@chorus/core';
import { describe, expect, it } from 'vitest';
import { LatestMembership, membershipEventsOf, schemaGossipOf, setApplicationState } from '../src/index.js';
import { harness, id, until } from './helpers.js';

const H1 = hostId('123e4567-e89b-42d3-a456-426614174001');
const H2 = hostId('123e4567-e89b-42d3-a456-426614174002');

describe("the gossiper behind core's interfaces", () => {
  it('MembershipEvents: a snapshot first, then changes with a core view; no schema events; nothing after unsubscribe (seed 44)', async () => {
    const h = await harness(44);
    await h.add('n1', { initialState: { dc: 'dc1', rack: 'r1', hostId: H1, schema: 'v1' } });
    const seen: CoreMembershipEvent[] = [];
    const unsubscribe = membershipEventsOf(h.gossipers.get('n1')!).subscribe((e) => seen.push(e));
    await h.add('n2', { initialState: { dc: 'dc1', rack: 'r2', hostId: H2, schema: 'v2' } });
    expect(await until(h, () => seen.some((e) => e.kind === 'up' && e.node === 'n2'), 30_000), 'seed 44').toBeDefined();
    await h.sim.runFor(10); // the probe actor's mailbox lags the listener, called in the gossiper's turn

    expect(seen[0]!.kind).toBe('snapshot');
    expect(seen.filter((e) => e.kind === 'joined').map((e) => 'node' in e && e.node)).toEqual(['n2']);
    expect(seen.some((e) => (e.kind as string) === 'schemaMismatch')).toBe(false);
    // n1 and n2 publish different schema versions, so gossip did notice: only the schema's interface hands that on.
    expect(h.events.get('n1')!.some((e) => e.kind === 'schemaMismatch')).toBe(true);

    const view: MembershipView = seen.at(-1)!.view;
    expect(view.liveNodes()).toEqual(['n1', 'n2']);
    expect(view.isAlive(id('n2'))).toBe(true);
    expect(view.locationOf(id('n2'))).toEqual({ dc: 'dc1', rack: 'r2' });
    expect(view.hostIdOf(id('n2'))).toBe(H2);
    expect(view.hostIdOf(id('n9'))).toBeUndefined();

    unsubscribe();
    await h.sim.runFor(10);
    const count = seen.length;
    setApplicationState(h.gossipers.get('n2')!, { load: 5 });
    await h.sim.runFor(10_000);
    expect(h.views.get('n1')!.endpoint(id('n2'))?.load).toBe(5);
    expect(seen).toHaveLength(count);
  });

  it('MembershipEvents: a listener that throws loses its event with a warning; the others still get it (seed 46)', async () => {
    const h = await harness(46);
    await h.add('n1');
    const events = membershipEventsOf(h.gossipers.get('n1')!);
    events.subscribe(() => {
      throw new Error('bad listener');
    });
    const seen: string[] = [];
    events.subscribe((e) => seen.push(e.kind));
    await h.add('n2');
    expect(await until(h, () => seen.includes('up'), 30_000), 'seed 46').toBeDefined();
    expect(h.logs.some((l) => l.level === 'warn' && l.msg === 'dropped a membership event')).toBe(true);
  });

  it('SchemaGossip: a published version reaches peers, and a live peer with another version is reported until unsubscribed (seed 45)', async () => {
    const h = await harness(45);
    await h.add('n1');
    const schema1 = schemaGossipOf(h.gossipers.get('n1')!);
    schema1.publishVersion('v1');
    const mismatches: SchemaMismatch[] = [];
    const off = schema1.onVersionMismatch((m) => mismatches.push(m));
    await h.add('n2', { initialState: { schema: 'v2' } });
    expect(await until(h, () => mismatches.length > 0, 30_000), 'seed 45').toBeDefined();
    expect(mismatches[0]).toEqual({ peer: 'n2', theirs: 'v2', ours: 'v1' });
    expect(await until(h, () => h.views.get('n2')?.endpoint(id('n1'))?.schema === 'v1', 30_000)).toBeDefined();
    // Publishing the same version again reports the peers that still differ: how the schema hears of them once more.
    const reported = mismatches.length;
    schema1.publishVersion('v1');
    await h.sim.runFor(10);
    expect(mismatches.slice(reported)).toEqual([{ peer: 'n2', theirs: 'v2', ours: 'v1' }]);

    off();
    await h.sim.runFor(10);
    const count = mismatches.length;
    schemaGossipOf(h.gossipers.get('n2')!).publishVersion('v3');
    await h.sim.runFor(10_000);
    expect(h.views.get('n1')!.endpoint(id('n2'))?.schema).toBe('v3');
    expect(mismatches).toHaveLength(count);
  });

  it('LatestMembership answers from the newest snapshot it was handed (seed 47)', async () => {
    const h = await harness(47);
    await h.add('n1', { initialState: { dc: 'dc1', rack: 'r1', hostId: H1 } });
    await h.sim.runFor(10);
    const first = h.views.get('n1')!;
    const latest = new LatestMembership(first);
    expect(latest.liveNodes()).toEqual(['n1']);
    expect(latest.hostIdOf(id('n1'))).toBe(H1);
    expect(latest.locationOf(id('n1'))).toEqual({ dc: 'dc1', rack: 'r1' });
    await h.add('n2');
    expect(await until(h, () => h.views.get('n1')!.liveNodes().length === 2, 30_000), 'seed 47').toBeDefined();
    expect(latest.isAlive(id('n2'))).toBe(false);
    latest.update(h.views.get('n1')!);
    expect(latest.isAlive(id('n2'))).toBe(true);
    expect(latest.snapshot()).toBe(h.views.get('n1'));
    expect(latest.locationOf(id('n2'))).toBeUndefined(); // n2 announced no dc or rack
  });
});
