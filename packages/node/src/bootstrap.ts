import { type Token } from '@chorus/core';
import { rangesToFetch } from '@chorus/streaming';
import { type TopologyContext, movementContextOf, runToEnd, sleepRounds } from './topology.js';

/** Gossip intervals a joining node waits after announcing BOOTSTRAPPING before it streams (Cassandra's RING_DELAY, shortened): every coordinator must send it the writes of its future ranges first. */
export const BOOTSTRAP_SETTLE_ROUNDS = 8;
/** Gossip intervals at most spent waiting for this node's schema to agree with its live peers' before it computes its ranges. */
const SCHEMA_WAIT_ROUNDS = 30;

export interface BootstrapContext extends TopologyContext {
  tokens: readonly Token[];
  schemaVersion(): string | undefined;
  announce(values: { tokens?: readonly Token[]; status?: 'BOOTSTRAPPING' | 'NORMAL'; streaming?: number }): void;
  /** Stores the tokens: from then on a restart comes back NORMAL with them. */
  saveTokens(): Promise<void>;
}

/**
 * Joins a ring that holds data: announce BOOTSTRAPPING with the tokens,
 * let the ring settle (every coordinator then writes this node's future
 * ranges to it as a pending replica), stream each range it gains from the
 * replica losing it, and only then store the tokens and announce NORMAL.
 * Streaming that fails for a range is tried again until it succeeds; the
 * node stays UJ meanwhile. Tokens are stored only at the end, so a node
 * restarted mid-bootstrap bootstraps again.
 */
export async function bootstrap(ctx: BootstrapContext): Promise<void> {
  const { env } = ctx;
  const sleep = (rounds: number) => sleepRounds(ctx, rounds);
  ctx.announce({ tokens: ctx.tokens, status: 'BOOTSTRAPPING', streaming: 0 });
  env.logger.info({ tokens: ctx.tokens.length }, 'bootstrapping: announced the tokens; letting the ring settle');
  await sleep(BOOTSTRAP_SETTLE_ROUNDS);
  for (let round = 0; round < SCHEMA_WAIT_ROUNDS && !schemaAgrees(ctx); round++) await sleep(1);
  if (ctx.stopped()) return;
  const before = ctx.ring();
  const after = before.afterPendingChanges();
  const tasks = rangesToFetch(before, after, ctx.keyspaces(), env.node);
  const movement = ctx.movements.begin(`bootstrap-${env.random.uuid().slice(0, 8)}`, 'bootstrap', tasks, movementContextOf(ctx));
  env.logger.info({ movement: movement.id, ranges: tasks.length, keyspaces: movement.status().keyspaces }, 'bootstrapping: streaming the ranges this node gains');
  if (!(await runToEnd(ctx, movement, 'bootstrapping', (streaming) => ctx.announce({ streaming })))) return;
  await ctx.saveTokens();
  ctx.announce({ status: 'NORMAL', streaming: 100 });
  const s = movement.status();
  env.logger.info({ movement: movement.id, ranges: s.rangesTotal, rows: s.rowsStreamed, bytes: s.bytesStreamed, elapsedMs: s.elapsedMs }, 'bootstrapped: joined the ring as NORMAL');
}

/** Whether every live peer publishes this node's schema version (so the keyspaces it streams are all of them). */
function schemaAgrees(ctx: BootstrapContext): boolean {
  const mine = ctx.schemaVersion();
  return ctx
    .latest()
    .endpoints()
    .every((e) => e.isSelf || e.liveness !== 'UP' || e.schema === undefined || e.schema === mine);
}
