import type { HostId, NodeId } from '@chorus/core';
import type { KeyspaceDef, RingView } from '@chorus/ring';
import { type MovementStatus, type RangeTask, rangesToHandOver } from '@chorus/streaming';
import { BOOTSTRAP_SETTLE_ROUNDS } from './bootstrap.js';
import { RemoveNodeRefused, TopologyChangeInProgress, UnknownHostId } from './errors.js';
import { type TopologyContext, movementContextOf, runToEnd, sleepRounds } from './topology.js';


export interface RemoveNodeContext extends TopologyContext {
  /** Gossips the node as REMOVED (the gossiper's `removeNode`). */
  markRemoved(node: NodeId): Promise<void>;
  /** Drops this node's hints for the host id; absent without hints. */
  dropHints?: (hostId: HostId) => Promise<unknown>;
}

/**
 * Checks that the node with `hostId` may be removed now, as the asked node
 * sees the ring: it is a member, not this node, not UP, and no other node is
 * joining or leaving. Throws the refusal, or returns the node.
 */
export function checkRemoveNode(ctx: Pick<RemoveNodeContext, 'env' | 'latest' | 'ring'>, hostId: string): NodeId {
  const view = ctx.latest();
  const endpoint = view.endpoints().find((e) => e.hostId === hostId && e.status !== 'REMOVED' && e.status !== 'LEFT');
  if (endpoint === undefined) throw new UnknownHostId(hostId);
  const node = endpoint.node;
  if (node === ctx.env.node) throw new RemoveNodeRefused('self', hostId, node);
  if (view.isAlive(node)) throw new RemoveNodeRefused('alive', hostId, node);
  const ring = ctx.ring();
  if (ring.member(node) === undefined) throw new RemoveNodeRefused('not-in-ring', hostId, node);
  const moving = ring.members.filter((m) => m.status !== 'normal' && m.node !== node);
  if (moving.length > 0) throw new TopologyChangeInProgress(moving.map((m) => ({ node: m.node, status: m.status })));
  return node;
}

/**
 * What re-replicates a dead node's ranges: for each keyspace and range whose
 * replicas gain a node once it is gone, a copy onto the gaining node from
 * the replicas that survive (the dead node is no source).
 */
export function removalTasks(before: RingView, keyspaces: readonly KeyspaceDef[], dead: NodeId): RangeTask[] {
  return rangesToHandOver(before, before.without(dead), keyspaces, dead).map((t) => ({ ...t, sources: t.sources.filter((s) => s !== dead) }));
}

/**
 * Removes a dead node (Cassandra's removenode), coordinated by this node:
 * copies every range whose replicas gain a node from a surviving replica to
 * the gaining one (this node streams source → gainer itself over the
 * range-stream verb), then gossips REMOVED and drops its hints here (the
 * other nodes drop theirs when they hear of the removal). Coordinators keep
 * the old replicas until they hear REMOVED; so that a write acknowledged by
 * the survivors in that window also reaches the gainer, the ranges are
 * copied once more when the ring has settled. Call `checkRemoveNode` first.
 */
export async function removeNode(ctx: RemoveNodeContext, dead: NodeId, hostId: HostId, started: (movement: MovementStatus) => void): Promise<MovementStatus> {
  const { env } = ctx;
  const sleep = (rounds: number) => sleepRounds(ctx, rounds);
  const tasks = removalTasks(ctx.ring(), ctx.keyspaces(), dead);
  const id = `removenode-${env.random.uuid().slice(0, 8)}`;
  const movementContext = movementContextOf(ctx);
  const movement = ctx.movements.begin(id, 'removenode', tasks, movementContext);
  started(movement.status());
  env.logger.info({ movement: id, node: dead, hostId, ranges: tasks.length, targets: movement.status().targets }, 'removenode: re-replicating the ranges of a dead node');
  if (!(await runToEnd(ctx, movement, 'removenode'))) throw new Error('the node stopped while removing a node');
  await ctx.markRemoved(dead);
  if (ctx.dropHints) {
    try {
      await ctx.dropHints(hostId);
    } catch (error) {
      // The hints service drops them too when it hears of the removal; this is the early, local copy of that.
      env.logger.warn({ err: error, hostId }, 'removenode: could not drop the hints for the removed node yet');
    }
  }
  await sleep(BOOTSTRAP_SETTLE_ROUNDS);
  const catchUp = ctx.movements.begin(`${id}-catchup`, 'removenode', tasks, movementContext);
  if (!(await runToEnd(ctx, catchUp, 'removenode'))) throw new Error('the node stopped while removing a node');
  const s = movement.status();
  const c = catchUp.status();
  env.logger.info({ movement: id, node: dead, ranges: s.rangesTotal, rows: s.rowsStreamed, bytes: s.bytesStreamed, elapsedMs: s.elapsedMs, catchUpRows: c.rowsStreamed }, 'removenode: done; the node is REMOVED');
  return s;
}

