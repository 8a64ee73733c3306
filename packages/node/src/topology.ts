import type { ActorSystem } from '@chorus/actors';
import type { Env, NodeId, Throttle } from '@chorus/core';
import type { MembershipSnapshot } from '@chorus/gossip';
import type { Clocks } from '@chorus/replica';
import type { KeyspaceDef, RingView } from '@chorus/ring';
import type { MovementContext, Movements } from '@chorus/streaming';

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
