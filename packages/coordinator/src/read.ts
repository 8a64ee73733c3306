import type { NodeId } from '@chorus/core';
import { type Cell, bytesEqual, cellDigest } from '@chorus/model';
import { repairMutations, resolveCells, staleReplicas } from '@chorus/read-repair';
import { type RowKey, fromWireCell } from '@chorus/replica';
import { ReadTimeout, SessionFloorNotMet } from './errors.js';
import { countAnswers, countsToward, isSatisfied, takeExtra } from './plan.js';
import { BlockingRepair, type RepairPolicy } from './repair.js';
import { type Outcome, type Request, type RequestIo, type Tick, clientError } from './request.js';

interface ReadAnswerState {
  digest: Uint8Array;
  /** Set once the replica sent data (not just a digest). */
  data?: { cell: Cell | undefined };
}

/**
 * One read: data from the closest replica, digests from the others the level
 * needs. Matching digests answer at once; a mismatch asks every answering
 * replica for data and resolves last-write-wins. When some of them answered
 * an older version, the read-repair phase (blocking, unless the keyspace's
 * read_repair is none) writes the resolved version to them and answers only
 * once the replicas holding it meet the level, so no later read at the level
 * can return anything older; a repair that cannot get there in time fails
 * the read with ReadTimeout. Replicas that fail are replaced from the plan's
 * extras; one speculative request goes out when the contacts are slower than
 * their recent p99.
 *
 * In a session, a read carries the row's floor (the timestamp of the
 * session's own last write of it). When the version the level's replicas
 * resolve to is older, the read asks every other live replica for data, in
 * any datacenter (the second round trip), and goes on as soon as the
 * answers resolve to a version at or above the floor: the usual repair
 * phase then writes it to the stale replicas that answered, so the level's
 * replicas hold it before the read answers. When every live replica has
 * answered (or the deadline passed) and none has such a version, the read
 * fails with SessionFloorNotMet rather than show the session an older value
 * than it wrote.
 */
export class ReadRequest implements Request {
  /**
   * Every replica this read has asked (the contacts, then any extra), each once; beside each, its answer and
   * what it is still asked for. Lists the size of the plan rather than Maps: every read makes them, and a Map is
   * a hash table that shrinks (a new one) as it empties and an iterator each time it is walked.
   */
  private readonly nodes: NodeId[];
  private readonly answers: Array<ReadAnswerState | undefined>;
  private readonly asked: Array<'data' | 'digest' | undefined>;
  /** The plan's extras not yet asked: the plan's own list until one is taken, then a copy (most reads take none). */
  private extrasLeft: readonly NodeId[];
  private readonly errors: Error[] = [];
  private phase: 'digests' | 'resolve' | 'floor' | 'repair' = 'digests';
  private speculated = false;
  private repair: { blocking: BlockingRepair; resolved: Cell | undefined } | undefined;

  constructor(
    private readonly io: RequestIo,
    private readonly row: RowKey,
    private readonly timeoutMs: number,
    private readonly speculateAfterMs: number | undefined,
    private readonly policy: RepairPolicy,
    /** The session's floor for this row (µs), when the read is in a session. */
    private readonly floorMicros?: number,
  ) {
    this.extrasLeft = io.plan.extras;
    const contacts = io.plan.contacts;
    const n = contacts.length;
    this.nodes = new Array<NodeId>(n);
    this.answers = new Array<ReadAnswerState | undefined>(n);
    this.asked = new Array<'data' | 'digest' | undefined>(n);
    for (let i = 0; i < n; i++) {
      this.nodes[i] = contacts[i]!;
      this.answers[i] = undefined;
      this.asked[i] = undefined;
    }
  }

  start(): void {
    this.io.after(this.timeoutMs, 'timeout');
    const contacts = this.io.plan.contacts;
    for (let i = 0; i < contacts.length; i++) this.request(contacts[i]!, i === 0 ? 'data' : 'digest');
    if (this.speculateAfterMs !== undefined && this.extrasLeft.length > 0) this.io.after(this.speculateAfterMs, 'speculate');
  }

  private request(node: NodeId, kind: 'data' | 'digest'): void {
    let i = this.nodes.indexOf(node);
    if (i < 0) {
      i = this.nodes.push(node) - 1;
      this.answers.push(undefined);
      this.asked.push(undefined);
    }
    this.asked[i] = kind;
    this.io.ask(node, kind === 'data' ? { dataOf: this.row } : { digestOf: this.row });
  }

  /** The extras not yet asked, as a list of this read's own that may be taken from. */
  private extras(): NodeId[] {
    if (this.extrasLeft === this.io.plan.extras) this.extrasLeft = this.extrasLeft.slice();
    return this.extrasLeft as NodeId[];
  }

  private isAsked(node: NodeId): boolean {
    const i = this.nodes.indexOf(node);
    return i >= 0 && this.asked[i] !== undefined;
  }

  private hasAnswered(node: NodeId): boolean {
    const i = this.nodes.indexOf(node);
    return i >= 0 && this.answers[i] !== undefined;
  }

  /** The replicas that answered (with data, when `withData`). */
  private answered(withData = false): NodeId[] {
    return this.nodes.filter((_, i) => this.answers[i] !== undefined && (!withData || this.answers[i]!.data !== undefined));
  }

  private stillAsked(): NodeId[] {
    return this.nodes.filter((_, i) => this.asked[i] !== undefined);
  }

  /** Whether the answers (with data, when `withData`) meet the level; lists nothing but for EACH_QUORUM. */
  private meetsLevel(withData = false): boolean {
    const plan = this.io.plan;
    if (plan.scope.kind === 'each') return isSatisfied(plan, this.answered(withData));
    let n = 0;
    for (let i = 0; i < this.nodes.length; i++) {
      const a = this.answers[i];
      if (a !== undefined && (!withData || a.data !== undefined) && countsToward(plan, this.nodes[i]!)) n++;
    }
    return n >= plan.blockFor;
  }

  private get dataPresent(): boolean {
    for (let i = 0; i < this.answers.length; i++) if (this.answers[i]?.data) return true;
    return false;
  }

  private get dataOutstanding(): boolean {
    return this.asked.includes('data');
  }

  onAnswer(from: NodeId, outcome: Outcome): void {
    if (this.repair !== undefined) {
      // Read answers still under way (a speculative replica) no longer matter: the version to answer is chosen.
      if (this.repair.blocking.onAnswer(from, outcome)) this.settleRepair();
      return;
    }
    const at = this.nodes.indexOf(from);
    if (at < 0 || this.asked[at] === undefined) return;
    this.asked[at] = undefined;
    if (!outcome.ok) {
      this.errors.push(outcome.error);
      this.answers[at] = undefined;
      // Every live replica is already asked: nothing is left to replace it with.
      if (this.phase === 'floor') return this.progressFloor();
      const replacement = takeExtra(this.io.plan, this.extras(), [...this.answered(), ...this.stillAsked()], this.io.plan.dcOf.get(from));
      if (replacement !== undefined) this.request(replacement, this.phase === 'resolve' || (!this.dataPresent && !this.dataOutstanding) ? 'data' : 'digest');
      this.progress();
      return;
    }
    const msg = outcome.msg;
    if (msg.type === 'replica.data') {
      const cell = fromWireCell(msg);
      // A replica that had the digest at hand sent it along: the value need not be hashed here.
      this.answers[at] = { digest: msg.digest ?? cellDigest(cell), data: { cell } };
    } else if (msg.type === 'replica.digest') {
      this.answers[at] = { digest: msg.digest };
      // Already resolving: this late (speculative) replica must send data to count.
      if (this.phase !== 'digests') this.request(from, 'data');
    }
    if (this.phase === 'floor') this.progressFloor();
    else this.progress();
  }

  onTick(tag: Tick): void {
    if (tag === 'timeout') {
      if (this.repair !== undefined) this.io.repair.timedOut();
      else if (this.phase === 'floor') {
        this.io.session.notMet();
        this.io.fail(this.interrupted('not every live replica answered in time'));
        return;
      }
      this.io.fail(this.interrupted());
      return;
    }
    if (this.speculated || this.phase !== 'digests' || this.meetsLevel()) return;
    // For the datacenter still short of answers (EACH_QUORUM): a slow remote contact is not helped by a local extra.
    const extra = takeExtra(this.io.plan, this.extras(), this.answered());
    if (extra === undefined) return;
    this.speculated = true;
    this.io.speculated();
    this.request(extra, this.dataPresent ? 'digest' : 'data');
  }

  private progress(): void {
    const plan = this.io.plan;
    if (this.phase === 'digests') {
      if (!this.meetsLevel()) return this.failIfHopeless(this.answered());
      const agreed = this.agreedData();
      if (agreed === null) {
        // Enough digests but the data replica failed: ask one of the digest replicas for data.
        if (!this.dataOutstanding) this.request(this.answered()[0]!, 'data');
        return;
      }
      if (agreed !== undefined) {
        if (this.belowFloor(agreed.cell)) {
          // The digests say every answer holds this same version.
          for (const a of this.answers) if (a !== undefined) a.data ??= agreed;
          return this.escalate();
        }
        this.io.succeed({ cell: agreed.cell });
        return;
      }
      this.io.mismatch();
      this.phase = 'resolve';
      for (let i = 0; i < this.nodes.length; i++) if (this.answers[i] !== undefined && !this.answers[i]!.data && this.asked[i] === undefined) this.request(this.nodes[i]!, 'data');
    }
    if (!this.meetsLevel(true)) return this.failIfHopeless(this.answered(true));
    const cells = this.dataCells();
    const resolved = resolveCells(cells.values());
    if (this.belowFloor(resolved)) return this.escalate();
    this.answerResolved(cells, resolved);
  }

  /**
   * The data answer when every answer's digest is the same (the usual read); undefined when they differ, null
   * when no answer has data yet. Allocation-free: every read comes here.
   */
  private agreedData(): { cell: Cell | undefined } | undefined | null {
    let data: { cell: Cell | undefined } | undefined;
    let first: Uint8Array | undefined;
    let agree = true;
    for (let i = 0; i < this.answers.length; i++) {
      const a = this.answers[i];
      if (a === undefined) continue;
      if (a.data !== undefined) data ??= a.data;
      if (first === undefined) first = a.digest;
      else if (agree && !bytesEqual(first, a.digest)) agree = false;
    }
    if (data === undefined) return null;
    return agree ? data : undefined;
  }

  private dataCells(): Map<NodeId, Cell | undefined> {
    const cells = new Map<NodeId, Cell | undefined>();
    for (let i = 0; i < this.nodes.length; i++) {
      const data = this.answers[i]?.data;
      if (data) cells.set(this.nodes[i]!, data.cell);
    }
    return cells;
  }

  private belowFloor(cell: Cell | undefined): boolean {
    return this.floorMicros !== undefined && (cell?.timestampMicros ?? 0) < this.floorMicros;
  }

  /** The answers (enough for the level) are older than the session's floor: every other live replica is asked for data. */
  private escalate(): void {
    this.phase = 'floor';
    this.io.session.escalated();
    for (const node of this.io.plan.live) {
      if (this.hasAnswered(node) || this.isAsked(node)) continue;
      const i = this.extrasLeft.indexOf(node);
      if (i >= 0) this.extras().splice(i, 1);
      this.request(node, 'data');
    }
    this.progressFloor();
  }

  /** Goes on once the data answers reach the floor; fails once no live replica is left to ask. */
  private progressFloor(): void {
    const cells = this.dataCells();
    const resolved = resolveCells(cells.values());
    if (!this.belowFloor(resolved)) return this.answerResolved(cells, resolved);
    if (this.stillAsked().length > 0) return;
    this.io.session.notMet();
    this.io.fail(this.floorNotMet(resolved, cells.size));
  }

  private floorNotMet(resolved: Cell | undefined, answered: number, detail?: string): SessionFloorNotMet {
    return new SessionFloorNotMet(this.io.plan.consistency, this.floorMicros!, resolved?.timestampMicros ?? 0, answered, this.io.plan.live.length, detail);
  }

  /** Answers the resolved version, after the blocking repair of the stale replicas that answered (unless read_repair is none). */
  private answerResolved(cells: Map<NodeId, Cell | undefined>, resolved: Cell | undefined): void {
    const stale = staleReplicas(resolved, cells);
    if (stale.length === 0) {
      // The digests differed, but by the time data was read the replicas agreed (a write landed in between).
      this.io.succeed({ cell: resolved });
      return;
    }
    this.io.repair.found();
    const repairs = repairMutations(resolved, stale, this.row).map(({ target, mutation }) => ({ target, mutations: [mutation], rows: 1 }));
    this.policy.observe(repairs);
    if (this.policy.mode === 'none') {
      this.io.succeed({ cell: resolved });
      return;
    }
    this.phase = 'repair';
    this.repair = { blocking: new BlockingRepair(this.io, cells.keys(), repairs), resolved };
    this.repair.blocking.start();
    this.settleRepair();
  }

  /** Answers once the replicas holding the resolved version meet the level; fails at once when they no longer can. */
  private settleRepair(): void {
    const { blocking, resolved } = this.repair!;
    if (blocking.satisfied) this.io.succeed({ cell: resolved });
    else if (blocking.hopeless) {
      this.io.repair.timedOut();
      this.io.fail(blocking.timeout('read repair: a stale replica failed to take the newest version'));
    }
  }

  interrupted(detail?: string): Error {
    if (this.repair !== undefined) return this.repair.blocking.timeout(detail);
    if (this.phase === 'floor') {
      const cells = this.dataCells();
      return this.floorNotMet(resolveCells(cells.values()), cells.size, detail);
    }
    const responders = this.answered(this.phase !== 'digests');
    return new ReadTimeout(this.io.plan.consistency, this.io.plan.blockFor, countAnswers(this.io.plan, responders), this.dataPresent, detail);
  }

  /**
   * Fails at once when the answers still possible cannot meet the level any
   * more (the replicas left are known dead). Every extra left counts as
   * possible: a failure is replaced from the failed replica's own scope
   * (`takeExtra`), so an extra is asked whenever its datacenter runs short.
   */
  private failIfHopeless(answered: NodeId[]): void {
    // No replica has failed: the contacts, which meet the level, have all answered or are still asked.
    if (this.errors.length === 0) return;
    const possible = [...answered, ...this.stillAsked(), ...this.extrasLeft];
    if (isSatisfied(this.io.plan, possible)) return;
    this.io.fail(clientError(this.errors) ?? new ReadTimeout(this.io.plan.consistency, this.io.plan.blockFor, countAnswers(this.io.plan, answered), this.dataPresent));
  }
}
