import type { NodeId } from '@chorus/core';
import { sliceRepairs } from '@chorus/read-repair';
import { type SliceQuery, pageOf, readSlice } from '@chorus/replica';
import { ReadTimeout } from './errors.js';
import { countAnswers, isSatisfied, takeExtra } from './plan.js';
import { BlockingRepair, type RepairPolicy } from './repair.js';
import { type Outcome, type Request, type RequestIo, type Tick, clientError } from './request.js';
import { type MergedPage, type ReplicaPage, mergeSlicePages } from './slice-merge.js';

/**
 * One page of a slice: full pages (dead rows included) from as many replicas
 * as the level needs, merged row by row. Digests of pages would save bytes
 * only when replicas agree, and pages of different replicas end at different
 * rows, so they would rarely agree; full pages keep one round trip.
 *
 * The rows the answer covers (up to its next page, dead ones included: a
 * tombstone that hides a row must reach the replicas that still return it)
 * are read-repaired as a point read is: the stale replicas that answered get
 * the resolved versions (and the newest partition deletion), and the page is
 * answered once the replicas holding them meet the level.
 */
export class SliceRequest implements Request {
  private readonly pages = new Map<NodeId, ReplicaPage>();
  private readonly outstanding = new Set<NodeId>();
  private readonly extras: NodeId[];
  private readonly errors: Error[] = [];
  private speculated = false;
  private repair: { blocking: BlockingRepair; page: MergedPage } | undefined;

  constructor(
    private readonly io: RequestIo,
    private readonly query: SliceQuery,
    private readonly timeoutMs: number,
    private readonly speculateAfterMs: number | undefined,
    private readonly nowMicros: () => number,
    private readonly policy: RepairPolicy,
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
    if (this.repair !== undefined) {
      // Pages still under way (a speculative replica) no longer matter: the answer is chosen.
      if (this.repair.blocking.owns(from)) {
        this.repair.blocking.onAnswer(from, outcome);
        this.settleRepair();
      }
      return;
    }
    if (!this.outstanding.delete(from)) return;
    const plan = this.io.plan;
    if (outcome.ok && outcome.msg.type === 'replica.rows') this.pages.set(from, pageOf(outcome.msg));
    else {
      if (!outcome.ok) this.errors.push(outcome.error);
      const replacement = takeExtra(plan, this.extras, [...this.pages.keys(), ...this.outstanding], plan.dcOf.get(from));
      if (replacement !== undefined) this.request(replacement);
    }
    if (isSatisfied(plan, this.pages.keys())) {
      this.answer(mergeSlicePages([...this.pages.values()], this.query.limit, this.query.reverse, this.nowMicros()));
      return;
    }
    const possible = [...this.pages.keys(), ...this.outstanding, ...this.extras];
    if (!isSatisfied(plan, possible)) {
      this.io.fail(clientError(this.errors) ?? new ReadTimeout(plan.consistency, plan.blockFor, countAnswers(plan, this.pages.keys()), this.pages.size > 0));
    }
  }

  /** Answers the merged page, after repairing the rows it covers on the stale replicas that answered. */
  private answer(page: MergedPage): void {
    const q = this.query;
    const scope = page.nextPage === undefined ? { reverse: q.reverse } : { through: page.nextPage, reverse: q.reverse };
    const repairs = sliceRepairs(this.pages, { keyspace: q.keyspace, token: q.token, partition: q.partition }, scope);
    if (repairs.length === 0) {
      this.io.succeed(page);
      return;
    }
    this.io.repair.found();
    this.policy.observe(repairs);
    if (this.policy.mode === 'none') {
      this.io.succeed(page);
      return;
    }
    this.repair = { blocking: new BlockingRepair(this.io, this.pages.keys(), repairs), page };
    this.repair.blocking.start();
    this.settleRepair();
  }

  private settleRepair(): void {
    const { blocking, page } = this.repair!;
    if (blocking.satisfied) this.io.succeed(page);
    else if (blocking.hopeless) {
      this.io.repair.timedOut();
      this.io.fail(blocking.timeout('read repair: a stale replica failed to take the newest rows'));
    }
  }

  onTick(tag: Tick): void {
    const plan = this.io.plan;
    if (tag === 'timeout') {
      if (this.repair !== undefined) this.io.repair.timedOut();
      this.io.fail(this.interrupted());
      return;
    }
    if (this.repair !== undefined || this.speculated || isSatisfied(plan, this.pages.keys())) return;
    const extra = takeExtra(plan, this.extras, this.pages.keys());
    if (extra === undefined) return;
    this.speculated = true;
    this.io.speculated();
    this.request(extra);
  }

  interrupted(detail?: string): Error {
    if (this.repair !== undefined) return this.repair.blocking.timeout(detail);
    const plan = this.io.plan;
    return new ReadTimeout(plan.consistency, plan.blockFor, countAnswers(plan, this.pages.keys()), this.pages.size > 0, detail);
  }
}
