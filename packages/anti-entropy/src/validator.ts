import type { ActorRef, ActorSystem, ReplyTo } from '@chorus/actors';
import { type Env, Overloaded, type Timer, type Token } from '@chorus/core';
import type { TokenRange } from '@chorus/ring';
import type { ScanPosition, StoreReader } from '@chorus/storage';
import { MAX_REPAIR_ROWS, type MessageKind, type WireMessage } from '@chorus/wire';
import { UnknownRepairSession } from './errors.js';
import type { RepairHistory } from './history.js';
import { RangeTree, rowHash } from './merkle.js';
import { Slots } from './slots.js';
import { type RowSummary, summaries } from './rows.js';

/** The name of the repair validator on every node: it answers the repair coordinators' questions about this replica's data. */
export const VALIDATOR_ACTOR = 'repair-validator';

/** Trees one node holds at once (about 2.3 MiB each); a further validation is refused as Overloaded and its session retried later. */
export const MAX_TREES_HELD = 32;
/** A session's tree is dropped when its coordinator has not asked about it for this long (it crashed, or lost the release). */
export const SESSION_IDLE_MS = 10 * 60_000;
/** Longest a validate question waits for the tree before answering with the rows hashed so far. */
const VALIDATE_POLL_MS = 5_000;
/** Key bytes one page of row summaries carries at most (the frame limit is 4 MiB). */
const ROWS_PAGE_BYTES = 1024 * 1024;
const SUMMARY_OVERHEAD_BYTES = 48;

type Ask<K extends MessageKind, R> = WireMessage<K> & { replyTo: ReplyTo<R> };
export type ValidatedMsg = WireMessage<'repair.validated'>;
export type TreeNodesMsg = WireMessage<'repair.tree-nodes'>;
export type RowSummariesMsg = WireMessage<'repair.row-summaries'>;
export type OkMsg = WireMessage<'repair.ok'>;

export type ValidatorMsg =
  | Ask<'repair.validate', ValidatedMsg>
  | Ask<'repair.tree', TreeNodesMsg>
  | Ask<'repair.rows', RowSummariesMsg>
  | Ask<'repair.release', OkMsg>
  | Ask<'repair.completed', OkMsg>
  | { type: 'expire' };

export interface ValidatorOptions {
  env: Env;
  reader: Pick<StoreReader, 'scanRange'>;
  history: RepairHistory;
  maxTrees?: number;
  /** Trees built at once (`repair_max_sessions`): each build is a scan of a whole range. */
  maxBuilds?: number;
  idleMs?: number;
}

interface HeldSession {
  keyspace: string;
  range: TokenRange;
  purgeBeforeMicros: number;
  tree: Promise<RangeTree>;
  /** The tree as it is being built: its row count so far. */
  building: RangeTree;
  lastUsedMs: number;
}

/**
 * Builds a Merkle tree of this replica's rows of a range by streaming them
 * from the store in token order (never holding the range in memory), keeps
 * it for the session, answers for its nodes and for the row summaries of the
 * parts that differ, and records completed repairs. Handlers never await, so
 * a long validation does not hold up the other sessions.
 */
export function spawnValidator(system: ActorSystem, options: ValidatorOptions): ActorRef<ValidatorMsg> {
  const { env, reader, history } = options;
  const maxTrees = options.maxTrees ?? MAX_TREES_HELD;
  const idleMs = options.idleMs ?? SESSION_IDLE_MS;
  return system.spawn<ValidatorMsg>(VALIDATOR_ACTOR, () => {
    const sessions = new Map<string, HeldSession>();
    // Trees are built `maxBuilds` at a time; the others wait their turn, and their coordinators keep asking.
    const builds = new Slots(options.maxBuilds ?? 2);
    return {
      started(ctx) {
        ctx.after(idleMs / 4, { type: 'expire' });
      },
      receive(msg, ctx) {
        if (msg.type === 'expire') {
          const now = env.clock.monotonicMs();
          for (const [key, s] of sessions) if (now - s.lastUsedMs > idleMs) sessions.delete(key);
          ctx.after(idleMs / 4, { type: 'expire' });
          return;
        }
        const answer = <R>(work: () => Promise<R>): void => {
          env.scheduler.track(Promise.resolve().then(work)).then(
            (r) => ctx.reply(msg.replyTo as ReplyTo<unknown>, r),
            (error: unknown) => ctx.fail(msg.replyTo, error instanceof Error ? error : new Error(String(error))),
          );
        };
        if (msg.type === 'repair.completed') {
          answer(async (): Promise<OkMsg> => {
            await history.record(msg.keyspace, { start: msg.start as Token, end: msg.end as Token }, msg.repairedAtMicros);
            return { type: 'repair.ok' };
          });
          return;
        }
        // Sessions are named by their coordinator and its id: one coordinator cannot reach another's.
        const key = `${msg.replyTo.node}|${msg.session}`;
        const held = (): HeldSession => {
          const s = sessions.get(key);
          if (s === undefined) throw new UnknownRepairSession(msg.session);
          s.lastUsedMs = env.clock.monotonicMs();
          return s;
        };
        switch (msg.type) {
          case 'repair.validate': {
            let s = sessions.get(key);
            if (s === undefined) {
              if (sessions.size >= maxTrees) {
                ctx.fail(msg.replyTo, new Overloaded('repair trees held', maxTrees));
                return;
              }
              const range = { start: msg.start as Token, end: msg.end as Token };
              const building = new RangeTree(range);
              const tree = builds.run(() => buildTree(reader, msg.keyspace, building, msg.purgeBeforeMicros, () => env.clock.nowMicros()));
              // A failed build must not stay held: the coordinator retries with a new session.
              tree.catch(() => sessions.delete(key));
              s = { keyspace: msg.keyspace, range, purgeBeforeMicros: msg.purgeBeforeMicros, tree, building, lastUsedMs: env.clock.monotonicMs() };
              sessions.set(key, s);
            }
            s.lastUsedMs = env.clock.monotonicMs();
            const { tree, building } = s;
            answer(async (): Promise<ValidatedMsg> => {
              let timer: Timer | undefined;
              const waited = new Promise<false>((resolve) => (timer = env.scheduler.setTimer(VALIDATE_POLL_MS, () => resolve(false))));
              const ready = await Promise.race([tree.then(() => true), waited]);
              timer?.cancel();
              return { type: 'repair.validated', rows: building.rows, ready };
            });
            return;
          }
          case 'repair.tree':
            answer(async (): Promise<TreeNodesMsg> => {
              const nodes = (await held().tree).nodes(msg.depth, msg.level, msg.nodes);
              return { type: 'repair.tree-nodes', hashes: nodes.map((n) => n.hash), rows: nodes.map((n) => n.rows) };
            });
            return;
          case 'repair.rows':
            answer(async (): Promise<RowSummariesMsg> => {
              const s = held();
              return rowsPage(reader, s, { start: msg.start as Token, end: msg.end as Token }, msg.limit, msg.after as ScanPosition | undefined, () => env.clock.nowMicros());
            });
            return;
          case 'repair.release':
            sessions.delete(key);
            ctx.reply(msg.replyTo, { type: 'repair.ok' });
            return;
        }
      },
    };
  }, { mailbox: { capacity: 10_000, overflow: 'reject' } });
}

async function buildTree(reader: Pick<StoreReader, 'scanRange'>, keyspace: string, tree: RangeTree, purgeBeforeMicros: number, now: () => number): Promise<RangeTree> {
  for await (const { summary } of summaries(reader, keyspace, tree.range, purgeBeforeMicros, now)) {
    tree.add(summary.token, rowHash(summary.token, summary.partition, summary.clustering, summary.digest));
  }
  return tree;
}

async function rowsPage(
  reader: Pick<StoreReader, 'scanRange'>,
  s: HeldSession,
  part: TokenRange,
  limit: number,
  after: ScanPosition | undefined,
  now: () => number,
): Promise<RowSummariesMsg> {
  const rows: RowSummary[] = [];
  let bytes = 0;
  const max = Math.min(limit, MAX_REPAIR_ROWS);
  const it = summaries(reader, s.keyspace, part, s.purgeBeforeMicros, now, after);
  try {
    for await (const { summary } of it) {
      rows.push(summary);
      bytes += summary.partition.length + (summary.clustering?.length ?? 0) + SUMMARY_OVERHEAD_BYTES;
      if (rows.length >= max || bytes >= ROWS_PAGE_BYTES) return { type: 'repair.row-summaries', rows: rows.map(wireSummary), done: false };
    }
  } finally {
    await it.return(undefined);
  }
  return { type: 'repair.row-summaries', rows: rows.map(wireSummary), done: true };
}

/** Optional fields are left out rather than set to undefined, so the schema check holds. */
function wireSummary(r: RowSummary): RowSummary {
  const { clustering, ...rest } = r;
  return clustering === undefined ? rest : { clustering, ...rest };
}
