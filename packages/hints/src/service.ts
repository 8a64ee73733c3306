import type { ActorContext, ActorRef, ActorSystem, ReplyTo } from '@chorus/actors';
import { type Env, type HintSink, type HostId, type MembershipEvent, type MembershipEvents, type MembershipView, type NodeId, type Timer, type Token, isChorusError, Throttle } from '@chorus/core';
import type { Mutation } from '@chorus/model';
import { type HybridLogicalClock, REPLICA_ACTOR, type ReplicaMsg, mutate } from '@chorus/replica';
import { type CommitSyncMode, DEFAULT_GC_GRACE_SECONDS, type StorageDb } from '@chorus/storage';
import { MAX_HANDOFF_HINTS, MESSAGE_KINDS, type WireMessage } from '@chorus/wire';
import type { HintPosition } from './codec.js';
import { HintHandOffFailed, HintHandOffRefused, HintStoreClosed } from './errors.js';
import { type AdoptItem, type AppendItem, type AppendOutcome, HintStore, type StoredHint, type TargetSummary } from './store.js';


/** max_hint_window: 3 hours, as Cassandra. */
export const DEFAULT_MAX_HINT_WINDOW_MS = 3 * 3_600_000;
/** max_hints_size_per_host: 1 GiB of hints per target, then the target needs a repair instead. */
export const DEFAULT_MAX_HINTS_SIZE_PER_HOST_BYTES = 1024 * 1024 * 1024;
/** hinted_handoff_throttle: 1024 KiB/s, as Cassandra. */
export const DEFAULT_HINTED_HANDOFF_THROTTLE_KIB = 1024;
/** How often targets are checked for hints to deliver (a replica that was up but missed a write), as Cassandra's dispatch. */
export const DEFAULT_HINT_DISPATCH_INTERVAL_MS = 10_000;
export const HINTS_ACTOR = 'hints';

const PAGE_HINTS = 128;
const PAGE_BYTES = 1024 * 1024;
/** Hints of one target sent at once while replaying. */
const DELIVERY_WINDOW = 16;
const MIN_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 60_000;
const OFFER_TIMEOUT_MS = 60_000;
const DEFAULT_DELIVERY_TIMEOUT_MS = 10_000;
/** Bytes of hints (as stored) in one hand-off message; a single larger hint travels alone, still well inside a frame. */
const HANDOFF_BATCH_BYTES = 1024 * 1024;

/**
 * Why a hint was not stored or not delivered: refused when offered (the
 * target's `window` passed, its hints reached the `size` cap, this node was
 * `overloaded`, the target's host id is `unknown`), or discarded from the store
 * (its host id was `removed`, it outlived gc grace: `expired`, the target
 * `rejected` it as malformed, or its record is `corrupt`).
 */
export type HintDropReason = 'window' | 'size' | 'overloaded' | 'unknown' | 'removed' | 'expired' | 'rejected' | 'corrupt' | 'leaving';
export const HINT_DROP_REASONS: readonly HintDropReason[] = ['window', 'size', 'overloaded', 'unknown', 'removed', 'expired', 'rejected', 'corrupt', 'leaving'];

/** Counters since the node started; pending figures are the store's current ones. */
export interface HintStats {
  stored: number;
  delivered: number;
  /** Bytes of the hints delivered (key and record, as stored). */
  replayedBytes: number;
  /** Replay attempts that failed and were retried later (the target timed out or went away). */
  deliveryFailures: number;
  /** Hints this node handed off to another node's store, which acknowledged them. */
  handedOff: number;
  /** Hints other nodes handed off to this node's store. */
  received: number;
  dropped: Record<HintDropReason, number>;
  pendingHints: number;
  pendingBytes: number;
}

/** One target of `targets()`: a host id with hints pending or a needs-repair mark. */
export type HintTarget = TargetSummary;

/** What a completed `handOff(to)` moved. */
export interface HandOffResult {
  to: NodeId;
  /** Hints now in `to`'s store, for other targets. */
  handedOff: number;
  /** Bytes of those hints, as stored. */
  bytes: number;
  /** Hints addressed to `to` itself, applied there as mutations instead. */
  delivered: number;
  /** Hints met on the way that were past gc grace, unreadable, or refused by `to` as malformed: dropped, never sent. */
  dropped: number;
}

export interface HintsOptions {
  env: Env;
  /** The hints' own database (`<data_dir>/hints` in production; memory-level in tests and the simulator). */
  db: StorageDb;
  /** Who is up, and the host id of each node. */
  membership: MembershipView;
  /** Replay starts when a target is seen UP; hints of a host id that left or was removed are dropped. */
  events: MembershipEvents;
  /** This node's clock, shared with its replica and coordinator: replayed mutations carry its readings as every replica message does. */
  hlc: HybridLogicalClock;
  /** hinted_handoff_enabled (default true). Off: every offer is refused; hints already stored are still delivered. */
  enabled?: boolean;
  /** max_hint_window, measured from the target's oldest undelivered hint. */
  maxHintWindowMs?: number;
  /** max_hints_size_per_host in bytes; 0 for no cap. */
  maxHintsSizePerHostBytes?: number;
  /** hinted_handoff_throttle in KiB/s over every target; 0 for no pacing. */
  throttleKiBps?: number;
  /** The node's commit_sync: a hint counts as stored when it is as durable as the node's own writes. */
  commitSync?: CommitSyncMode;
  commitSyncPeriodMs?: number;
  /** The gc grace of a keyspace: a hint older than that is never delivered (it could bring back data whose tombstone was purged). */
  gcGraceSecondsOf?: (keyspace: string) => number;
  /**
   * The storage purge horizon of a keyspace at a token (repair-based
   * tombstone GC: the last repair of the range): a hint written at or before
   * it is never delivered either, since a tombstone it should meet may be
   * gone from every replica.
   */
  purgeHorizon?: (keyspace: string, t: Token) => number;
  /** How long a target has to acknowledge one replayed hint. */
  deliveryTimeoutMs?: number;
  /**
   * Whether the host id left or was removed, as membership knows now. Hints
   * for it are dropped at the next dispatch and no more are stored: the
   * `left` and `removed` events come once, and a run that started after
   * them (its hints on disk) hears none.
   */
  isGone?: (hostId: HostId) => boolean;
  dispatchIntervalMs?: number;
  /** Actor names, for several nodes in one system (tests). */
  names?: { hints?: string; replica?: string };
}

/**
 * Hinted handoff on one node: the coordinator's `HintSink`, the durable store
 * behind it, and replay to targets that come back.
 */
export interface HintsHandle extends HintSink<Mutation> {
  /** Whether new hints are stored (hinted_handoff_enabled). */
  readonly enabled: boolean;
  /** Targets with hints pending or marked as needing repair, by host id. */
  targets(): HintTarget[];
  /** Whether hints for the host id were refused (window or size cap): only a repair brings it up to date. */
  needsRepair(hostId: HostId): boolean;
  stats(): HintStats;
  /**
   * Drops every hint for the host id and forgets it: for a node that left or
   * was removed (membership events do this already) or that topology work
   * retires. Resolves with what was dropped.
   */
  dropHintsFor(hostId: HostId): Promise<{ hints: number; bytes: number }>;
  /** Clears the needs-repair mark once a repair of the target finished. */
  clearNeedsRepair(hostId: HostId): Promise<void>;
  /**
   * Moves every hint this node holds to the live node `to`, for a node that
   * is leaving the cluster (decommission). Hints for other targets go to
   * `to`'s store in bounded batches, oldest first, paced by the throttle,
   * each batch stored there durably with the hints' original creation times
   * before it is deleted here; hints addressed to `to` itself are applied on
   * it as mutations, as a replay would. One hand-off runs at a time (a second
   * call waits for the first). Rejects with `HintHandOffFailed` (how many
   * moved) when `to` fails or refuses: what was not acknowledged stays here,
   * and calling again resumes.
   */
  handOff(to: NodeId): Promise<HandOffResult>;
  /** Looks for targets to replay to now instead of at the next dispatch. */
  dispatch(): void;
  /** Stops replay, syncs and closes the store. */
  stop(): Promise<void>;
}

type StoredMsg = WireMessage<'hints.stored'>;
/** A hint as `hints.handoff` carries it; the intersection keeps the model's `Mutation` and the wire schema in step, as the replica's `mutate` does. */
type HandOffHint = WireMessage<'hints.handoff'>['hints'][number] & { mutation: Mutation };
type HandOffMsg = WireMessage<'hints.handoff'> & { hints: HandOffHint[]; replyTo: ReplyTo<StoredMsg> };

type HintsMsg =
  | HandOffMsg
  | { type: 'offer'; item: AppendItem; replyTo: ReplyTo<boolean> }
  | { type: 'membership'; event: MembershipEvent }
  /** `periodic`: the actor's own timer, which re-arms itself; otherwise an extra look asked for by `dispatch()`. */
  | { type: 'dispatch'; periodic: boolean }
  | { type: 'sync' };

/** What sending one page of hints to their target did: hints it acknowledged, hints dropped instead, and the failure that stopped it. */
interface PageOutcome {
  delivered: number;
  dropped: number;
  failure?: Error;
}

interface Delivery {
  running: boolean;
  cancelled: boolean;
  /** Wakes a replay sleeping in its backoff when it is cancelled. */
  wake?: () => void;
}

/**
 * Opens the hint store and spawns the hints actor: it stores offered hints in
 * group-committed batches and starts a replay for each target seen UP with
 * hints pending. Each replay reads the target's hints a page at a time, oldest
 * first, sends each mutation unchanged through the replica layer's `mutate`,
 * paced by the throttle, and deletes each hint the target acknowledged. A
 * failed replay retries with a doubling backoff while the target stays up.
 */
export async function startHints(system: ActorSystem, options: HintsOptions): Promise<HintsHandle> {
  const { env, membership } = options;
  const enabled = options.enabled ?? true;
  const commitSync = options.commitSync ?? 'periodic';
  const store = await env.scheduler.track(HintStore.open(options.db, env, { syncEach: commitSync === 'batch' }));
  const limits = {
    windowMicros: (options.maxHintWindowMs ?? DEFAULT_MAX_HINT_WINDOW_MS) * 1000,
    maxBytesPerHost: options.maxHintsSizePerHostBytes ?? DEFAULT_MAX_HINTS_SIZE_PER_HOST_BYTES,
  };
  const throttle = new Throttle((options.throttleKiBps ?? DEFAULT_HINTED_HANDOFF_THROTTLE_KIB) * 1024, env.clock, env.scheduler);
  const gcGraceOf = options.gcGraceSecondsOf ?? (() => DEFAULT_GC_GRACE_SECONDS);
  const deliveryTimeoutMs = options.deliveryTimeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS;
  const dispatchIntervalMs = options.dispatchIntervalMs ?? DEFAULT_HINT_DISPATCH_INTERVAL_MS;
  const replicaName = options.names?.replica ?? REPLICA_ACTOR;
  const hintsName = options.names?.hints ?? HINTS_ACTOR;
  const log = env.logger.child({ component: 'hints' });
  const dropped = Object.fromEntries(HINT_DROP_REASONS.map((r) => [r, 0])) as Record<HintDropReason, number>;
  /** Set by the first hand-off: the node is leaving, and stores no new hints. */
  let leaving = false;
  const counters = { stored: 0, delivered: 0, replayedBytes: 0, deliveryFailures: 0, handedOff: 0, received: 0 };
  const deliveries = new Map<HostId, Delivery>();
  /**
   * Host ids this run heard leave or be removed. A write still open when its
   * target left offers its hint afterwards; stored, it would wait for a node
   * that never comes back, and keep hints from ever draining.
   */
  const gone = new Set<HostId>();
  const isGone = (hostId: HostId): boolean => gone.has(hostId) || (options.isGone?.(hostId) ?? false);
  let stopped = false;
  // One hand-off at a time: two would send the same hints twice.
  let handingOff: Promise<unknown> = Promise.resolve();
  // Each membership event carries the view right after its change: at least as fresh as the shared view, which another actor updates.
  let view: MembershipView = membership;

  const sleep = (d: Delivery, ms: number) =>
    new Promise<void>((resolve) => {
      const timer: Timer = env.scheduler.setTimer(ms, () => {
        d.wake = undefined;
        resolve();
      });
      d.wake = () => {
        timer.cancel();
        d.wake = undefined;
        resolve();
      };
    });

  /** The live node that announces the host id now; a node replaced at the same address has another host id and gets none of these hints. */
  function nodeOf(hostId: HostId): NodeId | undefined {
    return view.liveNodes().find((n) => n !== env.node && view.hostIdOf(n) === hostId);
  }

  function expired(hint: StoredHint, nowMicros: number): boolean {
    const m = hint.mutation;
    if (m === undefined) return false;
    return nowMicros - hint.createdAtMicros >= gcGraceOf(m.keyspace) * 1_000_000 || (options.purgeHorizon !== undefined && hint.createdAtMicros <= options.purgeHorizon(m.keyspace, m.token));
  }

  /** A refusal by the target that no retry will change; a timestamp too far ahead of its clock is not one (its clock catches up). */
  function permanentRefusal(error: unknown): boolean {
    return isChorusError(error) && error.httpStatus >= 400 && error.httpStatus < 500 && error.fields['reason'] !== 'TIMESTAMP_IN_FUTURE';
  }

  /** Sends one page, DELIVERY_WINDOW hints at a time; collects what may be deleted, and whether a send failed. */
  async function sendPage(node: NodeId, page: StoredHint[], d: Delivery, done: HintPosition[]): Promise<PageOutcome> {
    const ref = system.ref<ReplicaMsg>({ node, name: replicaName });
    const now = env.clock.nowMicros();
    let next = 0;
    let failure: Error | undefined;
    let delivered = 0;
    let droppedHere = 0;
    const worker = async () => {
      while (failure === undefined && !d.cancelled && !stopped) {
        const hint = page[next++];
        if (hint === undefined) return;
        if (hint.mutation === undefined) {
          log.warn({ err: hint.corrupt, seq: hint.seq }, 'dropping a hint that cannot be read');
          dropped.corrupt++;
          droppedHere++;
          done.push(hint);
          continue;
        }
        if (expired(hint, now)) {
          dropped.expired++;
          droppedHere++;
          done.push(hint);
          continue;
        }
        await throttle.take(hint.bytes);
        if (failure !== undefined || d.cancelled || stopped) return;
        try {
          const answer = await mutate(ref, hint.mutation, { hlc: options.hlc.peek(), wallMicros: env.clock.nowMicros() }, deliveryTimeoutMs);
          options.hlc.observe(answer.hlc);
          counters.delivered++;
          counters.replayedBytes += hint.bytes;
          delivered++;
          done.push(hint);
        } catch (error) {
          if (permanentRefusal(error)) {
            log.warn({ err: error, target: node, seq: hint.seq }, 'the target refused a hint; dropping it');
            dropped.rejected++;
            droppedHere++;
            done.push(hint);
          } else failure = error instanceof Error ? error : new Error(String(error));
        }
      }
    };
    await Promise.all(Array.from({ length: DELIVERY_WINDOW }, worker));
    return failure === undefined ? { delivered, dropped: droppedHere } : { delivered, dropped: droppedHere, failure };
  }

  async function replay(hostId: HostId, d: Delivery): Promise<void> {
    let backoffMs = MIN_BACKOFF_MS;
    let delivered = 0;
    const startedMs = env.clock.monotonicMs();
    while (!d.cancelled && !stopped) {
      const node = nodeOf(hostId);
      if (node === undefined) break;
      const page = await env.scheduler.track(store.page(hostId, PAGE_HINTS, PAGE_BYTES));
      if (page.length === 0) break;
      const done: HintPosition[] = [];
      const { delivered: sent, failure } = await sendPage(node, page, d, done);
      delivered += sent;
      await env.scheduler.track(store.remove(hostId, done));
      if (failure === undefined) {
        backoffMs = MIN_BACKOFF_MS;
        continue;
      }
      counters.deliveryFailures++;
      log.debug({ err: failure, target: node, hostId, retryInMs: backoffMs }, 'hint replay failed; retrying');
      // Jitter keeps the replays of many coordinators from hammering a target that just came back in step.
      await sleep(d, backoffMs / 2 + env.random.int(Math.max(1, backoffMs / 2)));
      backoffMs = Math.min(MAX_BACKOFF_MS, backoffMs * 2);
    }
    if (delivered > 0) {
      const left = store.summary(hostId)?.hints ?? 0;
      log.info({ hostId, delivered, pending: left, ms: env.clock.monotonicMs() - startedMs }, left === 0 ? 'delivered every hint to a target' : 'hint replay paused');
    }
  }

  function kick(hostId: HostId): void {
    if (stopped) return;
    const current = deliveries.get(hostId);
    if (current?.running) return;
    if ((store.summary(hostId)?.hints ?? 0) === 0) return;
    if (nodeOf(hostId) === undefined) return;
    const d: Delivery = { running: true, cancelled: false };
    deliveries.set(hostId, d);
    replay(hostId, d)
      .catch((error: unknown) => {
        if (!stopped) log.warn({ err: error, hostId }, 'hint replay stopped');
      })
      .finally(() => {
        d.running = false;
        if (deliveries.get(hostId) === d) deliveries.delete(hostId);
      });
  }

  /** Drops the hints of a target whose replay is not running: those past gc grace, oldest first, up to the first live one. */
  async function purgeExpired(hostId: HostId): Promise<void> {
    const now = env.clock.nowMicros();
    const oldest = store.summary(hostId)?.oldestMicros;
    if (oldest === undefined) return;
    let after: HintPosition | undefined;
    // The oldest hint alone first: while it is within its grace (the usual case) that one read is all this costs.
    for (let limit = 1; ; limit = PAGE_HINTS) {
      const page = await env.scheduler.track(store.page(hostId, limit, PAGE_BYTES, after));
      if (page.length === 0) return;
      const gone = page.filter((h) => h.mutation !== undefined && expired(h, now));
      if (gone.length > 0) dropped.expired += (await env.scheduler.track(store.remove(hostId, gone))).hints;
      // Hints are in write order: once one is within its grace, later ones of the same keyspace are too.
      if (gone.length < page.length) return;
      after = page.at(-1)!;
    }
  }

  async function drop(hostId: HostId, why: string): Promise<{ hints: number; bytes: number }> {
    const d = deliveries.get(hostId);
    if (d) {
      d.cancelled = true;
      d.wake?.();
    }
    const result = await env.scheduler.track(store.drop(hostId));
    dropped.removed += result.hints;
    if (result.hints > 0) log.info({ hostId, hints: result.hints, bytes: result.bytes, why }, 'dropped the hints of a host id that is gone');
    return result;
  }

  function onMembership(event: MembershipEvent): void {
    view = event.view;
    switch (event.kind) {
      case 'snapshot':
        for (const t of store.summaries()) kick(t.hostId);
        return;
      case 'up':
      case 'restarted': {
        const hostId = event.view.hostIdOf(event.node);
        if (hostId !== undefined) kick(hostId);
        return;
      }
      case 'left':
      case 'removed': {
        const hostId = event.view.hostIdOf(event.node);
        if (hostId !== undefined) gone.add(hostId);
        if (hostId !== undefined && store.summary(hostId) !== undefined) void drop(hostId, event.kind).catch((error: unknown) => log.warn({ err: error, hostId }, 'could not drop hints'));
        return;
      }
      case 'changed':
        // A new host id at a known address: the node there was replaced, and the old host id's hints must not reach the new one.
        if (event.key === 'HOST_ID' && event.oldValue !== undefined && event.oldValue !== event.newValue && store.summary(event.oldValue as HostId) !== undefined) {
          void drop(event.oldValue as HostId, 'replaced').catch((error: unknown) => log.warn({ err: error }, 'could not drop hints'));
        }
        if (event.key === 'HOST_ID') kick(event.newValue as HostId);
        return;
      default:
        return;
    }
  }

  /**
   * Stores the hints another node hands off, in one batch as durable as an
   * offer's, each with the time it was first written there (or now, if that
   * is in this node's future: a sender's clock ahead must not lengthen a
   * hint's life), then acknowledges them. Hints addressed to this node itself
   * are refused, the whole message with them: a sender applies those as
   * mutations, and a node never keeps hints for itself.
   */
  async function receiveHandOff(msg: HandOffMsg, ctx: ActorContext<HintsMsg>): Promise<void> {
    const hints: readonly HandOffHint[] = msg.hints;
    const own = view.hostIdOf(env.node);
    if (own !== undefined && hints.some((h) => h.targetHostId === own)) {
      log.warn({ from: msg.replyTo.node, hints: hints.length }, 'refused hints handed off to this node that are addressed to itself');
      ctx.fail(msg.replyTo, new HintHandOffRefused('some hints are addressed to the receiving node itself'));
      return;
    }
    if (stopped) {
      ctx.fail(msg.replyTo, new HintStoreClosed());
      return;
    }
    const now = env.clock.nowMicros();
    const items: AdoptItem[] = hints.map((h) => ({ hostId: h.targetHostId as HostId, node: h.targetNode as NodeId, createdAtMicros: Math.min(h.createdAtMicros, now), mutation: h.mutation }));
    let stored: number;
    try {
      stored = await env.scheduler.track(store.adopt(items));
    } catch (error) {
      if (!stopped) log.error({ err: error, from: msg.replyTo.node, hints: items.length }, 'could not store hints handed off to this node');
      ctx.fail(msg.replyTo, error instanceof Error ? error : new Error(String(error)));
      return;
    }
    counters.received += stored;
    ctx.reply(msg.replyTo, { type: 'hints.stored', stored });
    for (const hostId of new Set(items.map((i) => i.hostId))) kick(hostId);
  }

  function describe(error: unknown): string {
    return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  }

  async function runHandOff(to: NodeId): Promise<HandOffResult> {
    const result: HandOffResult = { to, handedOff: 0, bytes: 0, delivered: 0, dropped: 0 };
    const remaining = () => store.summaries().reduce((n, t) => n + t.hints, 0);
    const failed = (reason: string) => new HintHandOffFailed(to, result.handedOff + result.delivered, remaining(), reason);
    if (stopped) throw failed('this node is stopping');
    if (to === env.node) throw failed('hints cannot be handed off to the node that holds them');
    const toHostId = view.hostIdOf(to);
    if (toHostId === undefined || !view.isAlive(to)) throw failed(`${to} is not a live member of the cluster`);
    const startedMs = env.clock.monotonicMs();
    const ref = system.ref<HintsMsg>({ node: to, name: hintsName });
    const timeoutMs = MESSAGE_KINDS['hints.handoff'].timeoutMs;

    /** Hints for `to` itself: applied on it as a replay would, each deleted here once it acknowledged. Resolves with how many it read. */
    const deliverToItself = async (): Promise<number> => {
      const d: Delivery = { running: true, cancelled: false };
      for (let seen = 0; ; ) {
        if (stopped) throw failed('this node is stopping');
        const page = await env.scheduler.track(store.page(toHostId, PAGE_HINTS, PAGE_BYTES));
        if (page.length === 0) return seen;
        seen += page.length;
        const done: HintPosition[] = [];
        const outcome = await sendPage(to, page, d, done);
        await env.scheduler.track(store.remove(toHostId, done));
        result.delivered += outcome.delivered;
        result.dropped += outcome.dropped;
        if (outcome.failure !== undefined) throw failed(`applying its own hints failed: ${describe(outcome.failure)}`);
      }
    };

    /** Hints for another target: stored in `to`'s store, a message at a time, each batch deleted here once acknowledged. Resolves with how many it read. */
    const handOffTarget = async (hostId: HostId): Promise<number> => {
      for (let seen = 0; ; ) {
        if (stopped) throw failed('this node is stopping');
        const page = await env.scheduler.track(store.page(hostId, MAX_HANDOFF_HINTS, HANDOFF_BATCH_BYTES));
        if (page.length === 0) return seen;
        seen += page.length;
        const now = env.clock.nowMicros();
        const discard: HintPosition[] = [];
        const live: StoredHint[] = [];
        for (const hint of page) {
          if (hint.mutation === undefined) {
            log.warn({ err: hint.corrupt, seq: hint.seq }, 'dropping a hint that cannot be read');
            dropped.corrupt++;
            discard.push(hint);
          } else if (expired(hint, now)) {
            dropped.expired++;
            discard.push(hint);
          } else live.push(hint);
        }
        if (discard.length > 0) result.dropped += (await env.scheduler.track(store.remove(hostId, discard))).hints;
        if (live.length === 0) continue;
        // The page is already within a message's bounds (MAX_HANDOFF_HINTS, HANDOFF_BATCH_BYTES).
        const batch = live;
        const bytes = batch.reduce((n, h) => n + h.bytes, 0);
        await throttle.take(bytes);
        if (stopped) throw failed('this node is stopping');
        const fallbackNode = store.summary(hostId)?.node ?? to;
        const hints: HandOffHint[] = batch.map((h) => ({ targetHostId: hostId, targetNode: h.node ?? fallbackNode, createdAtMicros: h.createdAtMicros, mutation: h.mutation! }));
        let stored: number;
        try {
          stored = (await ref.ask<StoredMsg>((replyTo) => ({ type: 'hints.handoff', hints, replyTo }), timeoutMs)).stored;
        } catch (error) {
          throw failed(describe(error));
        }
        // Only what `to` says it stored is deleted here; the rest stays for the next call.
        const acknowledged = batch.slice(0, Math.min(stored, batch.length));
        await env.scheduler.track(store.remove(hostId, acknowledged));
        result.handedOff += acknowledged.length;
        result.bytes += acknowledged.reduce((n, h) => n + h.bytes, 0);
        counters.handedOff += acknowledged.length;
        if (acknowledged.length < batch.length) throw failed(`${to} stored ${stored} of ${batch.length} hints`);
      }
    };

    // Every target with hints, those stored meanwhile included, until none is left: each pass drains a target or throws.
    // A target whose count says hints but whose scan finds none is not read again, so a drifted count cannot spin this.
    const empty = new Set<HostId>();
    for (;;) {
      const next = store.summaries().find((t) => t.hints > 0 && !empty.has(t.hostId));
      if (next === undefined) break;
      const seen = next.hostId === toHostId ? await deliverToItself() : await handOffTarget(next.hostId);
      if (seen === 0) empty.add(next.hostId);
    }
    log.info({ ...result, ms: env.clock.monotonicMs() - startedMs }, 'handed off every hint');
    return result;
  }

  function logRefusal(item: AppendItem, outcome: Extract<AppendOutcome, { stored: false }>): void {
    if (!outcome.newlyMarked) return;
    const summary = store.summary(item.hostId);
    const fields = { target: item.node, hostId: item.hostId, oldestMicros: summary?.oldestMicros, pendingHints: summary?.hints, pendingBytes: summary?.bytes };
    if (outcome.reason === 'window') {
      log.warn({ ...fields, maxHintWindowMs: limits.windowMicros / 1000 }, 'max_hint_window passed for this target: no more hints are stored for it, and it needs a repair once it is back');
    } else {
      log.warn({ ...fields, maxHintsSizePerHost: limits.maxBytesPerHost }, 'max_hints_size_per_host reached for this target: no more hints are stored for it, and it needs a repair once it is back');
    }
  }

  async function storeOffers(all: Array<Extract<HintsMsg, { type: 'offer' }>>, ctx: ActorContext<HintsMsg>): Promise<void> {
    const offers = all.filter((o) => !isGone(o.item.hostId));
    for (const o of all) {
      if (!isGone(o.item.hostId)) continue;
      dropped.removed++;
      ctx.reply(o.replyTo, false);
    }
    if (offers.length === 0) return;
    let outcomes: AppendOutcome[];
    try {
      outcomes = await env.scheduler.track(store.append(offers.map((o) => o.item), limits));
    } catch (error) {
      if (!stopped) log.error({ err: error, hints: offers.length }, 'could not store hints');
      for (const o of offers) ctx.reply(o.replyTo, false);
      return;
    }
    offers.forEach((o, i) => {
      const outcome = outcomes[i]!;
      if (outcome.stored) counters.stored++;
      else {
        dropped[outcome.reason]++;
        logRefusal(o.item, outcome);
      }
      ctx.reply(o.replyTo, outcome.stored);
    });
    // A target that left while this batch was being stored: its drop may have run before the batch landed.
    for (const hostId of new Set(offers.map((o) => o.item.hostId))) {
      if (isGone(hostId)) void drop(hostId, 'left').catch((error: unknown) => log.warn({ err: error, hostId }, 'could not drop hints'));
    }
  }

  const ref: ActorRef<HintsMsg> = system.spawn<HintsMsg>(
    hintsName,
    () => ({
      started(ctx) {
        ctx.after(dispatchIntervalMs, { type: 'dispatch', periodic: true });
        if (commitSync === 'periodic') ctx.after(options.commitSyncPeriodMs ?? 10_000, { type: 'sync' });
      },
      // Every offer queued when the turn began becomes one batch: group commit, as the storage actor's.
      async receiveBatch(msgs, ctx) {
        const offers: Array<Extract<HintsMsg, { type: 'offer' }>> = [];
        const handOffs: HandOffMsg[] = [];
        for (const msg of msgs) {
          switch (msg.type) {
            case 'offer':
              offers.push(msg);
              break;
            case 'hints.handoff':
              handOffs.push(msg);
              break;
            case 'membership':
              onMembership(msg.event);
              break;
            case 'dispatch':
              if (msg.periodic) ctx.after(dispatchIntervalMs, { type: 'dispatch', periodic: true });
              for (const t of store.summaries()) {
                if (t.hints === 0) continue;
                if (isGone(t.hostId)) await drop(t.hostId, 'gone').catch((error: unknown) => log.warn({ err: error, hostId: t.hostId }, 'could not drop hints'));
                else if (nodeOf(t.hostId) !== undefined) kick(t.hostId);
                else if (!deliveries.get(t.hostId)?.running) await purgeExpired(t.hostId).catch((error: unknown) => log.warn({ err: error }, 'could not purge expired hints'));
              }
              break;
            case 'sync':
              ctx.after(options.commitSyncPeriodMs ?? 10_000, { type: 'sync' });
              await env.scheduler.track(store.sync()).catch((error: unknown) => {
                if (!stopped) log.error({ err: error }, 'periodic sync of the hint store failed');
              });
              break;
          }
        }
        if (offers.length > 0) await storeOffers(offers, ctx);
        for (const msg of handOffs) await receiveHandOff(msg, ctx);
      },
    }),
    { mailbox: { capacity: 20_000, overflow: 'reject' }, batchLimit: 2_000 },
  );
  const unsubscribe = options.events.subscribe((event) => {
    try {
      ref.tell({ type: 'membership', event });
    } catch (error) {
      log.warn({ err: error, kind: event.kind }, 'the hints actor refused a membership event');
    }
  });

  return {
    enabled,
    offer(target: NodeId, mutation: Mutation): Promise<boolean> {
      if (!enabled || stopped) return Promise.resolve(false);
      // A hint stored once this node hands its hints off would leave the cluster with it; a write at ANY must not count it.
      if (leaving) {
        dropped.leaving++;
        return Promise.resolve(false);
      }
      // This node's own replica never needs a hint: it is always up to itself.
      if (target === env.node) return Promise.resolve(false);
      const hostId = membership.hostIdOf(target);
      if (hostId === undefined) {
        dropped.unknown++;
        return Promise.resolve(false);
      }
      const item: AppendItem = { hostId, node: target, mutation };
      try {
        return ref.ask<boolean>((replyTo) => ({ type: 'offer', item, replyTo }), OFFER_TIMEOUT_MS).catch(() => {
          dropped.overloaded++;
          return false;
        });
      } catch {
        dropped.overloaded++;
        return Promise.resolve(false);
      }
    },
    targets: () => store.summaries(),
    needsRepair: (hostId) => store.summary(hostId)?.needsRepair ?? false,
    stats() {
      let pendingHints = 0;
      let pendingBytes = 0;
      for (const t of store.summaries()) {
        pendingHints += t.hints;
        pendingBytes += t.bytes;
      }
      return { ...counters, dropped: { ...dropped }, pendingHints, pendingBytes };
    },
    dropHintsFor: (hostId) => drop(hostId, 'asked'),
    handOff(to: NodeId): Promise<HandOffResult> {
      leaving = true;
      const run = handingOff.then(() => runHandOff(to));
      handingOff = run.catch(() => undefined);
      return run;
    },
    clearNeedsRepair: (hostId) => env.scheduler.track(store.clearNeedsRepair(hostId)),
    dispatch() {
      try {
        ref.tell({ type: 'dispatch', periodic: false });
      } catch {
        // A full mailbox has a dispatch of its own coming.
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      unsubscribe();
      for (const d of deliveries.values()) {
        d.cancelled = true;
        d.wake?.();
      }
      await system.stop(ref as ActorRef<unknown>);
      if (commitSync !== 'none') await store.sync().catch(() => undefined);
      await store.close();
    },
  };
}
