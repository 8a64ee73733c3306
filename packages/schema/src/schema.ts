import { createHash } from 'node:crypto';
import type { ActorRef, ActorSystem, ReplyTo } from '@chorus/actors';
import { InvalidRequest, type NodeId, type SchemaGossip, type Timer } from '@chorus/core';
import { DEFAULT_READ_REPAIR, DEFAULT_TOMBSTONE_GC, type KeyspaceDef, type ReadRepairMode, type ReplicationSpec, type TombstoneGcMode, readRepairOf, tombstoneGcOf, validateKeyspace } from '@chorus/ring';
import { SCHEMA_PARTITION, SYSTEM_KEYSPACE, type StorageHandle, flush, systemRow, write } from '@chorus/storage';
import type { KeyspaceDefinitionWire, WireMessage } from '@chorus/wire';

/**
 * A definition as the schema keeps it: `readRepair` and `tombstoneGc` always
 * set (a stored row without them reads as blocking and repair).
 */
export interface StoredKeyspace extends KeyspaceDef {
  readonly readRepair: ReadRepairMode;
  readonly tombstoneGc: TombstoneGcMode;
  readonly timestampMicros: number;
}

export interface SchemaSnapshot {
  readonly version: string;
  readonly keyspaces: ReadonlyMap<string, StoredKeyspace>;
}

export const SCHEMA_ACTOR = 'schema';

type Definitions = WireMessage<'schema.definitions'>;

export type SchemaMsg =
  | { type: 'schema.put'; keyspace: KeyspaceDef; replyTo: ReplyTo<SchemaSnapshot> }
  | ({ type: 'schema.pull'; replyTo: ReplyTo<Definitions> })
  | { type: 'schema.differs'; peer: NodeId; theirs?: string }
  | { type: 'schema.pulled'; peer: NodeId; keyspaces: KeyspaceDefinitionWire[] }
  | { type: 'schema.pullFailed'; peer: NodeId; error: unknown }
  | { type: 'schema.retry'; peer: NodeId }
  | { type: 'schema.recheck' };

/**
 * How a failed pull is tried again. Gossip reports a mismatch only when a
 * version changes or a peer comes up, so a pull lost to a partition, a
 * crash or message loss would otherwise leave this node without the
 * definitions for good (a joining node would then wait for them forever).
 */
export interface PullRetry {
  /** Wait before the first retry; doubled for each next one. */
  firstMs: number;
  /** Longest wait between two retries. */
  maxMs: number;
  /** Retries of one peer before waiting for gossip to report it again (it does when the peer comes back up or a version changes). */
  attempts: number;
}

/**
 * 1 s doubling to 30 s, with no limit: a peer is tried for as long as it publishes another version, since a cut
 * that outlasts the retries would otherwise leave this node without the definitions until a version changes.
 */
export const DEFAULT_PULL_RETRY: PullRetry = { firstMs: 1_000, maxMs: 30_000, attempts: Number.POSITIVE_INFINITY };

/**
 * Who hears about schema changes. Called by the schema actor, inside its
 * turn, after each change is stored (and once when it starts); must not block.
 */
export interface SchemaListener {
  schemaChanged(snapshot: SchemaSnapshot): void;
}

export interface SchemaOptions {
  storage: StorageHandle;
  /** The definitions stored on this node (`loadSchema`). */
  initial: StoredKeyspace[];
  /** Where this node's schema version goes out, and where peers that publish another one are heard of. */
  gossip: SchemaGossip;
  listener: SchemaListener;
  timeoutMs: number;
  /** How failed pulls are retried (`DEFAULT_PULL_RETRY` when absent). */
  pullRetry?: PullRetry;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Names in code-unit order: the digest below must come out the same on every node, and `localeCompare`
 * orders by the process's locale (Lithuanian puts y between i and j), which nodes need not share.
 */
const byCodeUnits = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** A digest of every definition, so two nodes can tell at a glance (in gossip) whether they agree. */
export function schemaVersion(keyspaces: Iterable<StoredKeyspace>): string {
  const hash = createHash('sha256');
  for (const k of [...keyspaces].sort((a, b) => byCodeUnits(a.name, b.name))) hash.update(`${k.name}\u0000${canonicalDef(k)}\u0000${k.timestampMicros}\n`);
  return hash.digest('hex').slice(0, 32);
}

/**
 * Replication and each option that is not its default: definitions made
 * before the options existed keep the version (and the stored form) they had.
 */
function canonicalDef(k: KeyspaceDef): string {
  let out = canonical(k.replication);
  const readRepair = readRepairOf(k);
  if (readRepair !== DEFAULT_READ_REPAIR) out += `\u0000read_repair=${readRepair}`;
  const tombstoneGc = tombstoneGcOf(k);
  if (tombstoneGc !== DEFAULT_TOMBSTONE_GC) out += `\u0000tombstone_gc=${tombstoneGc}`;
  return out;
}

function canonical(replication: ReplicationSpec): string {
  if (replication.class === 'SimpleStrategy') return JSON.stringify({ class: 'SimpleStrategy', rf: replication.rf });
  const dcs = Object.fromEntries(Object.entries(replication.dcs).sort(([a], [b]) => byCodeUnits(a, b)));
  return JSON.stringify({ class: 'NetworkTopologyStrategy', dcs });
}

/** Newest change wins; on a tie the greater definition, so every node picks the same one. */
function newer(candidate: StoredKeyspace, current: StoredKeyspace | undefined): boolean {
  if (!current) return true;
  if (candidate.timestampMicros !== current.timestampMicros) return candidate.timestampMicros > current.timestampMicros;
  return canonicalDef(candidate) > canonicalDef(current);
}

function fromWire(k: KeyspaceDefinitionWire): StoredKeyspace | undefined {
  try {
    // Rows and peers from before the options have no readRepair (blocking) nor tombstoneGc (repair).
    const def = validateKeyspace({ name: k.name, replication: JSON.parse(k.replication) as unknown, readRepair: k.readRepair, tombstoneGc: k.tombstoneGc });
    return { ...def, readRepair: readRepairOf(def), tombstoneGc: tombstoneGcOf(def), timestampMicros: k.timestampMicros };
  } catch {
    return undefined;
  }
}

/** Default options are left out, so a definition that does not change them looks as it did before the options. */
function toWire(k: StoredKeyspace): KeyspaceDefinitionWire {
  const wire: KeyspaceDefinitionWire = { name: k.name, replication: canonical(k.replication), timestampMicros: k.timestampMicros };
  if (k.readRepair !== DEFAULT_READ_REPAIR) wire.readRepair = k.readRepair;
  if (k.tombstoneGc !== DEFAULT_TOMBSTONE_GC) wire.tombstoneGc = k.tombstoneGc;
  return wire;
}

/** Reads the stored definitions of a node's schema. */
export async function loadSchema(storage: StorageHandle): Promise<StoredKeyspace[]> {
  const page = await storage.reader.slice(SYSTEM_KEYSPACE, systemRow(SCHEMA_PARTITION, '').token, encoder.encode(SCHEMA_PARTITION), { limit: 10_000 });
  const out: StoredKeyspace[] = [];
  for (const row of page.rows) {
    if (!('value' in row.cell)) continue;
    const k = fromWire(JSON.parse(decoder.decode(row.cell.value)) as KeyspaceDefinitionWire);
    if (k) out.push(k);
  }
  return out;
}

/**
 * Checks a keyspace definition asked for by a user: a valid name and
 * replication, datacenters that exist (`knownDcs`: those membership knows),
 * at least one datacenter for NetworkTopologyStrategy, a valid `read_repair`
 * and `tombstone_gc`. An option left out is left out of the definition, and
 * `putKeyspace` keeps the keyspace's current one (the default for a new
 * keyspace: blocking, repair).
 */
export function validateKeyspaceRequest(name: string, replication: unknown, knownDcs: ReadonlySet<string>, readRepair?: unknown, tombstoneGc?: unknown): KeyspaceDef {
  const keyspace = validateKeyspace({ name, replication, readRepair, tombstoneGc }, knownDcs);
  if (keyspace.replication.class === 'NetworkTopologyStrategy' && Object.keys(keyspace.replication.dcs).length === 0) throw new InvalidRequest('NetworkTopologyStrategy needs at least one datacenter');
  return {
    name: keyspace.name,
    replication: keyspace.replication,
    ...(readRepair === undefined ? {} : { readRepair: keyspace.readRepair! }),
    ...(tombstoneGc === undefined ? {} : { tombstoneGc: keyspace.tombstoneGc! }),
  };
}

/**
 * Owns this node's keyspace definitions. A change made here is stored, then
 * its new version goes out by gossip; a node that sees another version pulls
 * the other node's definitions and keeps the newest of each.
 */
export function spawnSchema(system: ActorSystem, options: SchemaOptions): ActorRef<SchemaMsg> {
  // Outside the behavior: a supervised restart must keep every definition stored since the node started.
  const keyspaces = new Map(options.initial.map((k) => [k.name, k]));
  let snapshot: SchemaSnapshot = { version: schemaVersion(keyspaces.values()), keyspaces: new Map(keyspaces) };
  return system.spawn<SchemaMsg>(SCHEMA_ACTOR, () => {

    async function store(candidates: StoredKeyspace[]): Promise<boolean> {
      const changes = candidates.filter((k) => newer(k, keyspaces.get(k.name)));
      for (const k of changes) {
        await write(options.storage.ref, { ...systemRow(SCHEMA_PARTITION, k.name), cell: { value: encoder.encode(JSON.stringify(toWire(k))), timestampMicros: k.timestampMicros } }, options.timeoutMs);
        keyspaces.set(k.name, k);
      }
      if (changes.length === 0) return false;
      // Synced before anyone hears of it, whatever commit_sync says (as Cassandra flushes its schema tables): a power
      // failure before the next periodic sync would otherwise leave a node that has announced a keyspace without it.
      await flush(options.storage.ref, options.timeoutMs);
      snapshot = { version: schemaVersion(keyspaces.values()), keyspaces: new Map(keyspaces) };
      announce();
      return true;
    }

    function announce(): void {
      options.listener.schemaChanged(snapshot);
      options.gossip.publishVersion(snapshot.version);
    }

    // Peers whose definitions this node still has to pull: one pull at a time per peer, retried until one succeeds.
    const pending = new Map<NodeId, { theirs: string | undefined; attempt: number; inFlight: boolean; timer: Timer | undefined }>();
    const retry = options.pullRetry ?? DEFAULT_PULL_RETRY;

    function settle(peer: NodeId): void {
      pending.get(peer)?.timer?.cancel();
      pending.delete(peer);
    }

    /** Peers that publish the version this node now holds, or one it merged, have nothing more to give. */
    function settleHolders(versions: ReadonlySet<string>): void {
      for (const [peer, entry] of pending) if (!entry.inFlight && entry.theirs !== undefined && versions.has(entry.theirs)) settle(peer);
    }

    /** Set while a publication of this version is due, to hear again of the peers whose pulls all failed. */
    let recheck: Timer | undefined;
    let unsubscribe: (() => void) | undefined;
    return {
      started(ctx) {
        // After a restart too: publishing again reports every peer that still differs, whose pulls the previous run kept.
        announce();
        unsubscribe = options.gossip.onVersionMismatch(({ peer, theirs }) => {
          // Called in the gossiper's turn: hand the pull to this actor and return.
          try {
            schemaDiffers(ctx.self, peer, theirs);
          } catch (error) {
            ctx.log.warn({ peer, err: error }, 'dropped a schema mismatch; the next version change reports it again');
          }
        });
      },
      stopping() {
        unsubscribe?.();
        for (const peer of [...pending.keys()]) settle(peer);
      },
      async receive(msg, ctx) {
        switch (msg.type) {
          case 'schema.put': {
            if (msg.keyspace.name === SYSTEM_KEYSPACE) {
              ctx.fail(msg.replyTo, new InvalidRequest('keyspace system is reserved for the node itself'));
              return;
            }
            // A change must beat the current definition even if this node's clock lags the one that wrote it.
            const current = keyspaces.get(msg.keyspace.name);
            const timestampMicros = Math.max(ctx.env.clock.nowMicros(), (current?.timestampMicros ?? 0) + 1);
            // A change that does not name an option (say, of replication only) keeps the current one.
            const readRepair = msg.keyspace.readRepair ?? current?.readRepair ?? DEFAULT_READ_REPAIR;
            const tombstoneGc = msg.keyspace.tombstoneGc ?? current?.tombstoneGc ?? DEFAULT_TOMBSTONE_GC;
            await store([{ ...msg.keyspace, readRepair, tombstoneGc, timestampMicros }]);
            ctx.reply(msg.replyTo, snapshot);
            return;
          }
          case 'schema.pull':
            ctx.reply(msg.replyTo, { type: 'schema.definitions', keyspaces: [...keyspaces.values()].map(toWire) });
            return;
          case 'schema.differs': {
            if (msg.theirs !== undefined && msg.theirs === snapshot.version) {
              settle(msg.peer);
              return;
            }
            const entry = pending.get(msg.peer);
            if (entry === undefined) {
              pending.set(msg.peer, { theirs: msg.theirs, attempt: 0, inFlight: false, timer: undefined });
            } else {
              // News of the peer: its retries start over, and a pull already under way is not doubled.
              entry.theirs = msg.theirs;
              entry.attempt = 0;
              if (entry.inFlight) return;
              entry.timer?.cancel();
              entry.timer = undefined;
            }
            pull(msg.peer);
            return;
          }
          case 'schema.recheck':
            recheck = undefined;
            options.gossip.publishVersion(snapshot.version);
            return;
          case 'schema.retry': {
            const entry = pending.get(msg.peer);
            if (entry === undefined || entry.inFlight) return;
            entry.timer = undefined;
            pull(msg.peer);
            return;
          }
          case 'schema.pulled': {
            const pulled = msg.keyspaces.map(fromWire).filter((k): k is StoredKeyspace => k !== undefined);
            await store(pulled);
            const held = new Set([schemaVersion(pulled), snapshot.version]);
            const entry = pending.get(msg.peer);
            if (entry !== undefined) entry.inFlight = false;
            // The peer may have changed its version after it answered: what it publishes now is still to pull.
            if (entry?.theirs !== undefined && !held.has(entry.theirs)) retryLater(msg.peer, 'the definitions pulled are not the version the peer publishes');
            else settle(msg.peer);
            settleHolders(held);
            return;
          }
          case 'schema.pullFailed': {
            const entry = pending.get(msg.peer);
            if (entry === undefined) return;
            entry.inFlight = false;
            if (entry.theirs === snapshot.version) settle(msg.peer);
            else retryLater(msg.peer, msg.error);
            return;
          }
        }

        function retryLater(peer: NodeId, error: unknown): void {
          const entry = pending.get(peer)!;
          if (entry.attempt >= retry.attempts) {
            ctx.log.warn({ peer, attempts: entry.attempt, err: error }, 'schema pull failed again; publishing this version again later to hear of the peers that still differ');
            settle(peer);
            // The peer's version may never change again, nor may it go down and come back: without this, nothing would report it.
            recheck ??= ctx.after(retry.maxMs, { type: 'schema.recheck' });
            return;
          }
          const delayMs = Math.min(retry.maxMs, retry.firstMs * 2 ** entry.attempt);
          entry.attempt++;
          ctx.log.debug({ peer, attempt: entry.attempt, delayMs, err: error }, 'schema pull failed; retrying');
          entry.timer = ctx.after(delayMs, { type: 'schema.retry', peer });
        }

        function pull(node: NodeId): void {
          pending.get(node)!.inFlight = true;
          const peer = ctx.system.ref<SchemaMsg>({ node, name: SCHEMA_ACTOR });
          // The pull runs outside this turn so a slow peer does not stall local schema reads.
          peer.ask<Definitions>((replyTo) => ({ type: 'schema.pull', replyTo }), options.timeoutMs).then(
            (definitions) => ctx.self.tell({ type: 'schema.pulled', peer: node, keyspaces: definitions.keyspaces }),
            (error: unknown) => ctx.self.tell({ type: 'schema.pullFailed', peer: node, error }),
          );
        }
      },
    };
  });
}

export function putKeyspace(ref: ActorRef<SchemaMsg>, keyspace: KeyspaceDef, timeoutMs: number): Promise<SchemaSnapshot> {
  return ref.ask<SchemaSnapshot>((replyTo) => ({ type: 'schema.put', keyspace, replyTo }), timeoutMs);
}

/** Tells the schema actor that `peer` gossips another schema version (`theirs`, when known). */
export function schemaDiffers(ref: ActorRef<SchemaMsg>, peer: NodeId, theirs?: string): void {
  ref.tell({ type: 'schema.differs', peer, ...(theirs === undefined ? {} : { theirs }) });
}
