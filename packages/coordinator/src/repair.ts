import type { NodeId } from '@chorus/core';
import type { ReplicaRepair } from '@chorus/read-repair';
import { requestMutate } from '@chorus/replica';
import type { ReadRepairMode } from '@chorus/ring';
import { ReadTimeout } from './errors.js';
import { countAnswers, isSatisfied } from './plan.js';
import type { Outcome, RequestIo } from './request.js';

/** What a read or slice does when its replicas disagree: the keyspace's mode, and the coordinator's observer of each repair. */
export interface RepairPolicy {
  readonly mode: ReadRepairMode;
  /** Called once per request that found stale replicas, before anything is sent; never throws. */
  observe(repairs: ReplicaRepair[]): void;
}

/**
 * The blocking read-repair phase of one read or slice (Cassandra 4's
 * BlockingReadRepair): the resolved versions go to the stale replicas that
 * answered, and the read may answer once the replicas that hold them (those
 * that already agreed, plus each stale one that acknowledged all of its
 * repair) meet the read's level. Only replicas that answered are repaired;
 * the others wait for hints or anti-entropy repair.
 */
export class BlockingRepair {
  /** Repair writes not yet acknowledged, per stale replica; a replica leaves when all are in, or one failed. */
  private readonly pending = new Map<NodeId, number>();
  private readonly targets = new Set<NodeId>();
  private readonly holding = new Set<NodeId>();

  constructor(
    private readonly io: RequestIo,
    answered: Iterable<NodeId>,
    private readonly repairs: readonly ReplicaRepair[],
  ) {
    for (const r of repairs) this.targets.add(r.target);
    for (const node of answered) if (!this.targets.has(node)) this.holding.add(node);
  }

  /** Sends every repair write; the mutations are shared and must not change afterwards. */
  start(): void {
    let rows = 0;
    for (const { target, mutations, rows: n } of this.repairs) {
      this.pending.set(target, mutations.length);
      rows += n;
      for (const m of mutations) this.io.ask(target, (ref, clocks, t, answered) => requestMutate(ref, m, clocks, t, answered));
    }
    this.io.repair.sent(rows);
  }

  /** Takes an answer if it is a repair write's acknowledgement or failure; false when it belongs to the read phase. */
  onAnswer(from: NodeId, outcome: Outcome): boolean {
    const left = this.pending.get(from);
    if (left === undefined) return false;
    if (!outcome.ok) {
      // One lost repair write leaves this replica short of the resolved version: it no longer counts.
      this.pending.delete(from);
    } else if (left > 1) this.pending.set(from, left - 1);
    else {
      this.pending.delete(from);
      this.holding.add(from);
    }
    return true;
  }

  /** The replicas holding the resolved version meet the read's level. */
  get satisfied(): boolean {
    return isSatisfied(this.io.plan, this.holding);
  }

  /** Even if every repair still under way succeeds, the level cannot be met. */
  get hopeless(): boolean {
    return !isSatisfied(this.io.plan, [...this.holding, ...this.pending.keys()]);
  }

  /** The read's failure when the repair did not reach the level: a ReadTimeout counting the replicas that hold the resolved version. */
  timeout(detail?: string): ReadTimeout {
    const plan = this.io.plan;
    return new ReadTimeout(
      plan.consistency,
      plan.blockFor,
      countAnswers(plan, this.holding),
      true,
      detail ?? 'read repair: the stale replicas did not acknowledge the newest version in time',
    );
  }
}
