import type { ActorRef, ActorSystem } from '@chorus/actors';
import { type Env, InvalidRequest, type MembershipView, type NodeId, SchemaDisagreement, Throttle, type Timer, type Token } from '@chorus/core';
import type { Clocks } from '@chorus/replica';
import type { KeyspaceDef, RingView, TokenRange } from '@chorus/ring';
import { SYSTEM_KEYSPACE, type StorageHandle } from '@chorus/storage';
import { RepairCancelled, RepairStopped, ReplicaDown, TooManyRepairJobs } from './errors.js';
import { RepairHistory } from './history.js';
import { RepairRecords } from './records.js';
import { covers, rangesToRepair, requestedRange } from './ranges.js';
import { type SessionCounts, type SessionTimeouts, repairRange } from './session.js';
import { Slots } from './slots.js';
import { type OkMsg, VALIDATOR_ACTOR, type ValidatorMsg, spawnValidator } from './validator.js';

export interface RepairRequest {
  /** Absent: every keyspace but `system`. */
  keyspace?: string;
  /** `--pr`: only the ranges ending at this node's tokens. */
  primaryRangeOnly?: boolean;
  /** Accepted for Cassandra's habit; every Chorus repair is a full repair. */
  full?: boolean;
  /** A token range to repair, start exclusive, end inclusive (decimal). */
  startToken?: string;
  endToken?: string;
  /** Ranges repaired at once (1..16, default 1). */
  parallel?: number;
}

export type RepairJobState = 'running' | 'done' | 'failed' | 'cancelled';

export interface RepairFailure {
  keyspace: string;
  start: string;
  end: string;
  reason: string;
}

export interface RepairJobStatus {
  id: string;
  state: RepairJobState;
  keyspaces: string[];
  rangesTotal: number;
  rangesDone: number;
  rangesFailed: number;
  rowsCompared: number;
  rowsStreamed: number;
  bytesStreamed: number;
  elapsedMs: number;
  startedAtMicros: number;
  /** Started by `repair_schedule_interval` rather than by a user. */
  scheduled?: boolean;
  error?: string;
  failures?: RepairFailure[];
}

export interface RepairService {
  start(request: RepairRequest): Promise<{ id: string }>;
  status(id: string): RepairJobStatus | undefined;
  /** Running jobs and the bounded history of finished ones, newest first. */
  jobs(): RepairJobStatus[];
  cancel(id: string): Promise<RepairJobStatus | undefined>;
}

export interface AntiEntropyOptions {
  env: Env;
  storage: StorageHandle;
  membership: MembershipView;
  ring(): RingView;
  keyspaces(): readonly KeyspaceDef[];
  /**
   * Whether this node's schema is the one its live peers hold. A repair of a
   * keyspace unknown here while it is not is refused with the retryable
   * SchemaDisagreement (the keyspace may not have arrived yet), not as a
   * keyspace that does not exist. Agreed when not given.
   */
  schemaAgreed?(): boolean;
  /** This node's hybrid clock readings, carried on the replica messages repair sends. */
  clocks(): Clocks;
  /**
   * Dead data that died before this is left out of a repair of `range` (the
   * purge rule of the keyspace: gc grace, or the last repair of the range).
   * Gets the history so a repair-based rule can read it.
   */
  purgeBefore(keyspace: string, range: TokenRange, history: RepairHistory): number;
  /** `repair_throttle`: bytes per second this node streams for repair (0: unpaced). */
  throttleBytesPerSec?: number;
  /** `repair_max_sessions`: range sessions this node coordinates at once, over every job. */
  maxSessions?: number;
  /** `repair_schedule_interval`: a `--pr` repair of every keyspace this often, staggered across nodes (off when absent or 0). */
  scheduleIntervalMs?: number;
  /** `repair_history_size`: finished jobs kept on disk. */
  historySize?: number;
  timeouts?: Partial<SessionTimeouts>;
  /**
   * Resolves once this node knows the whole ring again (after a restart):
   * until then a resumed job would take a partial ring's replicas for the
   * whole set and call a range repaired that was not.
   */
  ringReady?: Promise<void>;
  /** Attempts of a range session before its range fails (default 3). */
  attempts?: number;
  retryDelayMs?: number;
}

export interface AntiEntropyHandle extends RepairService {
  /** The start of the newest successful repair covering `t` of `keyspace`; what repair-based tombstone GC trusts. */
  repairedAt(keyspace: string, t: Token): number | undefined;
  readonly history: RepairHistory;
  stop(): Promise<void>;
}

export const DEFAULT_REPAIR_THROTTLE_BYTES_PER_SEC = 64 * 1024 * 1024;
export const DEFAULT_REPAIR_MAX_SESSIONS = 2;
export const DEFAULT_REPAIR_HISTORY_SIZE = 100;
/** Jobs one node runs at once. */
export const MAX_RUNNING_JOBS = 8;
export const MAX_PARALLEL = 16;
const LOCAL_TIMEOUT_MS = 10_000;
/** Longest a job resumed after a restart waits for the ring's members to be seen up again. */
const RESUME_WAIT_MS = 60_000;
const JOB_PREFIX = 'job/';

interface RangeTask {
  keyspace: string;
  start: string;
  end: string;
  state: 'pending' | 'done' | 'failed';
  reason?: string;
}

interface JobRecord {
  id: string;
  state: RepairJobState;
  request: RepairRequest;
  scheduled: boolean;
  startedAtMicros: number;
  endedAtMicros?: number;
  ranges: RangeTask[];
  rowsCompared: number;
  rowsStreamed: number;
  bytesStreamed: number;
  error?: string;
}

type JobMsg = { type: 'pump' } | { type: 'range-ended'; index: number; outcome: 'done' | 'failed' | 'cancelled'; reason?: string };


/**
 * Starts anti-entropy on a node: the validator that answers for this
 * replica's data, the repair history, and the repair jobs this node
 * coordinates. A job is an actor that runs one session per range,
 * `parallel` at a time and at most `repair_max_sessions` over every job of
 * the node; a failed session is retried, then fails its range with the
 * reason; progress is kept on disk after every range, so a job that was
 * running when the node stopped resumes with the ranges it had left.
 */
export async function startAntiEntropy(system: ActorSystem, options: AntiEntropyOptions): Promise<AntiEntropyHandle> {
  const { env, storage, membership } = options;
  const records = new RepairRecords(env, storage, LOCAL_TIMEOUT_MS);
  const history = await RepairHistory.load(env, records);
  const maxSessions = Math.max(1, options.maxSessions ?? DEFAULT_REPAIR_MAX_SESSIONS);
  const validator = spawnValidator(system, { env, reader: storage.reader, history, maxBuilds: maxSessions });
  const throttle = new Throttle(options.throttleBytesPerSec ?? DEFAULT_REPAIR_THROTTLE_BYTES_PER_SEC, env.clock, env.scheduler);
  const slots = new Slots(maxSessions);
  const historySize = Math.max(1, options.historySize ?? DEFAULT_REPAIR_HISTORY_SIZE);
  const attempts = Math.max(1, options.attempts ?? 3);
  const retryDelayMs = options.retryDelayMs ?? 2_000;
  const timeouts: SessionTimeouts = { validateMs: 3_600_000, exchangeMs: 30_000, rowMs: 10_000, ...options.timeouts };
  const jobs = new Map<string, JobRecord>();
  const actors = new Map<string, ActorRef<JobMsg>>();
  const ended = new Map<string, Array<() => void>>();
  const cancelled = new Set<string>();
  let stopped = false;
  let scheduleTimer: Timer | undefined;

  const save = (job: JobRecord): Promise<void> =>
    records.save(`${JOB_PREFIX}${job.id}`, JSON.stringify(job)).catch((error: unknown) => env.logger.warn({ err: error, job: job.id }, 'could not save repair job progress'));
  const forget = (id: string): void => {
    jobs.delete(id);
    records.save(`${JOB_PREFIX}${id}`, undefined).catch(() => undefined);
  };

  const statusOf = (job: JobRecord): RepairJobStatus => {
    const failures = job.ranges.filter((r) => r.state === 'failed').map((r) => ({ keyspace: r.keyspace, start: r.start, end: r.end, reason: r.reason ?? 'unknown' }));
    const status: RepairJobStatus = {
      id: job.id,
      state: job.state,
      keyspaces: [...new Set(job.ranges.map((r) => r.keyspace))],
      rangesTotal: job.ranges.length,
      rangesDone: job.ranges.filter((r) => r.state === 'done').length,
      rangesFailed: failures.length,
      rowsCompared: job.rowsCompared,
      rowsStreamed: job.rowsStreamed,
      bytesStreamed: job.bytesStreamed,
      elapsedMs: Math.max(0, Math.round(((job.endedAtMicros ?? env.clock.nowMicros()) - job.startedAtMicros) / 1000)),
      startedAtMicros: job.startedAtMicros,
    };
    if (job.scheduled) status.scheduled = true;
    if (job.error !== undefined) status.error = job.error;
    if (failures.length > 0) status.failures = failures.slice(0, 20);
    return status;
  };

  const keyspaceDefs = (request: RepairRequest): KeyspaceDef[] => {
    const all = options.keyspaces().filter((k) => k.name !== SYSTEM_KEYSPACE);
    if (request.keyspace === undefined) return all;
    if (request.keyspace === SYSTEM_KEYSPACE) throw new InvalidRequest('the system keyspace is local to each node and is never repaired', { field: 'keyspace' });
    const def = all.find((k) => k.name === request.keyspace);
    if (def === undefined && options.schemaAgreed?.() === false) throw new SchemaDisagreement(request.keyspace);
    if (def === undefined) throw new InvalidRequest(`unknown keyspace ${JSON.stringify(request.keyspace).slice(0, 80)}`, { field: 'keyspace', reason: 'UNKNOWN_KEYSPACE' });
    return [def];
  };

  /** One range session with retries; resolves with how the range ended. */
  const runRange = async (job: JobRecord, task: RangeTask): Promise<{ outcome: 'done' | 'failed' | 'cancelled'; reason?: string }> => {
    const def = options.keyspaces().find((k) => k.name === task.keyspace);
    if (def === undefined) return { outcome: 'failed', reason: `keyspace ${task.keyspace} no longer exists` };
    const range: TokenRange = { start: BigInt(task.start) as Token, end: BigInt(task.end) as Token };
    let reason = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (cancelled.has(job.id) || stopped) return { outcome: 'cancelled' };
      // Replicas as the ring has them now: a job resumed after a topology change repairs the current owners.
      const replicas = options.ring().naturalReplicas(range.end, def.replication);
      const down = replicas.find((n) => !membership.isAlive(n));
      // A range with a replica down fails at once: waiting would hang, and calling it repaired would let tombstone GC purge too early.
      if (down !== undefined) return { outcome: 'failed', reason: new ReplicaDown(down).message };
      if (replicas.length === 0) return { outcome: 'failed', reason: 'the range has no replicas in the ring' };
      const startedAtMicros = env.clock.nowMicros();
      try {
        await repairRange(
          { id: env.random.uuid(), keyspace: task.keyspace, range, replicas, purgeBeforeMicros: Math.max(0, Math.floor(options.purgeBefore(task.keyspace, range, history))) },
          {
            system,
            now: () => env.clock.monotonicMs(),
            clocks: options.clocks,
            throttle,
            timeouts,
            checkCancelled: () => {
              if (cancelled.has(job.id) || stopped) throw new RepairCancelled(job.id);
            },
            progress: (delta: Partial<SessionCounts>) => {
              job.rowsCompared += delta.rowsCompared ?? 0;
              job.rowsStreamed += delta.rowsStreamed ?? 0;
              job.bytesStreamed += delta.bytesStreamed ?? 0;
            },
          },
        );
        await recordCompleted(task.keyspace, range, replicas, startedAtMicros);
        return { outcome: 'done' };
      } catch (error) {
        if (error instanceof RepairCancelled) return { outcome: 'cancelled' };
        reason = error instanceof Error ? error.message : String(error);
        env.logger.warn({ job: job.id, keyspace: task.keyspace, start: task.start, end: task.end, attempt, reason }, 'repair session failed');
        if (attempt < attempts) await new Promise<void>((resolve) => env.scheduler.setTimer(retryDelayMs * attempt, resolve));
      }
    }
    return { outcome: 'failed', reason: `${reason} (after ${attempts} attempts)` };
  };

  /** Tells every replica of the range it was repaired; one that misses it only purges later. */
  const recordCompleted = async (keyspace: string, range: TokenRange, replicas: readonly NodeId[], startedAtMicros: number): Promise<void> => {
    const results = await Promise.allSettled(
      replicas.map((node) =>
        system
          .ref<ValidatorMsg>({ node, name: VALIDATOR_ACTOR })
          .ask<OkMsg>((replyTo) => ({ type: 'repair.completed', keyspace, start: range.start, end: range.end, repairedAtMicros: startedAtMicros, replyTo }), LOCAL_TIMEOUT_MS),
      ),
    );
    for (const [i, r] of results.entries()) if (r.status === 'rejected') env.logger.warn({ node: replicas[i], keyspace, err: r.reason }, 'a replica did not record a completed repair; it purges nothing new until the next one');
  };

  const finish = (job: JobRecord): void => {
    const failed = job.ranges.filter((r) => r.state === 'failed');
    job.state = cancelled.has(job.id) || stopped ? 'cancelled' : failed.length > 0 ? 'failed' : 'done';
    if (job.state === 'failed') job.error = `${failed.length} of ${job.ranges.length} range(s) failed; first: ${failed[0]!.keyspace} (${failed[0]!.start}, ${failed[0]!.end}]: ${failed[0]!.reason}`;
    if (job.state === 'cancelled') job.error = 'cancelled';
    job.endedAtMicros = env.clock.nowMicros();
    env.logger.info(statusOf(job), 'repair job ended');
    // A node stopping leaves its running jobs as they are on disk, to resume at the next start.
    if (!stopped) void save(job);
    actors.delete(job.id);
    cancelled.delete(job.id);
    for (const wake of ended.get(job.id) ?? []) wake();
    ended.delete(job.id);
    const finished = [...jobs.values()].filter((j) => j.state !== 'running').sort((a, b) => b.startedAtMicros - a.startedAtMicros);
    for (const old of finished.slice(historySize)) forget(old.id);
  };

  const runJob = (job: JobRecord): void => {
    const parallel = Math.min(MAX_PARALLEL, Math.max(1, job.request.parallel ?? 1));
    const ref = system.spawn<JobMsg>(`repair-job-${job.id}`, () => {
      // Which ranges are in flight is rebuilt from the record: a restarted job actor picks up where the record says.
      const inFlight = new Set<number>();
      return {
        started(ctx) {
          ctx.self.tell({ type: 'pump' });
        },
        receive(msg, ctx) {
          if (msg.type === 'range-ended') {
            inFlight.delete(msg.index);
            const task = job.ranges[msg.index]!;
            if (msg.outcome !== 'cancelled') {
              task.state = msg.outcome;
              if (msg.reason !== undefined) task.reason = msg.reason;
              void save(job);
            }
          }
          const stopping = cancelled.has(job.id) || stopped;
          if (!stopping) {
            for (let i = 0; i < job.ranges.length && inFlight.size < parallel; i++) {
              if (job.ranges[i]!.state !== 'pending' || inFlight.has(i)) continue;
              inFlight.add(i);
              const task = job.ranges[i]!;
              const work = slots.run(() => runRange(job, task));
              env.scheduler.track(work).then(
                (r) => ctx.self.tell({ type: 'range-ended', index: i, ...r }),
                (error: unknown) => ctx.self.tell({ type: 'range-ended', index: i, outcome: 'failed', reason: String(error) }),
              );
            }
          }
          if (inFlight.size === 0 && (stopping || job.ranges.every((r) => r.state !== 'pending'))) {
            finish(job);
            ctx.stop();
          }
        },
      };
    });
    actors.set(job.id, ref);
  };

  const start = async (request: RepairRequest, scheduled = false): Promise<{ id: string }> => {
    if (stopped) throw new RepairStopped();
    if (request.parallel !== undefined && (!Number.isInteger(request.parallel) || request.parallel < 1 || request.parallel > MAX_PARALLEL)) {
      throw new InvalidRequest(`parallel must be an integer from 1 to ${MAX_PARALLEL}, got ${String(request.parallel)}`, { field: 'parallel' });
    }
    const within = requestedRange(request.startToken, request.endToken);
    const defs = keyspaceDefs(request);
    const running = [...jobs.values()].filter((j) => j.state === 'running').length;
    if (running >= MAX_RUNNING_JOBS) throw new TooManyRepairJobs(running, MAX_RUNNING_JOBS);
    const ring = options.ring();
    const ranges: RangeTask[] = defs.flatMap((def) =>
      rangesToRepair(ring, env.node, def.replication, request.primaryRangeOnly === true, within).map((r) => ({ keyspace: def.name, start: r.start.toString(), end: r.end.toString(), state: 'pending' as const })),
    );
    const job: JobRecord = { id: env.random.uuid(), state: 'running', request, scheduled, startedAtMicros: env.clock.nowMicros(), ranges, rowsCompared: 0, rowsStreamed: 0, bytesStreamed: 0 };
    jobs.set(job.id, job);
    await save(job);
    env.logger.info({ job: job.id, keyspaces: defs.map((d) => d.name), ranges: ranges.length, scheduled }, 'repair job started');
    runJob(job);
    return { id: job.id };
  };

  // Jobs of an earlier run: finished ones are history; running ones resume with the ranges they had left.
  for await (const { name, text } of records.load(JOB_PREFIX)) {
    try {
      const job = JSON.parse(text) as JobRecord;
      jobs.set(job.id, job);
    } catch (error) {
      env.logger.warn({ err: error, job: name }, 'unreadable repair job record; skipped');
    }
  }
  const resume = async (): Promise<void> => {
    if (![...jobs.values()].some((j) => j.state === 'running')) return;
    // A restarted node hears its peers' heartbeats again a few rounds after it knows the ring; a job resumed before
    // that would fail every range as "replica down". Wait for them, within bounds: one really down still fails its ranges.
    const deadline = env.clock.monotonicMs() + RESUME_WAIT_MS;
    while (!stopped && env.clock.monotonicMs() < deadline && options.ring().members.some((m) => !membership.isAlive(m.node))) {
      await new Promise<void>((resolve) => env.scheduler.setTimer(500, resolve));
    }
    for (const job of jobs.values()) {
      if (job.state !== 'running' || stopped) continue;
      env.logger.info({ job: job.id, left: job.ranges.filter((r) => r.state === 'pending').length }, 'resuming repair job');
      runJob(job);
    }
  };

  // Scheduled repair: node i of n (by node id) starts at i/n of each interval, so the nodes take turns.
  const interval = options.scheduleIntervalMs ?? 0;
  const scheduleNext = (): void => {
    if (interval <= 0 || stopped) return;
    const members = [...options.ring().members].map((m) => m.node).sort();
    const slot = Math.max(0, members.indexOf(env.node));
    const offset = Math.floor((interval * slot) / Math.max(1, members.length));
    const nowMs = Math.floor(env.clock.nowMicros() / 1000);
    const next = Math.floor((nowMs - offset) / interval + 1) * interval + offset;
    scheduleTimer = env.scheduler.setTimer(Math.max(1, next - nowMs), () => {
      const busy = [...jobs.values()].some((j) => j.scheduled && j.state === 'running');
      if (!busy) start({ primaryRangeOnly: true }, true).catch((error: unknown) => env.logger.warn({ err: error }, 'scheduled repair could not start'));
      void (options.ringReady ?? Promise.resolve()).then(async () => {
    scheduleNext();
    await resume();
  });
    });
  };
  void (options.ringReady ?? Promise.resolve()).then(async () => {
    scheduleNext();
    await resume();
  });

  return {
    history,
    repairedAt: (keyspace, t) => history.repairedAt(keyspace, t),
    start: (request) => start(request),
    status: (id) => {
      const job = jobs.get(id);
      return job && statusOf(job);
    },
    jobs: () => [...jobs.values()].sort((a, b) => b.startedAtMicros - a.startedAtMicros).map(statusOf),
    async cancel(id) {
      const job = jobs.get(id);
      if (job === undefined) return undefined;
      if (job.state === 'running') {
        cancelled.add(id);
        const done = new Promise<void>((resolve) => ended.set(id, [...(ended.get(id) ?? []), resolve]));
        actors.get(id)?.tell({ type: 'pump' });
        // Sessions stop between steps; one in the middle of a long tree build is left to finish on its own.
        await Promise.race([done, new Promise<void>((resolve) => env.scheduler.setTimer(10_000, resolve))]);
      }
      return statusOf(job);
    },
    async stop() {
      stopped = true;
      scheduleTimer?.cancel();
      for (const ref of actors.values()) await system.stop(ref as ActorRef<unknown>);
      await system.stop(validator as ActorRef<unknown>);
      await records.flushed();
    },
  };
}

/** The newest repair recorded over the whole of `range`; what a repair-based purge rule reads. */
export function repairedAtRange(history: RepairHistory, keyspace: string, range: TokenRange): number | undefined {
  let newest: number | undefined;
  for (const r of history.ranges()) {
    if (r.keyspace === keyspace && covers(r, range) && (newest === undefined || r.repairedAtMicros > newest)) newest = r.repairedAtMicros;
  }
  return newest;
}
