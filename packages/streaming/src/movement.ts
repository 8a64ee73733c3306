import { type ActorSystem, AskTimeout, MailboxFull, NodeUnreachable } from '@chorus/actors';
import type { Env, NodeId, Throttle, Token } from '@chorus/core';
import type { Mutation } from '@chorus/model';
import { type Clocks, REPLICA_ACTOR, type ReplicaMsg, entryBytes, mutate, mutationsOf, streamRange } from '@chorus/replica';
import { rangeWidth } from '@chorus/ring';
import type { ScanPosition } from '@chorus/storage';
import { MovementInProgress, NoLiveSource, StreamFailed } from './errors.js';
import type { RangeTask } from './plan.js';

export type MovementKind = 'bootstrap' | 'decommission' | 'removenode';
export type MovementState = 'running' | 'done' | 'failed';

/** A movement as `chorus streams` and `GET /v1/streams` show it. */
export interface MovementStatus {
  id: string;
  kind: MovementKind;
  state: MovementState;
  /** Nodes rows come from and go to. */
  sources: string[];
  targets: string[];
  keyspaces: string[];
  rangesTotal: number;
  rangesDone: number;
  rowsStreamed: number;
  bytesStreamed: number;
  /** Share of the moved token ranges copied so far, 0–100 (ranges weighted by width). */
  percent: number;
  elapsedMs: number;
  /** The last failure, while the movement retries it, or why it failed. */
  error?: string;
}

export interface MovementContext {
  system: ActorSystem;
  env: Env;
  clocks(): Clocks;
  /** Whether a source is worth asking now (the failure detector's view). */
  isAlive(node: NodeId): boolean;
  /** Paces the bytes this node streams (`stream_throughput`). */
  throttle: Throttle;
  /** One page asked of a source (default 30 s). */
  pageTimeoutMs?: number;
  /** One row written to the target (default 10 s). */
  writeTimeoutMs?: number;
  /** Ranges copied at once (default 2). */
  parallel?: number;
}

/** stream_throughput's default: bytes per second one node streams (24 MiB/s, Cassandra's stream_throughput_outbound). */
export const DEFAULT_STREAM_THROUGHPUT_BYTES_PER_SEC = 24 * 1024 * 1024;

/** Tries of a page or a row before its source (or target) is given up for this round: a lost message costs a timeout, not the range. */
const TRIES = 3;
/** Rows of a page written at once; the page itself is at most MAX_STREAM_ENTRIES. */
const WRITES_IN_FLIGHT = 512;

interface TaskState {
  task: RangeTask;
  done: boolean;
  /** Share of the range copied, 0–1, from the position of the last page. */
  fraction: number;
}

function isTransient(error: unknown): boolean {
  return error instanceof AskTimeout || error instanceof NodeUnreachable || error instanceof MailboxFull;
}

/** How far `t` lies into `(start, end]`, 0–1. */
function fractionOf(task: RangeTask, t: Token): number {
  const width = rangeWidth(task.range);
  const into = rangeWidth({ start: task.range.start, end: t });
  return into >= width ? 1 : Number(into) / Number(width);
}

/**
 * Copies token ranges from replicas to their new owner, page by page over the
 * range-stream verb, each row written with its own timestamp and expiry (as
 * repair writes rows), paced by a throttle. A source that fails is given up
 * for the range, which starts again from the next source (a fallback replica
 * may hold rows the first one lacked before the position it reached; rows
 * written twice are the same versions). `run` copies what is left and can be
 * called again after it failed.
 */
export class RangeMovement {
  private readonly tasks: TaskState[];
  /** When the first run began: a movement may be set up a while before it streams. */
  private startedMs: number | undefined;
  private endedMs: number | undefined;
  private state: MovementState = 'running';
  private rows = 0;
  private bytes = 0;
  private error: string | undefined;
  private running: Promise<MovementStatus> | undefined;

  constructor(
    readonly id: string,
    readonly kind: MovementKind,
    tasks: readonly RangeTask[],
    private readonly ctx: MovementContext,
  ) {
    this.tasks = tasks.map((task) => ({ task, done: false, fraction: 0 }));
    if (tasks.length === 0) this.finish('done');
  }

  status(): MovementStatus {
    const totalWidth = this.tasks.reduce((n, t) => n + Number(rangeWidth(t.task.range)), 0);
    const doneWidth = this.tasks.reduce((n, t) => n + Number(rangeWidth(t.task.range)) * (t.done ? 1 : t.fraction), 0);
    const uniq = (xs: string[]) => [...new Set(xs)].sort();
    const out: MovementStatus = {
      id: this.id,
      kind: this.kind,
      state: this.state,
      sources: uniq(this.tasks.flatMap((t) => t.task.sources)),
      targets: uniq(this.tasks.map((t) => t.task.target)),
      keyspaces: uniq(this.tasks.map((t) => t.task.keyspace)),
      rangesTotal: this.tasks.length,
      rangesDone: this.tasks.filter((t) => t.done).length,
      rowsStreamed: this.rows,
      bytesStreamed: this.bytes,
      percent: this.state === 'done' ? 100 : totalWidth === 0 ? 0 : Math.min(99.9, Math.floor((1000 * doneWidth) / totalWidth) / 10),
      elapsedMs: this.startedMs === undefined ? 0 : (this.endedMs ?? this.ctx.env.clock.monotonicMs()) - this.startedMs,
    };
    if (this.error !== undefined) out.error = this.error;
    return out;
  }

  get done(): boolean {
    return this.state === 'done';
  }

  /**
   * Copies every range not copied yet; resolves once all are, or rejects with
   * StreamFailed naming the first range no source could give this round (the
   * others went on). Concurrent calls share one run.
   */
  run(): Promise<MovementStatus> {
    this.running ??= this.runOnce().finally(() => (this.running = undefined));
    return this.running;
  }

  private async runOnce(): Promise<MovementStatus> {
    if (this.state === 'done') return this.status();
    this.startedMs ??= this.ctx.env.clock.monotonicMs();
    this.state = 'running';
    this.endedMs = undefined;
    const queue = this.tasks.filter((t) => !t.done);
    let failure: { task: RangeTask; reason: string } | undefined;
    const worker = async (): Promise<void> => {
      for (let t = queue.shift(); t !== undefined; t = queue.shift()) {
        try {
          await this.copy(t);
          t.done = true;
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          failure ??= { task: t.task, reason };
          this.error = reason;
          this.ctx.env.logger.warn({ movement: this.id, keyspace: t.task.keyspace, start: t.task.range.start.toString(), end: t.task.range.end.toString(), reason }, 'range not streamed this round');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, this.ctx.parallel ?? 2) }, worker));
    if (failure !== undefined) {
      const left = this.tasks.filter((t) => !t.done).length;
      this.finish('failed');
      throw new StreamFailed(failure.task.keyspace, failure.task.range.start.toString(), failure.task.range.end.toString(), failure.reason, left);
    }
    this.error = undefined;
    this.finish('done');
    return this.status();
  }

  private finish(state: MovementState): void {
    this.state = state;
    this.endedMs = this.ctx.env.clock.monotonicMs();
  }

  /** One range from the first of its sources that gives all of it. */
  private async copy(t: TaskState): Promise<void> {
    const tried: string[] = [];
    for (const source of t.task.sources) {
      if (source !== this.ctx.env.node && !this.ctx.isAlive(source)) continue;
      try {
        t.fraction = 0;
        await this.copyFrom(t, source);
        return;
      } catch (error) {
        if (!isTransient(error) && !(error instanceof SourceFailed)) throw error;
        tried.push(`${source}: ${error instanceof Error ? error.message : String(error)}`);
        this.ctx.env.logger.info({ movement: this.id, source, keyspace: t.task.keyspace, reason: tried[tried.length - 1] }, 'streaming source failed; trying the next replica');
      }
    }
    if (tried.length === 0) throw new NoLiveSource(t.task.sources);
    throw new Error(`every source failed (${tried.join('; ')})`);
  }

  private async copyFrom(t: TaskState, source: NodeId): Promise<void> {
    const { system, clocks, throttle } = this.ctx;
    const from = system.ref<ReplicaMsg>({ node: source, name: REPLICA_ACTOR });
    const to = system.ref<ReplicaMsg>({ node: t.task.target, name: REPLICA_ACTOR });
    const pageTimeoutMs = this.ctx.pageTimeoutMs ?? 30_000;
    const writeTimeoutMs = this.ctx.writeTimeoutMs ?? 10_000;
    let after: ScanPosition | undefined;
    for (;;) {
      const page = await retry(() => streamRange(from, t.task.keyspace, t.task.range, after, clocks(), pageTimeoutMs), `page from ${source}`);
      const bytes = page.entries.reduce((n, e) => n + entryBytes(e), 0);
      await throttle.take(bytes);
      const mutations = mutationsOf(t.task.keyspace, page.entries);
      for (let at = 0; at < mutations.length; at += WRITES_IN_FLIGHT) {
        await Promise.all(mutations.slice(at, at + WRITES_IN_FLIGHT).map((m: Mutation) => retry(() => mutate(to, m, clocks(), writeTimeoutMs), `write to ${t.task.target}`)));
      }
      this.rows += mutations.length;
      this.bytes += bytes;
      if (page.done) return;
      if (page.last === undefined) throw new SourceFailed('a page that is not the last one had no position');
      after = { ...page.last, token: page.last.token as Token };
      t.fraction = fractionOf(t.task, after.token);
    }
  }
}

class SourceFailed extends Error {}

/** Runs an idempotent step again when its message was lost or its node was briefly unreachable. */
async function retry<R>(step: () => Promise<R>, what: string): Promise<R> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      if (!isTransient(error)) throw new SourceFailed(`${what}: ${error instanceof Error ? error.message : String(error)}`);
      if (attempt >= TRIES) throw error;
    }
  }
}

/**
 * The movements of one node: at most one runs at a time (two at once would
 * copy ranges whose owners the other is changing), and the last few finished
 * ones are kept for `chorus streams`.
 */
export class Movements {
  private readonly list: RangeMovement[] = [];

  constructor(private readonly keep = 10) {}

  /** Registers a new movement; refuses with MovementInProgress while another one has not finished. */
  begin(id: string, kind: MovementKind, tasks: readonly RangeTask[], ctx: MovementContext): RangeMovement {
    const active = this.list.find((m) => !m.done && m.status().state !== 'failed');
    if (active !== undefined) throw new MovementInProgress(active.id, active.kind);
    const m = new RangeMovement(id, kind, tasks, ctx);
    this.list.push(m);
    while (this.list.length > this.keep) {
      const old = this.list.findIndex((x) => x.done);
      if (old < 0) break;
      this.list.splice(old, 1);
    }
    return m;
  }

  statuses(): MovementStatus[] {
    return this.list.map((m) => m.status());
  }
}
