import type { NodeId } from '@chorus/core';
import type { Mutation } from '@chorus/model';
import { ClockSkewed, Unavailable, WriteTimeout } from './errors.js';
import { countDistinct, isSatisfiedByDistinct, isSatisfiedByEither } from './plan.js';
import { type Outcome, type Request, type RequestIo, clientError } from './request.js';

/**
 * One write: the mutation goes to every contact of the plan, and the caller
 * is answered as soon as the acknowledgements in scope meet the level.
 *
 * With hints (`io.hint`), the mutation is offered for every replica of the
 * plan that misses it:
 * - a replica down when the request started is offered as soon as the write
 *   exists somewhere (its first acknowledgement), without waiting for the
 *   deadline; at ANY at once, since a stored hint is what ANY may count;
 * - a contact that failed or stayed silent is offered once every contact has
 *   answered or the deadline has passed: the request stays open after its
 *   answer until then.
 * A write that the replicas refused (the caller got their client error)
 * exists nowhere, so nothing is offered for it.
 *
 * At ANY a stored hint counts as the acknowledgement (Cassandra's ANY): the
 * write succeeds when a replica acknowledges or a hint is durably stored. If
 * no replica was live and every hint was refused, it is Unavailable: nothing
 * was written anywhere.
 */
export class WriteRequest implements Request {
  /**
   * The replicas that acknowledged, and the contacts still asked: a node is in at most one of them, once. Lists
   * of a few nodes rather than Sets: every write makes them, and a Set is a hash table that shrinks (a new
   * one) as it empties and an iterator each time it is counted.
   */
  private readonly acks: NodeId[] = [];
  private outstanding: NodeId[] = [];
  private errors: Error[] | undefined;
  /** Replicas the mutation was offered for, so none is offered twice. */
  private hinted: Set<NodeId> | undefined;
  /** Offers whose outcome a write at ANY still waits for. */
  private hintsAwaited = 0;
  private refused = false;
  private finished = false;

  constructor(
    private readonly io: RequestIo,
    private readonly mutation: Mutation,
    private readonly timestampMicros: number,
    private readonly timeoutMs: number,
    /** The client gave the timestamp (`timestamp=`); otherwise this node's clock (or a session above it) made it. */
    private readonly clientTimestamp = false,
  ) {}

  private get hinting(): boolean {
    return this.io.hint !== undefined;
  }

  private get any(): boolean {
    return this.io.plan.consistency === 'ANY';
  }

  start(): void {
    const plan = this.io.plan;
    this.io.after(this.timeoutMs, 'timeout');
    const send = { mutation: this.mutation };
    this.outstanding = plan.contacts.slice();
    for (const node of plan.contacts) this.io.ask(node, send);
    if (this.any && this.hinting) {
      this.hintDown();
      // No live replica and nobody to hint (a ring without replicas for the token): nothing can ever acknowledge.
      if (plan.contacts.length === 0 && this.hintsAwaited === 0) this.io.fail(new Unavailable(plan.consistency, plan.blockFor, 0));
      this.finishIfSettled();
    }
  }

  /** Offers the mutation for each replica of the plan that was down when the request started. */
  private hintDown(): void {
    const plan = this.io.plan;
    // Every replica live, the usual case: nothing to offer (this runs for every write).
    if (plan.live.length === plan.natural.length + plan.pending.length) return;
    for (const node of [...plan.natural, ...plan.pending]) if (!plan.live.includes(node)) this.offer(node, this.any);
  }

  private offer(node: NodeId, report: boolean): void {
    const hint = this.io.hint;
    if (hint === undefined || this.hinted?.has(node) === true) return;
    (this.hinted ??= new Set()).add(node);
    if (report) this.hintsAwaited++;
    hint(node, this.mutation, report);
  }

  onAnswer(from: NodeId, outcome: Outcome): void {
    const outstanding = this.outstanding;
    const i = outstanding.indexOf(from);
    if (i < 0) return;
    outstanding[i] = outstanding[outstanding.length - 1]!;
    outstanding.pop();
    const plan = this.io.plan;
    if (outcome.ok) {
      this.acks.push(from);
      // The write exists now: the replicas that were down get it later.
      if (this.acks.length === 1) this.hintDown();
    } else (this.errors ??= []).push(outcome.error);
    // Once satisfied, every answer calls succeed again: an answer held back (see `behindAnswers`) may go now.
    if (isSatisfiedByDistinct(plan, this.acks)) this.io.succeed({ timestampMicros: this.timestampMicros });
    else this.settleIfHopeless();
    this.finishIfSettled();
  }

  onHinted(_target: NodeId, stored: boolean): void {
    if (this.hintsAwaited > 0) this.hintsAwaited--;
    if (stored && this.any) this.io.succeed({ timestampMicros: this.timestampMicros });
    else this.settleIfHopeless();
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
    if (isSatisfiedByEither(plan, this.acks, this.outstanding)) return;
    // At ANY a hint still being stored may yet be the acknowledgement.
    if (this.any && this.hintsAwaited > 0) return;
    const refusal = this.errors && clientError(this.errors);
    if (this.acks.length > 0) {
      this.io.fail(this.timeout(refusal && `refused by a replica: ${refusal.message}`));
      return;
    }
    // Wait for the replicas still asked: whether any applies the write decides which error is true.
    if (this.outstanding.length > 0) return;
    if (plan.contacts.length === 0) {
      // ANY with every replica down, and every hint refused: nothing was written anywhere.
      this.io.fail(new Unavailable(plan.consistency, plan.blockFor, 0));
      return;
    }
    if (refusal !== undefined) this.refused = true;
    this.io.fail(refusal === undefined ? this.timeout() : this.clientTimestamp ? refusal : (clockSkewedOf(refusal) ?? refusal));
  }

  onTick(): void {
    this.io.fail(this.timeout());
    this.finish();
  }

  interrupted(detail: string): Error {
    return this.timeout(detail);
  }

  open(): boolean {
    return this.hinting && !this.finished;
  }

  behindAnswers(): boolean {
    return this.open() && this.outstanding.length > 1;
  }

  abandoned(): void {
    this.finish();
  }

  private finishIfSettled(): void {
    if (this.hinting && this.outstanding.length === 0 && this.hintsAwaited === 0) this.finish();
  }

  /** Every contact answered, or the deadline passed: the replicas that have not acknowledged by now missed the write. */
  private finish(): void {
    if (this.finished || !this.hinting) return;
    this.finished = true;
    const plan = this.io.plan;
    if (!this.refused && this.acks.length < plan.natural.length + plan.pending.length) {
      for (const node of [...plan.natural, ...plan.pending]) if (!this.acks.includes(node)) this.offer(node, false);
    }
    this.io.end();
  }

  private timeout(detail?: string): WriteTimeout {
    const plan = this.io.plan;
    return new WriteTimeout(plan.consistency, plan.blockFor, countDistinct(plan, this.acks), 'SIMPLE', detail, this.timestampMicros);
  }
}

/**
 * Every replica refused a timestamp that this node's clock made (not the
 * client's) as too far ahead of its own clock: the request was right and this
 * node's clock is the problem, so the client gets ClockSkewed (503, with the
 * offset the replica measured), never a 4xx, and may retry through another node.
 */
function clockSkewedOf(refusal: Error): ClockSkewed | undefined {
  const fields = (refusal as Error & { fields?: Record<string, unknown> }).fields;
  if (fields?.['reason'] !== 'TIMESTAMP_IN_FUTURE') return undefined;
  const aheadMs = fields['aheadMs'];
  const maxClockSkewMs = fields['maxClockSkewMs'];
  return new ClockSkewed(typeof aheadMs === 'number' ? aheadMs : Number.NaN, typeof maxClockSkewMs === 'number' ? maxClockSkewMs : Number.NaN);
}
