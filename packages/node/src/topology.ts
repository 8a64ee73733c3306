import type { ActorSystem } from '@chorus/actors';
import type { Env, NodeId, Throttle } from '@chorus/core';
import type { MembershipSnapshot } from '@chorus/gossip';
import type { Clocks } from '@chorus/replica';
import type { KeyspaceDef, RingView } from '@chorus/ring';
import type { MovementContext, Movements, RangeMovement } from '@chorus/streaming';

/** What bootstrap, decommission and removenode all need of the node: its ring, its keyspaces and its range movements. */
export interface TopologyContext {
  env: Env;
  system: ActorSystem;
  gossipIntervalMs: number;
  latest(): MembershipSnapshot;
  ring(): RingView;
  keyspaces(): KeyspaceDef[];
  clocks(): Clocks;
  movements: Movements;
  throttle: Throttle;
  pageTimeoutMs: number;
  writeTimeoutMs: number;
  stopped(): boolean;
}

/** The context a range movement of this node runs in. */
export function movementContextOf(ctx: TopologyContext): MovementContext {
  return {
    system: ctx.system,
    env: ctx.env,
    clocks: ctx.clocks,
    isAlive: (node: NodeId) => ctx.latest().isAlive(node),
    throttle: ctx.throttle,
    pageTimeoutMs: ctx.pageTimeoutMs,
    writeTimeoutMs: ctx.writeTimeoutMs,
  };
}

/** Gossip intervals between two tries of a movement whose streaming failed. */
export const RETRY_ROUNDS = 5;
/** Gossip intervals between two progress announcements. */
const PROGRESS_ROUNDS = 2;

/** Resolves after `rounds` gossip intervals. */
export function sleepRounds(ctx: Pick<TopologyContext, 'env' | 'gossipIntervalMs'>, rounds: number): Promise<void> {
  return new Promise((resolve) => ctx.env.scheduler.setTimer(rounds * ctx.gossipIntervalMs, resolve));
}

/**
 * Runs a movement until every range is copied, trying the ranges left again
 * after a failure, and meanwhile announces its percentage every few rounds
 * when `announce` is given. Resolves false if the node stopped first.
 */
export async function runToEnd(ctx: TopologyContext, movement: RangeMovement, what: string, announce?: (percent: number) => void): Promise<boolean> {
  let reporting = announce !== undefined;
  const report = (): void => {
    if (!reporting || ctx.stopped()) return;
    announce!(movement.status().percent);
    ctx.env.scheduler.setTimer(PROGRESS_ROUNDS * ctx.gossipIntervalMs, report);
  };
  report();
  try {
    for (;;) {
      if (ctx.stopped()) return false;
      try {
        await movement.run();
        return true;
      } catch (error) {
        ctx.env.logger.warn({ movement: movement.id, err: error }, `${what}: streaming incomplete; trying the ranges left again`);
        await sleepRounds(ctx, RETRY_ROUNDS);
      }
    }
  } finally {
    reporting = false;
  }
}
