import { type ActorRef, ActorSystem } from '@chorus/actors';
import { type NodeId, nodeId } from '@chorus/core';
import { Simulation } from '@chorus/sim';
import { SCHEMA_PARTITION, type StorageHandle, spawnStorage, systemRow, write } from '@chorus/storage';
import { wireCodec } from '@chorus/wire';
import { MemoryLevel } from 'memory-level';
import { describe, expect, it } from 'vitest';
import { type SchemaMsg, type SchemaOptions, type SchemaSnapshot, type StoredKeyspace, loadSchema, putKeyspace, schemaVersion, spawnSchema, validateKeyspaceRequest } from '../src/index.js';
import { VersionBus } from './helpers.js';

const simple = (name: string, rf: number, timestampMicros: number): StoredKeyspace => ({ name, replication: { class: 'SimpleStrategy', rf }, readRepair: 'blocking', tombstoneGc: 'repair', timestampMicros });

describe('schemaVersion', () => {
  it('depends on the definitions, not on their order or the order of datacenters', () => {
    const a = simple('a', 3, 10);
    const b: StoredKeyspace = { name: 'b', replication: { class: 'NetworkTopologyStrategy', dcs: { dc1: 3, dc2: 2 } }, readRepair: 'blocking', tombstoneGc: 'repair', timestampMicros: 20 };
    const bReordered: StoredKeyspace = { ...b, replication: { class: 'NetworkTopologyStrategy', dcs: { dc2: 2, dc1: 3 } } };
    expect(schemaVersion([a, b])).toBe(schemaVersion([bReordered, a]));
    expect(schemaVersion([a, b])).not.toBe(schemaVersion([a]));
    expect(schemaVersion([a])).not.toBe(schemaVersion([simple('a', 3, 11)]));
    expect(schemaVersion([a])).not.toBe(schemaVersion([simple('a', 2, 10)]));
    expect(schemaVersion([])).toMatch(/^[0-9a-f]{32}$/);
    // Read repair is part of the definition: turning it off is a new version, which gossip spreads.
    expect(schemaVersion([a])).not.toBe(schemaVersion([{ ...a, readRepair: 'none' }]));
    // So is tombstone gc.
    expect(schemaVersion([a])).not.toBe(schemaVersion([{ ...a, tombstoneGc: 'grace' }]));
    expect(schemaVersion([{ ...a, readRepair: 'none' }])).not.toBe(schemaVersion([{ ...a, tombstoneGc: 'grace' }]));
  });

  it('comes out the same on a node whose locale orders names differently', () => {
    const keyspaces = [simple('ks_i', 3, 1), simple('ks_j', 3, 2), simple('ks_y', 3, 3)];
    const dcs: StoredKeyspace = { name: 'ks_n', replication: { class: 'NetworkTopologyStrategy', dcs: { dc_y: 1, dc_j: 2 } }, readRepair: 'blocking', tombstoneGc: 'repair', timestampMicros: 4 };
    const expected = schemaVersion([...keyspaces, dcs]);
    // A process started with LANG=lt_LT compares strings as Lithuanian does: y between i and j.
    const lithuanian = new Intl.Collator('lt');
    expect(lithuanian.compare('ks_y', 'ks_j')).toBeLessThan(0);
    const localeCompare = String.prototype.localeCompare;
    String.prototype.localeCompare = function (this: string, that: string) {
      return lithuanian.compare(this, that);
    };
    try {
      expect(schemaVersion([...keyspaces, dcs])).toBe(expected);
    } finally {
      String.prototype.localeCompare = localeCompare;
    }
  });
});

describe('validateKeyspaceRequest', () => {
  it('accepts a valid definition and refuses a bad name or an empty NetworkTopologyStrategy', () => {
    expect(validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 3 }, new Set(['dc1']))).toEqual({ name: 'app', replication: { class: 'SimpleStrategy', rf: 3 } });
    expect(validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 3 }, new Set(['dc1']), 'none')).toEqual({ name: 'app', replication: { class: 'SimpleStrategy', rf: 3 }, readRepair: 'none' });
    expect(() => validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 3 }, new Set(['dc1']), 'sometimes')).toThrow(expect.objectContaining({ name: 'InvalidRequest' }));
    expect(validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 3 }, new Set(['dc1']), undefined, 'grace')).toEqual({ name: 'app', replication: { class: 'SimpleStrategy', rf: 3 }, tombstoneGc: 'grace' });
    expect(validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 3 }, new Set(['dc1']), 'none', 'Repair')).toEqual({ name: 'app', replication: { class: 'SimpleStrategy', rf: 3 }, readRepair: 'none', tombstoneGc: 'repair' });
    expect(() => validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 3 }, new Set(['dc1']), undefined, 'never')).toThrow(expect.objectContaining({ name: 'InvalidRequest', fields: { field: 'tombstone_gc' } }));
    expect(() => validateKeyspaceRequest('bad name', { class: 'SimpleStrategy', rf: 3 }, new Set())).toThrow(expect.objectContaining({ name: 'InvalidRequest' }));
    expect(() => validateKeyspaceRequest('app', { class: 'NetworkTopologyStrategy' }, new Set(['dc1']))).toThrow(expect.objectContaining({ name: 'InvalidRequest' }));
  });
});

interface Node {
  ref: ActorRef<SchemaMsg>;
  storage: StorageHandle;
  system: ActorSystem;
  latest: SchemaSnapshot | undefined;
}

/** Schema actors on simulated nodes, each on its own memory-level disk that survives restarts, meeting through a VersionBus. */
async function cluster(seed: number, names: string[], pullRetry?: SchemaOptions['pullRetry']) {
  const sim = new Simulation({ seed, network: { latencyMs: 2, jitterMs: 2 } });
  const bus = new VersionBus();
  const nodes = new Map<string, Node>();
  for (const name of names) {
    await sim.addNode(name, async ({ env, transport, disk }) => {
      let db = disk.get('db') as MemoryLevel<Uint8Array, Uint8Array> | undefined;
      if (!db) {
        db = new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
        disk.set('db', db);
      }
      const system = new ActorSystem({ env, transport, codec: wireCodec() });
      const storage = spawnStorage(system, { db, env });
      const node: Node = { system, storage, latest: undefined, ref: undefined as unknown as ActorRef<SchemaMsg> };
      node.ref = spawnSchema(system, { storage, initial: await loadSchema(storage), gossip: bus.gossipOf(env.node), timeoutMs: 5_000, ...(pullRetry ? { pullRetry } : {}), listener: { schemaChanged: (s) => (node.latest = s) } });
      nodes.set(name, node);
    });
  }
  /** Asks inside the simulation are answered only while it runs. */
  const during = async <T>(promise: Promise<T>): Promise<T> => {
    let done = false;
    const settled = promise.finally(() => (done = true));
    settled.catch(() => {});
    await sim.run({ stopWhen: () => done, untilMs: sim.now + 30_000 });
    return settled;
  };
  await sim.runFor(100);
  return { sim, bus, nodes, during };
}

describe('the schema actor', () => {
  it('stores a change, publishes its version, and keeps it across a restart (seed 21)', async () => {
    const { sim, bus, nodes, during } = await cluster(21, ['n1']);
    const empty = nodes.get('n1')!.latest!.version;
    expect(bus.versions.get(nodeId('n1'))).toBe(empty);
    const snapshot = await during(putKeyspace(nodes.get('n1')!.ref, validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 1 }, new Set()), 5_000));
    expect([...snapshot.keyspaces.keys()]).toEqual(['app']);
    expect(snapshot.version).not.toBe(empty);
    expect(bus.versions.get(nodeId('n1'))).toBe(snapshot.version);

    sim.crash('n1');
    await sim.restart('n1');
    await sim.runFor(100);
    expect(nodes.get('n1')!.latest!.version).toBe(snapshot.version);
    expect(nodes.get('n1')!.latest!.keyspaces.get('app')).toEqual(snapshot.keyspaces.get('app'));
  });

  it('refuses to define the system keyspace (seed 22)', async () => {
    const { nodes, during } = await cluster(22, ['n1']);
    await expect(during(putKeyspace(nodes.get('n1')!.ref, { name: 'system', replication: { class: 'SimpleStrategy', rf: 1 } }, 5_000))).rejects.toMatchObject({ name: 'InvalidRequest' });
  });

  it('pulls from a peer that publishes another version and keeps the newest definition of each keyspace (seed 23)', async () => {
    const { sim, nodes, during } = await cluster(23, ['n1', 'n2', 'n3']);
    await during(putKeyspace(nodes.get('n1')!.ref, validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 1 }, new Set()), 5_000));
    await sim.runFor(10);
    await during(putKeyspace(nodes.get('n2')!.ref, validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 3 }, new Set()), 5_000));
    await during(putKeyspace(nodes.get('n3')!.ref, validateKeyspaceRequest('other', { class: 'SimpleStrategy', rf: 2 }, new Set()), 5_000));
    await sim.runFor(1_000);
    const versions = new Set([...nodes.values()].map((n) => n.latest!.version));
    expect(versions.size).toBe(1);
    for (const node of nodes.values()) {
      expect(node.latest!.keyspaces.get('app')!.replication).toEqual({ class: 'SimpleStrategy', rf: 3 });
      expect(node.latest!.keyspaces.get('other')!.replication).toEqual({ class: 'SimpleStrategy', rf: 2 });
    }
  });

  it('retries a pull lost to a partition, so a node that missed the definitions gets them once the partition heals, though no version changed since (seed 28)', async () => {
    const { sim, nodes, during } = await cluster(28, ['n1', 'n2']);
    sim.network.partition([nodeId('n1')], [nodeId('n2')]);
    const created = await during(putKeyspace(nodes.get('n1')!.ref, validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 2 }, new Set()), 5_000));
    // n2 heard the new version at once (gossip saw n1 UP) and pulled into the cut: the pull times out after 5 s.
    await sim.runFor(6_000);
    expect(nodes.get('n2')!.latest!.keyspaces.has('app')).toBe(false);
    sim.network.heal();
    // Nothing changes after the heal: only a retry of the lost pull brings the definition.
    await sim.runFor(60_000);
    expect(nodes.get('n2')!.latest!.version).toBe(created.version);
    expect(nodes.get('n2')!.latest!.keyspaces.get('app')).toEqual(created.keyspaces.get('app'));
  });

  it('gives up on a peer after its last retry, publishes its version again later and pulls then, so a cut longer than every retry still heals (seed 29)', async () => {
    const { sim, nodes, during } = await cluster(29, ['n1', 'n2'], { attempts: 2, firstMs: 500, maxMs: 2_000 });
    sim.network.partition([nodeId('n1')], [nodeId('n2')]);
    const created = await during(putKeyspace(nodes.get('n1')!.ref, validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 2 }, new Set()), 5_000));
    // The pull and both retries time out in the cut (5 s each): n2 gives up on n1.
    await sim.runFor(40_000);
    expect(nodes.get('n2')!.latest!.keyspaces.has('app')).toBe(false);
    sim.network.heal();
    // No version changes after the heal, and no retry is left: n2 publishing its own again is what brings the definition.
    await sim.runFor(30_000);
    expect(nodes.get('n2')!.latest!.keyspaces.get('app')).toEqual(created.keyspaces.get('app'));
  });

  it('spreads read_repair with the definition; a change that does not name it keeps it (seed 25)', async () => {
    const { sim, nodes, during } = await cluster(25, ['n1', 'n2']);
    const n1 = nodes.get('n1')!;
    const created = await during(putKeyspace(n1.ref, validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 1 }, new Set()), 5_000));
    expect(created.keyspaces.get('app')!.readRepair).toBe('blocking');
    await during(putKeyspace(n1.ref, validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 1 }, new Set(), 'none'), 5_000));
    await sim.runFor(1_000);
    expect(nodes.get('n2')!.latest!.keyspaces.get('app')).toMatchObject({ readRepair: 'none' });
    // Replication changed without read_repair: the keyspace keeps none, everywhere.
    await during(putKeyspace(nodes.get('n2')!.ref, validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 2 }, new Set()), 5_000));
    await sim.runFor(1_000);
    for (const node of nodes.values()) expect(node.latest!.keyspaces.get('app')).toMatchObject({ replication: { class: 'SimpleStrategy', rf: 2 }, readRepair: 'none' });
    sim.crash('n2');
    await sim.restart('n2');
    await sim.runFor(100);
    expect(nodes.get('n2')!.latest!.keyspaces.get('app')).toMatchObject({ readRepair: 'none' });
  });

  it('spreads tombstone_gc with the definition; a change that does not name it keeps it (seed 27)', async () => {
    const { sim, nodes, during } = await cluster(27, ['n1', 'n2']);
    const n1 = nodes.get('n1')!;
    const created = await during(putKeyspace(n1.ref, validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 1 }, new Set()), 5_000));
    expect(created.keyspaces.get('app')).toMatchObject({ readRepair: 'blocking', tombstoneGc: 'repair' });
    await during(putKeyspace(n1.ref, validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 1 }, new Set(), undefined, 'grace'), 5_000));
    await sim.runFor(1_000);
    expect(nodes.get('n2')!.latest!.keyspaces.get('app')).toMatchObject({ readRepair: 'blocking', tombstoneGc: 'grace' });
    // Read repair changed alone: tombstone gc stays grace.
    await during(putKeyspace(nodes.get('n2')!.ref, validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 2 }, new Set(), 'none'), 5_000));
    await sim.runFor(1_000);
    for (const node of nodes.values()) expect(node.latest!.keyspaces.get('app')).toMatchObject({ replication: { class: 'SimpleStrategy', rf: 2 }, readRepair: 'none', tombstoneGc: 'grace' });
    sim.crash('n1');
    await sim.restart('n1');
    await sim.runFor(100);
    expect(nodes.get('n1')!.latest!.keyspaces.get('app')).toMatchObject({ readRepair: 'none', tombstoneGc: 'grace' });
    // And back to repair, named explicitly.
    await during(putKeyspace(nodes.get('n1')!.ref, validateKeyspaceRequest('app', { class: 'SimpleStrategy', rf: 2 }, new Set(), undefined, 'repair'), 5_000));
    await sim.runFor(1_000);
    for (const node of nodes.values()) expect(node.latest!.keyspaces.get('app')).toMatchObject({ readRepair: 'none', tombstoneGc: 'repair' });
  });

  it('reads a definition stored before read_repair and tombstone_gc existed as blocking and repair (seed 26)', async () => {
    const { sim, nodes, during } = await cluster(26, ['n1']);
    const n1 = nodes.get('n1')!;
    // A stored row as older versions wrote it: no readRepair nor tombstoneGc field.
    const old = { name: 'legacy', replication: JSON.stringify({ class: 'SimpleStrategy', rf: 1 }), timestampMicros: 5 };
    await during(write(n1.storage.ref, { ...systemRow(SCHEMA_PARTITION, 'legacy'), cell: { value: new TextEncoder().encode(JSON.stringify(old)), timestampMicros: 5 } }, 5_000));
    sim.crash('n1');
    await sim.restart('n1');
    await sim.runFor(100);
    expect(nodes.get('n1')!.latest!.keyspaces.get('legacy')).toEqual({ name: 'legacy', replication: { class: 'SimpleStrategy', rf: 1 }, readRepair: 'blocking', tombstoneGc: 'repair', timestampMicros: 5 });
    expect(await during(loadSchema(nodes.get('n1')!.storage))).toEqual([{ name: 'legacy', replication: { class: 'SimpleStrategy', rf: 1 }, readRepair: 'blocking', tombstoneGc: 'repair', timestampMicros: 5 }]);
  });

  it('stops listening for mismatches when it stops (seed 24)', async () => {
    const { bus, nodes, during } = await cluster(24, ['n1']);
    const n1: NodeId = nodeId('n1');
    expect(bus.listenerCount(n1)).toBe(1);
    await during(nodes.get('n1')!.system.stop(nodes.get('n1')!.ref as ActorRef<unknown>));
    expect(bus.listenerCount(n1)).toBe(0);
  });
});
