import type { NodeId } from '@chorus/core';
import { type SliceQuery, pageOf, readSlice } from '@chorus/replica';
import { ReadTimeout } from './errors.js';
import { countAnswers, isSatisfied, takeExtra } from './plan.js';
import { type Outcome, type Request, type RequestIo, type Tick, clientError } from './request.js';
import { type ReplicaPage, mergeSlicePages } from './slice-merge.js';

/**
 * One page of a slice: full pages (dead rows included) from as many replicas
 * as the level needs, merged row by row. Digests of pages would save bytes
 * only when replicas agree, and pages of different replicas end at different
 * rows, so they would rarely agree; full pages keep one round trip.
 */
export class SliceRequest implements Request {
  private readonly pages = new Map<NodeId, ReplicaPage>();
  private readonly outstanding = new Set<NodeId>();
  private readonly extras: NodeId[];
  private readonly errors: Error[] = [];
  private speculated = false;

  constructor(
    private readonly io: RequestIo,
    private readonly query: SliceQuery,
    private readonly timeoutMs: number,
    private readonly speculateAfterMs: number | undefined,
    private readonly nowMicros: () => number,
  ) {
    this.extras = [...io.plan.extras];
  }

  start(): void {
    this.io.after(this.timeoutMs, 'timeout');
    for (const node of this.io.plan.contacts) this.request(node);
    if (this.speculateAfterMs !== undefined && this.extras.length > 0) this.io.after(this.speculateAfterMs, 'speculate');
  }

  private request(node: NodeId): void {
    this.outstanding.add(node);
    this.io.ask(node, (ref, clocks, t) => readSlice(ref, this.query, clocks, t));
  }

  onAnswer(from: NodeId, outcome: Outcome): void {
    if (!this.outstanding.delete(from)) return;
    const plan = this.io.plan;
    if (outcome.ok && outcome.msg.type === 'replica.rows') this.pages.set(from, pageOf(outcome.msg));
    else {
      if (!outcome.ok) this.errors.push(outcome.error);
      const replacement = takeExtra(plan, this.extras, [...this.pages.keys(), ...this.outstanding], plan.dcOf.get(from));
      if (replacement !== undefined) this.request(replacement);
    }
    if (isSatisfied(plan, this.pages.keys())) {
      this.io.succeed(mergeSlicePages([...this.pages.values()], this.query.limit, this.query.reverse, this.nowMicros()));
      return;
    }
    const possible = [...this.pages.keys(), ...this.outstanding, ...this.extras];
    if (!isSatisfied(plan, possible)) {
      this.io.fail(clientError(this.errors) ?? new ReadTimeout(plan.consistency, plan.blockFor, countAnswers(plan, this.pages.keys()), this.pages.size > 0));
    }
  }

  onTick(tag: Tick): void {
    const plan = this.io.plan;
    if (tag === 'timeout') {
      this.io.fail(this.interrupted());
      return;
    }
    if (this.speculated || isSatisfied(plan, this.pages.keys())) return;
    const extra = takeExtra(plan, this.extras, this.pages.keys());
    if (extra === undefined) return;
    this.speculated = true;
    this.io.speculated();
    this.request(extra);
  }

  interrupted(detail?: string): Error {
    const plan = this.io.plan;
    return new ReadTimeout(plan.consistency, plan.blockFor, countAnswers(plan, this.pages.keys()), this.pages.size > 0, detail);
  }
}
