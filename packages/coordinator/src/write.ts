import type { NodeId } from '@chorus/core';
import type { Mutation } from '@chorus/model';
import { mutate } from '@chorus/replica';
import { WriteTimeout } from './errors.js';
import { countAnswers, isSatisfied } from './plan.js';
import { type Outcome, type Request, type RequestIo, clientError } from './request.js';

/**
 * One write: the mutation goes to every contact of the plan, and the caller
 * is answered as soon as the acknowledgements in scope meet the level.
 *
 * With `offerHint`, the request stays open after its answer until every
 * contact has answered or the deadline has passed, and then offers the
 * mutation for each replica of the plan that did not acknowledge (down when
 * the request started, failed, or silent until the deadline). A write that
 * the replicas refused (the caller got their client error) exists nowhere,
 * so nothing is offered for it.
 */
export class WriteRequest implements Request {
  private readonly acks = new Set<NodeId>();
  private readonly outstanding = new Set<NodeId>();
  private readonly errors: Error[] = [];
  private refused = false;
  private finished = false;

  constructor(
    private readonly io: RequestIo,
    private readonly mutation: Mutation,
    private readonly timestampMicros: number,
    private readonly timeoutMs: number,
    private readonly offerHint?: (target: NodeId) => void,
  ) {}

  start(): void {
    this.io.after(this.timeoutMs, 'timeout');
    for (const node of this.io.plan.contacts) {
      this.outstanding.add(node);
      this.io.ask(node, (ref, clocks, t) => mutate(ref, this.mutation, clocks, t));
    }
  }

  onAnswer(from: NodeId, outcome: Outcome): void {
    if (!this.outstanding.delete(from)) return;
    const plan = this.io.plan;
    if (outcome.ok) {
      this.acks.add(from);
      if (isSatisfied(plan, this.acks)) this.io.succeed({ timestampMicros: this.timestampMicros });
      else this.settleIfHopeless();
    } else {
      this.errors.push(outcome.error);
      this.settleIfHopeless();
    }
    this.finishIfSettled();
  }

  /**
   * Once the level is out of reach, fails the write. A replica's client error
   * (say, a timestamp too far ahead of its clock) is the answer only when no
   * replica applied the write and none still might: otherwise the write
   * exists somewhere and may win later, and a 4xx would tell the client it
   * did not happen. Then it is a WriteTimeout with the acknowledgements
   * received, which says the write may have been applied.
   */
  private settleIfHopeless(): void {
    const plan = this.io.plan;
    if (isSatisfied(plan, [...this.acks, ...this.outstanding])) return;
    const refusal = clientError(this.errors);
    if (this.acks.size > 0) {
      this.io.fail(this.timeout(refusal && `refused by a replica: ${refusal.message}`));
      return;
    }
    // Wait for the replicas still asked: whether any applies the write decides which error is true.
    if (this.outstanding.size > 0) return;
    if (refusal !== undefined) this.refused = true;
    this.io.fail(refusal ?? this.timeout());
  }

  onTick(): void {
    this.io.fail(this.timeout());
    this.finish();
  }

  interrupted(detail: string): Error {
    return this.timeout(detail);
  }

  open(): boolean {
    return this.offerHint !== undefined && !this.finished;
  }

  abandoned(): void {
    this.finish();
  }

  private finishIfSettled(): void {
    if (this.offerHint !== undefined && this.outstanding.size === 0) this.finish();
  }

  /** Every contact answered, or the deadline passed: the replicas that have not acknowledged by now missed the write. */
  private finish(): void {
    if (this.finished || this.offerHint === undefined) return;
    this.finished = true;
    if (!this.refused) {
      const plan = this.io.plan;
      for (const node of [...plan.natural, ...plan.pending]) if (!this.acks.has(node)) this.offerHint(node);
    }
    this.io.end();
  }

  private timeout(detail?: string): WriteTimeout {
    const plan = this.io.plan;
    return new WriteTimeout(plan.consistency, plan.blockFor, countAnswers(plan, this.acks), 'SIMPLE', detail);
  }
}
