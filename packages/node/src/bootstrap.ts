import { type Token } from '@chorus/core';
import { rangesToFetch } from '@chorus/streaming';
import { type TopologyContext, movementContextOf, runToEnd, sleepRounds } from './topology.js';
import { peersWithOtherSchema } from './views.js';

/** Gossip intervals a joining node waits after announcing BOOTSTRAPPING before it streams (Cassandra's RING_DELAY, shortened): every coordinator must send it the writes of its future ranges first. */
export const BOOTSTRAP_SETTLE_ROUNDS = 8;
/** Gossip intervals between two warnings while a joining node waits for its live peers' schema. */
const SCHEMA_WARN_ROUNDS = 30;

export interface BootstrapContext extends TopologyContext {
  tokens: readonly Token[];
  schemaVersion(): string | undefined;
  announce(values: { tokens?: readonly Token[]; status?: 'BOOTSTRAPPING' | 'NORMAL'; streaming?: number }): void;
  /** Stores the tokens: from then on a restart comes back NORMAL with them. */
  saveTokens(): Promise<void>;
}

/**
 * Joins a ring that holds data: wait until this node holds the schema its
 * live peers publish (Cassandra waits for schema agreement before it
 * bootstraps: a node that announced its tokens without the keyspaces would
 * take writes it cannot place, stream nothing, and serve its ranges empty),
 * announce BOOTSTRAPPING with the tokens,
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
  if (!(await awaitSchemaAgreement(ctx))) return;
  ctx.announce({ tokens: ctx.tokens, status: 'BOOTSTRAPPING', streaming: 0 });
  env.logger.info({ tokens: ctx.tokens.length }, 'bootstrapping: announced the tokens; letting the ring settle');
  await sleep(BOOTSTRAP_SETTLE_ROUNDS);
  // A keyspace created while the ring settled is streamed too.
  if (!(await awaitSchemaAgreement(ctx))) return;
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

/**
 * Waits, for as long as it takes, until at least one live peer publishes a
 * schema version and every live peer that does publishes this node's
 * (the schema actor retries the pulls a fault lost). Resolves false if the
 * node stopped first.
 */
async function awaitSchemaAgreement(ctx: BootstrapContext): Promise<boolean> {
  for (let round = 0; ; round++) {
    if (ctx.stopped()) return false;
    const disagreeing = schemaDisagreement(ctx);
    if (disagreeing === undefined) return true;
    if (round > 0 && round % SCHEMA_WARN_ROUNDS === 0) {
      ctx.env.logger.warn({ ours: ctx.schemaVersion(), peers: disagreeing, waitedMs: round * ctx.gossipIntervalMs }, 'joining: waiting for the schema of the live peers before announcing tokens');
    }
    await sleepRounds(ctx, 1);
  }
}

/** The live peers whose schema version differs from this node's, or undefined once they agree (and one at least publishes one). */
function schemaDisagreement(ctx: BootstrapContext): Array<{ node: string; schema: string }> | undefined {
  const view = ctx.latest();
  const differing = peersWithOtherSchema(view, ctx.schemaVersion());
  const published = view.endpoints().some((e) => !e.isSelf && e.liveness === 'UP' && e.schema !== undefined);
  return published && differing.length === 0 ? undefined : differing;
}
