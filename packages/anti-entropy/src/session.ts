import { type ActorSystem, AskTimeout, NodeUnreachable, type ReplyTo } from '@chorus/actors';
import type { NodeId, Throttle, Token } from '@chorus/core';
import { type Cell, type Mutation, cellDigest, isTombstone, mergeCells } from '@chorus/model';
import { type Clocks, REPLICA_ACTOR, type ReplicaMsg, fromWireCell, mutate, readData } from '@chorus/replica';
import type { TokenRange } from '@chorus/ring';
import { MAX_REPAIR_ROWS, MAX_REPAIR_TREE_NODES } from '@chorus/wire';
import { blockRange, depthFor, sameHash } from './merkle.js';
import { type RowSummary, rowId } from './rows.js';
import { type OkMsg, type RowSummariesMsg, type TreeNodesMsg, type ValidatedMsg, VALIDATOR_ACTOR, type ValidatorMsg } from './validator.js';

/** Levels a comparison descends per exchange: a differing node's 64 descendants six levels down come back in one message. */
const LEVEL_STEP = 6;
/** Rows of differing leaves synced together: their summaries are held in memory at once. */
const BLOCK_ROWS = 2_048;
/** Differing rows read and written at once within a block. */
const ROWS_IN_FLIGHT = 16;
/** What a streamed row costs besides its key and value (timestamps, framing). */
const ROW_OVERHEAD_BYTES = 32;

/** One range of one keyspace, repaired across all its replicas. */
export interface SessionPlan {
  id: string;
  keyspace: string;
  range: TokenRange;
  replicas: readonly NodeId[];
  /** Dead data that died before this is left out of the comparison (see `summarize`). */
  purgeBeforeMicros: number;
}

export interface SessionTimeouts {
  /** A replica's tree build: a scan of the whole range, asked about every few seconds until done. */
  validateMs: number;
  /** One exchange of tree nodes or row summaries. */
  exchangeMs: number;
  /** One row read or written. */
  rowMs: number;
}

export interface SessionContext {
  system: ActorSystem;
  /** Monotonic milliseconds. */
  now(): number;
  clocks(): Clocks;
  /** Paces the bytes this node streams for repair (`repair_throttle`). */
  throttle: Throttle;
  timeouts: SessionTimeouts;
  /** Checked between steps; a cancelled session stops with `RepairCancelled` thrown by it. */
  checkCancelled(): void;
  /** Counts as they grow, for the job's live status. */
  progress(delta: Partial<SessionCounts>): void;
}

export interface SessionCounts {
  rowsCompared: number;
  rowsStreamed: number;
  bytesStreamed: number;
  leavesDiffering: number;
}

/**
 * Repairs one range: every replica builds its Merkle tree; the trees are
 * compared from the root down, exchanging only the nodes under a difference
 * (identical replicas agree at the root, and nothing more is exchanged); in
 * the differing leaves the replicas list their rows' digests, and only the
 * rows that differ are read from every replica, resolved by the data
 * model's merge rule and written, with their own timestamps and expiry, to
 * the replicas that lack the winner. Both directions at once: whichever
 * replica holds the newest version is the source for that row.
 */
export async function repairRange(plan: SessionPlan, ctx: SessionContext): Promise<SessionCounts> {
  const counts: SessionCounts = { rowsCompared: 0, rowsStreamed: 0, bytesStreamed: 0, leavesDiffering: 0 };
  const add = (delta: Partial<SessionCounts>): void => {
    for (const [k, v] of Object.entries(delta) as Array<[keyof SessionCounts, number]>) counts[k] += v;
    ctx.progress(delta);
  };
  const { keyspace, range, replicas } = plan;
  const validators = replicas.map((node) => ctx.system.ref<ValidatorMsg>({ node, name: VALIDATOR_ACTOR }));
  // Every failure names the replica it came from: that is what an operator acts on.
  const ask: Ask = (i, build, timeoutMs) => retrying(() => validators[i]!.ask(build, timeoutMs), `${replicas[i]}`);
  const everyReplica = <R>(work: (i: number) => Promise<R>): Promise<R[]> => Promise.all(replicas.map((_, i) => work(i)));
  try {
    const validateBy = ctx.now() + ctx.timeouts.validateMs;
    const validated = await everyReplica(async (i) => {
      for (;;) {
        const answer = await ask<ValidatedMsg>(
          i,
          (replyTo) => ({ type: 'repair.validate', session: plan.id, keyspace, start: range.start, end: range.end, purgeBeforeMicros: plan.purgeBeforeMicros, replyTo }),
          ctx.timeouts.exchangeMs,
        );
        if (answer.ready) return answer;
        ctx.checkCancelled();
        if (ctx.now() > validateBy) throw new Error(`${replicas[i]}: its tree of the range was not built within ${ctx.timeouts.validateMs} ms (${answer.rows} rows hashed)`);
      }
    });
    const rows = Math.max(...validated.map((v) => v.rows));
    add({ rowsCompared: rows });
    if (rows === 0) return counts;
    ctx.checkCancelled();
    const depth = depthFor(rows);
    const treeNodes = async (level: number, nodes: number[]): Promise<Array<{ same: boolean; rows: number }>> => {
      const out: Array<{ same: boolean; rows: number }> = [];
      for (let at = 0; at < nodes.length; at += MAX_REPAIR_TREE_NODES) {
        const chunk = nodes.slice(at, at + MAX_REPAIR_TREE_NODES);
        const answers = await everyReplica((i) => ask<TreeNodesMsg>(i, (replyTo) => ({ type: 'repair.tree', session: plan.id, depth, level, nodes: chunk, replyTo }), ctx.timeouts.exchangeMs));
        for (let k = 0; k < chunk.length; k++) {
          const first = answers[0]!.hashes[k]!;
          out.push({ same: answers.every((a) => a.hashes[k] !== undefined && sameHash(a.hashes[k]!, first)), rows: Math.max(...answers.map((a) => a.rows[k] ?? 0)) });
        }
      }
      return out;
    };
    // From the root down to the leaves, keeping only the nodes where the replicas differ.
    let level = 0;
    let frontier = [0];
    let frontierRows = [rows];
    const root = await treeNodes(0, frontier);
    if (root[0]!.same) return counts;
    while (level < depth && frontier.length > 0) {
      ctx.checkCancelled();
      const next = Math.min(depth, level + LEVEL_STEP);
      const fan = 1 << (next - level);
      const children = frontier.flatMap((f) => Array.from({ length: fan }, (_, k) => f * fan + k));
      const nodes = await treeNodes(next, children);
      frontier = children.filter((_, k) => !nodes[k]!.same);
      frontierRows = nodes.filter((n) => !n.same).map((n) => n.rows);
      level = next;
    }
    add({ leavesDiffering: frontier.length });
    for (const [from, to] of blocksOf(frontier, frontierRows)) {
      ctx.checkCancelled();
      const part = blockRange(range, depth, from, to);
      if (part !== undefined) await syncRows(plan, part, ctx, ask, add);
    }
    return counts;
  } finally {
    await Promise.allSettled(replicas.map((_, i) => ask<OkMsg>(i, (replyTo) => ({ type: 'repair.release', session: plan.id, replyTo }), ctx.timeouts.exchangeMs)));
  }
}

/** Runs of adjacent differing leaves, each holding at most about BLOCK_ROWS rows, as [from, to) leaf indices. */
function blocksOf(leaves: readonly number[], rows: readonly number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let i = 0; i < leaves.length; ) {
    let j = i + 1;
    let total = rows[i]!;
    while (j < leaves.length && leaves[j] === leaves[j - 1]! + 1 && total + rows[j]! <= BLOCK_ROWS) total += rows[j++]!;
    out.push([leaves[i]!, leaves[j - 1]! + 1]);
    i = j;
  }
  return out;
}

interface RowVersions {
  summary: RowSummary;
  /** Per replica (by index): the digest and timestamp of its version; undefined where it has none. */
  digests: Array<Uint8Array | undefined>;
  timestamps: Array<number | undefined>;
}

type Ask = <R>(i: number, build: (replyTo: ReplyTo<R>) => ValidatorMsg, timeoutMs: number) => Promise<R>;

/** Tries of one question before the session gives up: a lost message costs a timeout, not the whole session. */
const ASK_TRIES = 3;

/** Runs an idempotent question again when it timed out or its node was unreachable; errors name `who`. */
async function retrying<R>(question: () => Promise<R>, who: string): Promise<R> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await question();
    } catch (error) {
      const transient = error instanceof AskTimeout || error instanceof NodeUnreachable;
      if (!transient || attempt >= ASK_TRIES) throw new Error(`${who}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

/** Lists every replica's rows of `part`, and syncs the rows whose versions differ. */
async function syncRows(plan: SessionPlan, part: TokenRange, ctx: SessionContext, ask: Ask, add: (d: Partial<SessionCounts>) => void): Promise<void> {
  const n = plan.replicas.length;
  const rows = new Map<string, RowVersions>();
  await Promise.all(
    plan.replicas.map(async (_, i) => {
      let after: RowSummary | undefined;
      for (;;) {
        const page = await ask<RowSummariesMsg>(
          i,
          (replyTo) => ({
            type: 'repair.rows',
            session: plan.id,
            start: part.start,
            end: part.end,
            limit: MAX_REPAIR_ROWS,
            ...(after ? { after: after.clustering === undefined ? { token: after.token, partition: after.partition } : { token: after.token, partition: after.partition, clustering: after.clustering } } : {}),
            replyTo,
          }),
          ctx.timeouts.exchangeMs,
        );
        for (const wire of page.rows) {
          const summary = wire as RowSummary;
          const id = rowId(summary);
          let entry = rows.get(id);
          if (entry === undefined) {
            entry = { summary, digests: new Array(n).fill(undefined), timestamps: new Array(n).fill(undefined) };
            rows.set(id, entry);
          }
          entry.digests[i] = summary.digest;
          entry.timestamps[i] = summary.timestampMicros;
        }
        if (page.done || page.rows.length === 0) return;
        after = page.rows[page.rows.length - 1] as RowSummary;
      }
    }),
  );
  const differing = [...rows.values()].filter((r) => r.digests.some((d) => d === undefined || !sameHash(d, r.digests[0]!)));
  for (let at = 0; at < differing.length; at += ROWS_IN_FLIGHT) {
    ctx.checkCancelled();
    await Promise.all(differing.slice(at, at + ROWS_IN_FLIGHT).map((r) => syncRow(plan, r, ctx, add)));
  }
}

/**
 * Brings one row to its newest version on every replica. A partition
 * deletion's summary carries all there is to it (its timestamp). A row is
 * read from every replica, not only those that listed it: one that left an
 * old tombstone out of its summary still holds it, and the merge must see
 * it, or an older value elsewhere would win and stay.
 */
async function syncRow(plan: SessionPlan, r: RowVersions, ctx: SessionContext, add: (d: Partial<SessionCounts>) => void): Promise<void> {
  const { keyspace } = plan;
  const { token, partition, clustering } = r.summary;
  const replicaRefs = plan.replicas.map((node) => ctx.system.ref<ReplicaMsg>({ node, name: REPLICA_ACTOR }));
  let targets: number[];
  let mutation: Mutation;
  let bytes: number;
  if (clustering === undefined) {
    const newest = Math.max(...r.timestamps.map((t) => t ?? -1));
    targets = r.timestamps.flatMap((t, i) => (t === newest ? [] : [i]));
    mutation = { keyspace, token: token as Token, partition, partitionDeletion: { timestampMicros: newest } };
    bytes = partition.length + ROW_OVERHEAD_BYTES;
  } else {
    const row = { keyspace, token: token as Token, partition, clustering };
    const cells = await Promise.all(replicaRefs.map((ref, i) => retrying(() => readData(ref, row, ctx.clocks(), ctx.timeouts.rowMs), `${plan.replicas[i]}`).then(fromWireCell)));
    const winner = cells.reduce<Cell | undefined>((a, b) => mergeCells(a, b), undefined);
    if (winner === undefined) return;
    const digest = cellDigest(winner);
    targets = cells.flatMap((c, i) => (sameHash(cellDigest(c), digest) ? [] : [i]));
    mutation = { keyspace, token: token as Token, partition, clustering, cell: winner };
    bytes = partition.length + clustering.length + (isTombstone(winner) ? 0 : winner.value.length) + ROW_OVERHEAD_BYTES;
  }
  if (targets.length === 0) return;
  await ctx.throttle.take(bytes * targets.length);
  // Writing a version again is harmless (the same key, the same cell), so a lost write is simply sent again.
  await Promise.all(targets.map((i) => retrying(() => mutate(replicaRefs[i]!, mutation, ctx.clocks(), ctx.timeouts.rowMs), `${plan.replicas[i]}`)));
  add({ rowsStreamed: targets.length, bytesStreamed: bytes * targets.length });
}
