import type { ActorRef, Answered } from '@chorus/actors';
import { type NodeId, isChorusError } from '@chorus/core';
import type { Mutation } from '@chorus/model';
import type { Clocks, DataMsg, DigestMsg, MutatedMsg, ReplicaMsg, RowKey, RowsMsg } from '@chorus/replica';
import type { ReplicaPlan } from './plan.js';

export type ReplicaAnswer = MutatedMsg | DataMsg | DigestMsg | RowsMsg;
export type Outcome = { ok: true; msg: ReplicaAnswer } | { ok: false; error: Error };
export type Tick = 'timeout' | 'speculate';
export type Op = 'write' | 'read' | 'slice';
/** Sends one request to a replica and hands its outcome to `answered`: one of the replica layer's `request…` functions. */
export type ReplicaRequest = (ref: ActorRef<ReplicaMsg>, clocks: Clocks, timeoutMs: number, answered: Answered<ReplicaAnswer>) => void;
/**
 * A mutation or a read, which the coordinator sends in one `replica.batch`
 * with the others of its turn for the same replica: mutations and digest
 * reads to any node that reads the kind, data reads to this node's own
 * replica only; otherwise alone. Its answer is the same as `mutate`'s,
 * `readDigest`'s or `readData`'s.
 */
export type BatchableRequest = { mutation: Mutation } | { digestOf: RowKey } | { dataOf: RowKey };

/** What a request's state machine may do; provided by the actor. */
export interface RequestIo {
  readonly plan: ReplicaPlan;
  ask(node: NodeId, send: ReplicaRequest | BatchableRequest): void;
  after(ms: number, tag: Tick): void;
  /**
   * Answers the caller (only the first answer counts) and ends the request, unless the request is still `open`.
   * While `behindAnswers` says so, a write's answer is held instead: the write calls `succeed` again as its
   * replicas answer, and an answer still held when the request ends (or fails) is given then.
   */
  succeed(value: unknown): void;
  fail(error: Error): void;
  /** Ends a request that stayed open after its caller was answered: its timers are cancelled, later answers dropped. */
  end(): void;
  speculated(): void;
  mismatch(): void;
  /** Read-repair counts: a request that found stale replicas, the row writes it sent them, a repair that did not reach the level. */
  readonly repair: { found(): void; sent(rows: number): void; timedOut(): void };
  /** Session-floor counts: a read that asked the remaining live replicas because its answers were older than the floor, and one that failed with SessionFloorNotMet. */
  readonly session: { escalated(): void; notMet(): void };
  /**
   * Present when the node has a hint sink: offers `mutation` for `target`
   * (hinted handoff). With `report`, the request's `onHinted` later hears
   * whether the hint was stored (durably), in a turn of its own.
   */
  hint?: (target: NodeId, mutation: Mutation, report: boolean) => void;
}

/** One request's state machine, driven by the coordinator actor. */
export interface Request {
  start(): void;
  onAnswer(from: NodeId, outcome: Outcome): void;
  onTick(tag: Tick): void;
  /** The error for a request cut short before its deadline (the coordinator is restarting or stopping), with the counts so far. */
  interrupted(detail: string): Error;
  /**
   * Whether the request still has work once its caller is answered (a write
   * waiting to see which replicas miss it); it then calls `io.end()` itself.
   * Absent: the request ends with its answer.
   */
  open?(): boolean;
  /**
   * Whether the answer may wait, when too many writes are behind their answers already: a write still waiting
   * for more than one replica. The last one is left behind, so one slow or silent replica, which the failure
   * detector has not convicted yet, does not hold every write until its deadline.
   */
  behindAnswers?(): boolean;
  /** The coordinator is stopping or restarting: last chance for work the request owes after its answer. */
  abandoned?(): void;
  /** The outcome of a hint offered with `report` (see `RequestIo.hint`); called only while the request is open. */
  onHinted?(target: NodeId, stored: boolean): void;
}

/** A client error from a replica (say, a timestamp too far ahead) explains a failure better than a timeout. */
export function clientError(errors: readonly Error[]): Error | undefined {
  return errors.find((e) => isChorusError(e) && e.httpStatus >= 400 && e.httpStatus < 500);
}
