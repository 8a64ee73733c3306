import type { Env, NodeId } from '@chorus/core';
import type { MembershipSnapshot } from '@chorus/gossip';
import { replicationShortfalls } from '@chorus/ring';
import { type MovementStatus, rangesToHandOver } from '@chorus/streaming';
import { BOOTSTRAP_SETTLE_ROUNDS } from './bootstrap.js';
import { DecommissionRefused, TopologyChangeInProgress } from './errors.js';
import { RETRY_ROUNDS, type TopologyContext, movementContextOf, runToEnd, sleepRounds } from './topology.js';

/** Gossip intervals between two log lines naming the peers a node that left still waits for. */
const HEARD_LOG_ROUNDS = 10;

export interface DecommissionContext extends TopologyContext {
  announce(values: { status?: 'LEAVING' | 'LEFT'; streaming?: number }): void;
  /** Records on disk, synced, that this node announces LEFT, so that a restart announces it again instead of serving. */
  recordLeft(): Promise<void>;
  /** The peers whose gossip shows they hold this node's current status (gossip's `peersHoldingOwnStatus`). */
  heardBy(): Promise<readonly NodeId[]>;
  /** Moves every hint this node holds to `to` (hinted handoff's `handOff`); absent without hints. */
  handOffHints?: (to: NodeId) => Promise<unknown>;
}

/**
 * Checks that this node may leave now: it is a NORMAL member, no other node
 * is joining or leaving, and every keyspace keeps as many nodes as its
 * replication factor in each datacenter. Throws the refusal, or returns.
 */
export function checkDecommission(ctx: Pick<DecommissionContext, 'env' | 'ring' | 'keyspaces'>): void {
  const ring = ctx.ring();
  const self = ring.member(ctx.env.node);
  if (self === undefined || self.status !== 'normal') throw new DecommissionRefused(`this node is ${self === undefined ? 'not in the ring' : self.status}, not a normal member`, { status: self?.status ?? 'none' });
  const moving = ring.members.filter((m) => m.status !== 'normal');
  if (moving.length > 0) throw new TopologyChangeInProgress(moving.map((m) => ({ node: m.node, status: m.status })));
  const without = ring.without(ctx.env.node);
  for (const ks of ctx.keyspaces()) {
    const before = new Set(replicationShortfalls(ring, ks.replication).map((s) => s.dc ?? ''));
    for (const short of replicationShortfalls(without, ks.replication)) {
      if (before.has(short.dc ?? '')) continue;
      const where = short.dc === undefined ? 'the ring' : `datacenter ${short.dc}`;
      throw new DecommissionRefused(`keyspace ${ks.name} has rf ${short.rf} in ${where}, and only ${short.nodes} node(s) would remain`, { keyspace: ks.name, rf: short.rf, nodes: short.nodes, ...(short.dc === undefined ? {} : { dc: short.dc }) });
    }
  }
}

/**
 * Leaves the ring (Cassandra's decommission): announce LEAVING (coordinators
 * then also write this node's ranges to the nodes gaining them), let the ring
 * settle, stream every range of this node's to the node gaining it, hand
 * every hint to a live node, record on disk that it left, and announce LEFT.
 * Resolves with the movement once the live peers have heard LEFT (see
 * `awaitLeftHeard`); the caller then stops the node. Call `checkDecommission`
 * first.
 */
export async function decommission(ctx: DecommissionContext, started: (movement: MovementStatus) => void): Promise<MovementStatus> {
  const { env } = ctx;
  const sleep = (rounds: number) => sleepRounds(ctx, rounds);
  ctx.announce({ status: 'LEAVING', streaming: 0 });
  env.logger.info({}, 'decommissioning: announced LEAVING; letting the ring settle');
  // Gossip tells this node of its own LEAVING a turn later: the ring to move from is the current one with this node leaving.
  const now = ctx.ring();
  const before = now.with({ ...now.member(env.node)!, status: 'leaving' });
  const after = before.afterPendingChanges();
  const tasks = rangesToHandOver(before, after, ctx.keyspaces(), env.node);
  const movement = ctx.movements.begin(`decommission-${env.random.uuid().slice(0, 8)}`, 'decommission', tasks, movementContextOf(ctx));
  started(movement.status());
  await sleep(BOOTSTRAP_SETTLE_ROUNDS);
  if (!(await runToEnd(ctx, movement, 'decommissioning', (streaming) => ctx.announce({ streaming })))) throw new Error('the node stopped while decommissioning');
  if (ctx.handOffHints) {
    for (;;) {
      const to = after.members.map((m) => m.node).find((n) => n !== env.node && ctx.latest().isAlive(n));
      try {
        if (to === undefined) throw new Error('no live node to hand the hints to');
        await ctx.handOffHints(to);
        break;
      } catch (error) {
        if (ctx.stopped()) throw error;
        env.logger.warn({ err: error }, 'decommissioning: could not hand the hints off yet; trying again');
        await sleep(RETRY_ROUNDS);
      }
    }
  }
  for (;;) {
    try {
      await ctx.recordLeft();
      break;
    } catch (error) {
      if (ctx.stopped()) throw error;
      env.logger.warn({ err: error }, 'decommissioning: could not record on disk that this node leaves; trying again before announcing LEFT');
      await sleep(RETRY_ROUNDS);
    }
  }
  ctx.announce({ status: 'LEFT', streaming: 100 });
  const s = movement.status();
  env.logger.info({ movement: movement.id, ranges: s.rangesTotal, rows: s.rowsStreamed, bytes: s.bytesStreamed, elapsedMs: s.elapsedMs }, 'decommissioning: announced LEFT; waiting until the live peers have heard it');
  const heard = await awaitLeftHeard(ctx);
  env.logger.info({ movement: movement.id, heardBy: heard }, 'decommissioned: the live peers have heard LEFT');
  return movement.status();
}

export interface LeftHeardContext {
  env: Env;
  gossipIntervalMs: number;
  latest(): MembershipSnapshot;
  heardBy(): Promise<readonly NodeId[]>;
  stopped(): boolean;
}

/**
 * Waits until the peers hold this node's LEFT: at least one has, and so has
 * every peer this node sees UP. A node that stopped before would stay in the
 * ring of every peer that missed LEFT, as a dead replica no repair can reach;
 * a peer that heard it spreads it to those that are down. With no peer to
 * reach it keeps waiting (and saying so): nobody else could tell the ring.
 * Resolves with the peers that heard it; rejects only once the node stops.
 */
export async function awaitLeftHeard(ctx: LeftHeardContext): Promise<NodeId[]> {
  const { env } = ctx;
  for (let round = 0; ; round++) {
    if (ctx.stopped()) throw new Error('the node stopped before its peers had heard it left');
    let heard: readonly NodeId[] = [];
    try {
      heard = await ctx.heardBy();
    } catch (error) {
      if (ctx.stopped()) throw error;
      env.logger.debug({ err: error }, 'could not ask gossip which peers hold LEFT');
    }
    const live = ctx
      .latest()
      .endpoints()
      .filter((e) => !e.isSelf && e.liveness === 'UP' && e.status !== 'LEFT' && e.status !== 'REMOVED')
      .map((e) => e.node);
    const missing = live.filter((n) => !heard.includes(n));
    if (heard.length > 0 && missing.length === 0) return [...heard];
    if (round % HEARD_LOG_ROUNDS === 0) {
      env.logger.info({ heardBy: heard, waitingFor: missing, waitedMs: round * ctx.gossipIntervalMs }, heard.length === 0 && live.length === 0 ? 'LEFT announced; no peer reachable yet to hear it, waiting' : 'LEFT announced; waiting until the live peers have heard it');
    }
    await new Promise<void>((resolve) => env.scheduler.setTimer(ctx.gossipIntervalMs, resolve));
  }
}
