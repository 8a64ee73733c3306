import type { NodeId } from '@chorus/core';
import { compareBytes } from '@chorus/model';
import { sliceRepairs } from '@chorus/read-repair';
import { type SliceQuery, pageOf, requestSlice } from '@chorus/replica';
import { ReadTimeout, SessionFloorNotMet } from './errors.js';
import { countAnswers, isSatisfied, takeExtra } from './plan.js';
import { BlockingRepair, type RepairPolicy } from './repair.js';
import { type Outcome, type Request, type RequestIo, type Tick, clientError } from './request.js';
import { type MergedPage, type ReplicaPage, mergeSlicePages } from './slice-merge.js';

/** A session's floor for one row of the partition. */
export interface RowFloor {
  clustering: Uint8Array;
  timestampMicros: number;
}

function keyOf(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

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
 *
 * In a session, a page carries the floors of the rows the session wrote in
 * the partition. When a row the merged page covers resolves to a version
 * older than its floor (or to nothing), every other live replica is asked
 * for the page too, as a point read does, and the merge is redone with their
 * pages; SessionFloorNotMet once they all answered and a floor is still not
 * met.
 */
export class SliceRequest implements Request {
  private readonly pages = new Map<NodeId, ReplicaPage>();
  private readonly outstanding = new Set<NodeId>();
  private readonly extras: NodeId[];
  private readonly errors: Error[] = [];
  private speculated = false;
  private floorPhase = false;
  private repair: { blocking: BlockingRepair; page: MergedPage } | undefined;

  constructor(
    private readonly io: RequestIo,
    private readonly query: SliceQuery,
    private readonly timeoutMs: number,
    private readonly speculateAfterMs: number | undefined,
    private readonly nowMicros: () => number,
    private readonly policy: RepairPolicy,
    private readonly floors: readonly RowFloor[] = [],
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
    this.io.ask(node, (ref, clocks, t, answered) => requestSlice(ref, this.query, clocks, t, answered));
  }

  onAnswer(from: NodeId, outcome: Outcome): void {
    if (this.repair !== undefined) {
      // Pages still under way (a speculative replica) no longer matter: the answer is chosen.
      if (this.repair.blocking.onAnswer(from, outcome)) this.settleRepair();
      return;
    }
    if (!this.outstanding.delete(from)) return;
    const plan = this.io.plan;
    if (outcome.ok && outcome.msg.type === 'replica.rows') this.pages.set(from, pageOf(outcome.msg));
    else {
      if (!outcome.ok) this.errors.push(outcome.error);
      // In the floor phase every live replica is already asked.
      const replacement = this.floorPhase ? undefined : takeExtra(plan, this.extras, [...this.pages.keys(), ...this.outstanding], plan.dcOf.get(from));
      if (replacement !== undefined) this.request(replacement);
    }
    if (this.floorPhase) return this.progressFloor();
    if (isSatisfied(plan, this.pages.keys())) {
      const page = this.merged();
      if (this.unmetFloor(page) === undefined) this.answer(page);
      else this.escalate();
      return;
    }
    const possible = [...this.pages.keys(), ...this.outstanding, ...this.extras];
    if (!isSatisfied(plan, possible)) {
      this.io.fail(clientError(this.errors) ?? new ReadTimeout(plan.consistency, plan.blockFor, countAnswers(plan, this.pages.keys()), this.pages.size > 0));
    }
  }

  private merged(): MergedPage {
    return mergeSlicePages([...this.pages.values()], this.query.limit, this.query.reverse, this.nowMicros());
  }

  /**
   * The first floor of a row that `page` covers (within the slice's bounds,
   * after its start and up to its next page) whose version in the pages read
   * is older than the floor, with that version's timestamp (0 for none). A
   * newer partition deletion meets every floor below it.
   */
  private unmetFloor(page: MergedPage): { floor: RowFloor; foundMicros: number } | undefined {
    if (this.floors.length === 0) return undefined;
    const q = this.query;
    const order = (a: Uint8Array, b: Uint8Array) => (q.reverse ? -compareBytes(a, b) : compareBytes(a, b));
    const covers = (ck: Uint8Array): boolean =>
      (q.from === undefined || compareBytes(ck, q.from) >= 0) &&
      (q.to === undefined || compareBytes(ck, q.to) <= 0) &&
      (q.after === undefined || order(ck, q.after) > 0) &&
      (page.nextPage === undefined || order(ck, page.nextPage) <= 0);
    let deletedAt = 0;
    const versions = new Map<string, number>();
    for (const p of this.pages.values()) {
      if (p.partitionDeletedAtMicros !== undefined) deletedAt = Math.max(deletedAt, p.partitionDeletedAtMicros);
      for (const row of p.rows) {
        const k = keyOf(row.clustering);
        versions.set(k, Math.max(versions.get(k) ?? 0, row.cell.timestampMicros));
      }
    }
    for (const floor of this.floors) {
      if (!covers(floor.clustering)) continue;
      const found = Math.max(versions.get(keyOf(floor.clustering)) ?? 0, deletedAt);
      if (found < floor.timestampMicros) return { floor, foundMicros: found };
    }
    return undefined;
  }

  /** A covered row is older than its floor: every other live replica is asked for the page. */
  private escalate(): void {
    this.floorPhase = true;
    this.io.session.escalated();
    for (const node of this.io.plan.live) {
      if (this.pages.has(node) || this.outstanding.has(node)) continue;
      const i = this.extras.indexOf(node);
      if (i >= 0) this.extras.splice(i, 1);
      this.request(node);
    }
    this.progressFloor();
  }

  /** Answers once the pages read meet every covered floor; fails once no live replica is left to ask. */
  private progressFloor(): void {
    const page = this.merged();
    const unmet = this.unmetFloor(page);
    if (unmet === undefined) return this.answer(page);
    if (this.outstanding.size > 0) return;
    this.io.session.notMet();
    this.io.fail(this.floorNotMet(unmet));
  }

  private floorNotMet(unmet: { floor: RowFloor; foundMicros: number }, detail?: string): SessionFloorNotMet {
    const plan = this.io.plan;
    return new SessionFloorNotMet(plan.consistency, unmet.floor.timestampMicros, unmet.foundMicros, this.pages.size, plan.live.length, detail);
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
      else if (this.floorPhase) {
        this.io.session.notMet();
        this.io.fail(this.interrupted('not every live replica answered in time'));
        return;
      }
      this.io.fail(this.interrupted());
      return;
    }
    if (this.repair !== undefined || this.floorPhase || this.speculated || isSatisfied(plan, this.pages.keys())) return;
    const extra = takeExtra(plan, this.extras, this.pages.keys());
    if (extra === undefined) return;
    this.speculated = true;
    this.io.speculated();
    this.request(extra);
  }

  interrupted(detail?: string): Error {
    if (this.repair !== undefined) return this.repair.blocking.timeout(detail);
    if (this.floorPhase) {
      const unmet = this.unmetFloor(this.merged());
      if (unmet !== undefined) return this.floorNotMet(unmet, detail);
    }
    const plan = this.io.plan;
    return new ReadTimeout(plan.consistency, plan.blockFor, countAnswers(plan, this.pages.keys()), this.pages.size > 0, detail);
  }
}
