// The README's example, kept runnable.
import { type ActorRef, ActorSystem } from '@chorus/actors';
import type { NodeId, SchemaGossip, SchemaMismatch } from '@chorus/core';
import { Simulation } from '@chorus/sim';
import { spawnStorage } from '@chorus/storage';
import { wireCodec } from '@chorus/wire';
import { MemoryLevel } from 'memory-level';
import { expect, it } from 'vitest';
import { type SchemaMsg, type SchemaSnapshot, loadSchema, putKeyspace, spawnSchema, validateKeyspaceRequest } from '../src/index.js';

it('README example', async () => {
  const lines: string[] = [];
  const log = (line: string) => lines.push(line);

  // In a node, gossip implements SchemaGossip (`schemaGossipOf(gossiper)` in @chorus/gossip).
  // Here a stand-in: every node sees every published version at once.
  const versions = new Map<NodeId, string>();
  const listeners = new Map<NodeId, (m: SchemaMismatch) => void>();
  const gossipOf = (self: NodeId): SchemaGossip => ({
    publishVersion(version) {
      versions.set(self, version);
      for (const [node, ours] of versions) for (const [peer, theirs] of versions) if (theirs !== ours) listeners.get(node)?.({ peer, theirs, ours });
    },
    onVersionMismatch(listener) {
      listeners.set(self, listener);
      return () => listeners.delete(self);
    },
  });

  const sim = new Simulation({ seed: 1, network: { latencyMs: 2 } });
  const schemas = new Map<string, ActorRef<SchemaMsg>>();
  const latest = new Map<string, SchemaSnapshot>();
  for (const name of ['n1', 'n2']) {
    await sim.addNode(name, async ({ env, transport }) => {
      const system = new ActorSystem({ env, transport, codec: wireCodec() });
      const storage = spawnStorage(system, { db: new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' }), env });
      const schema = spawnSchema(system, {
        storage,
        initial: await loadSchema(storage),
        gossip: gossipOf(env.node),
        timeoutMs: 5_000,
        listener: {
          schemaChanged(snapshot) {
            latest.set(name, snapshot);
            log(`${name}: ${[...snapshot.keyspaces.keys()].join(',') || '(none)'}`);
          },
        },
      });
      schemas.set(name, schema);
    });
  }
  await sim.runFor(100);

  const keyspace = validateKeyspaceRequest('default', { class: 'SimpleStrategy', rf: 2 }, new Set(['dc1']));
  const put = putKeyspace(schemas.get('n1')!, keyspace, 5_000); // an ask: the simulation must run for it to be answered
  await sim.runFor(1_000); // n1 stores it and publishes a new version; n2 hears that n1 differs, pulls and merges
  await put;

  expect(lines).toEqual(['n1: (none)', 'n2: (none)', 'n1: default', 'n2: default']);
  expect(latest.get('n2')!.version).toBe(latest.get('n1')!.version);
});
